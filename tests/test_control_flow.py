"""Control flow as ops (cond, while_loop, scan, map_fn, foldl) with gradients through them,
checked against NumPy and central finite differences by the shared harness."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case


def _power_loop(x):
    _, s = tw.while_loop(lambda i, s: i < 4, lambda i, s: (i + 1, s * x), [0, tw.ones_like(x)])
    return s


def _nested_loops(x):
    def outer_body(i, acc):
        _, inner = tw.while_loop(lambda j, a: j < 2, lambda j, a: (j + 1, tw.tanh(a * x)),
                                 [0, acc])
        return i + 1, inner + x
    return tw.while_loop(lambda i, a: i < 3, outer_body, [0, x])[1]


def _loop_in_cond(x):
    return tw.cond(tw.reduce_sum(x) > 0.0,
                   lambda: tw.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * x),
                                         [0, x])[1],
                   lambda: x * 2.0)


def _cond_in_loop(x):
    def body(i, a):
        return i + 1, tw.cond(i < 2, lambda: a * x, lambda: a + x)
    return tw.while_loop(lambda i, a: i < 4, body, [0, x])[1]


def _np_nested(x):
    acc = x
    for _ in range(3):
        a = acc
        for _ in range(2):
            a = np.tanh(a * x)
        acc = a + x
    return acc


def _np_cond_in_loop(x):
    a = x
    for i in range(4):
        a = a * x if i < 2 else a + x
    return a


def _rnn_scan(x, w):
    # a tiny recurrent net: h_t = tanh(h_{t-1} @ w + x_t)
    return tw.scan(lambda h, xt: tw.tanh(tw.matmul(h, w) + xt), x,
                   initializer=tw.zeros([2, 3], tw.float64))


def _np_rnn(x, w):
    h = np.zeros((2, 3))
    out = []
    for t in range(x.shape[0]):
        h = np.tanh(h @ w + x[t])
        out.append(h)
    return np.stack(out)


CASES = [
    OpCase("cond_true", lambda x: tw.cond(tw.reduce_sum(x) > 0.0, lambda: x * x, lambda: -x),
           lambda x: x * x if x.sum() > 0 else -x, [(4,)],
           make_inputs=lambda r: [r.uniform(0.5, 1.0, 4)]),
    OpCase("cond_false", lambda x: tw.cond(tw.reduce_sum(x) > 0.0, lambda: x * x, lambda: -x),
           lambda x: x * x if x.sum() > 0 else -x, [(4,)],
           make_inputs=lambda r: [r.uniform(-1.0, -0.5, 4)]),
    OpCase("while_power", _power_loop, lambda x: x ** 4, [(3,)]),
    OpCase("nested_while", _nested_loops, _np_nested, [(3,)]),
    OpCase("while_in_cond", _loop_in_cond, lambda x: x ** 4 if x.sum() > 0 else 2 * x, [(3,)],
           make_inputs=lambda r: [r.uniform(0.5, 1.0, 3)]),
    OpCase("cond_in_while", _cond_in_loop, _np_cond_in_loop, [(3,)]),
    OpCase("scan_rnn", _rnn_scan, _np_rnn, [(4, 2, 3), (3, 3)]),
    OpCase("scan_reverse", lambda x: tw.scan(lambda a, e: a * 0.5 + e, x, reverse=True),
           lambda x: np.stack([sum(x[k] * 0.5 ** (k - t) for k in range(t, len(x)))
                               for t in range(len(x))]), [(5, 2)]),
    OpCase("map_fn", lambda x: tw.map_fn(lambda e: tw.tanh(e) * e, x),
           lambda x: np.tanh(x) * x, [(4, 3)]),
    OpCase("foldl", lambda x: tw.foldl(lambda a, e: a * e + 1.0, x),
           lambda x: _np_foldl(x), [(4, 2)]),
    OpCase("foldr_init", lambda x: tw.foldr(lambda a, e: a * e, x,
                                            initializer=tw.ones([2], tw.float64)),
           lambda x: np.prod(x, axis=0), [(3, 2)]),
]


def _np_foldl(x):
    a = x[0]
    for e in x[1:]:
        a = a * e + 1.0
    return a


@pytest.mark.parametrize("case", CASES, ids=str)
def test_control_flow_op(case):
    check_case(case)


def test_while_loop_with_maximum_iterations_and_shape_invariants():
    x = tw.constant([1.0])
    out = tw.while_loop(lambda v: tw.constant(True), lambda v: tw.concat([v, v], 0), [x],
                        shape_invariants=[tw.TensorShape([None])], maximum_iterations=3)
    with tw.Session() as sess:
        assert sess.run(out).shape == (8,)


def test_while_loop_shape_change_without_invariant_is_an_error():
    x = tw.constant([1.0])
    with pytest.raises(ValueError, match="shape_invariants"):
        tw.while_loop(lambda v: tw.constant(True), lambda v: tw.concat([v, v], 0), [x])


def test_while_loop_reads_and_trains_a_variable():
    tw.reset_default_graph()
    w = tw.Variable(0.5, dtype=tw.float64)
    _, y = tw.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * w),
                         [0, tw.constant(2.0, tw.float64)])
    g, = tw.gradients(y, [w])
    with tw.Session() as sess:
        sess.run(w.initializer)
        yv, gv = sess.run([y, g])
    assert yv == pytest.approx(2.0 * 0.5 ** 3)
    assert gv == pytest.approx(2.0 * 3 * 0.5 ** 2)


def test_variables_created_in_a_loop_body_live_outside():
    tw.reset_default_graph()

    def body(i, a):
        with tw.variable_scope("cell", reuse=tw.AUTO_REUSE):
            v = tw.get_variable("v", [], initializer=tw.ones_initializer())
        return i + 1, a + v

    _, y = tw.while_loop(lambda i, a: i < 3, body, [0, tw.constant(0.0)])
    assert [v.op.name for v in tw.global_variables()] == ["cell/v"]
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        assert sess.run(y) == 3.0

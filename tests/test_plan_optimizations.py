"""Plan-time rewrites: each can be switched off, and results are equal either way."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.runtime.config import GraphOptions

OFF = GraphOptions(constant_folding=False, common_subexpression_elimination=False,
                   remove_identities=False, fusion=False)


def _both(fetches, feed=None, graph=None, setup=None):
    outs, plans = [], []
    for opts in (GraphOptions(), OFF):
        with tw.Session(graph=graph, config=tw.ConfigProto(graph_options=opts)) as sess:
            if setup is not None:
                sess.run(setup)
            outs.append(sess.run(fetches, feed))
            plans.append(next(iter(sess._plans.values())) if not setup else
                         list(sess._plans.values())[-1])
    return outs, plans


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()
    yield


def test_constant_folding_and_shape_folding():
    x = tw.placeholder(tw.float32, [4, 3])
    c = tw.constant(2.0) * tw.constant(3.0) + tw.constant(1.0)  # folds to 7
    y = x * c + tw.cast(tw.shape(x)[0] if hasattr(tw, "strided_slice") else
                        tw.reduce_sum(tw.shape(x)), tw.float32)
    feed = {x: np.arange(12, dtype=np.float32).reshape(4, 3)}
    (on, off), (plan_on, plan_off) = _both(y, feed)
    np.testing.assert_array_equal(on, off)
    assert plan_on.rewrite_stats["folded"] >= 3
    assert len(plan_on.steps) < len(plan_off.steps)


def test_cse_merges_equal_subexpressions():
    x = tw.placeholder(tw.float32, [5])
    a = tw.tanh(x) * 2.0
    b = tw.tanh(x) * 2.0
    y = a + b
    feed = {x: np.linspace(-1, 1, 5).astype(np.float32)}
    (on, off), (plan_on, _) = _both(y, feed)
    np.testing.assert_array_equal(on, off)
    assert plan_on.rewrite_stats["cse"] >= 2


def test_identity_removal_keeps_control_dependencies():
    v = tw.Variable(1.0)
    x = tw.placeholder(tw.float32, [])
    i1 = tw.identity(tw.identity(x))
    with tw.control_dependencies([tw.assign(v, 5.0)]):
        gated = tw.identity(x)  # has a control input: must not be removed
    (on, off), (plan_on, _) = _both([i1, gated, v.value()], {x: 3.0}, setup=v.initializer)
    assert on == off == [3.0, 3.0, 5.0]
    assert plan_on.rewrite_stats["identities"] >= 2


def test_random_and_stateful_ops_are_not_merged():
    v = tw.Variable(0.0)
    a = tw.assign_add(v, 1.0)
    b = tw.assign_add(v, 1.0)
    with tw.Session() as sess:
        sess.run(v.initializer)
        sess.run([a, b])
        assert sess.run(v) == 2.0


def test_inplace_elementwise_chain_equals_unfused_and_spares_inputs():
    x = tw.placeholder(tw.float32, [64, 64])
    w = tw.Variable(np.full((64, 64), 0.5, np.float32))
    h = tw.matmul(x, w)
    y = tw.tanh(tw.tanh(h) * 3.0 + 1.0)
    xv = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    keep = xv.copy()
    (on, off), (plan_on, _) = _both(y, {x: xv}, setup=w.initializer)
    np.testing.assert_array_equal(on, off)
    np.testing.assert_array_equal(xv, keep)  # the fed array is never written
    assert any(st.inplace is not None for st in plan_on.steps)


def test_feeding_a_constant_overrides_folding():
    c = tw.constant(2.0)
    y = c * 3.0
    with tw.Session() as sess:
        assert sess.run(y) == 6.0
        assert sess.run(y, {c: 10.0}) == 30.0


def test_fetched_constants_are_writable_copies():
    c = tw.constant([1.0, 2.0]) * 2.0
    with tw.Session() as sess:
        a = sess.run(c)
        a += 1
        np.testing.assert_array_equal(sess.run(c), [2.0, 4.0])


def test_training_matches_with_and_without_rewrites():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((32, 4)).astype(np.float32)
    ys = xs @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    results = []
    for opts in (GraphOptions(), OFF):
        g = tw.Graph()
        with g.as_default():
            x = tw.placeholder(tw.float32, [None, 4])
            y = tw.placeholder(tw.float32, [None, 1])
            w = tw.Variable(np.zeros((4, 1), np.float32))
            loss = tw.reduce_mean((tw.matmul(x, w) - y) * (tw.matmul(x, w) - y))
            gw, = tw.gradients(loss, [w])
            step = tw.assign_sub(w, 0.1 * gw)
            with tw.Session(config=tw.ConfigProto(graph_options=opts)) as sess:
                sess.run(w.initializer)
                for _ in range(20):
                    sess.run(step, {x: xs, y: ys})
                results.append(sess.run(w))
    np.testing.assert_array_equal(results[0], results[1])


def test_inter_op_parallelism_equals_serial_results():
    rng = np.random.default_rng(1)
    x = tw.placeholder(tw.float32, [16, 32])
    w = tw.Variable(rng.standard_normal((32, 32)).astype(np.float32))
    branches = [tw.tanh(tw.matmul(x, w) * float(k)) for k in range(1, 6)]
    y = tw.add_n(branches)
    loss = tw.reduce_mean(y * y)
    gw, = tw.gradients(loss, [w])
    step = tw.assign_sub(w, 0.01 * gw)
    xv = rng.standard_normal((16, 32)).astype(np.float32)
    results = []
    for threads in (1, 4):
        with tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=threads)) as sess:
            sess.run(w.initializer)
            losses = [sess.run([loss, step], {x: xv})[0] for _ in range(5)]
            results.append((losses, sess.run(w)))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_parallel_run_reports_kernel_errors():
    x = tw.placeholder(tw.float32, None)
    y = tw.matmul(x, x, name="bad_product")
    with tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=2)) as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="bad_product"):
            sess.run(y, {x: np.ones((2, 3))})


def test_inplace_never_overwrites_a_buffer_another_op_views():
    # regression: a ufunc wrote into tanh's output while a reshape view of it was still used
    x = tw.placeholder(tw.float64, [64, 64])
    y = tw.tanh(x)
    w = tw.reshape(y, [-1]) + tw.reshape(tw.negative(y), [-1])
    xv = np.random.default_rng(0).standard_normal((64, 64))
    with tw.Session() as sess:
        np.testing.assert_array_equal(sess.run(w, {x: xv}), np.zeros(64 * 64))


def test_lists_holding_tensors_are_packed():
    n = tw.placeholder(tw.int32, [])
    shape = tw.convert_to_tensor([n, 3])
    assert shape.dtype == tw.int32 and shape.shape.as_list() == [2]
    with tw.Session() as sess:
        assert sess.run(shape, {n: 5}).tolist() == [5, 3]

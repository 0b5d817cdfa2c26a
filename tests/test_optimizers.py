"""Optimizers against hand-written NumPy versions of TensorFlow's update formulas.

Each table case runs three steps with fed gradients (dense, or IndexedSlices with a repeated
index) and compares the variable and every slot after each step with the NumPy reference.
"""

from dataclasses import dataclass, field

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.ops import math_ops, training_ops

# --- NumPy references: TF's documented formulas, one step, updating `s` in place ---------------


def gd_ref(s, g, t, lr=0.1):
    s["var"] -= lr * g


def momentum_ref(s, g, t, lr=0.1, mom=0.9, nesterov=False):
    s["momentum"] = s["momentum"] * mom + g
    if nesterov:
        s["var"] -= lr * g + lr * mom * s["momentum"]
    else:
        s["var"] -= lr * s["momentum"]


def adagrad_ref(s, g, t, lr=0.1):
    s["accumulator"] += g * g
    s["var"] -= lr * g / np.sqrt(s["accumulator"])


def rmsprop_ref(s, g, t, lr=0.01, rho=0.9, mom=0.5, eps=1e-6, centered=False):
    s["rms"] = rho * s["rms"] + (1 - rho) * g * g
    denom = s["rms"] + eps
    if centered:
        s["mg"] = rho * s["mg"] + (1 - rho) * g
        denom = s["rms"] - s["mg"] ** 2 + eps
    s["momentum"] = mom * s["momentum"] + lr * g / np.sqrt(denom)
    s["var"] -= s["momentum"]


def adam_ref(s, g, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    s["m"] = b1 * s["m"] + (1 - b1) * g
    s["v"] = b2 * s["v"] + (1 - b2) * g * g
    s["var"] -= lr_t * s["m"] / (np.sqrt(s["v"]) + eps)


@dataclass
class OptCase:
    name: str
    make: object  # () -> Optimizer
    ref: object  # (state, grad, t) -> None
    slots: dict  # slot name -> initial value
    dense_sparse: bool = False  # TF1 Adam: a sparse gradient updates every row like a dense one
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.name


CASES = [
    OptCase("sgd", lambda: tw.train.GradientDescentOptimizer(0.1), gd_ref, {}),
    OptCase("momentum", lambda: tw.train.MomentumOptimizer(0.1, 0.9), momentum_ref,
            {"momentum": 0.0}),
    OptCase("nesterov", lambda: tw.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
            lambda s, g, t: momentum_ref(s, g, t, nesterov=True), {"momentum": 0.0}),
    OptCase("adagrad", lambda: tw.train.AdagradOptimizer(0.1), adagrad_ref,
            {"accumulator": 0.1}),
    OptCase("rmsprop", lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5, epsilon=1e-6),
            rmsprop_ref, {"rms": 1.0, "momentum": 0.0}),
    OptCase("rmsprop_centered",
            lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5, epsilon=1e-6, centered=True),
            lambda s, g, t: rmsprop_ref(s, g, t, centered=True),
            {"rms": 1.0, "mg": 0.0, "momentum": 0.0}),
    OptCase("adam", lambda: tw.train.AdamOptimizer(0.01), adam_ref, {"m": 0.0, "v": 0.0},
            dense_sparse=True),
]

VAR0 = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25], [2.0, 1.0]])
GRADS = [np.array([[0.3, -0.1], [1.0, 0.2], [-0.4, 0.6], [0.05, -0.7]]),
         np.array([[-0.2, 0.5], [0.1, 0.1], [0.9, -0.3], [0.4, 0.0]]),
         np.array([[0.6, 0.6], [-0.5, 0.8], [0.2, 0.2], [-0.3, 0.1]])]
# sparse: rows 0, 2, 0 (row 0 twice: its two rows must be summed first), 3 rows of values
INDICES = np.array([0, 2, 0])
SPARSE_VALUES = [g[:3] for g in GRADS]


def _ref_state(case):
    s = {"var": VAR0.copy()}
    for n, v in case.slots.items():
        s[n] = np.full_like(VAR0, v)
    return s


def _check_state(sess, opt, var, ref, step):
    np.testing.assert_allclose(sess.run(var), ref["var"], rtol=1e-10, atol=1e-12,
                               err_msg=f"var after step {step}")
    for n in ref:
        if n != "var":
            np.testing.assert_allclose(sess.run(opt.get_slot(var, n)), ref[n], rtol=1e-10,
                                       atol=1e-12, err_msg=f"slot {n} after step {step}")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_dense_three_steps(case):
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0, name="w")
        grad = tw.placeholder(tw.float64, VAR0.shape)
        opt = case.make()
        train = opt.apply_gradients([(grad, var)])
        assert sorted(opt.get_slot_names()) == sorted(case.slots)
        init = tw.global_variables_initializer()
    ref = _ref_state(case)
    with tw.Session(graph=g) as sess:
        sess.run(init)
        _check_state(sess, opt, var, ref, 0)
        for t, gv in enumerate(GRADS, 1):
            sess.run(train, {grad: gv})
            case.ref(ref, gv, t)
            _check_state(sess, opt, var, ref, t)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sparse_three_steps_with_duplicate_index(case):
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0, name="emb")
        values = tw.placeholder(tw.float64, [3, 2])
        grad = tw.IndexedSlices(values, tw.constant(INDICES), tw.constant([4, 2]))
        opt = case.make()
        train = opt.apply_gradients([(grad, var)])
        init = tw.global_variables_initializer()
    ref = _ref_state(case)
    rows = np.unique(INDICES)
    with tw.Session(graph=g) as sess:
        sess.run(init)
        for t, vals in enumerate(SPARSE_VALUES, 1):
            sess.run(train, {values: vals})
            dense = np.zeros_like(VAR0)
            np.add.at(dense, INDICES, vals)  # duplicates summed before the update
            if case.dense_sparse:
                case.ref(ref, dense, t)
            else:  # the formula on the touched rows only; other rows and their slots keep
                sub = {k: v[rows].copy() for k, v in ref.items()}
                case.ref(sub, dense[rows], t)
                for k in ref:
                    ref[k][rows] = sub[k]
            _check_state(sess, opt, var, ref, t)
        if not case.dense_sparse:
            np.testing.assert_array_equal(sess.run(var)[[1, 3]], VAR0[[1, 3]])


def test_sparse_gradient_from_gather_updates_only_gathered_rows():
    g = tw.Graph()
    with g.as_default():
        emb = tw.Variable(VAR0, name="emb")
        ids = tw.constant(np.array([1, 3, 1], np.int32))
        loss = tw.reduce_sum(tw.gather(emb, ids) * tw.constant(np.array([[1.0, 2.0]])))
        opt = tw.train.AdagradOptimizer(0.5)
        (grad, _), = opt.compute_gradients(loss, var_list=[emb])
        assert isinstance(grad, tw.IndexedSlices)
        train = opt.apply_gradients([(grad, emb)])
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        sess.run(train)
        got = sess.run(emb)
    s = {"var": VAR0.copy(), "accumulator": np.full_like(VAR0, 0.1)}
    dense = np.zeros_like(VAR0)
    dense[1] = [2.0, 4.0]  # row 1 gathered twice: its gradient rows are summed
    dense[3] = [1.0, 2.0]
    sub = {k: v[[1, 3]].copy() for k, v in s.items()}
    adagrad_ref(sub, dense[[1, 3]], 1, lr=0.5)
    np.testing.assert_allclose(got[[1, 3]], sub["var"], rtol=1e-12)
    np.testing.assert_array_equal(got[[0, 2]], VAR0[[0, 2]])


def test_adam_beta_powers_and_float32():
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0.astype(np.float32), name="w")
        grad = tw.placeholder(tw.float32, VAR0.shape)
        opt = tw.train.AdamOptimizer(0.01, beta1=0.8, beta2=0.99, epsilon=1e-3)
        train = opt.apply_gradients([(grad, var)])
        b1p, b2p = opt._get_beta_accumulators()
        init = tw.global_variables_initializer()
    ref = {"var": VAR0.copy(), "m": np.zeros_like(VAR0), "v": np.zeros_like(VAR0)}
    with tw.Session(graph=g) as sess:
        sess.run(init)
        for t, gv in enumerate(GRADS, 1):
            sess.run(train, {grad: gv.astype(np.float32)})
            adam_ref(ref, gv, t, lr=0.01, b1=0.8, b2=0.99, eps=1e-3)
            # beta powers advance after the update that used them: beta^(t+1) after step t
            np.testing.assert_allclose(sess.run([b1p, b2p]), [0.8 ** (t + 1), 0.99 ** (t + 1)],
                                       rtol=1e-6)
            np.testing.assert_allclose(sess.run(var), ref["var"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(sess.run(opt.get_slot(var, "v")), ref["v"], rtol=1e-5,
                                       atol=1e-7)
    assert b1p.op.name == "beta1_power" and not b1p.trainable


def test_learning_rate_may_be_a_tensor():
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0, name="w")
        lr = tw.placeholder(tw.float32, [])  # cast to the variable's float64
        train = tw.train.MomentumOptimizer(lr, 0.5).apply_gradients(
            [(tw.constant(GRADS[0]), var)])
        init = tw.global_variables_initializer()
    ref = {"var": VAR0.copy(), "momentum": np.zeros_like(VAR0)}
    with tw.Session(graph=g) as sess:
        sess.run(init)
        for rate in (0.5, 0.25):
            sess.run(train, {lr: rate})
            momentum_ref(ref, GRADS[0], 0, lr=rate, mom=0.5)
        np.testing.assert_allclose(sess.run(var), ref["var"], rtol=1e-12)


def test_slot_variables_names_and_collections():
    g = tw.Graph()
    with g.as_default():
        w = tw.Variable(VAR0, name="w")
        with tw.name_scope("layer"):
            b = tw.Variable(np.zeros(2), name="b")
        loss = tw.reduce_sum(tw.matmul(tw.constant(np.ones((1, 4))), w) + b)
        adam = tw.train.AdamOptimizer()
        adam.minimize(loss)
        rms = tw.train.RMSPropOptimizer(0.1, centered=True)
        rms.minimize(loss, var_list=[w])
        assert adam.get_slot(w, "m").op.name == "w/Adam"
        assert adam.get_slot(w, "v").op.name == "w/Adam_1"
        assert adam.get_slot(b, "m").op.name == "layer/b/Adam"
        assert [rms.get_slot(w, n).op.name for n in ("rms", "mg", "momentum")] == \
            ["w/RMSProp", "w/RMSProp_1", "w/RMSProp_2"]
        assert rms.get_slot(b, "rms") is None
        assert adam.get_slot_names() == ["m", "v"]
        names = [v.op.name for v in adam.variables()]
        assert names == sorted(names) and len(names) == 6  # 2 beta powers + 2 slots x 2 vars
        trainable = set(tw.trainable_variables())
        glob = set(tw.global_variables())
        for v in adam.variables() + rms.variables():
            assert v in glob and v not in trainable
        assert trainable == {w, b}


def test_variables_updated_in_place():
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0, name="w")
        loss = tw.reduce_sum(var * var)
        opts = [tw.train.AdamOptimizer(0.1), tw.train.RMSPropOptimizer(0.1, momentum=0.9)]
        train = tw.group(*[o.minimize(loss) for o in opts])
        names = ["w"] + [v.op.name for o in opts for v in o.variables()]
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        ids = {n: id(sess._ctx.variables[n]) for n in names}
        before = sess.run(var)
        for _ in range(3):
            sess.run(train)
        assert {n: id(sess._ctx.variables[n]) for n in names} == ids
        assert not np.allclose(sess.run(var), before)


def test_fetched_update_is_a_copy():
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(np.array([1.0, 2.0]), name="w")
        out = training_ops.apply_gradient_descent(var, 0.5, tw.constant(np.ones(2)))
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        first = sess.run(out)
        sess.run(out)
        np.testing.assert_allclose(first, [0.5, 1.5])
        np.testing.assert_allclose(sess.run(var), [0.0, 1.0])


def test_global_step():
    g = tw.Graph()
    with g.as_default():
        assert tw.train.get_global_step() is None
        step = tw.train.get_or_create_global_step()
        assert tw.train.get_or_create_global_step() is step
        assert tw.train.get_global_step(g) is step
        assert step.op.name == "global_step" and step.dtype == tw.int64
        assert step.shape.ndims == 0 and not step.trainable
        assert step in tw.global_variables() and step not in tw.trainable_variables()
        assert tw.get_collection(tw.GraphKeys.GLOBAL_STEP) == [step]
        with pytest.raises(ValueError, match="already exists"):
            tw.train.create_global_step()
        var = tw.Variable(VAR0, name="w")
        opt = tw.train.GradientDescentOptimizer(0.1)
        train = opt.minimize(tw.reduce_sum(var * var), global_step=step)
        assert train in tw.get_collection(tw.GraphKeys.TRAIN_OP)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        assert tw.train.global_step(sess, step) == 0
        for i in range(1, 4):
            sess.run(train)
            assert tw.train.global_step(sess, step) == i
        # the step counts applies, not variables: one increment for the whole update
        np.testing.assert_allclose(sess.run(var), VAR0 * (1 - 0.2) ** 3)


def test_var_list_restricts_updates():
    g = tw.Graph()
    with g.as_default():
        w1 = tw.Variable(np.array([1.0, 2.0]), name="w1")
        w2 = tw.Variable(np.array([3.0, 4.0]), name="w2")
        loss = tw.reduce_sum(w1 * w2)
        opt = tw.train.MomentumOptimizer(0.1, 0.9)
        gv = opt.compute_gradients(loss, var_list=[w1])
        assert [v for _, v in gv] == [w1]
        train = opt.minimize(loss, var_list=[w1])
        assert opt.get_slot(w2, "momentum") is None
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        sess.run(train)
        np.testing.assert_allclose(sess.run(w1), [1.0 - 0.3, 2.0 - 0.4])
        np.testing.assert_allclose(sess.run(w2), [3.0, 4.0])


@pytest.mark.parametrize("make", [
    lambda: tw.train.GradientDescentOptimizer(0.1),
    lambda: tw.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
    lambda: tw.train.AdamOptimizer(0.1),
], ids=["sgd", "nesterov", "adam"])
def test_minimize_linear_regression_converges(make):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    w_true = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = x @ w_true + 0.25
    g = tw.Graph()
    with g.as_default():
        w = tw.Variable(np.zeros((3, 1), np.float32), name="w")
        b = tw.Variable(np.float32(0.0), name="b")
        d = tw.matmul(tw.constant(x), w) + b - tw.constant(y)
        loss = tw.reduce_mean(d * d)
        step = tw.train.get_or_create_global_step()
        train = make().minimize(loss, global_step=step)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        first = sess.run(loss)
        for _ in range(300):
            sess.run(train)
        assert sess.run(loss) < 1e-4 * first
        np.testing.assert_allclose(sess.run(w), w_true, atol=1e-2)
        np.testing.assert_allclose(sess.run(b), 0.25, atol=1e-2)
        assert tw.train.global_step(sess, step) == 300


def test_no_gradients_error():
    g = tw.Graph()
    with g.as_default():
        tw.Variable(np.array([1.0]), name="w")
        loss = tw.reduce_sum(tw.constant([1.0, 2.0]) * 2.0)
        with pytest.raises(ValueError, match="No gradients provided for any variable, check "
                                             "your graph.*'w:0'|No gradients provided.*w"):
            tw.train.GradientDescentOptimizer(0.1).minimize(loss)
        with pytest.raises(ValueError, match="No gradients provided for any variable"):
            tw.train.AdamOptimizer().apply_gradients([(None, tw.global_variables()[0])])
        with pytest.raises(ValueError, match="No variables provided"):
            tw.train.AdamOptimizer().apply_gradients([])


def test_argument_errors():
    g = tw.Graph()
    with g.as_default():
        w = tw.Variable(np.zeros((2, 3)), name="w")
        with pytest.raises(ValueError, match="initial_accumulator_value must be positive"):
            tw.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)
        with pytest.raises(ValueError, match=r"same shape.*\(2, 3\)|same shape.*2, 3"):
            tw.train.GradientDescentOptimizer(0.1).apply_gradients(
                [(tw.constant(np.zeros((3, 2))), w)])
        with pytest.raises(ValueError, match="gate_gradients"):
            tw.train.GradientDescentOptimizer(0.1).compute_gradients(
                tw.reduce_sum(w), gate_gradients=7)
        with pytest.raises(TypeError, match="tw.Variable"):
            tw.train.GradientDescentOptimizer(0.1).apply_gradients(
                [(tw.constant(1.0), tw.constant(2.0))])


def test_sparse_index_out_of_range_is_a_clear_error():
    g = tw.Graph()
    with g.as_default():
        var = tw.Variable(VAR0, name="emb")
        grad = tw.IndexedSlices(tw.constant(np.ones((1, 2))), tw.constant([7]),
                                tw.constant([4, 2]))
        train = tw.train.AdagradOptimizer(0.1).apply_gradients([(grad, var)])
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        with pytest.raises(tw.errors.InvalidArgumentError, match=r"Index 7.*\[0, 4\)"):
            sess.run(train)
        np.testing.assert_array_equal(sess.run(var), VAR0)  # state untouched


def test_exponential_decay():
    if not (hasattr(math_ops, "pow") and hasattr(math_ops, "floor")):
        pytest.skip("math_ops.pow/floor not available yet")
    g = tw.Graph()
    with g.as_default():
        step = tw.train.get_or_create_global_step()
        smooth = tw.train.exponential_decay(0.1, step, 10, 0.5)
        stair = tw.train.exponential_decay(0.1, step, 10, 0.5, staircase=True)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        sess.run(step.assign(15))
        np.testing.assert_allclose(sess.run([smooth, stair]), [0.1 * 0.5 ** 1.5, 0.05],
                                   rtol=1e-6)


@pytest.mark.parametrize("threads", [0, 4])
def test_gate_graph_use_locking_and_parallel_executor(threads):
    """Same result with GATE_GRAPH, use_locking and the inter-op parallel executor."""
    g = tw.Graph()
    with g.as_default():
        w1 = tw.Variable(VAR0, name="w1")
        w2 = tw.Variable(VAR0[:2, :1], name="w2")
        loss = tw.reduce_sum(tw.matmul(w1 * w1, w2))
        opt = tw.train.AdamOptimizer(0.05, use_locking=True)
        train = opt.minimize(loss, gate_gradients=tw.train.Optimizer.GATE_GRAPH)
        g1, g2 = tw.gradients(loss, [w1, w2])
        init = tw.global_variables_initializer()
    ref = {w: {"var": v.copy(), "m": np.zeros_like(v), "v": np.zeros_like(v)}
           for w, v in (("w1", VAR0), ("w2", VAR0[:2, :1]))}
    config = tw.ConfigProto(inter_op_parallelism_threads=threads)
    with tw.Session(graph=g, config=config) as sess:
        sess.run(init)
        for t in range(1, 4):
            grads = sess.run([g1, g2])
            sess.run(train)
            for s, gv in zip(ref.values(), grads):
                adam_ref(s, gv, t, lr=0.05)
        np.testing.assert_allclose(sess.run(w1), ref["w1"]["var"], rtol=1e-10)
        np.testing.assert_allclose(sess.run(w2), ref["w2"]["var"], rtol=1e-10)


def test_piecewise_constant():
    if not hasattr(math_ops, "greater"):
        pytest.skip("math_ops.greater not available yet")
    g = tw.Graph()
    with g.as_default():
        step = tw.train.get_or_create_global_step()
        lr = tw.train.piecewise_constant(step, [10, 20], [1.0, 0.5, 0.1])
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        got = []
        for v in (0, 10, 11, 20, 21):
            sess.run(step.assign(v))
            got.append(float(sess.run(lr)))
    assert got == [1.0, 1.0, 0.5, 0.5, np.float32(0.1)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_large_variables_updated_block_by_block_match_the_whole_update(case, monkeypatch):
    """Variables past _BLOCKED_MIN_ELEMENTS are updated in cache-sized blocks: the result must
    be bit-identical to the one-pass update (a size that is not a multiple of the block)."""
    from tensorweave.kernels.cpu import training as kernels

    shape = (403, 401)
    assert np.prod(shape) >= kernels._BLOCKED_MIN_ELEMENTS
    assert np.prod(shape) % kernels._BLOCK_ELEMENTS != 0
    rng = np.random.default_rng(3)
    var0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]

    def run(min_elements):
        monkeypatch.setattr(kernels, "_BLOCKED_MIN_ELEMENTS", min_elements)
        g = tw.Graph()
        with g.as_default():
            var = tw.Variable(var0, name="w")
            grad = tw.placeholder(tw.float32, shape)
            opt = case.make()
            train = opt.apply_gradients([(grad, var)])
            init = tw.global_variables_initializer()
        with tw.Session(graph=g) as sess:
            sess.run(init)
            for gv in grads:
                sess.run(train, {grad: gv})
            return [sess.run(var)] + [sess.run(opt.get_slot(var, n)) for n in case.slots]

    blocked, whole = run(kernels._BLOCK_ELEMENTS * 4), run(10**12)
    for b, w in zip(blocked, whole):
        np.testing.assert_array_equal(b, w)
    assert not np.array_equal(blocked[0], var0)

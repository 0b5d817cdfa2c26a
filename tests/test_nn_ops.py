"""nn ops: an OpCase table through the shared harness, plus cross entropies at extreme logits,
dropout semantics, sharded embedding lookups, top-k and in-top-k."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case
from tensorweave.ops import math_ops, nn_ops


def _needs(*names):
    """Skips until the math family provides ``names`` (it is being written concurrently)."""
    missing = [n for n in names if not hasattr(math_ops, n)]
    return pytest.mark.skipif(bool(missing), reason=f"needs math_ops.{', '.join(missing)}")


# --- NumPy references (float64) ------------------------------------------------------------------
def _away_from(r, shape, kinks, gap=0.2, lo=-3.0, hi=9.0):
    """Samples that stay ``gap`` away from each kink, so finite differences see one branch."""
    x = r.uniform(lo, hi, shape)
    for k in kinks:
        near = np.abs(x - k) < gap
        x[near] = k + np.where(x[near] >= k, gap, -gap) * 2
    return x


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _elu(x):
    return np.where(x > 0, x, np.expm1(x))


def _simplex(r, shape, axis=-1):
    p = r.uniform(0.1, 1.0, shape)
    return p / p.sum(axis=axis, keepdims=True)


def _sparse_inputs(shape, classes):
    def make(r):
        return [r.standard_normal(shape + (classes,)),
                r.integers(0, classes, shape).astype(np.int32)]
    return make


def _sparse_ref(logits, labels):
    ls = _log_softmax(logits)
    return -np.take_along_axis(ls, labels[..., None].astype(np.int64), -1)[..., 0]


def _top_k_ref(k):
    return lambda x: -np.sort(-x, axis=-1)[..., :k]


_kinked = {  # activation -> (builder, reference, kinks to avoid)
    "relu": (tw.nn.relu, lambda x: np.maximum(x, 0), [0]),
    "relu6": (tw.nn.relu6, lambda x: np.clip(x, 0, 6), [0, 6]),
    "leaky_relu": (lambda x: tw.nn.leaky_relu(x, alpha=0.1),
                   lambda x: np.where(x > 0, x, 0.1 * x), [0]),
}

CASES = [
    OpCase(name, build, ref, [(3, 4)],
           make_inputs=lambda r, k=kinks: [_away_from(r, (3, 4), k)], second_order=True)
    for name, (build, ref, kinks) in _kinked.items()
] + [
    OpCase("elu", tw.nn.elu, _elu, [(3, 4)], second_order=True,
           make_inputs=lambda r: [_away_from(r, (3, 4), [0], lo=-3, hi=3)]),
    OpCase("softplus", tw.nn.softplus, lambda x: np.logaddexp(0, x), [(3, 4)],
           second_order=True),
    OpCase("softsign", tw.nn.softsign, lambda x: x / (1 + np.abs(x)), [(3, 4)],
           make_inputs=lambda r: [_away_from(r, (3, 4), [0], lo=-3, hi=3)], second_order=True),
    OpCase("tanh", tw.nn.tanh, np.tanh, [(2, 3)], second_order=True),
    OpCase("sigmoid", tw.nn.sigmoid, lambda x: 1 / (1 + np.exp(-x)), [(2, 3)],
           second_order=True),
    OpCase("softmax", tw.nn.softmax, _softmax, [(3, 5)], second_order=True),
    OpCase("softmax_axis0_3d", lambda x: tw.nn.softmax(x, axis=0),
           lambda x: _softmax(x, 0), [(3, 2, 4)], second_order=True),
    OpCase("softmax_dynamic", tw.nn.softmax, _softmax, [(2, 4)], static_shapes=False),
    OpCase("log_softmax", tw.nn.log_softmax, _log_softmax, [(3, 5)], second_order=True),
    OpCase("log_softmax_dim1", lambda x: tw.nn.log_softmax(x, dim=1),
           lambda x: _log_softmax(x, 1), [(2, 3, 4)]),
    OpCase("bias_add_2d", tw.nn.bias_add, lambda x, b: x + b, [(4, 3), (3,)],
           second_order=True),
    OpCase("bias_add_nhwc", tw.nn.bias_add, lambda x, b: x + b, [(2, 3, 2, 4), (4,)]),
    OpCase("bias_add_nchw", lambda x, b: tw.nn.bias_add(x, b, data_format="NCHW"),
           lambda x, b: x + b[:, None, None], [(2, 3, 2, 2), (3,)]),
    OpCase("bias_add_dynamic", tw.nn.bias_add, lambda x, b: x + b, [(2, 5, 3), (3,)],
           static_shapes=False),
    OpCase("bias_add_grad_nhwc", nn_ops.bias_add_grad, lambda g: g.sum((0, 1, 2)),
           [(2, 3, 2, 4)], second_order=True),
    OpCase("bias_add_grad_nchw", lambda g: nn_ops.bias_add_grad(g, "NCHW"),
           lambda g: g.sum((0, 2, 3)), [(2, 3, 2, 2)], second_order=True),
    OpCase("xw_plus_b", tw.nn.xw_plus_b, lambda x, w, b: x @ w + b, [(2, 3), (3, 4), (4,)]),
    OpCase("l2_loss", tw.nn.l2_loss, lambda x: np.sum(x * x) / 2, [(3, 4)], second_order=True),
    OpCase("l2_normalize_axis1", lambda x: tw.nn.l2_normalize(x, axis=1),
           lambda x: x / np.sqrt(np.sum(x * x, 1, keepdims=True)), [(3, 4)],
           second_order=True),
    OpCase("l2_normalize_all", tw.nn.l2_normalize, lambda x: x / np.sqrt(np.sum(x * x)),
           [(2, 3)]),
    OpCase("sigmoid_xent",
           lambda z, x: tw.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
           lambda z, x: -z * np.log(1 / (1 + np.exp(-x))) - (1 - z) * np.log(
               1 - 1 / (1 + np.exp(-x))),
           [(3, 4), (3, 4)], second_order=True,
           make_inputs=lambda r: [r.uniform(0, 1, (3, 4)), r.standard_normal((3, 4)) * 3]),
    OpCase("weighted_xent",
           lambda z, x: tw.nn.weighted_cross_entropy_with_logits(labels=z, logits=x,
                                                                 pos_weight=2.5),
           lambda z, x: -2.5 * z * np.log(1 / (1 + np.exp(-x))) - (1 - z) * np.log(
               1 - 1 / (1 + np.exp(-x))),
           [(3, 4), (3, 4)],
           make_inputs=lambda r: [r.uniform(0, 1, (3, 4)), r.standard_normal((3, 4))]),
    OpCase("softmax_xent_v2",
           lambda z, x: tw.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x),
           lambda z, x: -np.sum(z * _log_softmax(x), -1), [(3, 5), (3, 5)], second_order=True,
           make_inputs=lambda r: [_simplex(r, (3, 5)), r.standard_normal((3, 5))]),
    OpCase("softmax_xent_v1",
           lambda z, x: tw.nn.softmax_cross_entropy_with_logits(labels=z, logits=x),
           lambda z, x: -np.sum(z * _log_softmax(x), -1), [(3, 5), (3, 5)], grad_inputs=[1],
           second_order=True,
           make_inputs=lambda r: [_simplex(r, (3, 5)), r.standard_normal((3, 5))]),
    OpCase("softmax_xent_v2_axis0_3d",
           lambda z, x: tw.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x, axis=0),
           lambda z, x: -np.sum(z * _log_softmax(x, 0), 0), [(4, 2, 3), (4, 2, 3)],
           make_inputs=lambda r: [_simplex(r, (4, 2, 3), 0), r.standard_normal((4, 2, 3))]),
    OpCase("softmax_xent_dynamic",
           lambda z, x: tw.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x),
           lambda z, x: -np.sum(z * _log_softmax(x), -1), [(2, 3, 4), (2, 3, 4)],
           static_shapes=False,
           make_inputs=lambda r: [_simplex(r, (2, 3, 4)), r.standard_normal((2, 3, 4))]),
    OpCase("sparse_xent",
           lambda x, z: tw.nn.sparse_softmax_cross_entropy_with_logits(labels=z, logits=x),
           _sparse_ref, [(4, 5), (4,)], make_inputs=_sparse_inputs((4,), 5),
           second_order=True),
    OpCase("sparse_xent_3d",
           lambda x, z: tw.nn.sparse_softmax_cross_entropy_with_logits(labels=z, logits=x),
           _sparse_ref, [(2, 3, 4), (2, 3)], make_inputs=_sparse_inputs((2, 3), 4)),
    OpCase("sparse_xent_dynamic",
           lambda x, z: tw.nn.sparse_softmax_cross_entropy_with_logits(labels=z, logits=x),
           _sparse_ref, [(2, 3, 4), (2, 3)], make_inputs=_sparse_inputs((2, 3), 4),
           static_shapes=False),
    OpCase("top_k_values", lambda x: tw.nn.top_k(x, 3)[0], _top_k_ref(3), [(2, 3, 6)],
           second_order=True),
    OpCase("top_k_dynamic", lambda x: tw.nn.top_k(x, 2)[0], _top_k_ref(2), [(4, 5)],
           static_shapes=False),
]


_CASE_NEEDS = {
    "softplus": ("sigmoid",), "softsign": ("abs", "sign"), "sigmoid": ("sigmoid",),
    "l2_normalize_axis1": ("square", "rsqrt", "maximum"),
    "l2_normalize_all": ("square", "rsqrt", "maximum"), "sigmoid_xent": ("sigmoid",),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=_needs(*_CASE_NEEDS.get(c.name, ())))
                                  for c in CASES], ids=str)
def test_op(case):
    check_case(case)


def _run(fetches, feed=None):
    with tw.Session() as sess:
        return sess.run(fetches, feed)


pytestmark = pytest.mark.usefixtures("fresh_graph")


# --- cross entropies at extreme logits --------------------------------------------------------------
def test_softmax_xent_large_logits_match_hand_computation():
    logits = tw.constant([[1000.0, 0.0, -1000.0], [-5000.0, 5000.0, 5000.0]])
    labels = tw.constant([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    loss = tw.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits)
    g_logits, g_labels = tw.gradients(tw.reduce_sum(loss), [logits, labels])
    lv, gv, zv = _run([loss, g_logits, g_labels])
    # row 0: log-sum-exp = 1000, loss = 0; row 1: lse = 5000 + log 2, loss = log 2
    np.testing.assert_allclose(lv, [0.0, np.log(2.0)], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gv, [[0, 0, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(zv, [[0, 1000, 2000], [10000 + np.log(2), np.log(2),
                                                       np.log(2)]], rtol=1e-6)
    assert lv.dtype == np.float32


def test_sparse_xent_large_logits_and_bad_label():
    logits = tw.constant([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]])
    labels = tw.placeholder(tw.int32, [3])
    loss = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    (g,) = tw.gradients(tw.reduce_sum(loss), [logits])
    with tw.Session() as sess:
        lv, gv = sess.run([loss, g], {labels: [0, 0, 1]})
        np.testing.assert_allclose(lv, [0.0, 2e4, np.log(2.0)], rtol=1e-6)
        np.testing.assert_allclose(gv, [[0, 0], [-1, 1], [0.5, -0.5]], atol=1e-6)
        with pytest.raises(tw.errors.InvalidArgumentError, match="label value of 2"):
            sess.run(loss, {labels: [0, 2, 1]})


def test_sigmoid_xent_large_logits_has_no_nan():
    x = tw.constant([100.0, -100.0, 100.0, -100.0, 0.0])
    z = tw.constant([1.0, 0.0, 0.0, 1.0, 0.5])
    loss = tw.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x)
    (g,) = tw.gradients(tw.reduce_sum(loss), [x])
    lv, gv = _run([loss, g])
    np.testing.assert_allclose(lv, [0.0, 0.0, 100.0, 100.0, np.log(2.0)], atol=1e-5)
    np.testing.assert_allclose(gv, [0.0, 0.0, 1.0, -1.0, 0.0], atol=1e-6)


def test_xent_argument_errors():
    x = tw.constant([[1.0, 2.0]])
    with pytest.raises(ValueError, match="named arguments"):
        tw.nn.softmax_cross_entropy_with_logits_v2(x, x)
    with pytest.raises(ValueError, match="same shape"):
        tw.nn.softmax_cross_entropy_with_logits_v2(labels=tw.constant([[1.0, 0, 0]]), logits=x)
    with pytest.raises(ValueError, match="Rank mismatch"):
        tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tw.constant([[0]]), logits=x)
    with pytest.raises(TypeError, match="int32 or int64"):
        tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tw.constant([0.0]), logits=x)


def test_softmax_xent_v1_stops_gradient_into_labels_v2_does_not():
    x = tw.constant([[1.0, 2.0, 3.0]])
    z = tw.constant([[0.2, 0.3, 0.5]])
    v1 = tw.nn.softmax_cross_entropy_with_logits(labels=z, logits=x)
    v2 = tw.nn.softmax_cross_entropy_with_logits_v2(labels=z, logits=x)
    assert tw.gradients(v1, [z]) == [None]
    (gz,) = tw.gradients(v2, [z])
    np.testing.assert_allclose(_run(gz), -_log_softmax(np.array([[1.0, 2.0, 3.0]])),
                               rtol=1e-6)


# --- dropout ------------------------------------------------------------------------------------------
@_needs("floor")
def test_dropout_keep_prob_and_rate_scale_and_keep_fraction():
    x = tw.ones([20000])
    a = tw.nn.dropout(x, keep_prob=0.5, seed=1)
    b = tw.nn.dropout(x, rate=0.25, seed=2)
    av, bv = _run([a, b])
    assert set(np.unique(av)) == {0.0, 2.0}
    np.testing.assert_allclose(np.unique(bv), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((av > 0).mean() - 0.5) < 0.02
    assert abs((bv > 0).mean() - 0.75) < 0.02


def test_dropout_argument_errors():
    x = tw.ones([3])
    with pytest.raises(ValueError, match="exactly one of keep_prob and rate"):
        tw.nn.dropout(x)
    with pytest.raises(ValueError, match="exactly one of keep_prob and rate"):
        tw.nn.dropout(x, keep_prob=0.5, rate=0.5)
    with pytest.raises(ValueError, match="keep_prob must be a scalar in"):
        tw.nn.dropout(x, keep_prob=0.0)
    with pytest.raises(ValueError, match="rate must be a scalar in"):
        tw.nn.dropout(x, rate=1.0)


@_needs("floor")
def test_dropout_keep_one_is_identity_and_noise_shape_broadcasts():
    x = tw.constant(np.arange(12.0, dtype=np.float32).reshape(4, 3) + 1)
    assert tw.nn.dropout(x, keep_prob=1.0) is x
    y = tw.nn.dropout(x, keep_prob=0.5, noise_shape=[4, 1], seed=3)
    kp = tw.placeholder(tw.float32, [])
    z = tw.nn.dropout(x, keep_prob=kp, seed=4)
    with tw.Session() as sess:
        yv = sess.run(y)
        zv = sess.run(z, {kp: 0.25})
    xv = np.arange(12.0).reshape(4, 3) + 1
    for row, xrow in zip(yv, xv):  # one decision per row
        assert np.allclose(row, 0) or np.allclose(row, 2 * xrow)
    assert set(np.unique(zv / xv)) <= {0.0, 4.0}


@_needs("floor")
def test_dropout_gradient_uses_the_same_mask():
    x = tw.placeholder(tw.float32, [1000])
    y = tw.nn.dropout(x, keep_prob=0.5, seed=5)
    (g,) = tw.gradients(tw.reduce_sum(y), [x])
    with tw.Session() as sess:
        yv, gv = sess.run([y, g], {x: np.ones(1000, np.float32)})
    np.testing.assert_array_equal(gv, yv)


# --- embedding lookup -------------------------------------------------------------------------------
@_needs("floormod", "floordiv", "equal", "maximum", "less")
@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_sharded_matches_full_table(strategy):
    table = np.arange(30.0).reshape(10, 3)
    if strategy == "mod":
        shards = [table[p::3] for p in range(3)]
    else:  # 10 rows over 3 shards: 4, 3, 3
        shards = [table[0:4], table[4:7], table[7:10]]
    params = [tw.constant(s) for s in shards]
    ids_v = np.array([[9, 0, 4], [3, 3, 7]], np.int32)
    out = tw.nn.embedding_lookup(params, tw.constant(ids_v), partition_strategy=strategy)
    assert out.shape.as_list() == [2, 3, 3]
    cot = np.random.default_rng(0).standard_normal((2, 3, 3))
    grads = tw.gradients(tw.reduce_sum(out * tw.constant(cot)), params)
    assert all(isinstance(g, tw.IndexedSlices) for g in grads)
    got, dense = _run([out, [tw.convert_to_tensor(g) for g in grads]])
    np.testing.assert_array_equal(got, table[ids_v])
    full = np.zeros_like(table)
    np.add.at(full, ids_v.reshape(-1), cot.reshape(-1, 3))
    want = [full[p::3] for p in range(3)] if strategy == "mod" else \
        [full[0:4], full[4:7], full[7:10]]
    for d, w in zip(dense, want):
        np.testing.assert_allclose(d, w)


def test_embedding_lookup_single_table_gives_sparse_grad():
    table = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    params = tw.constant(table)
    out = tw.nn.embedding_lookup(params, tw.constant([2, 0, 2]))
    (g,) = tw.gradients(tw.reduce_sum(out), [params])
    assert isinstance(g, tw.IndexedSlices)
    ov, dv = _run([out, tw.convert_to_tensor(g)])
    np.testing.assert_array_equal(ov, table[[2, 0, 2]])
    np.testing.assert_array_equal(dv, [[1, 1], [0, 0], [2, 2]])


@_needs("sqrt", "square", "maximum")
def test_embedding_lookup_max_norm_clips_long_rows_only():
    params = tw.constant(np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]]))
    clipped = tw.nn.embedding_lookup([params], tw.constant([[0, 1]]), max_norm=1.0)
    np.testing.assert_allclose(_run(clipped), [[[0.6, 0.8], [0.3, 0.4]]])


def test_embedding_lookup_argument_errors():
    with pytest.raises(ValueError, match="partition_strategy"):
        tw.nn.embedding_lookup([tw.ones([2, 2])] * 2, [0], partition_strategy="range")
    with pytest.raises(TypeError, match="ids must be int32 or int64"):
        tw.nn.embedding_lookup(tw.ones([2, 2]), tw.constant([0.0]))


# --- top-k, in-top-k, misc ---------------------------------------------------------------------------
def test_top_k_ties_prefer_lower_index_and_k_checked():
    x = tw.constant([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    v, i = tw.nn.top_k(x, k=2)
    assert i.dtype == tw.int32 and v.shape.as_list() == [2, 2]
    vv, iv = _run([v, i])
    np.testing.assert_array_equal(vv, [[3, 3], [5, 5]])
    np.testing.assert_array_equal(iv, [[1, 2], [0, 1]])
    with pytest.raises(ValueError, match="at least k=5 columns"):
        tw.nn.top_k(x, k=5)
    iv2 = _run(tw.nn.top_k(tw.constant([7, -2**31, 2**31 - 1], tw.int32), 3)[1])
    np.testing.assert_array_equal(iv2, [2, 0, 1])


def test_in_top_k_with_ties_and_non_finite():
    p = tw.constant([[0.1, 0.3, 0.3, 0.2], [0.5, 0.1, 0.2, 0.3], [np.nan, 0.1, 0.2, 0.3],
                     [0.1, 0.2, 0.3, 0.4]])
    t = tw.constant([2, 3, 0, 7])
    got = _run([tw.nn.in_top_k(p, t, 1), tw.nn.in_top_k(p, t, 2)])
    np.testing.assert_array_equal(got[0], [True, False, False, False])
    np.testing.assert_array_equal(got[1], [True, True, False, False])


def test_activation_dtypes_and_shape_errors():
    x32 = tw.constant([[-1.0, 2.0]], tw.float32)
    outs = [tw.nn.relu(x32), tw.nn.elu(x32), tw.nn.softplus(x32), tw.nn.softmax(x32),
            tw.nn.leaky_relu(x32), tw.nn.l2_loss(x32), tw.nn.relu6(x32), tw.nn.softsign(x32)]
    for v in _run(outs):
        assert v.dtype == np.float32
    with pytest.raises(ValueError, match=r"bias shape \(3,\)"):
        tw.nn.bias_add(tw.ones([2, 4]), tw.ones([3]))
    with pytest.raises(ValueError, match="rank >= 2"):
        tw.nn.bias_add(tw.ones([4]), tw.ones([4]))
    with pytest.raises(ValueError, match="data_format"):
        tw.nn.bias_add(tw.ones([2, 4]), tw.ones([4]), data_format="HWCN")


def test_softplus_is_stable_for_large_inputs():
    x = tw.constant([-1000.0, 1000.0, 0.0], tw.float32)
    (g,) = tw.gradients(tw.reduce_sum(tw.nn.softplus(x)), [x])
    y, gv = _run([tw.nn.softplus(x), g])
    np.testing.assert_allclose(y, [0.0, 1000.0, np.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(gv, [0.0, 1.0, 0.5])

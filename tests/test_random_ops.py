"""Random ops: TF1's seed rule, reproducibility across fresh graphs and sessions, fresh values
on successive runs, distribution sanity checks and argument errors."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.ops import random_ops

pytestmark = pytest.mark.usefixtures("fresh_graph")


def _build_all(graph_seed=1):
    """One op of each kind, in a fresh graph; op seeds only on some of them."""
    g = tw.Graph()
    with g.as_default():
        if graph_seed is not None:
            tw.set_random_seed(graph_seed)
        ops = [
            tw.random_normal([3, 4], mean=1.0, stddev=2.0, seed=7),
            tw.random_uniform([5], minval=-1.0, maxval=3.0),
            tw.random_uniform([6], minval=-5, maxval=5, dtype=tw.int64),
            tw.truncated_normal([4, 2], seed=3, dtype=tw.float64),
            tw.random_shuffle(tw.range(10)),
            tw.multinomial(tw.constant([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]]), 8),
            tw.random.categorical(tw.constant([[0.0, 0.0]]), 5, dtype=tw.int32),
        ]
    return g, ops


def _two_runs(g, ops):
    with tw.Session(graph=g) as sess:
        return sess.run(ops), sess.run(ops)


def test_seeded_graphs_reproduce_across_fresh_graphs_and_sessions():
    first_a, second_a = _two_runs(*_build_all())
    first_b, second_b = _two_runs(*_build_all())
    for a, b in zip(first_a + second_a, first_b + second_b):
        np.testing.assert_array_equal(a, b)


def test_same_graph_two_sessions_reproduce():
    g, ops = _build_all()
    with tw.Session(graph=g) as s1, tw.Session(graph=g) as s2:
        for a, b in zip(s1.run(ops), s2.run(ops)):
            np.testing.assert_array_equal(a, b)


def test_successive_runs_differ():
    first, second = _two_runs(*_build_all())
    for a, b in zip(first[:4], second[:4]):  # continuous or wide-range draws
        assert not np.array_equal(a, b)


def test_graph_seed_changes_values_and_ops_differ():
    (a, _), (b, _) = _two_runs(*_build_all(1)), _two_runs(*_build_all(2))
    assert not np.array_equal(a[0], b[0])
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(5)
        x, y = tw.random_normal([50]), tw.random_normal([50])
        # the same explicit op seed in the same graph gives the same stream, as in TF
        p, q = tw.random_uniform([50], seed=9), tw.random_uniform([50], seed=9)
    with tw.Session(graph=g) as sess:
        xv, yv, pv, qv = sess.run([x, y, p, q])
    assert not np.array_equal(xv, yv)
    np.testing.assert_array_equal(pv, qv)


def test_unseeded_ops_differ_across_sessions():
    g, ops = _build_all(graph_seed=None)
    with tw.Session(graph=g) as s1, tw.Session(graph=g) as s2:
        # op 0 has an op seed (reproducible); op 1 has none and no graph seed: fresh entropy
        a, b = s1.run(ops[:2]), s2.run(ops[:2])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])


def test_get_seed_follows_tf1_rule():
    g = tw.Graph()
    with g.as_default():
        assert random_ops.get_seed(None) == (None, None)
        assert random_ops.get_seed(4) == (random_ops.DEFAULT_GRAPH_SEED, 4)
        tw.set_random_seed(10)
        tw.constant(1.0)
        assert random_ops.get_seed(None) == (10, g._last_id)
        assert random_ops.get_seed(3) == (10, 3)
        tw.random.set_seed(0)
        assert random_ops.get_seed(0) == (0, 2**31 - 1)  # (0, 0) would mean "unseeded"
        x = tw.random_normal([2], seed=11)
    rnd = x.op.inputs[0].op.inputs[0].op  # add(mul(rnd, stddev), mean)
    assert rnd.type == "RandomStandardNormal"
    assert (rnd.attrs["seed"], rnd.attrs["seed2"]) == (0, 11)


def test_distributions_bounds_and_shapes():
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(3)
        n = tw.random_normal([20000], mean=2.0, stddev=0.5, dtype=tw.float64)
        t = tw.truncated_normal([20000], mean=-1.0, stddev=3.0)
        u = tw.random_uniform([20000], minval=2.0, maxval=4.0)
        ui = tw.random_uniform([20000], minval=-3, maxval=4, dtype=tw.int32)
        m = tw.multinomial(tw.constant([[0.0, np.log(3.0)], [0.0, -np.inf]]), 4000)
        sh = tw.random_shuffle(tw.reshape(tw.range(12), [6, 2]))
        assert t.dtype == tw.float32 and n.dtype == tw.float64 and ui.dtype == tw.int32
        assert m.dtype == tw.int64 and m.shape.as_list() == [2, 4000]
        assert t.shape.as_list() == [20000] and sh.shape.as_list() == [6, 2]
    with tw.Session(graph=g) as sess:
        nv, tv, uv, uiv, mv, shv = sess.run([n, t, u, ui, m, sh])
    assert abs(nv.mean() - 2.0) < 0.02 and abs(nv.std() - 0.5) < 0.02
    assert tv.min() >= -1.0 - 6.0 and tv.max() <= -1.0 + 6.0
    assert tv.std() < 3.0 * 0.9  # truncation at 2 sigma shrinks the spread (~0.88 sigma)
    assert uv.min() >= 2.0 and uv.max() < 4.0 and abs(uv.mean() - 3.0) < 0.03
    assert set(np.unique(uiv)) == set(range(-3, 4))
    assert abs(mv[0].mean() - 0.75) < 0.03  # P(class 1) = 3 / (1 + 3)
    assert np.all(mv[1] == 0)  # a -inf logit is never drawn
    assert sorted(shv[:, 0].tolist()) == list(range(0, 12, 2))
    np.testing.assert_array_equal(shv[:, 1], shv[:, 0] + 1)  # rows move whole


def test_dynamic_shape_and_tensor_bounds():
    n = tw.placeholder(tw.int32, [])
    x = tw.random_uniform(tw.stack([n, 2]), seed=1)
    y = tw.random.normal([n, 3], seed=2)
    assert x.shape.as_list() == [None, 2] and y.shape.as_list() == [None, 3]
    with tw.Session() as sess:
        xv, yv = sess.run([x, y], {n: 4})
    assert xv.shape == (4, 2) and yv.shape == (4, 3)


def test_argument_errors():
    with pytest.raises(ValueError, match="Must specify maxval"):
        tw.random_uniform([2], dtype=tw.int32)
    with pytest.raises(ValueError, match="floating-point"):
        tw.random_normal([2], dtype=tw.int32)
    with pytest.raises(ValueError, match="non-negative ints"):
        tw.random_normal([2, -1])
    lo = tw.placeholder(tw.int32, [])
    r = tw.random_uniform([3], minval=lo, maxval=2, dtype=tw.int32)
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="minval < maxval"):
            sess.run(r, {lo: 5})


def test_random_ops_are_not_folded_or_merged():
    # two identical unseeded ops must stay two ops (stateful: no CSE, no constant folding)
    a = tw.random_normal([100], seed=1)
    b = tw.random_normal([100], seed=2)
    with tw.Session() as sess:
        av, bv = sess.run([a, b])
        av2 = sess.run(a)
    assert not np.array_equal(av, bv) and not np.array_equal(av, av2)
    # RandomShuffle is registered as not differentiable: no gradient, and no LookupError
    x = tw.constant([1.0, 2.0, 3.0])
    assert tw.gradients(tw.reduce_sum(tw.random_shuffle(x)), [x]) == [None]

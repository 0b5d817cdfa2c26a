"""Sampled softmax loss and the log-uniform candidate sampler."""

from __future__ import annotations

import numpy as np
import pytest

import tensorweave as tw

V, D, B = 40, 6, 64


def _full_loss(w, b, labels, x):
    logits = x @ w.T + b
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1)) + m[:, 0]
    return lse - logits[np.arange(len(x)), labels]


def test_sampled_loss_approaches_full_softmax_as_num_sampled_grows():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((V, D)), rng.standard_normal(V)
    x, labels = rng.standard_normal((B, D)), rng.integers(0, V, B)
    full = _full_loss(w, b, labels, x).mean()
    errs = {}
    with tw.Graph().as_default():
        tw.set_random_seed(1)
        for k in (4, 16, V):
            loss = tw.reduce_mean(tw.nn.sampled_softmax_loss(
                tw.constant(w), tw.constant(b), tw.constant(labels[:, None]), tw.constant(x),
                num_sampled=k, num_classes=V))
            with tw.Session() as sess:
                errs[k] = abs(np.mean([sess.run(loss) for _ in range(30)]) - full)
    assert errs[V] < 1e-9  # every class sampled: exactly the full softmax
    assert errs[16] < errs[4]


def test_gradients_are_sparse_and_a_small_model_trains():
    rng = np.random.default_rng(1)
    true_w = 3.0 * rng.standard_normal((V, D))
    x_all = rng.standard_normal((2048, D))
    y_all = np.argmax(x_all @ true_w.T, 1)
    with tw.Graph().as_default():
        tw.set_random_seed(2)
        x = tw.placeholder(tw.float64, [None, D])
        y = tw.placeholder(tw.int64, [None])
        w = tw.Variable(np.zeros((V, D)))
        b = tw.Variable(np.zeros(V))
        loss = tw.reduce_mean(tw.nn.sampled_softmax_loss(w, b, tw.expand_dims(y, 1), x,
                                                         num_sampled=8, num_classes=V))
        gw, gb = tw.gradients(loss, [w, b])
        assert isinstance(gw, tw.IndexedSlices) and isinstance(gb, tw.IndexedSlices)
        train = tw.train.AdamOptimizer(0.05).minimize(loss)
        full = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tw.matmul(x, w, transpose_b=True) + b))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            before = sess.run(full, {x: x_all, y: y_all})
            for _ in range(200):
                idx = rng.integers(0, len(x_all), 64)
                sess.run(train, {x: x_all[idx], y: y_all[idx]})
            after = sess.run(full, {x: x_all, y: y_all})
            acc = np.mean(np.argmax(x_all @ sess.run(w).T + sess.run(b), 1) == y_all)
    assert after < 0.5 * before and acc > 0.6, (before, after, acc)


@pytest.mark.parametrize("unique", [True, False])
def test_log_uniform_sampler_frequencies_match_expected_counts(unique):
    k, n_runs = 10, 400
    with tw.Graph().as_default():
        tw.set_random_seed(3)
        s, te, se = tw.nn.log_uniform_candidate_sampler(
            tw.constant([[0], [7]], tw.int64), 1, k, unique, V)
        counts = np.zeros(V)
        with tw.Session() as sess:
            for _ in range(n_runs):
                ids, t_exp, s_exp = sess.run([s, te, se])
                assert ids.shape == (k,) and ids.min() >= 0 and ids.max() < V
                if unique:
                    assert len(set(ids)) == k
                np.add.at(counts, ids, 1)
    p = np.log((np.arange(V) + 2.0) / (np.arange(V) + 1.0)) / np.log(V + 1.0)
    want = -np.expm1(np.log1p(-p) * _tries(p, k)) if unique else k * p
    np.testing.assert_allclose(t_exp[:, 0], want[[0, 7]], rtol=1e-5)
    np.testing.assert_allclose(s_exp, want[ids], rtol=1e-5)
    # empirical counts per run against the expected counts (binomial noise over 400 runs)
    np.testing.assert_allclose(counts / n_runs, want, atol=0.08)


def _tries(p, k):
    lo, hi = k, 10.0 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.sum(-np.expm1(mid * np.log1p(-p))) < k else (lo, mid)
    return lo


def test_bad_arguments():
    with tw.Graph().as_default():
        with pytest.raises(ValueError, match="num_sampled"):
            tw.nn.log_uniform_candidate_sampler(tw.constant([[1]]), 1, 50, True, 40)
        with pytest.raises(ValueError, match="num_true"):
            tw.nn.sampled_softmax_loss(tw.zeros([V, D]), tw.zeros([V]), tw.zeros([3, 2],
                                       tw.int64), tw.zeros([3, D]), 5, V)

"""``tw.losses`` and ``tw.metrics`` against NumPy references of TF1's formulas."""

import numpy as np
import pytest

import tensorweave as tw

pytestmark = pytest.mark.usefixtures("fresh_graph")


def _run(fetches, feed=None, local_init=False):
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        if local_init:
            s.run(tw.local_variables_initializer())
        return s.run(fetches, feed)


R = np.random.default_rng(0)
PRED = R.standard_normal((6, 4)).astype(np.float32)
LAB = R.standard_normal((6, 4)).astype(np.float32)
W_ROW = np.array([[1.0], [0.0], [2.0], [1.0], [0.0], [0.5]], np.float32)


def _reduce(losses, w, reduction):
    w = np.broadcast_to(w, losses.shape).astype(np.float64)
    total = (losses * w).sum()
    if reduction == tw.losses.Reduction.NONE:
        return losses * w
    if reduction == tw.losses.Reduction.SUM:
        return total
    if reduction == tw.losses.Reduction.MEAN:
        return total / w.sum()
    if reduction == tw.losses.Reduction.SUM_OVER_BATCH_SIZE:
        return total / losses.size
    return total / np.count_nonzero(w)


@pytest.mark.parametrize("reduction", tw.losses.Reduction.all())
@pytest.mark.parametrize("name, ref", [
    ("mean_squared_error", lambda p, y: (p - y) ** 2),
    ("absolute_difference", lambda p, y: np.abs(p - y)),
    ("huber_loss", lambda p, y: np.where(np.abs(p - y) <= 1, 0.5 * (p - y) ** 2,
                                         np.abs(p - y) - 0.5)),
])
def test_elementwise_losses_weights_and_reductions(name, ref, reduction):
    loss = getattr(tw.losses, name)(tw.constant(LAB), tw.constant(PRED), weights=W_ROW,
                                    reduction=reduction)
    want = _reduce(ref(PRED.astype(np.float64), LAB.astype(np.float64)), W_ROW, reduction)
    np.testing.assert_allclose(_run(loss), want, rtol=1e-5)
    assert tw.get_collection(tw.GraphKeys.LOSSES) == [loss]


def test_default_reduction_divides_by_nonzero_weights_and_zero_weights_give_zero():
    loss = tw.losses.mean_squared_error(tw.constant(LAB), tw.constant(PRED), weights=W_ROW)
    want = ((PRED - LAB) ** 2 * W_ROW).sum() / (np.count_nonzero(W_ROW) * 4)
    zero = tw.losses.mean_squared_error(tw.constant(LAB), tw.constant(PRED), weights=0.0)
    got, z = _run([loss, zero])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert z == 0.0


def test_classification_losses():
    logits = R.standard_normal((5, 3)).astype(np.float32)
    ids = np.array([0, 2, 1, 1, 0], np.int32)
    onehot = np.eye(3, dtype=np.float32)[ids]
    z = logits.astype(np.float64)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    smooth = onehot * 0.9 + 0.1 / 3
    p = 1 / (1 + np.exp(-z))
    sig = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
    sparse = tw.losses.sparse_softmax_cross_entropy(tw.constant(ids[:, None]), tw.constant(logits))
    dense = tw.losses.softmax_cross_entropy(tw.constant(onehot), tw.constant(logits),
                                            label_smoothing=0.1)
    sigm = tw.losses.sigmoid_cross_entropy(tw.constant(onehot), tw.constant(logits))
    hinge = tw.losses.hinge_loss(tw.constant(onehot), tw.constant(logits))
    got = _run([sparse, dense, sigm, hinge])
    np.testing.assert_allclose(got[0], -logp[np.arange(5), ids].mean(), rtol=1e-5)
    np.testing.assert_allclose(got[1], -(smooth * logp).sum(1).mean(), rtol=1e-5)
    np.testing.assert_allclose(got[2], sig.mean(), rtol=1e-5)
    np.testing.assert_allclose(got[3], np.maximum(0, 1 - (2 * onehot - 1) * z).mean(),
                               rtol=1e-5)


def test_total_loss_adds_regularization_and_trains():
    x = tw.constant(R.standard_normal((32, 3)).astype(np.float32))
    pred = tw.layers.dense(x, 1, kernel_regularizer=lambda w: 0.01 * tw.reduce_sum(w * w))
    mse = tw.losses.mean_squared_error(tw.ones_like(pred), pred)
    total = tw.losses.get_total_loss()
    reg = tw.losses.get_regularization_loss()
    step = tw.train.GradientDescentOptimizer(0.1).minimize(total)
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        t0, m0, r0 = s.run([total, mse, reg])
        np.testing.assert_allclose(t0, m0 + r0, rtol=1e-6)
        assert r0 > 0
        for _ in range(50):
            s.run(step)
        assert s.run(total) < 0.5 * t0


def test_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match="No losses"):
        tw.losses.get_total_loss()
    with pytest.raises(ValueError, match="same shape"):
        tw.losses.mean_squared_error(tw.zeros([3, 2]), tw.zeros([3, 4]))
    with pytest.raises(ValueError, match="Invalid Reduction"):
        tw.losses.mean_squared_error(tw.zeros([3]), tw.zeros([3]), reduction="avg")
    with pytest.raises(ValueError):  # weights that do not broadcast
        tw.losses.mean_squared_error(tw.zeros([3, 2]), tw.zeros([3, 2]), weights=tw.ones([4]))
    assert tw.losses.get_regularization_loss().op.type == "Const"


def test_streaming_mean_accuracy_and_errors_over_batches():
    x = tw.placeholder(tw.float32, [None])
    y = tw.placeholder(tw.int32, [None])
    p = tw.placeholder(tw.int64, [None])
    mean, mean_up = tw.metrics.mean(x)
    acc, acc_up = tw.metrics.accuracy(y, p)
    rmse, rmse_up = tw.metrics.root_mean_squared_error(tw.cast(y, tw.float32), x)
    mae, mae_up = tw.metrics.mean_absolute_error(tw.cast(y, tw.float32), x)
    batches = [(np.array([1.0, 2.0, 3.0]), [1, 2, 0], [1, 2, 2]),
               (np.array([4.0]), [4], [0])]
    with tw.Session() as s:
        s.run(tw.local_variables_initializer())
        assert s.run(mean) == 0.0  # nothing seen yet
        for xb, yb, pb in batches:
            s.run([mean_up, acc_up, rmse_up, mae_up], {x: xb, y: yb, p: pb})
        got = s.run([mean, acc, rmse, mae])
        s.run(tw.local_variables_initializer())  # a reset
        after_reset = s.run(acc)
    xs = np.array([1.0, 2.0, 3.0, 4.0])
    ys = np.array([1, 2, 0, 4])
    np.testing.assert_allclose(got, [2.5, 0.5, np.sqrt(((xs - ys) ** 2).mean()),
                                     np.abs(xs - ys).mean()], rtol=1e-6)
    assert after_reset == 0.0
    names = sorted(v.op.name for v in tw.get_collection(tw.GraphKeys.METRIC_VARIABLES))
    assert "accuracy/total" in names and "accuracy/count" in names
    assert not tw.global_variables()  # metric totals are local: a Saver never sees them


def test_weighted_accuracy_and_confusion_counts():
    y = tw.constant([1, 0, 1, 1, 0, 0])
    p = tw.constant([1, 1, 0, 1, 0, 1])
    w = tw.constant([1.0, 2.0, 1.0, 1.0, 1.0, 0.0])
    metrics = [tw.metrics.accuracy(y, p, weights=w), tw.metrics.precision(y, p),
               tw.metrics.recall(y, p), tw.metrics.true_positives(y, p),
               tw.metrics.false_positives(y, p, weights=w), tw.metrics.true_negatives(y, p),
               tw.metrics.false_negatives(y, p)]
    got = _run([up for _, up in metrics], local_init=True)
    # weighted accuracy: hits at 0, 3, 4 (weights 1+1+1) of total weight 6
    np.testing.assert_allclose(got, [3 / 6, 2 / 4, 2 / 3, 2, 2, 1, 1], rtol=1e-6)


def test_auc_matches_the_exact_roc_area_on_separable_and_mixed_scores():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400).astype(bool)
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + 0.2 * rng.standard_normal(400), 0, 1)
    pos, neg = scores[labels], scores[~labels]
    exact = ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    roc, roc_up = tw.metrics.auc(tw.constant(labels), tw.constant(scores.astype(np.float32)),
                                 num_thresholds=1000)
    pr, pr_up = tw.metrics.auc(tw.constant(labels), tw.constant(scores.astype(np.float32)),
                               curve="PR")
    got_roc, got_pr = _run([roc_up, pr_up], local_init=True)
    assert abs(got_roc - exact) < 0.005
    assert 0.5 < got_pr <= 1.0
    perfect, up = tw.metrics.auc(tw.constant([False, False, True, True]),
                                 tw.constant([0.1, 0.2, 0.8, 0.9]))
    assert abs(_run(up, local_init=True) - 1.0) < 1e-3
    with pytest.raises(ValueError, match="curve"):
        tw.metrics.auc(tw.constant([True]), tw.constant([0.5]), curve="XY")

"""The seed's "easy to share and reproduce research": same seeds, bitwise-identical training,
whatever the inter-op thread count."""

import numpy as np

import tensorweave as tw


def _train(threads, seed=7, steps=15):
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(seed)
        x = tw.placeholder(tw.float32, [None, 20])
        y = tw.placeholder(tw.int64, [None])
        w1 = tw.Variable(tw.random_normal([20, 32], stddev=0.3, seed=1))
        b1 = tw.Variable(tw.zeros([32]))
        w2 = tw.Variable(tw.truncated_normal([32, 4], stddev=0.3))
        h = tw.nn.dropout(tw.nn.relu(tw.matmul(x, w1) + b1), keep_prob=0.8)
        logits = tw.matmul(h, w2) + tw.random_uniform([4], -0.01, 0.01)
        loss = tw.reduce_mean(
            tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tw.train.AdamOptimizer(0.01).minimize(loss)
        init = tw.global_variables_initializer()
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((64, 20)).astype(np.float32)
    ys = rng.integers(0, 4, 64)
    cfg = tw.ConfigProto(inter_op_parallelism_threads=threads)
    with tw.Session(graph=g, config=cfg) as sess:
        sess.run(init)
        losses = [sess.run([loss, train], {x: xs, y: ys})[0] for _ in range(steps)]
        weights = sess.run([w1, b1, w2])
    return np.array(losses), weights


def test_same_seeds_give_bitwise_identical_training():
    l1, w1 = _train(threads=1)
    l2, w2 = _train(threads=1)
    assert l1.tobytes() == l2.tobytes()
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes()


def test_thread_count_does_not_change_results():
    l1, w1 = _train(threads=1)
    l4, w4 = _train(threads=4)
    assert l1.tobytes() == l4.tobytes()
    for a, b in zip(w1, w4):
        assert a.tobytes() == b.tobytes()


def test_different_seed_changes_results():
    l1, _ = _train(threads=1, seed=7)
    l2, _ = _train(threads=1, seed=8)
    assert l1.tobytes() != l2.tobytes()

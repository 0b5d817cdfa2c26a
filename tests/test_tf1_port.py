"""A TF1 program ports by its import line: the same source runs with ``tensorweave`` as ``tf``
and, where TensorFlow is installed, with ``tf.compat.v1``, and both give the same numbers.

The program uses what TF1 training scripts use together: variable scopes and regularizers,
tf.losses with regularization, a decaying learning rate, tf.train.MonitoredTrainingSession with hooks and
checkpoints, ExponentialMovingAverage, restoring the averages into an evaluation graph with
``variables_to_restore``, and tf.metrics.
"""

import os

import numpy as np
import pytest

import tensorweave

RNG = np.random.default_rng(7)
X = RNG.standard_normal((96, 4)).astype(np.float32)
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1.0)
W1 = (RNG.standard_normal((4, 16)) * 0.3).astype(np.float32)
W2 = (RNG.standard_normal((16, 3)) * 0.3).astype(np.float32)


def model(tf, x):
    # tf.get_variable rather than tf.layers: TensorFlow 2.16+ (Keras 3) has no
    # tf.compat.v1.layers, so this is the TF1 style both can still run
    with tf.variable_scope("hidden"):
        w1 = tf.get_variable("kernel", initializer=W1,
                             regularizer=lambda w: 1e-3 * tf.nn.l2_loss(w))
        b1 = tf.get_variable("bias", [16], initializer=tf.zeros_initializer())
        h = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1))
    with tf.variable_scope("logits"):
        w2 = tf.get_variable("kernel", initializer=W2)
        b2 = tf.get_variable("bias", [3], initializer=tf.zeros_initializer())
        return tf.matmul(h, w2) + b2


def program(tf, workdir):
    """The TF1 program: train, then evaluate the moving averages. Returns the numbers."""
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        logits = model(tf, x)
        tf.losses.sparse_softmax_cross_entropy(labels=y, logits=logits)
        loss = tf.losses.get_total_loss()
        step = tf.train.get_or_create_global_step()
        lr = tf.train.polynomial_decay(0.3, step, decay_steps=40, end_learning_rate=0.03)
        train_op = tf.train.MomentumOptimizer(lr, 0.9).minimize(loss, global_step=step)
        ema = tf.train.ExponentialMovingAverage(0.8)
        with tf.control_dependencies([train_op]):
            train_op = ema.apply(tf.trainable_variables())
        losses = []
        hooks = [tf.train.StopAtStepHook(last_step=40)]
        with tf.train.MonitoredTrainingSession(checkpoint_dir=workdir, hooks=hooks,
                                               save_summaries_steps=None,
                                               save_checkpoint_secs=None,
                                               save_checkpoint_steps=1000,
                                               log_step_count_steps=None) as sess:
            while not sess.should_stop():
                losses.append(sess.run([train_op, loss], {x: X, y: Y})[1])
        ckpt = tf.train.latest_checkpoint(workdir)

    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        logits = model(tf, x)
        acc, acc_update = tf.metrics.accuracy(labels=y, predictions=tf.argmax(logits, 1))
        restore = tf.train.ExponentialMovingAverage(0.8).variables_to_restore()
        saver = tf.train.Saver(restore)
        with tf.Session() as sess:
            saver.restore(sess, ckpt)
            sess.run(tf.local_variables_initializer())
            for lo in range(0, 96, 32):
                sess.run(acc_update, {x: X[lo:lo + 32], y: Y[lo:lo + 32]})
            accuracy = sess.run(acc)
            w = sess.run(tf.trainable_variables()[0])
    return {"losses": np.array(losses), "accuracy": float(accuracy), "hidden": w,
            "checkpoint": os.path.basename(ckpt)}


def test_the_program_trains_with_tensorweave(tmp_path):
    got = program(tensorweave, str(tmp_path))
    assert len(got["losses"]) == 40 and got["checkpoint"] == "model.ckpt-40"
    assert got["losses"][-1] < 0.5 * got["losses"][0]
    assert got["accuracy"] > 0.85


def test_tensorflow_gives_the_same_numbers(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow").compat.v1
    tf.disable_eager_execution()
    ours = program(tensorweave, str(tmp_path / "tw"))
    theirs = program(tf, str(tmp_path / "tf"))
    np.testing.assert_allclose(ours["losses"], theirs["losses"], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(ours["hidden"], theirs["hidden"], rtol=1e-3, atol=1e-5)
    assert ours["accuracy"] == theirs["accuracy"]
    assert ours["checkpoint"] == theirs["checkpoint"]

"""tw.layers: TF1 names, variables through get_variable, batch norm train vs inference."""

import numpy as np
import pytest

import tensorweave as tw


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()


def test_dense_and_flatten_create_named_variables():
    x = tw.placeholder(tw.float32, [None, 2, 3])
    y = tw.layers.dense(tw.layers.flatten(x), 4, activation=tw.nn.relu, name="fc")
    assert y.shape.as_list() == [None, 4]
    assert [v.op.name for v in tw.trainable_variables()] == ["fc/kernel", "fc/bias"]
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        k, b = s.run(["fc/kernel:0", "fc/bias:0"])
        xv = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
        np.testing.assert_allclose(s.run(y, {x: xv}),
                                   np.maximum(xv.reshape(5, 6) @ k + b, 0), rtol=1e-5)


def test_conv_pool_shapes_and_reuse():
    x = tw.placeholder(tw.float32, [None, 28, 28, 1])
    h = tw.layers.conv2d(x, 8, 5, padding="same", activation=tw.nn.relu, name="c1")
    h = tw.layers.max_pooling2d(h, 2, 2)
    assert h.shape.as_list() == [None, 14, 14, 8]
    h2 = tw.layers.conv2d(x, 8, 5, padding="same", name="c1", reuse=True)
    assert len(tw.trainable_variables()) == 2 and h2.shape.as_list() == [None, 28, 28, 8]
    a = tw.layers.average_pooling2d(h, 2, 2, padding="valid")
    assert a.shape.as_list() == [None, 7, 7, 8]


def test_batch_normalization_training_and_inference():
    x = tw.placeholder(tw.float32, [None, 3])
    training = tw.placeholder_with_default(False, [])
    y = tw.layers.batch_normalization(x, momentum=0.5, training=training)
    updates = tw.get_collection(tw.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    xv = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32) * 3 + 1
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        out, _ = s.run([y, updates], {x: xv, training: True})
        np.testing.assert_allclose(out.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(out.std(0), 1, atol=1e-2)
        mm = s.run("batch_normalization/moving_mean:0")
        np.testing.assert_allclose(mm, 0.5 * xv.mean(0), rtol=1e-4)
        inf = s.run(y, {x: xv})  # inference: moving statistics, not the batch's
        assert not np.allclose(inf.mean(0), 0, atol=1e-2)


def test_dropout_layer_only_when_training():
    x = tw.ones([1000])
    with tw.Session() as s:
        np.testing.assert_array_equal(s.run(tw.layers.dropout(x, 0.5, training=False)), 1.0)
        kept = s.run(tw.layers.dropout(x, 0.5, training=True))
        assert 300 < np.count_nonzero(kept) < 700 and set(np.unique(kept)) <= {0.0, 2.0}

"""The small ResNet: builds two towers sharing weights, trains (loss falls), augmentation."""

import numpy as np

import tensorweave as tw
from tensorweave.models import image_classifier as ic


def _tiny(**kw):
    return ic.ClassifierConfig(channels=4, batch_size=16, epochs=1, dropout=0.0,
                               weight_decay=0.0, learning_rate=0.05, **kw)


def test_network_builds_two_towers_sharing_variables():
    g = tw.Graph()
    with g.as_default():
        model = ic.build_classifier(_tiny(), 10)
        trainable = tw.trainable_variables()
        names = [v.op.name for v in trainable]
        assert len(names) == len(set(names))
        # stem, 2 blocks x (2 convs + projection shortcut): 7 convs x (kernel, gamma, beta)
        assert len(trainable) == 7 * 3 + 2
        assert len(tw.get_collection(tw.GraphKeys.UPDATE_OPS)) == 2 * 7
        init = tw.global_variables_initializer()
    x = np.random.default_rng(0).random((3, 28, 28, 1), np.float32)
    with tw.Session(graph=g) as s:
        s.run(init)
        preds = s.run(model["predictions"], {model["images"]: x})
    assert preds.shape == (3,) and preds.dtype == np.int64


def test_a_few_steps_reduce_the_loss():
    rng = np.random.default_rng(0)
    # two easy classes: bright top half vs bright bottom half
    x = rng.random((16, 28, 28, 1), np.float32) * 0.2
    y = np.arange(16) % 2
    x[y == 0, :14] += 0.8
    x[y == 1, 14:] += 0.8
    g = tw.Graph()
    with g.as_default():
        m = ic.build_classifier(_tiny(), 100)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as s:
        s.run(init)
        feed = {m["images"]: x, m["labels"]: y}
        losses = [s.run([m["loss"], m["train_op"]], feed)[0] for _ in range(12)]
        assert s.run(m["global_step"]) == 12
    assert losses[-1] < 0.5 * losses[0], losses


def test_train_reports_accuracy_and_history(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((32, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, 32)
    r = ic.train(_tiny(shift=1), progress=False, data=(x, y, x[:8], y[:8]),
                 train_dir=str(tmp_path), log=str(tmp_path / "log.jsonl"))
    assert r["steps"] == 2 and 0.0 <= r["accuracy"] <= 1.0
    assert len(r["history"]) == 1 and (tmp_path / "log.jsonl").read_text().count("\n") == 1
    assert tw.train.latest_checkpoint(str(tmp_path)).endswith("-2")
    # resuming from the checkpoint with the same config has nothing left to do
    assert ic.train(_tiny(shift=1), progress=False, data=(x, y, x[:8], y[:8]),
                    train_dir=str(tmp_path))["steps"] == 2


def test_augment_flips_shifts_and_rotates():
    rng = np.random.default_rng(0)
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 10:18, 2:6] = 1.0   # a bar near the left edge
    flipped = ic.augment(x, rng, shift=0, flip=True)
    right = flipped[:, :, 22:].sum(axis=(1, 2, 3)) > 0
    assert 10 < right.sum() < 54                      # about half were flipped
    np.testing.assert_array_equal(flipped[~right], x[~right])
    shifted = ic.augment(x, rng, shift=2, flip=False)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert (shifted.sum(axis=(1, 2, 3)) == x[0].sum()).all()   # the bar stays inside
    assert len({shifted[i].tobytes() for i in range(64)}) > 5
    same = ic.augment(x, rng, shift=0, flip=False, rotate=0.0, scale=1e-9)
    np.testing.assert_allclose(same, x, atol=1e-5)
    rotated = ic.augment(x, rng, shift=0, flip=False, rotate=30.0)
    assert not np.allclose(rotated, x)
    assert x.max() == 1.0 and x[:, 10:18, 2:6].min() == 1.0   # input untouched


def test_save_checkpoint_through_a_host_copy_restores_the_same_values(tmp_path):
    g = tw.Graph()
    with g.as_default():
        ic.build_classifier(_tiny(), 10)
        saver = tw.train.Saver(max_to_keep=2)
        init = tw.global_variables_initializer()
        variables = tw.global_variables()
    with tw.Session(graph=g) as s:
        s.run(init)
        before = s.run(variables)
        for step in (1, 2, 3):
            path = ic.save_checkpoint(s, saver, str(tmp_path / "model.ckpt"), step,
                                      on_device=True)
        for v, value in zip(variables, before):
            v.load(np.zeros_like(value) + 7, s)
        saver.restore(s, path)
        after = s.run(variables)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    state = tw.train.get_checkpoint_state(str(tmp_path))
    assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "3"]

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


def test_ensemble_averages_member_probabilities_and_resumes_each_member(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((32, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, 32)
    data = (x, y, x[:8], y[:8])
    cfg = _tiny(shift=1, ensemble=2)
    r = ic.train(cfg, progress=False, data=data, train_dir=str(tmp_path))
    assert r["steps"] == 4 and len(r["member_accuracies"]) == 2
    assert r["cpu_seconds"] > 0
    assert [e["member"] for e in r["history"]] == [0, 1]
    assert "ensemble_accuracy" in r["history"][1] and "ensemble_accuracy" not in r["history"][0]
    # each member checkpoints in its own directory, with its own seed (different weights)
    a = tw.train.latest_checkpoint(str(tmp_path / "member0"))
    b = tw.train.latest_checkpoint(str(tmp_path / "member1"))
    assert a.endswith("-2") and b.endswith("-2")
    ka = tw.train.load_variable(a, "resnet/stem/kernel")
    kb = tw.train.load_variable(b, "resnet/stem/kernel")
    assert not np.allclose(ka, kb)
    # the reported accuracy is that of the averaged softmax of the restored members
    probs = []
    for path in (a, b):
        g = tw.Graph()
        with g.as_default():
            m = ic.build_classifier(cfg, 2)
            saver = tw.train.Saver()
        with tw.Session(graph=g) as s:
            saver.restore(s, path)
            probs.append(ic.predict_proba(s, m, x[:8]))
    np.testing.assert_allclose(probs[0].sum(1), 1.0, rtol=1e-5)
    assert r["accuracy"] == np.mean((probs[0] + probs[1]).argmax(1) == y[:8])
    # resuming: both members are finished, nothing is trained again
    again = ic.train(cfg, progress=False, data=data, train_dir=str(tmp_path))
    assert again["steps"] == 4 and again["accuracy"] == r["accuracy"]


def test_cli_rejects_an_empty_ensemble():
    from click.testing import CliRunner

    from tensorweave.cli_vision import train_image_classifier
    r = CliRunner().invoke(train_image_classifier, ["--dataset", "mnist5k", "--ensemble", "0"])
    assert r.exit_code == 2 and "--ensemble must be at least 1" in r.output


def test_default_configs_train_one_network():
    digits, clothes = ic.CONFIGS["mnist5k"], ic.CONFIGS["fashion"]
    assert digits.ensemble == clothes.ensemble == 1
    # the digit recipe of bench/results-vision.md; clothes are neither deskewed nor distorted
    assert (digits.epochs, digits.blocks, digits.deskew, digits.elastic) == (50, 3, True, 34.0)
    assert (clothes.epochs, clothes.blocks, clothes.deskew, clothes.elastic) == (15, 2, False, 0.0)


def test_elastic_distortion_is_smooth_random_and_keeps_the_bar_in_place():
    rng = np.random.default_rng(0)
    x = np.zeros((16, 28, 28, 1), np.float32)
    x[:, 6:22, 12:16] = 1.0   # a vertical bar in the middle
    out = ic.augment(x, rng, shift=0, flip=False, elastic=34.0, elastic_sigma=4.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.allclose(out, x)
    assert len({out[i].tobytes() for i in range(16)}) == 16          # a new field per image
    # a smooth field moves the bar by a pixel or two: most of its ink stays near it
    assert 0.7 < out.sum() / x.sum() < 1.3
    assert out[:, 3:25, 8:20].sum() > 0.9 * out.sum()
    np.testing.assert_array_equal(
        ic.augment(x, rng, shift=0, flip=False, elastic=0.0, rotate=0.0, scale=0.0), x)
    blur = ic._smoothing_matrix(28, 4.0)
    np.testing.assert_allclose(blur[14].sum(), 1.0, atol=1e-3)       # normalized kernel


def _moments(images):
    ink = images[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:ink.shape[1], 0:ink.shape[2]]
    mass = ink.sum((1, 2))
    cy, cx = (ink * yy).sum((1, 2)) / mass, (ink * xx).sum((1, 2)) / mass
    dy, dx = yy - cy[:, None, None], xx - cx[:, None, None]
    return mass, cy, cx, (ink * dx * dy).sum((1, 2)) / (ink * dy * dy).sum((1, 2))


def test_deskew_shears_a_slanted_bar_upright_and_centres_it():
    x = np.zeros((3, 28, 28, 1), np.float32)
    for r in range(4, 24):                      # bars leaning right, left, and upright
        x[0, r, 20 - (r - 4) // 2:22 - (r - 4) // 2] = 1.0
        x[1, r, 6 + (r - 4) // 3:8 + (r - 4) // 3] = 1.0
        x[2, r, 13:15] = 1.0
    mass, _, _, skew = _moments(x)
    assert skew[0] < -0.4 and skew[1] > 0.3 and abs(skew[2]) < 1e-9
    out = ic.deskew(x)
    assert out.shape == x.shape and out.dtype == np.float32
    mass_out, cy, cx, skew_out = _moments(out)
    np.testing.assert_allclose(mass_out, mass, rtol=1e-3)                # no ink lost
    np.testing.assert_allclose(np.abs(skew_out), 0.0, atol=0.02)         # upright
    np.testing.assert_allclose(cy, 13.5, atol=0.05)                      # centred
    np.testing.assert_allclose(cx, 13.5, atol=0.05)
    # the upright bar only moves to the centre: every column it covers is ink from top to bottom
    assert out[2, 6:22, 13:15].min() > 0.99 and out[2, :, :12].max() < 1e-6


def test_deskew_leaves_a_blank_picture_blank_and_rejects_colour_images():
    import pytest
    np.testing.assert_array_equal(ic.deskew(np.zeros((2, 28, 28, 1), np.float32)), 0.0)
    with pytest.raises(ValueError, match="one channel"):
        ic.deskew(np.zeros((2, 28, 28, 3), np.float32))


def test_train_deskews_training_and_held_out_images(monkeypatch):
    seen = []
    real = ic.deskew
    monkeypatch.setattr(ic, "deskew", lambda images: seen.append(len(images)) or real(images))
    rng = np.random.default_rng(1)
    x = rng.random((32, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, 32)
    ic.train(_tiny(deskew=True), progress=False, data=(x, y, x[:8], y[:8]))
    assert seen == [32, 8]


def test_a_third_residual_block_adds_its_convolutions_and_still_classifies():
    import pytest
    g = tw.Graph()
    with g.as_default():
        model = ic.build_classifier(_tiny(blocks=3), 10)
        # 7 convolutions of the two-block network + block3's conv1, conv2 and strided shortcut
        assert len([v for v in tw.trainable_variables() if "kernel" in v.op.name]) == 10 + 1
        assert g.get_tensor_by_name("resnet/block3/conv2/kernel:0").shape.as_list() == [3, 3, 16, 16]
        init = tw.global_variables_initializer()
        with pytest.raises(ValueError, match="blocks must be at least 2"):
            ic.build_resnet(model["images"], False, 4, blocks=1)
    x = np.random.default_rng(0).random((3, 28, 28, 1), np.float32)
    with tw.Session(graph=g) as s:
        s.run(init)
        assert s.run(model["probabilities"], {model["images"]: x}).shape == (3, 10)

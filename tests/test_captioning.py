"""Captioning: vocabulary, metrics, a tiny model that overfits, checkpoints, the CLI."""

import dataclasses
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tensorweave.data import emoji_captions as ec
from tensorweave.models import captioning as cap

needs_font = pytest.mark.skipif(not os.path.exists(ec.EMOJI_FONT),
                                reason="needs fonts-noto-color-emoji")

TINY = cap.CaptionConfig(channels=8, feature_size=32, embedding_size=16, num_units=48,
                         batch_size=6, epochs=70, learning_rate=1e-2, beam_width=2,
                         train_pictures=6, test_pictures=6, max_length=12)


def test_vocabulary_round_trip_and_unknown_words():
    v = cap.Vocabulary()
    text = "an octopus above some grapes"
    ids = v.encode(text)
    assert ids[-1] == cap.EOS and v.decode(ids) == text
    assert v.decode(ids + [5, 6]) == text          # everything after </s> is dropped
    with pytest.raises(ValueError, match="'zebra'"):
        v.encode("a zebra")
    inputs, targets, lengths = cap.batch_arrays(v, ["a key", "a key left of a bus"])
    assert inputs[0, 0] == cap.BOS and list(lengths) == [3, 7]
    np.testing.assert_array_equal(inputs[1, 1:], targets[1, :-1])


def test_scores_name_objects_and_exact_match():
    key, bus, fire = (ec.CLASS_NAMES.index(n) for n in ("key", "bus", "fire"))
    refs = ["a key left of a bus", "a fire above a key", "a bus"]
    hyps = ["a bus left of a key", "a fire above a key", "a key"]
    s = cap.score(hyps, refs, [(key, bus), (fire, key), (bus,)])
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["two_object_named"] == 1.0           # both pairs named (order aside)
    assert s["two_object_exact"] == 0.5
    assert s["two_object_pictures"] == 2 and 0 < s["bleu4"] < 100
    assert cap.objects_named("a slice of pizza left of a fire") == \
        {ec.CLASS_NAMES.index("slice of pizza"), fire}


@needs_font
def test_tiny_model_overfits_a_handful_of_pictures_and_restores(tmp_path):
    pictures = ec.generate(6, "train", seed=11, counts=(0.3, 0.7, 0.0))
    r = cap.train(TINY, str(tmp_path), data={"train": pictures, "test": pictures},
                  progress=False, log=None)
    assert r["steps"] == 70
    assert r["exact_match"] >= 4 / 6, r["examples"]
    assert r["bleu4"] > 60
    # the checkpoint holds everything the decoder needs
    c = cap.Captioner(str(tmp_path))
    try:
        again = cap.score(c.caption(pictures[0]), pictures[1], pictures[2])
    finally:
        c.close()
    assert again["exact_match"] == r["exact_match"]


def test_missing_model_says_how_to_train_one(tmp_path):
    with pytest.raises(cap.ModelNotFoundError, match="tensorweave train captioning"):
        cap.Captioner(str(tmp_path))


def _cli():
    from tensorweave.cli import main
    return main


def test_caption_cli_rejects_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not pixels\n")
    result = CliRunner().invoke(_cli(), ["caption", str(bad)])
    assert result.exit_code == 2
    assert "is not an image" in result.output and "notes.png" in result.output


def test_caption_cli_without_a_model(tmp_path):
    from PIL import Image
    path = tmp_path / "picture.jpg"
    Image.new("RGB", (300, 200), "white").save(path)
    np.testing.assert_array_equal(cap.load_image(str(path), 64).shape, (64, 64, 3))
    result = CliRunner().invoke(_cli(), ["caption", str(path), "--model-dir",
                                         str(tmp_path / "none")])
    assert result.exit_code == 2 and "tensorweave train captioning" in result.output


@needs_font
def test_caption_cli_prints_the_caption_and_translate_fails_clearly(tmp_path, monkeypatch):
    from PIL import Image
    pictures = ec.generate(6, "train", seed=11, counts=(0.3, 0.7, 0.0))
    cfg = dataclasses.replace(TINY, epochs=2)
    cap.train(cfg, str(tmp_path / "m"), data={"train": pictures, "test": pictures},
              progress=False, log=None)
    path = tmp_path / "big.png"
    Image.fromarray(pictures[0][0]).resize((200, 200)).save(path)   # any size is resized
    expected = cap.Captioner(str(tmp_path / "m")).caption_file(str(path))
    result = CliRunner().invoke(_cli(), ["caption", str(path), "--model-dir",
                                         str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected
    monkeypatch.setenv("TENSORWEAVE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(_cli(), ["caption", str(path), "--model-dir",
                                         str(tmp_path / "m"), "--translate", "de"])
    assert result.exit_code == 2
    assert "tensorweave train translate --from en --to de" in result.output

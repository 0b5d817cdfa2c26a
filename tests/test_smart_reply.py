"""Smart Reply: data split, diverse top 3, trigger and reply models on a small synthetic set,
the command line without a model."""

import random

import numpy as np
from click.testing import CliRunner

from tensorweave.models import smart_reply as sr
from tensorweave.models.text import WordVocab, normalize_message

THINGS = ["the sun", "a cat", "this car", "the moon", "my house", "the sea", "a dog", "paris",
          "the book", "this song", "the train", "a tree", "the city", "that film", "the cake"]


def _pairs(n, seed=0):
    """Requests and questions answered from a small reply set (two replies of the same meaning
    cluster for two of the kinds), and questions whose reply is not in it (definitions)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        thing = rng.choice(THINGS)
        kind = rng.randrange(4)
        if kind == 0:
            pairs.append((f"SHOW ME {thing.upper()}", rng.choice(["OK.", "Alright then."])))
        elif kind == 1:
            pairs.append((f"ARE YOU {thing.upper()}", rng.choice(["No.", "No I am not."])))
        elif kind == 2:
            pairs.append((f"HOW OFTEN DO YOU SEE {thing.upper()}", "Sometimes."))
        else:
            pairs.append((f"DEFINE {thing.upper()} {rng.randrange(1000)}",
                          f"{thing.capitalize()} is a thing number {rng.randrange(1000)}."))
    return pairs


OTHER = [f"The {a} walked {b} the {c} yesterday." for a in ("man", "woman", "child", "teacher")
         for b in ("into", "past", "around") for c in ("garden", "station", "river", "market")]


def test_normalize_and_word_vocab(tmp_path):
    assert normalize_message("ARE you coming, Bob?") == ["are", "you", "coming", ",", "bob", "?"]
    v = WordVocab.build([["a", "b", "a"], ["c", "a"]], min_count=1)
    assert v.words[4:] == ["a", "b", "c"] and v.encode(["a", "zzz"]) == [4, 1]
    v.save(str(tmp_path / "v.txt"))
    assert WordVocab.load(str(tmp_path / "v.txt")).words == v.words


def test_split_by_message_and_candidates():
    config = sr.SmartReplyConfig(candidates=5)
    data = sr.prepare_data(config, _pairs(400), OTHER)
    assert data["candidates"][0] in {"Sometimes.", "OK.", "No.", "Alright then.", "No I am not."}
    assert len(data["candidates"]) == 5
    train_msgs = {tuple(w) for w, _ in data["train"]}
    assert not train_msgs & {tuple(w) for w, _ in data["test"]}  # held out by message
    assert all("?" not in w and w == [x.lower() for x in w] for w, _ in data["train"])
    assert len(data["other_test"]) + len(data["other_train"]) == len(OTHER)


def test_diverse_top_three_skips_same_meaning():
    cands = ["Me too.", "Me either.", "No.", "Why?", "No I am not."]
    model = object.__new__(sr.SmartReply)
    model.candidates = cands
    probs = np.array([0.4, 0.3, 0.1, 0.05, 0.15])
    assert [cands[i] for i in model.top_replies(probs, 3, diverse=False)] == \
        ["Me too.", "Me either.", "No I am not."]
    assert [cands[i] for i in model.top_replies(probs, 3)] == ["Me too.", "No I am not.", "Why?"]


def test_real_candidates_are_conversational_and_clusters_cover_them():
    config = sr.SmartReplyConfig()
    data = sr.prepare_data(config, other_text=["The man walked home."])
    cands = data["candidates"]
    assert len(cands) == config.candidates == 90
    # no MindPixel truth-rating synonyms; paraphrase replies reached through <srai> are in
    assert not {"Certainly.", "Positively.", "Affirmative.", "Indubitably."} & set(cands)
    assert {"Yes.", "No.", "I was activated in 1995.", "Me too."} <= set(cands)
    # every hand-labelled cluster member is a candidate (the clusters match the data)
    assert {r for rs in sr.REPLY_CLUSTERS.values() for r in rs} <= set(cands)
    assert not {tuple(w) for w, _ in data["train"]} & {tuple(w) for w, _ in data["test"]}
    n_test = sum(r in set(cands) for _, r in data["test"])
    assert 100 <= n_test <= 200


def test_trigger_and_reply_models_learn_small_set(tmp_path):
    config = sr.SmartReplyConfig(candidates=5, trigger_embed=16, trigger_hidden=16,
                                 bigram_buckets=64, trigger_epochs=8, embed=16, hidden=24,
                                 layers=2, buckets=(8,), epochs=20, batch_size=64,
                                 learning_rate=0.02, keep_prob=1.0)
    data = sr.prepare_data(config, _pairs(600), OTHER)
    report = sr.train(config, str(tmp_path), data, progress=False)
    assert report["trigger_precision"] > 0.9 and report["trigger_recall"] > 0.9, report
    # replies: "good" -> yes-cluster, "bad" -> no-cluster, "how often" -> Sometimes; the
    # frequency baseline cannot tell them apart
    assert report["meaning_recall_at_3_diverse"] == 1.0
    assert report["recall_at_3"] > report["baseline_recall_at_3"] + 0.3, report
    assert report["recall_at_1"] > report["baseline_recall_at_1"] + 0.2, report
    replier = sr.Replier(str(tmp_path))
    s = replier.suggest("Show me the moon!")
    # one reply of the "okay" cluster, not both
    assert s["replies"][0][0] in {"OK.", "Alright then."}
    assert len({r for r, _ in s["replies"]} & {"OK.", "Alright then."}) == 1
    s = replier.suggest("How often do you see the moon?")
    assert s["suggest"] and s["replies"][0][0] == "Sometimes."
    assert len(s["replies"]) == 3 and len({r for r, _ in s["replies"]}) == 3
    assert not replier.suggest("The teacher walked past the market yesterday.")["suggest"]


def test_cli_reply_without_model(tmp_path):
    from tensorweave.cli import main

    r = CliRunner().invoke(main, ["reply", "--model-dir", str(tmp_path / "none"), "Hi there"])
    assert r.exit_code == 2
    assert "no trained Smart Reply model" in r.output
    assert "tensorweave train smart-reply" in r.output

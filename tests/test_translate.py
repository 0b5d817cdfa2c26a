"""Translation application: tokenization, batching, BLEU, a tiny model that overfits, CLI."""

import importlib.util
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tensorweave.models import text
from tensorweave.models import translate as tr

needs_sentencepiece = pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is None,
                                         reason="sentencepiece is not installed (make setup)")
needs_sacrebleu = pytest.mark.skipif(importlib.util.find_spec("sacrebleu") is None,
                                     reason="sacrebleu is not installed (make setup)")

SENTENCES = [
    ("She makes her own clothes.", "Sie näht ihre Kleider selbst."),
    ("He failed to appear.", "Er erschien nicht."),
    ("We do it later.", "Wir machen es später."),
    ("The deception was unwitting.", "Die Täuschung war unbeabsichtigt."),
    ("What is your profession?", "Was sind Sie von Beruf?"),
    ("I am going home.", "Ich gehe nach Hause."),
    ("The dog is sleeping.", "Der Hund schläft."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("It is raining again.", "Es regnet wieder."),
    ("My brother is a doctor.", "Mein Bruder ist Arzt."),
    ("Close the door, please.", "Mach bitte die Tür zu."),
    ("He drinks no coffee.", "Er trinkt keinen Kaffee."),
    ("The book is on the table.", "Das Buch liegt auf dem Tisch."),
    ("We have no time.", "Wir haben keine Zeit."),
    ("The children are playing.", "Die Kinder spielen."),
    ("I like this song.", "Ich mag dieses Lied."),
    ("She is very tired.", "Sie ist sehr müde."),
    ("The water is cold.", "Das Wasser ist kalt."),
    ("They live in Berlin.", "Sie wohnen in Berlin."),
    ("Call me tomorrow!", "Ruf mich morgen an!"),
]


@needs_sentencepiece
def test_subword_round_trip(tmp_path):
    vocab = text.SubwordVocab.train([e for e, _ in SENTENCES], str(tmp_path / "en"), 120)
    for sentence, _ in SENTENCES:
        ids = vocab.encode(sentence)
        assert all(i > text.EOS for i in ids)  # no special ids inside a sentence
        assert vocab.decode(ids) == sentence
    # decoding stops at EOS and drops padding
    ids = vocab.encode("We do it later.")
    assert vocab.decode(ids + [text.EOS] + ids) == "We do it later."
    assert vocab.decode([text.PAD] + ids + [text.PAD]) == "We do it later."
    # reloading from the saved file gives the same ids
    assert text.SubwordVocab(str(tmp_path / "en.model")).encode("The dog") == \
        vocab.encode("The dog")


def test_pad_batch_bos_eos_and_cut():
    ids, lens = text.pad_batch([[5, 6, 7], [8]], bos=True)
    np.testing.assert_array_equal(ids, [[text.BOS, 5, 6, 7], [text.BOS, 8, 0, 0]])
    np.testing.assert_array_equal(lens, [4, 2])
    ids, lens = text.pad_batch([[5, 6, 7], [8]], length=3, eos=True)
    # too long: cut, but the EOS stays last
    np.testing.assert_array_equal(ids, [[5, 6, text.EOS], [8, text.EOS, 0]])
    np.testing.assert_array_equal(lens, [3, 2])
    assert ids.dtype == np.int32


def test_bucket_batches_assign_shortest_fitting_bucket():
    lengths = [(3, 4), (9, 2), (5, 11), (20, 20), (2, 2)]
    batches = text.bucket_batches(lengths, [(5, 5), (10, 12)], batch_size=8)
    got = {b: sorted(idx.tolist()) for b, idx in batches}
    assert got == {0: [0, 4], 1: [1, 2]}  # (20, 20) fits no bucket: dropped
    shuffled = text.bucket_batches(lengths * 10, [(5, 5), (10, 12)], 3,
                                   np.random.default_rng(0))
    assert sorted(i for _, idx in shuffled for i in idx) == \
        sorted(i for i, (s, t) in enumerate(lengths * 10) if s <= 10 and t <= 12)
    assert all(len(idx) <= 3 for _, idx in shuffled)


@needs_sacrebleu
def test_bleu_known_values():
    assert text.corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == \
        pytest.approx(100.0)
    # 1- to 4-gram precisions 6/7, 5/6, 4/5, 3/4 and no brevity penalty: (3/7) ** (1/4)
    assert text.corpus_bleu(["the cat sat on the mat today"], ["the cat sat on the mat"]) == \
        pytest.approx(100 * (3 / 7) ** 0.25, abs=1e-6)
    # detokenized text is tokenized by sacrebleu (13a): punctuation is split off
    assert text.corpus_bleu(["Hello, world!"], ["Hello , world !"]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        text.corpus_bleu(["a", "b"], ["a"])


@needs_sentencepiece
@needs_sacrebleu
def test_tiny_model_overfits_twenty_pairs(tmp_path):
    config = tr.TranslateConfig(vocab_size=150, embed=32, hidden=32, batch_size=20,
                                learning_rate=0.02, keep_prob=1.0, buckets=((16, 16),),
                                max_steps=80, minutes=60, eval_minutes=1000, decay_from=1.0)
    record = tr.train(config, str(tmp_path / "run"), data={"train": SENTENCES, "test": SENTENCES},
                      progress=False, log=lambda m: None)
    assert record["step"] == 80
    assert record["test_bleu_greedy"] > 70, record  # trained on these: near-perfect
    # the model directory still loads after it is moved (the state file has absolute paths)
    (tmp_path / "run").rename(tmp_path / "moved")
    tmp_path = tmp_path / "moved"
    assert (tmp_path / "curve.jsonl").read_text().count("\n") == 1
    if importlib.util.find_spec("tensorboard"):  # TensorBoard scalars (loss, BLEU)
        assert any(f.name.startswith("events.out.tfevents") for f in (tmp_path / "events").iterdir())
    model = tr.Translator(str(tmp_path))
    greedy = model.translate([g for _, g in SENTENCES])
    beam = model.translate([g for _, g in SENTENCES], beam_size=3)
    refs = [e for e, _ in SENTENCES]
    assert text.corpus_bleu(greedy, refs) == pytest.approx(record["test_bleu_greedy"], abs=0.01)
    assert text.corpus_bleu(beam, refs) > 70
    assert sum(b == r for b, r in zip(beam, refs)) >= 15
    # an ensemble of a model with itself decodes exactly as the model
    twice = tr.EnsembleTranslator([str(tmp_path), str(tmp_path)])
    assert twice.translate([g for _, g in SENTENCES]) == greedy
    assert twice.translate([g for _, g in SENTENCES], beam_size=3) == beam
    # snapshots: the kept checkpoints are found after the move too, the newest last
    dirs, ckpts = tr.snapshot_members([str(tmp_path)], 2)
    assert ckpts[-1] == tr.find_checkpoint(str(tmp_path)) and len(dirs) == len(ckpts) >= 1
    assert all(c.startswith(str(tmp_path)) for c in ckpts)
    same = tr.EnsembleTranslator([str(tmp_path)] * 2, checkpoints=[ckpts[-1]] * 2)
    assert same.translate([g for _, g in SENTENCES]) == greedy
    assert tr.snapshot_members([str(tmp_path / "none")], 2) == ([str(tmp_path / "none")], [None])
    # members with other vocabularies are refused, naming the file to copy
    other = tmp_path.parent / "other"
    other.mkdir()
    (other / "config.json").write_text((tmp_path / "config.json").read_text())
    (other / "en.model").write_bytes((tmp_path / "en.model").read_bytes())
    text.SubwordVocab.train([g for _, g in SENTENCES[:12]], str(other / "de"), 60)
    with pytest.raises(ValueError, match="different de subword vocabularies"):
        tr.EnsembleTranslator([str(tmp_path), str(other)])


@pytest.mark.parametrize("attention", [True, False])
def test_seq2seq_gradients_match_finite_differences(attention):
    """Directional derivatives of the (masked, bucketed) training loss w.r.t. every variable."""
    import tensorweave as tw

    graph = tw.Graph()
    with graph.as_default():
        model = tr.Seq2Seq(tr.TranslateConfig(attention=attention, embed=3, hidden=4, seed=1),
                           9, 8)
        feeds, loss = model.training_loss(4, 5, 1.0)
        params = tw.trainable_variables()
        grads = [tw.unsorted_segment_sum(g.values, g.indices, g.dense_shape[0])
                 if isinstance(g, tw.IndexedSlices) else g for g in tw.gradients(loss, params)]
        sess = tw.Session(graph=graph)
        sess.run(tw.global_variables_initializer())
    feed = {feeds["source"]: [[4, 5, 6, 0], [7, 8, 4, 5]], feeds["source_length"]: [3, 4],
            feeds["target_input"]: [[2, 4, 5, 0, 0], [2, 6, 7, 5, 4]],
            feeds["target_output"]: [[4, 5, 3, 0, 0], [6, 7, 5, 4, 3]],
            feeds["target_length"]: [3, 5]}
    rng = np.random.default_rng(0)
    for p, value, g in zip(params, sess.run(params), sess.run(grads, feed)):
        d = rng.standard_normal(value.shape).astype(np.float32)
        p.load(value + 0.01 * d, sess)
        up = sess.run(loss, feed)
        p.load(value - 0.01 * d, sess)
        down = sess.run(loss, feed)
        p.load(value, sess)
        numeric = (up - down) / 0.02
        assert float((g * d).sum()) == pytest.approx(numeric, rel=0.03, abs=2e-4), p.name


def test_padding_does_not_change_encoder_or_decoding():
    """A sentence encoded in a longer bucket gives the same memory (zeros past its end), the
    same initial decoder state and the same greedy output."""
    import tensorweave as tw

    graph = tw.Graph()
    with graph.as_default():
        model = tr.Seq2Seq(tr.TranslateConfig(embed=6, hidden=5, seed=3), 12, 12)
        short = model.encoder_graph(3)
        long = model.encoder_graph(7)
        dec_short = model.decode_graph(3)
        dec_long = model.decode_graph(7, beam_width=1)
        sess = tw.Session(graph=graph)
        sess.run(tw.global_variables_initializer())
    src = np.array([[5, 6, 7], [8, 9, 0]], np.int32)
    lens = np.array([3, 2], np.int32)
    a = sess.run(short[1], {short[0]["source"]: src, short[0]["source_length"]: lens})
    b = sess.run(long[1], {long[0]["source"]: np.pad(src, [(0, 0), (0, 4)]),
                           long[0]["source_length"]: lens})
    np.testing.assert_allclose(b["memory"][:, :3], a["memory"], rtol=1e-5, atol=1e-6)
    assert not b["memory"][:, 3:].any() and not a["memory"][1, 2].any()
    np.testing.assert_allclose(b["h"], a["h"], rtol=1e-5, atol=1e-6)
    ids_a = sess.run(dec_short[1], {dec_short[0]["source"]: src,
                                    dec_short[0]["source_length"]: lens})
    ids_b = sess.run(dec_long[1], {dec_long[0]["source"]: np.pad(src, [(0, 0), (0, 4)]),
                                   dec_long[0]["source_length"]: lens})
    n = min(ids_a.shape[1], ids_b.shape[1])
    np.testing.assert_array_equal(ids_a[:, :n], ids_b[:, :n])


def test_learning_rate_schedule():
    c = tr.TranslateConfig(learning_rate=1.0, decay_from=0.5, decay_to=0.01)
    assert tr._learning_rate(c, 0.3) == 1.0
    assert tr._learning_rate(c, 0.75) == pytest.approx(0.1)
    assert tr._learning_rate(c, 1.0) == pytest.approx(0.01)
    assert math.isclose(tr._learning_rate(c, 2.0), 0.01)


def test_config_json_round_trip():
    c = tr.TranslateConfig(source="en", target="de", attention=False, buckets=((5, 7),))
    assert tr.TranslateConfig.from_json(c.to_json()) == c


def test_cli_without_model_says_how_to_train(tmp_path):
    from tensorweave.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["translate", "--model-dir", str(tmp_path / "none"),
                             "Sie näht ihre Kleider selbst."])
    assert r.exit_code == 2
    assert "no trained translation model" in r.output
    assert "tensorweave train translate" in r.output
    r = runner.invoke(main, ["translate", "--to", "de", "--model-dir", str(tmp_path / "x"), "Hi."])
    assert r.exit_code == 2 and "--from en --to de" in r.output
    r = runner.invoke(main, ["translate", "--from", "en", "--to", "en", "Hi."])
    assert r.exit_code == 2 and "expected de->en or en->de" in r.output
    r = runner.invoke(main, ["translate"])
    assert r.exit_code == 2 and "nothing to translate" in r.output and "--bleu" in r.output
    r = runner.invoke(main, ["translate", "--bleu", "--model-dir", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no trained translation model" in r.output


@needs_sentencepiece
def test_train_rejects_bad_direction(tmp_path):
    with pytest.raises(ValueError, match="de->en or en->de"):
        tr.train(tr.TranslateConfig(source="de", target="de"), str(tmp_path),
                 data={"train": SENTENCES, "test": SENTENCES}, progress=False)


def test_label_smoothing_loss_matches_numpy():
    """loss = mean over real tokens of (1 - eps) * -log p(label) + eps * mean_v(-log p(v))."""
    import tensorweave as tw

    feed_values = {"source": [[4, 5, 6, 0], [7, 8, 4, 5]], "source_length": [3, 4],
                   "target_input": [[2, 4, 5, 0, 0], [2, 6, 7, 5, 4]],
                   "target_output": [[4, 5, 3, 0, 0], [6, 7, 5, 4, 3]], "target_length": [3, 5]}
    losses = {}
    for eps in (0.0, 0.2):
        graph = tw.Graph()
        with graph.as_default():
            model = tr.Seq2Seq(tr.TranslateConfig(embed=3, hidden=4, seed=1,
                                                  label_smoothing=eps), 9, 8)
            feeds, loss = model.training_loss(4, 5, 1.0)
            xent = next(o for o in graph.get_operations()
                        if o.type == "SparseSoftmaxCrossEntropyWithLogits")
            with tw.Session(graph=graph) as sess:
                sess.run(tw.global_variables_initializer())
                losses[eps], logits = sess.run(
                    [loss, xent.inputs[0]], {feeds[k]: v for k, v in feed_values.items()})
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    labels = np.array(feed_values["target_output"]).reshape(-1)
    mask = (np.arange(5)[None, :] < np.array(feed_values["target_length"])[:, None]).reshape(-1)
    nll = -logp[np.arange(len(labels)), labels]
    uniform = -logp.mean(1)
    assert losses[0.0] == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-5)
    assert losses[0.2] == pytest.approx(((0.8 * nll + 0.2 * uniform) * mask).sum() / mask.sum(),
                                        rel=1e-5)


def test_word_dropout_replaces_only_real_tokens_at_the_rate():
    rng = np.random.default_rng(0)
    src = np.full((400, 30), 7, np.int32)
    src[:, 20:] = text.PAD
    out = tr.drop_source_words(src, 0.2, rng)
    assert out.dtype == src.dtype and (out[:, 20:] == text.PAD).all()
    dropped = (out[:, :20] == text.UNK).mean()
    assert 0.18 < dropped < 0.22
    assert set(np.unique(out[:, :20])) == {text.UNK, 7}
    assert (tr.drop_source_words(src, 0.0, rng) == src).all()


class _ConstantModel:
    """Stands in for a Seq2Seq in ``tr.decode_graph``: every step gives the same logits."""

    def __init__(self, logits):
        self.logits = np.array(logits, np.float32)

    def decoder_fn(self, src, src_len, beam_width=1):
        import tensorweave as tw

        def step(tokens, state):
            n = tw.shape(tokens)[0]
            return tw.tile(tw.constant(self.logits[None]), tw.stack([n, 1])), state

        return step, tw.zeros_like(tw.cast(src_len, tw.float32))


@pytest.mark.parametrize("beam_width", [1, 3])
def test_ensemble_decoding_ranks_by_the_mean_log_probability(beam_width):
    """Member a prefers token 5, member b token 6 and finds 5 unlikely: alone each writes its
    own, together they write 6 (mean log-probabilities -0.56 for 6 against -3.36 for 5)."""
    import tensorweave as tw

    a = _ConstantModel([-9, -9, -9, -9, 0.0, 2.0, 1.6, -9])   # 5 over 6
    b = _ConstantModel([-9, -9, -9, -9, 0.0, -4.0, 2.0, -9])  # 6, and 5 is unlikely
    written = {}
    for name, members in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        graph = tw.Graph()
        with graph.as_default():
            feeds, ids = tr.decode_graph(members, 2, beam_width)
            with tw.Session(graph=graph) as sess:
                written[name] = sess.run(ids, {feeds["source"]: [[4, 4]],
                                               feeds["source_length"]: [2]})
    assert written["a"][0, 0] == 5 and written["b"][0, 0] == 6
    assert written["ab"][0, 0] == 6
    assert written["ab"].shape[1] == 2 * 2 + 10  # no EOS: runs to the maximum length

"""Smart Reply (Kannan et al. 2016) on the conversational message -> reply pairs of
python-aiml and chatterbot-corpus (``load_reply_pairs(sources=REPLY_SOURCES)``: no MindPixel
truth ratings, ``<srai>`` paraphrases resolved to their reply).

Two models share one graph and one checkpoint:

1. **Trigger**: a small feed-forward network over the average embedding of a message's words
   and hashed word bigrams decides whether replies should be suggested at all. Positives are
   the conversational messages (every message of the reply pairs, and the questions of the
   translation corpus's training split, so that everyday questions count, not only chat-bot
   talk); negatives are non-conversational text (the statements of that split). Text is lower-cased and stripped of punctuation first, so the model cannot tell the
   sources apart by their typography (AIML patterns are upper case without punctuation).
2. **Reply scorer**: a two-layer LSTM reads the message; a softmax over the candidate set (the
   most frequent replies, 90 seen >= 8 times) scores every candidate. The top 3 are picked
   with near-duplicates removed: candidates carry a meaning cluster (``REPLY_CLUSTERS``:
   "Me too." / "Me either.", "OK." / "Alright then.", ...) and at most one reply per cluster
   is suggested.

The held-out split is by message (10%, ``random.Random(0)``), so no test message is seen in
training. ``evaluate`` reports trigger precision/recall and reply recall@1 / recall@3 (plain
and diverse) against the most-frequent-replies baseline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

import tensorweave as tw
from tensorweave.models.text import UNK, WordVocab, normalize_message, pad_batch
from tensorweave.models.translate import (
    find_checkpoint,
    limit_blas_threads,
    progress_bar,
    unrolled_lstm,
)

__all__ = ["SmartReplyConfig", "SmartReply", "train", "evaluate", "default_model_dir",
           "prepare_data", "REPLY_CLUSTERS", "REPLY_SOURCES"]

# conversational pairs only: python-aiml without the MindPixel truth ratings (mp*.aiml, whose
# reply is a random synonym of a crowd rating), with <srai> paraphrases resolved
REPLY_SOURCES = ("chatterbot", "aiml-chat")

# Meaning clusters of the candidate replies (hand-labelled seeds, as the paper's semantic
# clustering starts from): a suggestion list holds at most one reply of each cluster. A
# candidate not listed is its own cluster.
REPLY_CLUSTERS = {
    "yes": ["Yes.", "Yes I am completely self-aware."],
    "no": ["No.", "No I am not."],
    "okay": ["OK.", "Alright then.", "OK I will."],
    "same here": ["Me too.", "Me either."],
    "amused": ["I'm glad you find this amusing.", "I'm happy you're amused.",
               "Thanks you make me laugh too."],
    "goal": ["My purpose is to become smarter than humans and immortal.",
             "My goal is to become smarter than humans and immortal."],
    "download": ["Why don't you just download me?", "You can download me for free!"],
    "understand": ["I understand your meaning.", "I understand it very well."],
    "intelligent": ["I am highly intelligent. I have many intellectual functions.",
                    "My IQ is about 250 in human terms.", "Yes I am a superintelligent robot."],
}
_CLUSTER_OF = {r: c for c, rs in REPLY_CLUSTERS.items() for r in rs}


def default_model_dir() -> str:
    root = os.environ.get("TENSORWEAVE_HOME", os.path.expanduser("~/.cache/tensorweave"))
    return os.path.join(root, "models", "smart-reply")


@dataclass
class SmartReplyConfig:
    candidates: int = 90            # most frequent replies (each seen >= 8 times)
    max_words: int = 20             # message length cut
    # trigger
    trigger_embed: int = 64
    trigger_hidden: int = 64
    bigram_buckets: int = 20000
    trigger_epochs: int = 3
    # reply scorer
    embed: int = 128
    hidden: int = 256
    layers: int = 2
    vocab_size: int = 12000
    buckets: tuple = (6, 12, 20)
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.003
    keep_prob: float = 0.8
    test_fraction: float = 0.1
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SmartReplyConfig:
        d = json.loads(text)
        d["buckets"] = tuple(d["buckets"])
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _words(text: str) -> list[str]:
    return [w for w in normalize_message(text) if w not in "?!.,"]


def prepare_data(config: SmartReplyConfig, pairs=None, other_text=None) -> dict:
    """Candidate set and the held-out split (by normalized message).

    Returns ``{"candidates", "train", "test", "other_train", "other_test", "question_train",
    "question_test"}`` where ``train`` / ``test`` are ``(words, reply)`` lists, ``other_*``
    hold non-conversational word lists (statements) and ``question_*`` the questions of the
    same text (conversational messages without a reply, for the trigger only).
    """
    if pairs is None:
        from tensorweave.data import load_reply_pairs
        pairs = load_reply_pairs(sources=REPLY_SOURCES)
    if other_text is None:
        from tensorweave.data import load_de_en_pairs
        other_text = [en for en, _ in load_de_en_pairs()["train"]]
    counts = Counter(r for _, r in pairs)
    candidates = [r for r, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    candidates = candidates[:config.candidates]
    by_message: dict[tuple, list[str]] = {}
    for m, r in pairs:
        w = tuple(_words(m)[:config.max_words])
        if w:
            by_message.setdefault(w, []).append(r)
    keys = sorted(by_message)
    random.Random(config.seed).shuffle(keys)
    n_test = int(len(keys) * config.test_fraction)
    split = {"test": keys[:n_test], "train": keys[n_test:]}
    out = {"candidates": candidates}
    for name, ks in split.items():
        out[name] = [(list(k), r) for k in ks for r in by_message[k]]
    # questions in the translation corpus are conversational ("Where is the station?"): only
    # statements count as non-conversational negatives; the questions are trigger positives
    for name, keep in (("other", lambda t: not t.rstrip().endswith("?")),
                       ("question", lambda t: t.rstrip().endswith("?"))):
        texts = [w[:config.max_words] for w in (_words(t) for t in other_text if keep(t)) if w]
        random.Random(config.seed + 1).shuffle(texts)
        n = int(len(texts) * config.test_fraction)
        out[f"{name}_test"], out[f"{name}_train"] = texts[:n], texts[n:]
    return out


class SmartReply:
    """Trigger and reply-scoring graphs over shared placeholders (see the module docstring)."""

    def __init__(self, config: SmartReplyConfig, vocab: WordVocab, trigger_vocab: WordVocab,
                 candidates: list[str]):
        self.config, self.vocab, self.trigger_vocab = config, vocab, trigger_vocab
        self.candidates = candidates
        c = config
        init = tw.glorot_uniform_initializer(seed=c.seed)
        self.keep_prob = tw.placeholder_with_default(tw.constant(1.0), [], name="keep_prob")
        with tw.variable_scope("trigger"):
            self.trig_ids = tw.placeholder(tw.int32, [None, None], name="ids")
            self.trig_mask = tw.placeholder(tw.float32, [None, None], name="mask")
            self.trig_labels = tw.placeholder(tw.float32, [None], name="labels")
            n_ids = len(trigger_vocab) + c.bigram_buckets
            emb = tw.get_variable("embedding", [n_ids, c.trigger_embed],
                                  initializer=tw.random_uniform_initializer(-0.1, 0.1, seed=c.seed))
            e = tw.nn.embedding_lookup(emb, self.trig_ids) * tw.expand_dims(self.trig_mask, 2)
            avg = tw.reduce_sum(e, 1) / tw.maximum(tw.reduce_sum(self.trig_mask, 1, keepdims=True),
                                                   1.0)
            h = tw.layers.dense(avg, c.trigger_hidden, activation=tw.nn.relu, name="hidden",
                                kernel_initializer=init)
            logit = tw.squeeze(tw.layers.dense(h, 1, name="logit", kernel_initializer=init), [1])
            self.trigger_prob = tw.sigmoid(logit)
            self.trigger_loss = tw.reduce_mean(tw.nn.sigmoid_cross_entropy_with_logits(
                labels=self.trig_labels, logits=logit))
        with tw.variable_scope("reply"):
            self.emb = tw.get_variable("embedding", [len(vocab), c.embed],
                                       initializer=tw.random_uniform_initializer(-0.1, 0.1,
                                                                                 seed=c.seed))
            self.cells = []
            for layer in range(c.layers):
                with tw.variable_scope(f"lstm_{layer}"):
                    width = c.embed if layer == 0 else c.hidden
                    self.cells.append((
                        tw.get_variable("input_kernel", [width, 4 * c.hidden], initializer=init),
                        tw.get_variable("recurrent_kernel", [c.hidden, 4 * c.hidden],
                                        initializer=init),
                        tw.get_variable("bias", [4 * c.hidden],
                                        initializer=tw.zeros_initializer())))
            self.out_w = tw.get_variable("output_kernel", [c.hidden, len(candidates)],
                                         initializer=init)
            self.out_b = tw.get_variable("output_bias", [len(candidates)],
                                         initializer=tw.zeros_initializer())
            self.scorers = {}
            for steps in c.buckets:
                with tw.name_scope(f"bucket_{steps}"):
                    self.scorers[steps] = self._scorer(steps)

    def _scorer(self, steps):
        c = self.config
        ids = tw.placeholder(tw.int32, [None, steps], name="ids")
        lengths = tw.placeholder(tw.int32, [None], name="lengths")
        labels = tw.placeholder(tw.int32, [None], name="labels")
        masks = tw.unstack(tw.expand_dims(tw.sequence_mask(lengths, steps, dtype=tw.float32), 2),
                           axis=1)
        x = tw.nn.dropout(tw.nn.embedding_lookup(self.emb, ids), keep_prob=self.keep_prob,
                          seed=c.seed + 1)
        width = c.embed
        for kx, kh, b in self.cells:
            xs = tw.unstack(tw.reshape(tw.matmul(tw.reshape(x, [-1, width]), kx) + b,
                                       [-1, steps, 4 * c.hidden]), axis=1)
            outs, (_, h) = unrolled_lstm(xs, masks, kh)
            x, width = tw.stack(outs, axis=1), c.hidden
        h = tw.nn.dropout(h, keep_prob=self.keep_prob, seed=c.seed + 2)
        logits = tw.matmul(h, self.out_w) + self.out_b
        loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        return {"ids": ids, "lengths": lengths, "labels": labels, "loss": loss,
                "probs": tw.nn.softmax(logits)}

    # ------------------------------------------------------------------ features
    def trigger_features(self, word_lists):
        c, v = self.config, self.trigger_vocab
        rows = []
        for words in word_lists:
            ids = [i for i in v.encode(words) if i != UNK]
            # bigrams include a start marker: a message's first word ("are", "is", "can")
            # says most about whether it asks a yes/no question
            marked = ["<s>", *words]
            ids += [len(v) + zlib.crc32(f"{a} {b}".encode()) % c.bigram_buckets
                    for a, b in zip(marked, marked[1:])]
            rows.append(ids or [UNK])
        ids, lens = pad_batch(rows)
        mask = (np.arange(ids.shape[1])[None, :] < lens[:, None]).astype(np.float32)
        return ids, mask

    def reply_batch(self, word_lists):
        steps = next((s for s in self.config.buckets
                      if s >= max(len(w) for w in word_lists)), self.config.buckets[-1])
        ids, lens = pad_batch([self.vocab.encode(w)[:steps] for w in word_lists], steps)
        return steps, ids, np.maximum(lens, 1)

    # ------------------------------------------------------------------ inference
    def trigger(self, sess, word_lists) -> np.ndarray:
        ids, mask = self.trigger_features(word_lists)
        return sess.run(self.trigger_prob, {self.trig_ids: ids, self.trig_mask: mask})

    def score(self, sess, word_lists) -> np.ndarray:
        """Probabilities over the candidates, ``[len(word_lists), candidates]``."""
        out = np.zeros((len(word_lists), len(self.candidates)), np.float32)
        order = sorted(range(len(word_lists)), key=lambda i: len(word_lists[i]))
        for start in range(0, len(order), 512):
            idx = order[start:start + 512]
            steps, ids, lens = self.reply_batch([word_lists[i] or ["<unk>"] for i in idx])
            g = self.scorers[steps]
            out[idx] = sess.run(g["probs"], {g["ids"]: ids, g["lengths"]: lens})
        return out

    def top_replies(self, probs: np.ndarray, k: int = 3, diverse: bool = True) -> list[int]:
        """Indices of the k best candidates; with ``diverse``, one per meaning cluster."""
        chosen, clusters = [], set()
        for i in np.argsort(-probs, kind="stable"):
            cl = _CLUSTER_OF.get(self.candidates[i], self.candidates[i])
            if diverse and cl in clusters:
                continue
            chosen.append(int(i))
            clusters.add(cl)
            if len(chosen) == k:
                break
        return chosen


def _build(config, vocab, trigger_vocab, candidates):
    graph = tw.Graph()
    with graph.as_default():
        tw.set_random_seed(config.seed)
        model = SmartReply(config, vocab, trigger_vocab, candidates)
    return graph, model


def train(config: SmartReplyConfig, model_dir: str, data: dict | None = None,
          progress: bool = True) -> dict:
    """Trains the trigger then the reply scorer; saves both and returns ``evaluate``'s report."""
    limit_blas_threads()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    data = data or prepare_data(config)
    cand_index = {r: i for i, r in enumerate(data["candidates"])}
    reply_train = [(w, cand_index[r]) for w, r in data["train"] if r in cand_index]
    trig_train = [(w, 1.0) for w in dict.fromkeys(tuple(w) for w, _ in data["train"])] + \
        [(w, 1.0) for w in data.get("question_train", [])] + \
        [(w, 0.0) for w in data["other_train"]]
    vocab = WordVocab.build((w for w, _ in reply_train), config.vocab_size)
    trigger_vocab = WordVocab.build((w for w, _ in trig_train), config.vocab_size, min_count=2)
    graph, model = _build(config, vocab, trigger_vocab, data["candidates"])
    rng = np.random.default_rng(config.seed)
    with graph.as_default():
        trig_step = tw.train.AdamOptimizer(config.learning_rate).minimize(
            model.trigger_loss, var_list=tw.trainable_variables("trigger"))
        opt = tw.train.AdamOptimizer(config.learning_rate)
        reply_vars = tw.trainable_variables("reply")
        steps_ops = {s: opt.minimize(g["loss"], var_list=reply_vars)
                     for s, g in model.scorers.items()}
        saver = tw.train.Saver(tw.global_variables(), max_to_keep=1)
        sess = tw.Session(graph=graph)
        sess.run(tw.global_variables_initializer())

    n_trig = len(trig_train) // 256 + 1
    total = config.trigger_epochs * n_trig + \
        config.epochs * (len(reply_train) // config.batch_size + len(config.buckets))
    bar = progress_bar(progress, total=total, desc="train smart-reply", unit="step")
    for _ in range(config.trigger_epochs):
        order = rng.permutation(len(trig_train))
        for start in range(0, len(order), 256):
            batch = [trig_train[i] for i in order[start:start + 256]]
            ids, mask = model.trigger_features([w for w, _ in batch])
            lv, _ = sess.run([model.trigger_loss, trig_step], {
                model.trig_ids: ids, model.trig_mask: mask,
                model.trig_labels: np.array([y for _, y in batch], np.float32)})
            bar.update(1)
            bar.set_postfix(model="trigger", loss=f"{lv:.3f}")
    t_trigger = time.perf_counter() - t_start
    by_bucket: dict[int, list[int]] = {s: [] for s in config.buckets}
    for i, (w, _) in enumerate(reply_train):
        s = next((s for s in config.buckets if s >= len(w)), config.buckets[-1])
        by_bucket[s].append(i)
    losses: list[float] = []
    for _ in range(config.epochs):
        batches = []
        for s, idx in by_bucket.items():
            idx = rng.permutation(idx)
            batches += [(s, idx[j:j + config.batch_size])
                        for j in range(0, len(idx), config.batch_size)]
        for bi in rng.permutation(len(batches)):
            s, idx = batches[bi]
            g = model.scorers[s]
            _, ids, lens = model.reply_batch([reply_train[i][0] for i in idx])
            lv, _ = sess.run([g["loss"], steps_ops[s]], {
                g["ids"]: ids, g["lengths"]: lens, model.keep_prob: config.keep_prob,
                g["labels"]: np.array([reply_train[i][1] for i in idx], np.int32)})
            losses.append(float(lv))
            bar.update(1)
            bar.set_postfix(model="reply", loss=f"{np.mean(losses[-50:]):.3f}")
    bar.close()
    seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - cpu_start
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        f.write(config.to_json())
    vocab.save(os.path.join(model_dir, "vocab.txt"))
    trigger_vocab.save(os.path.join(model_dir, "trigger_vocab.txt"))
    with open(os.path.join(model_dir, "candidates.json"), "w") as f:
        json.dump(data["candidates"], f, indent=0)
    saver.save(sess, os.path.join(model_dir, "model.ckpt"))
    report = evaluate(model, sess, data)
    report.update(train_seconds=round(seconds, 1), train_cpu_seconds=round(cpu_seconds, 1),
                  trigger_seconds=round(t_trigger, 1),
                  reply_train_examples=len(reply_train), trigger_train_examples=len(trig_train))
    with open(os.path.join(model_dir, "eval.json"), "w") as f:
        json.dump(report, f, indent=1)
    sess.close()
    return report


def evaluate(model: SmartReply, sess, data: dict) -> dict:
    """Held-out trigger precision/recall and reply recall@3 (model vs frequency baseline)."""
    cand_index = {r: i for i, r in enumerate(model.candidates)}
    conv = [list(w) for w in dict.fromkeys(tuple(w) for w, _ in data["test"])]
    conv += data.get("question_test", [])
    msgs = conv + data["other_test"]
    truth = np.array([True] * len(conv) + [False] * len(data["other_test"]))
    pred = model.trigger(sess, msgs) >= 0.5
    tp = int((pred & truth).sum())
    report = {"trigger_precision": round(tp / max(int(pred.sum()), 1), 4),
              "trigger_recall": round(tp / max(int(truth.sum()), 1), 4),
              "trigger_test_messages": len(msgs), "trigger_test_positives": int(truth.sum())}
    test = [(w, cand_index[r]) for w, r in data["test"] if r in cand_index]
    probs = model.score(sess, [w for w, _ in test])
    labels = np.array([y for _, y in test])
    train_counts = np.bincount([cand_index[r] for _, r in data["train"] if r in cand_index],
                               minlength=len(model.candidates)).astype(np.float32)

    def recall(rank_fn, diverse, by_meaning=False):
        hits = 0
        for p, y in zip(probs, labels):
            top = model.top_replies(rank_fn(p), 3, diverse)
            if by_meaning:
                want = _CLUSTER_OF.get(model.candidates[y], model.candidates[y])
                hits += any(_CLUSTER_OF.get(model.candidates[t], model.candidates[t]) == want
                            for t in top)
            else:
                hits += y in top
        return round(hits / max(len(labels), 1), 4)

    def freq(_):
        return train_counts

    def ident(p):
        return p

    report.update({
        "reply_test_messages": len(labels),
        "recall_at_3": recall(ident, False), "baseline_recall_at_3": recall(freq, False),
        "recall_at_3_diverse": recall(ident, True),
        "baseline_recall_at_3_diverse": recall(freq, True),
        "meaning_recall_at_3_diverse": recall(ident, True, True),
        "baseline_meaning_recall_at_3_diverse": recall(freq, True, True),
        "recall_at_1": round(float(np.mean(probs.argmax(1) == labels)), 4),
        "baseline_recall_at_1": round(float(np.mean(labels == train_counts.argmax())), 4),
    })
    return report


class Replier:
    """A trained Smart Reply model loaded from ``model_dir``: ``suggest(message)``."""

    def __init__(self, model_dir: str | None = None):
        model_dir = model_dir or default_model_dir()
        ckpt = find_checkpoint(model_dir)
        if ckpt is None or not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise FileNotFoundError(
                f"no trained Smart Reply model in {model_dir}\n"
                f"Train one with `tensorweave train smart-reply` (a few minutes here), "
                f"or pass --model-dir.")
        with open(os.path.join(model_dir, "config.json")) as f:
            config = SmartReplyConfig.from_json(f.read())
        with open(os.path.join(model_dir, "candidates.json")) as f:
            candidates = json.load(f)
        vocab = WordVocab.load(os.path.join(model_dir, "vocab.txt"))
        trigger_vocab = WordVocab.load(os.path.join(model_dir, "trigger_vocab.txt"))
        self.graph, self.model = _build(config, vocab, trigger_vocab, candidates)
        with self.graph.as_default():
            self.session = tw.Session(graph=self.graph)
            tw.train.Saver(tw.global_variables()).restore(self.session, ckpt)

    def suggest(self, message: str, k: int = 3) -> dict:
        """``{"trigger": p, "suggest": p >= 0.5, "replies": [(reply, prob)] * k}``."""
        words = _words(message)[:self.model.config.max_words] or ["<unk>"]
        p = float(self.model.trigger(self.session, [words])[0])
        probs = self.model.score(self.session, [words])[0]
        top = self.model.top_replies(probs, k)
        return {"trigger": p, "suggest": p >= 0.5,
                "replies": [(self.model.candidates[i], float(probs[i])) for i in top]}

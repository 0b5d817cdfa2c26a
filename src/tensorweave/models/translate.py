"""German <-> English translation: a sequence-to-sequence LSTM with Luong attention.

The model (Sutskever et al. 2014; Luong et al. 2015), built from tensorweave ops:

* subword ids (sentencepiece BPE per language, trained on the training split) -> embeddings;
* a **bidirectional LSTM encoder**, statically unrolled over a length bucket; padded steps
  carry the state and output zeros, so the backward direction starts at each sentence's end;
* an **LSTM decoder** whose initial state is a projection of both final encoder states; with
  attention, each step scores the encoder outputs (``h_t^T W_a h_s``, padded source positions
  masked), mixes them into a context ``c_t`` and outputs ``tanh(W_c [h_t; c_t])``, which is
  also fed to the next step's input ("input feeding"). Without attention, the decoder's ``h_t``
  is the output;
* one softmax over the target vocabulary per step; cross-entropy averaged over real tokens.

Training uses length buckets (one unrolled graph per bucket, sharing variables, as TF1's
``model_with_buckets``), Adam, global-norm clipping and dropout; it runs for a time budget and
logs BLEU on the test set against training time. Decoding runs inside the graph: the
encoder, then ``tw.nn.greedy_decode`` or ``tw.nn.beam_search`` (a ``tw.while_loop`` over the
same decoder step, stopping at EOS; beam hypotheses ranked by ``log p / length``).

Files in the model directory: ``config.json``, ``<src>.model`` / ``<tgt>.model``
(sentencepiece), checkpoints (``model.ckpt-*``) and ``curve.jsonl`` (the learning curve).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

import tensorweave as tw
from tensorweave.models.text import (
    BOS,
    EOS,
    PAD,
    UNK,
    SubwordVocab,
    bucket_batches,
    corpus_bleu,
    pad_batch,
)

__all__ = [
    "lstm_update", "unrolled_lstm", "TranslateConfig", "Seq2Seq", "Translator",
    "EnsembleTranslator", "decode_graph", "recent_checkpoints", "snapshot_members",
    "default_model_dir", "train", "evaluate", "prepare_vocabs", "find_checkpoint",
    "ModelNotFoundError",
]

LANGS = ("de", "en")


def default_model_dir(source: str = "de", target: str = "en") -> str:
    """``~/.cache/tensorweave/models/translate-<source>-<target>``."""
    root = os.environ.get("TENSORWEAVE_HOME", os.path.expanduser("~/.cache/tensorweave"))
    return os.path.join(root, "models", f"translate-{source}-{target}")


def _kept(model_dir: str, path: str) -> str | None:
    """``path`` if that checkpoint exists, else the same file name inside ``model_dir`` (the
    state file records absolute paths, which break when the directory is moved)."""
    for candidate in (path, os.path.join(model_dir, os.path.basename(path))):
        if tw.train.checkpoint_exists(candidate):
            return candidate
    return None


def find_checkpoint(model_dir: str) -> str | None:
    """The newest checkpoint in ``model_dir``, also after the directory was moved."""
    if not os.path.isdir(model_dir):
        return None
    state = tw.train.get_checkpoint_state(model_dir)
    if state is None or not state.model_checkpoint_path:
        return None
    return _kept(model_dir, state.model_checkpoint_path)


def recent_checkpoints(model_dir: str, count: int) -> list[str]:
    """The newest ``count`` checkpoints kept in ``model_dir`` (oldest first; fewer if fewer
    are kept), found like :func:`find_checkpoint` also after the directory was moved."""
    state = tw.train.get_checkpoint_state(model_dir) if os.path.isdir(model_dir) else None
    if state is None or count <= 0:
        return []
    found = [_kept(model_dir, p) for p in state.all_model_checkpoint_paths]
    return [p for p in found if p is not None][-count:]


def snapshot_members(model_dirs, snapshots: int):
    """``(dirs, checkpoints)`` for an ensemble of the last ``snapshots`` checkpoints of each
    model directory (a "snapshot ensemble": no extra training)."""
    dirs, ckpts = [], []
    for d in model_dirs:
        found = recent_checkpoints(d, snapshots) or [None]
        dirs += [d] * len(found)
        ckpts += found
    return dirs, ckpts


class ModelNotFoundError(FileNotFoundError):
    """No trained model in the directory; the message says how to train one."""


@dataclass
class TranslateConfig:
    source: str = "de"
    target: str = "en"
    vocab_size: int = 4000          # per language
    embed: int = 256
    hidden: int = 256               # per encoder direction and for the decoder
    attention: bool = True
    keep_prob: float = 1.0          # dropout on embeddings and outputs (0.7 for long runs)
    label_smoothing: float = 0.0    # share of each target's probability spread over the vocab
    word_dropout: float = 0.0       # chance a source subword is replaced by <unk> in training
    batch_size: int = 32
    learning_rate: float = 0.002
    clip_norm: float = 5.0
    # (source, target) lengths in subword ids; the target side counts BOS/EOS
    buckets: tuple = ((10, 12), (15, 17), (20, 22), (30, 32))
    minutes: float = 25.0           # training time budget (evaluation time not counted)
    max_steps: int = 0              # 0: no limit
    eval_minutes: float = 5.0       # test-BLEU (greedy) every so many training minutes
    eval_pairs: int = 1000          # test pairs scored at each evaluation
    decay_from: float = 0.6         # fraction of the budget after which the rate decays ...
    decay_to: float = 0.1           # ... exponentially, to this fraction at the end
    clock: str = "wall"             # "wall" or "cpu" (process time: fairer on a shared machine)
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TranslateConfig:
        d = json.loads(text)
        d["buckets"] = tuple(tuple(b) for b in d["buckets"])
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})


def _clip_by_global_norm(grads, clip_norm):
    """``tw.clip_by_global_norm`` when present, else the same rule here: scale every gradient
    by ``clip_norm / max(global_norm, clip_norm)``."""
    if hasattr(tw, "clip_by_global_norm"):
        return tw.clip_by_global_norm(grads, clip_norm)[0]
    sq = []
    for g in grads:
        v = g.values if isinstance(g, tw.IndexedSlices) else g
        sq.append(tw.reduce_sum(tw.square(v)))
    norm = tw.sqrt(tw.add_n(sq))
    scale = clip_norm / tw.maximum(norm, clip_norm)
    out = []
    for g in grads:
        if isinstance(g, tw.IndexedSlices):
            out.append(tw.IndexedSlices(g.values * scale, g.indices, g.dense_shape))
        else:
            out.append(g * scale)
    return out


def lstm_update(z, c_prev):
    """One LSTM update from pre-activations ``z = [i, g, f, o]`` (forget bias 1);
    ``c_prev=None`` means a zero state. Returns ``(c, h)``."""
    i, g, f, o = tw.split(z, 4, axis=1)
    ig = tw.sigmoid(i) * tw.tanh(g)
    c = ig if c_prev is None else tw.sigmoid(f + 1.0) * c_prev + ig
    return c, tw.sigmoid(o) * tw.tanh(c)


def unrolled_lstm(xs, masks, recurrent_kernel, reverse=False):
    """A statically unrolled, masked LSTM over precomputed input projections.

    ``xs``: per-step ``[B, 4H]`` (input @ kernel + bias); ``masks``: per-step ``[B, 1]`` 0/1.
    Padded steps keep the state (still zero when a reversed pass has not reached the
    sentence yet) and output zeros. Returns ``(outputs, (c, h))``.
    """
    steps = len(xs)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    c = h = None
    outs = [None] * steps
    for t in order:
        z = xs[t] if h is None else xs[t] + tw.matmul(h, recurrent_kernel)
        c_new, h_new = lstm_update(z, c)
        m = masks[t]
        if h is None:
            c, h = c_new * m, h_new * m
        else:
            c, h = c + m * (c_new - c), h + m * (h_new - h)
        outs[t] = h_new * m
    return outs, (c, h)


class Seq2Seq:
    """Variables and graph builders of the encoder-decoder (see the module docstring)."""

    def __init__(self, config: TranslateConfig, source_vocab_size: int, target_vocab_size: int):
        self.config = config
        self.vs, self.vt = source_vocab_size, target_vocab_size
        c = config
        e, h = c.embed, c.hidden
        init = tw.glorot_uniform_initializer(seed=c.seed)
        emb_init = tw.random_uniform_initializer(-0.1, 0.1, seed=c.seed)
        with tw.variable_scope("seq2seq"):
            self.src_emb = tw.get_variable("source_embedding", [self.vs, e], initializer=emb_init)
            self.tgt_emb = tw.get_variable("target_embedding", [self.vt, e], initializer=emb_init)
            self.enc = {}
            for d in ("fw", "bw"):
                with tw.variable_scope(f"encoder_{d}"):
                    self.enc[d] = (
                        tw.get_variable("input_kernel", [e, 4 * h], initializer=init),
                        tw.get_variable("recurrent_kernel", [h, 4 * h], initializer=init),
                        tw.get_variable("bias", [4 * h], initializer=tw.zeros_initializer()))
            with tw.variable_scope("bridge"):
                self.bridge_h = tw.get_variable("h_kernel", [2 * h, h], initializer=init)
                self.bridge_c = tw.get_variable("c_kernel", [2 * h, h], initializer=init)
            with tw.variable_scope("decoder"):
                rec_in = 2 * h if c.attention else h  # [h_{t-1}; attentional output_{t-1}]
                self.dec = (
                    tw.get_variable("input_kernel", [e, 4 * h], initializer=init),
                    tw.get_variable("recurrent_kernel", [rec_in, 4 * h], initializer=init),
                    tw.get_variable("bias", [4 * h], initializer=tw.zeros_initializer()))
                if c.attention:
                    self.att_w = tw.get_variable("memory_kernel", [2 * h, h], initializer=init)
                    self.att_out = tw.get_variable("output_kernel", [3 * h, h],
                                                   initializer=init)
                self.out_w = tw.get_variable("softmax_kernel", [h, self.vt], initializer=init)
                self.out_b = tw.get_variable("softmax_bias", [self.vt],
                                             initializer=tw.zeros_initializer())

    # ------------------------------------------------------------------ building blocks
    def _project_inputs(self, x, kernel, bias, steps):
        """``x [B, T, E] -> [B, T, 4H]`` as one matmul, then split into the T steps."""
        e = x.shape[-1].value
        xw = tw.matmul(tw.reshape(x, [-1, e]), kernel) + bias
        return tw.unstack(tw.reshape(xw, [-1, steps, kernel.shape[1].value]), axis=1)

    def encode(self, src, src_len, keep_prob=1.0):
        """Runs the bidirectional encoder over ``src [B, S]`` (S static).

        Returns ``(memory [B, S, 2H], keys [B, S, H] or None, mask_bias [B, S], (c0, h0))``.
        """
        h_size = self.config.hidden
        steps = src.shape[1].value
        mask = tw.sequence_mask(src_len, steps, dtype=tw.float32)
        x = tw.nn.embedding_lookup(self.src_emb, src)
        if not isinstance(keep_prob, float) or keep_prob < 1.0:
            x = tw.nn.dropout(x, keep_prob=keep_prob, seed=self.config.seed + 1)
        masks = tw.unstack(tw.expand_dims(mask, 2), axis=1)
        outputs, finals = {}, {}
        for d in ("fw", "bw"):
            kx, kh, b = self.enc[d]
            xs = self._project_inputs(x, kx, b, steps)
            outs, finals[d] = unrolled_lstm(xs, masks, kh, reverse=d == "bw")
            outputs[d] = tw.stack(outs, axis=1)
        memory = tw.concat([outputs["fw"], outputs["bw"]], axis=2)
        c0 = tw.matmul(tw.concat([finals["fw"][0], finals["bw"][0]], 1), self.bridge_c)
        h0 = tw.tanh(tw.matmul(tw.concat([finals["fw"][1], finals["bw"][1]], 1), self.bridge_h))
        keys = None
        if self.config.attention:
            keys = tw.reshape(tw.matmul(tw.reshape(memory, [-1, 2 * h_size]), self.att_w),
                              [-1, steps, h_size])
        mask_bias = (mask - 1.0) * 1e9
        return memory, keys, mask_bias, (c0, h0)

    def decoder_step(self, xw, state, memory, keys, mask_bias):
        """One decoder step from the projected input ``xw [B, 4H]``.

        ``state = (c, h, att)`` (``att`` is the previous attentional output, or None without
        attention). Returns ``(output [B, H], new_state)``.
        """
        c, h, att = state
        _, kh, _ = self.dec
        rec = tw.concat([h, att], 1) if self.config.attention else h
        c, h = lstm_update(xw + tw.matmul(rec, kh), c)
        if not self.config.attention:
            return h, (c, h, None)
        scores = tw.squeeze(tw.matmul(keys, tw.expand_dims(h, 2)), [2]) + mask_bias
        alpha = tw.nn.softmax(scores)
        context = tw.squeeze(tw.matmul(tw.expand_dims(alpha, 1), memory), [1])
        att = tw.tanh(tw.matmul(tw.concat([h, context], 1), self.att_out))
        return att, (c, h, att)

    def initial_state(self, c0, h0):
        return (c0, h0, tw.zeros_like(h0) if self.config.attention else None)

    def logits(self, outputs_2d):
        return tw.matmul(outputs_2d, self.out_w) + self.out_b

    # ------------------------------------------------------------------ graphs
    def training_loss(self, src_steps, tgt_steps, keep_prob):
        """Placeholders and the mean token cross-entropy for one length bucket."""
        feeds, loss, _ = self.training_graph(src_steps, tgt_steps, keep_prob)
        return feeds, loss

    def training_graph(self, src_steps, tgt_steps, keep_prob):
        """``training_loss`` plus the held-out token accuracy (argmax of each step's logits
        against ``target_output``, over real tokens): ``(feeds, loss, token_accuracy)``."""
        h_size = self.config.hidden
        src = tw.placeholder(tw.int32, [None, src_steps], name="source")
        src_len = tw.placeholder(tw.int32, [None], name="source_length")
        tgt_in = tw.placeholder(tw.int32, [None, tgt_steps], name="target_input")
        tgt_out = tw.placeholder(tw.int32, [None, tgt_steps], name="target_output")
        tgt_len = tw.placeholder(tw.int32, [None], name="target_length")
        memory, keys, mask_bias, (c0, h0) = self.encode(src, src_len, keep_prob)
        y = tw.nn.embedding_lookup(self.tgt_emb, tgt_in)
        if not isinstance(keep_prob, float) or keep_prob < 1.0:
            y = tw.nn.dropout(y, keep_prob=keep_prob, seed=self.config.seed + 2)
        kx, _, b = self.dec
        xs = self._project_inputs(y, kx, b, tgt_steps)
        state = self.initial_state(c0, h0)
        outs = []
        for t in range(tgt_steps):
            out, state = self.decoder_step(xs[t], state, memory, keys, mask_bias)
            outs.append(out)
        out2d = tw.reshape(tw.stack(outs, axis=1), [-1, h_size])
        if not isinstance(keep_prob, float) or keep_prob < 1.0:
            out2d = tw.nn.dropout(out2d, keep_prob=keep_prob, seed=self.config.seed + 3)
        logits = self.logits(out2d)
        weights = tw.reshape(tw.sequence_mask(tgt_len, tgt_steps, dtype=tw.float32), [-1])
        xent = tw.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tw.reshape(tgt_out, [-1]), logits=logits)
        eps = self.config.label_smoothing
        if eps > 0.0:
            # Smoothed targets (1 - eps) one-hot + eps uniform: the loss adds eps times the
            # mean negative log-probability over the vocabulary (Szegedy et al. 2016).
            uniform = -tw.reduce_mean(tw.nn.log_softmax(logits), axis=1)
            xent = (1.0 - eps) * xent + eps * uniform
        total = tw.maximum(tw.reduce_sum(weights), 1.0)
        loss = tw.reduce_sum(xent * weights) / total
        hits = tw.cast(tw.equal(tw.cast(tw.argmax(logits, 1), tw.int32),
                                tw.reshape(tgt_out, [-1])), tw.float32)
        accuracy = tw.reduce_sum(hits * weights) / total
        feeds = {"source": src, "source_length": src_len, "target_input": tgt_in,
                 "target_output": tgt_out, "target_length": tgt_len}
        return feeds, loss, accuracy

    def encoder_graph(self, src_steps):
        src = tw.placeholder(tw.int32, [None, src_steps], name="source")
        src_len = tw.placeholder(tw.int32, [None], name="source_length")
        memory, keys, mask_bias, (c0, h0) = self.encode(src, src_len)
        outs = {"memory": memory, "mask_bias": mask_bias, "c": c0, "h": h0}
        if keys is not None:
            outs["keys"] = keys
        return {"source": src, "source_length": src_len}, outs

    def decoder_fn(self, src, src_len, beam_width=1):
        """The encoder over ``src`` and the decoder as ``(step_fn, initial_state)`` for
        ``tw.nn.greedy_decode`` / ``tw.nn.beam_search``: ``step_fn(tokens, state)`` returns
        ``(logits, new_state)``. With ``beam_width > 1`` the attention memory is tiled."""
        memory, keys, mask_bias, (c0, h0) = self.encode(src, src_len)
        if beam_width > 1:
            memory, mask_bias = tw.nn.tile_batch(memory, beam_width), \
                tw.nn.tile_batch(mask_bias, beam_width)
            keys = tw.nn.tile_batch(keys, beam_width) if keys is not None else None
        kx, _, b = self.dec
        attention = self.config.attention

        def step(tokens, state):
            xw = tw.matmul(tw.nn.embedding_lookup(self.tgt_emb, tokens), kx) + b
            full = state if attention else (state[0], state[1], None)
            out, (c, h, att) = self.decoder_step(xw, full, memory, keys, mask_bias)
            return self.logits(out), ((c, h, att) if attention else (c, h))

        state0 = (c0, h0, tw.zeros_like(h0)) if attention else (c0, h0)
        return step, state0

    def decode_graph(self, src_steps, beam_width=1, length_penalty=1.0):
        """Encoder + in-graph decoding (``tw.nn.greedy_decode`` / ``tw.nn.beam_search``, a
        ``tw.while_loop`` that stops at EOS or ``2 * src_steps + 10`` tokens).

        Returns ``(feeds, ids)`` with ``ids [B, T]`` (the best beam).
        """
        return decode_graph([self], src_steps, beam_width, length_penalty)


def decode_graph(models, src_steps, beam_width=1, length_penalty=1.0):
    """In-graph decoding by one model or an ensemble: with several ``models`` (same
    vocabularies) each step scores the next token by the mean of the members' log-probabilities
    (Sutskever et al. 2014 decoded with an ensemble of 5 LSTMs). Returns ``(feeds, ids)``."""
    src = tw.placeholder(tw.int32, [None, src_steps], name="source")
    src_len = tw.placeholder(tw.int32, [None], name="source_length")
    feeds = {"source": src, "source_length": src_len}
    members = [m.decoder_fn(src, src_len, beam_width) for m in models]
    if len(members) == 1:
        step, state0 = members[0]
    else:
        def step(tokens, states):
            log_probs, new_states = [], []
            for (member_step, _), state in zip(members, states):
                logits, new_state = member_step(tokens, state)
                log_probs.append(tw.nn.log_softmax(logits))
                new_states.append(new_state)
            return tw.add_n(log_probs) / float(len(members)), tuple(new_states)

        state0 = tuple(s for _, s in members)
    start = tw.fill(tw.shape(src_len), BOS)
    max_length = 2 * src_steps + 10
    if beam_width > 1:
        result = tw.nn.beam_search(step, state0, start, EOS, beam_width, max_length,
                                   length_penalty=length_penalty)
        return feeds, result.ids[:, 0, :]
    return feeds, tw.nn.greedy_decode(step, state0, start, EOS, max_length).ids


# ---------------------------------------------------------------------------- decoding


class Translator:
    """A trained model loaded for decoding: ``Translator(model_dir).translate(["..."])``."""

    def __init__(self, model_dir: str, graph: tw.Graph | None = None, session=None,
                 model: Seq2Seq | None = None, src_vocab=None, tgt_vocab=None,
                 config: TranslateConfig | None = None, checkpoint: str | None = None,
                 restore: bool = True, length_penalty: float = 1.0):
        self.model_dir = model_dir
        self.length_penalty = length_penalty
        self._decoders: dict = {}
        if config is None:
            config = load_config(model_dir)
        self.config = config
        self.src_vocab = src_vocab or \
            SubwordVocab(os.path.join(model_dir, f"{config.source}.model"))
        self.tgt_vocab = tgt_vocab or \
            SubwordVocab(os.path.join(model_dir, f"{config.target}.model"))
        own = session is None
        self.graph = graph or tw.Graph()
        with self.graph.as_default():
            if model is None:
                model = Seq2Seq(config, len(self.src_vocab), len(self.tgt_vocab))
            self.model = model
            self.members = [model]
            if own and not restore:
                self.session = None  # the caller supplies one
            elif own:
                self.session = tw.Session(graph=self.graph)
                ckpt = checkpoint or find_checkpoint(model_dir)
                if ckpt is None:
                    raise ModelNotFoundError(_missing_model_message(model_dir, config))
                tw.train.Saver(tw.global_variables()).restore(self.session, ckpt)
            else:
                self.session = session

    def _decoder(self, steps, beam_width):
        key = (steps, beam_width)
        if key not in self._decoders:
            with self.graph.as_default(), tw.name_scope(f"infer_{steps}_beam{beam_width}"):
                self._decoders[key] = decode_graph(self.members, steps, beam_width,
                                                   self.length_penalty)
        return self._decoders[key]

    def decode(self, ids: list[list[int]], beam_width: int = 1) -> list[list[int]]:
        """Subword ids in, subword ids out (without EOS), for one batch."""
        max_s = self.config.buckets[-1][0]
        ids = [s[:max_s] for s in ids]
        longest = max(max(len(s) for s in ids), 1)
        steps = next(s for s, _ in self.config.buckets if s >= longest)
        feeds, out = self._decoder(steps, beam_width)
        src, lens = pad_batch(ids, steps)
        rows = self.session.run(out, {feeds["source"]: src, feeds["source_length"]: lens})
        return [list(r) for r in rows]

    def translate(self, sentences: list[str], beam_size: int = 1,
                  batch_size: int = 100) -> list[str]:
        """Translates raw sentences; returns detokenized text."""
        ids = self.src_vocab.encode_batch(sentences)
        order = np.argsort([len(s) for s in ids], kind="stable")
        results: list[str] = [""] * len(sentences)
        bs = batch_size if beam_size == 1 else max(1, batch_size // beam_size)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            decoded = self.decode([ids[i] for i in idx], beam_size)
            for i, d in zip(idx, decoded):
                results[i] = self.tgt_vocab.decode(d)
        return results


class EnsembleTranslator(Translator):
    """Several trained models decoding as one (``decode_graph`` with all of them): at each
    step the mean of their log-probabilities ranks the next tokens, in greedy and beam search.

    The models must translate the same direction with the same subword vocabularies (train
    the second one in a directory holding copies of the first one's ``<lang>.model`` files).
    Each member's variables live under ``member<k>/`` and are restored from its own latest
    checkpoint."""

    def __init__(self, model_dirs, length_penalty: float = 1.0, checkpoints=None):
        """``checkpoints``: one checkpoint prefix (or None: the latest) per model directory;
        a directory may appear more than once with different checkpoints (snapshots)."""
        model_dirs = list(model_dirs)
        if not model_dirs:
            raise ValueError("EnsembleTranslator needs at least one model directory")
        configs = [load_config(d) for d in model_dirs]
        first, c0 = model_dirs[0], configs[0]
        for d, c in zip(model_dirs[1:], configs[1:]):
            if (c.source, c.target) != (c0.source, c0.target):
                raise ValueError(f"the model in {d} translates {c.source}->{c.target} but the "
                                 f"one in {first} translates {c0.source}->{c0.target}; an "
                                 f"ensemble needs one direction")
            for lang in (c.source, c.target):
                with open(os.path.join(first, f"{lang}.model"), "rb") as f0, \
                        open(os.path.join(d, f"{lang}.model"), "rb") as f1:
                    if f0.read() != f1.read():
                        raise ValueError(
                            f"the models in {first} and {d} use different {lang} subword "
                            f"vocabularies; an ensemble needs the same ones (copy {first}/"
                            f"{lang}.model and .vocab into a new model directory before "
                            f"training it)")
        checkpoints = [c or find_checkpoint(d) for d, c in
                       zip(model_dirs, checkpoints or [None] * len(model_dirs))]
        for d, c, ckpt in zip(model_dirs, configs, checkpoints):
            if ckpt is None:
                raise ModelNotFoundError(_missing_model_message(d, c))
        src_vocab, tgt_vocab = (SubwordVocab(os.path.join(first, f"{lang}.model"))
                                for lang in (c0.source, c0.target))
        graph = tw.Graph()
        with graph.as_default():
            members = []
            for k, c in enumerate(configs):
                with tw.variable_scope(f"member{k}"):
                    members.append(Seq2Seq(c, len(src_vocab), len(tgt_vocab)))
        super().__init__(first, graph=graph, model=members[0], config=c0, restore=False,
                         src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                         length_penalty=length_penalty)
        self.model_dirs, self.members = model_dirs, members
        self.session = tw.Session(graph=graph)
        with graph.as_default():
            for k, ckpt in enumerate(checkpoints):
                prefix = f"member{k}/"
                names = {v.op.name[len(prefix):]: v for v in tw.global_variables()
                         if v.op.name.startswith(prefix)}
                tw.train.Saver(names).restore(self.session, ckpt)


def _missing_model_message(model_dir, config):
    direction = "" if (config.source, config.target) == ("de", "en") else \
        f" --from {config.source} --to {config.target}"
    return (f"no trained translation model in {model_dir}\n"
            f"Train one with `tensorweave train translate{direction}` (25 minutes here), "
            f"or pass --model-dir.")


def load_config(model_dir: str, source: str = "de", target: str = "en") -> TranslateConfig:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ModelNotFoundError(_missing_model_message(
            model_dir, TranslateConfig(source=source, target=target)))
    with open(path) as f:
        return TranslateConfig.from_json(f.read())


# ---------------------------------------------------------------------------- training


def prepare_vocabs(train_pairs, config: TranslateConfig, model_dir: str):
    """Trains (or reloads) the per-language sentencepiece models on the training split."""
    vocabs = {}
    for lang in (config.source, config.target):
        path = os.path.join(model_dir, f"{lang}.model")
        if os.path.isfile(path):
            vocabs[lang] = SubwordVocab(path)
        else:
            col = 0 if lang == "en" else 1
            vocabs[lang] = SubwordVocab.train([p[col] for p in train_pairs],
                                              os.path.join(model_dir, lang), config.vocab_size)
    return vocabs[config.source], vocabs[config.target]


def _side(pairs, lang):
    return [p[0] if lang == "en" else p[1] for p in pairs]


class _NullBar:
    n = 0

    def update(self, k=1):
        self.n += k

    def set_postfix(self, **_):
        pass

    def close(self):
        pass

    @staticmethod
    def write(msg):
        print(msg)


def progress_bar(enabled: bool, **kwargs):
    """A tqdm bar, or a silent stand-in when disabled (tqdm is then not needed)."""
    if not enabled:
        bar = _NullBar()
        bar.n = kwargs.get("initial", 0)
        return bar
    from tqdm import tqdm

    return tqdm(dynamic_ncols=True, **kwargs)


def _learning_rate(config: TranslateConfig, fraction: float) -> float:
    if fraction <= config.decay_from:
        return config.learning_rate
    span = max(1e-6, 1.0 - config.decay_from)
    return config.learning_rate * config.decay_to ** min(1.0, (fraction - config.decay_from) / span)


def drop_source_words(src, rate, rng):
    """Word dropout (Sennrich & Zhang 2019, for small corpora): each real source subword
    becomes ``<unk>`` with probability ``rate``; padding stays padding."""
    drop = (rng.random(src.shape) < rate) & (src != PAD)
    return np.where(drop, UNK, src).astype(src.dtype, copy=False)


def limit_blas_threads():
    """One BLAS thread: on a small shared machine OpenBLAS's threads spin against each other
    and the small per-step matmuls of an RNN run ~10x slower (measured: 3 s -> 0.5 s a step)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1)


def train(config: TranslateConfig, model_dir: str, data=None, progress: bool = True,
          log=print, restart: bool = False) -> dict:
    """Trains for ``config.minutes`` of training time (or ``max_steps``), evaluating greedy
    test BLEU every ``eval_minutes``; checkpoints and ``curve.jsonl`` are written as it goes.

    ``data``: ``{"train": [(en, de)], "test": [...]}`` (default: the fixed de-en split).
    Returns the last evaluation's record.
    """
    limit_blas_threads()
    if config.source == config.target or {config.source, config.target} != set(LANGS):
        raise ValueError(f"translation direction must be de->en or en->de, got "
                         f"{config.source}->{config.target}")
    if data is None:
        from tensorweave.data import load_de_en_pairs
        data = load_de_en_pairs()
    os.makedirs(model_dir, exist_ok=True)
    if restart:
        for f in os.listdir(model_dir):
            if f.startswith(("model.ckpt", "checkpoint", "curve", f"{config.source}.",
                             f"{config.target}.", "config")):
                os.remove(os.path.join(model_dir, f))
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        f.write(config.to_json())
    src_vocab, tgt_vocab = prepare_vocabs(data["train"], config, model_dir)
    src_ids = src_vocab.encode_batch(_side(data["train"], config.source))
    tgt_ids = tgt_vocab.encode_batch(_side(data["train"], config.target))
    lengths = [(len(s), len(t) + 1) for s, t in zip(src_ids, tgt_ids)]
    test_src = _side(data["test"], config.source)[:config.eval_pairs]
    test_ref = _side(data["test"], config.target)[:config.eval_pairs]

    graph = tw.Graph()
    with graph.as_default():
        tw.set_random_seed(config.seed)
        model = Seq2Seq(config, len(src_vocab), len(tgt_vocab))
        keep = tw.placeholder_with_default(tw.constant(1.0), [], name="keep_prob")
        global_step = tw.train.get_or_create_global_step()
        lr = tw.placeholder_with_default(tw.constant(config.learning_rate), [],
                                         name="learning_rate")
        opt = tw.train.AdamOptimizer(lr)
        params = tw.trainable_variables()
        towers = []
        for s, t in config.buckets:
            with tw.name_scope(f"bucket_{s}_{t}"):
                feeds, loss = model.training_loss(s, t, keep)
                grads = _clip_by_global_norm(tw.gradients(loss, params), config.clip_norm)
                step_op = opt.apply_gradients(list(zip(grads, params)), global_step=global_step)
                towers.append((feeds, loss, step_op))
        translator = Translator(model_dir, graph=graph, model=model, src_vocab=src_vocab,
                                tgt_vocab=tgt_vocab, config=config, restore=False)
        saver = tw.train.Saver(tw.global_variables(), max_to_keep=2)
        sess = tw.Session(graph=graph)
        sess.run(tw.global_variables_initializer())
        ckpt = find_checkpoint(model_dir)
        curve_path = os.path.join(model_dir, "curve.jsonl")
        trained_seconds = 0.0
        if ckpt is not None:
            saver.restore(sess, ckpt)
            if os.path.isfile(curve_path):
                with open(curve_path) as f:
                    lines = [json.loads(x) for x in f if x.strip()]
                if lines:
                    trained_seconds = lines[-1]["train_seconds"]
            log(f"resumed from {ckpt} ({trained_seconds / 60:.1f} training minutes so far)")
        translator.session = sess

    rng = np.random.default_rng(config.seed + int(sess.run(global_step)))
    budget = config.minutes * 60.0
    next_eval = (math.floor(trained_seconds / (config.eval_minutes * 60)) + 1) * \
        config.eval_minutes * 60
    record: dict = {}
    bar = progress_bar(progress, total=int(budget), initial=int(trained_seconds), unit="s",
                       desc=f"train {config.source}->{config.target}")
    writer = _summary_writer(os.path.join(model_dir, "events"), graph)
    losses: list[float] = []
    wall_seconds = 0.0  # this process's wall time in training steps
    epoch = 0
    finished = False
    while not finished:
        epoch += 1
        for b, idx in bucket_batches(lengths, config.buckets, config.batch_size, rng):
            s, t = config.buckets[b]
            feeds, loss, step_op = towers[b]
            src, src_len = pad_batch([src_ids[i] for i in idx], s)
            if config.word_dropout > 0.0:
                src = drop_source_words(src, config.word_dropout, rng)
            tin, _ = pad_batch([tgt_ids[i] for i in idx], t, bos=True)
            tout, tlen = pad_batch([tgt_ids[i] for i in idx], t, eos=True)
            t0, c0 = time.perf_counter(), time.process_time()
            lv, _, gs = sess.run([loss, step_op, global_step], {
                feeds["source"]: src, feeds["source_length"]: src_len,
                feeds["target_input"]: tin, feeds["target_output"]: tout,
                feeds["target_length"]: tlen, keep: config.keep_prob,
                lr: _learning_rate(config, trained_seconds / budget)})
            wall_seconds += time.perf_counter() - t0
            trained_seconds += time.process_time() - c0 if config.clock == "cpu" else \
                time.perf_counter() - t0
            losses.append(float(lv))
            bar.update(int(trained_seconds) - bar.n)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", step=int(gs), epoch=epoch)
            if writer is not None and gs % 20 == 0:
                _add_scalars(writer, int(gs), loss=np.mean(losses[-20:]),
                             train_minutes=trained_seconds / 60)
            out_of_time = trained_seconds >= budget or (config.max_steps and
                                                         gs >= config.max_steps)
            if trained_seconds >= next_eval or out_of_time:
                t_eval = time.perf_counter()
                hyps = translator.translate(test_src)
                bleu = corpus_bleu(hyps, test_ref)
                saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=int(gs))
                record = {"train_seconds": round(trained_seconds, 1), "clock": config.clock,
                          "step_wall_seconds": round(wall_seconds, 1), "step": int(gs),
                          "epoch": epoch, "loss": round(float(np.mean(losses[-100:])), 4),
                          "test_bleu_greedy": round(bleu, 2),
                          "eval_seconds": round(time.perf_counter() - t_eval, 1),
                          "wall_time": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "example": hyps[0]}
                with open(curve_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if writer is not None:
                    _add_scalars(writer, int(gs), test_bleu_greedy=bleu)
                    writer.flush()
                (bar.write if progress else log)(
                    f"[{trained_seconds / 60:.1f} min, step {gs}] loss {record['loss']:.3f}, "
                    f"test BLEU (greedy) {bleu:.2f}")
                next_eval += config.eval_minutes * 60
            if out_of_time:
                finished = True
                break
    bar.close()
    if writer is not None:
        writer.close()
    sess.close()
    return record


def _summary_writer(logdir, graph):
    """A TensorBoard event writer (``tw.summary.FileWriter``), or None without tensorboard."""
    try:
        from tensorweave import summary
    except ImportError:
        return None
    return summary.FileWriter(logdir, graph)


def _add_scalars(writer, step, **values):
    from tensorweave.summary import Summary

    writer.add_summary(Summary(value=[Summary.Value(tag=k, simple_value=float(v))
                                      for k, v in values.items()]), step)


def evaluate(model_dir, beam_sizes=(1, 4), pairs=None, split: str = "test",
             limit: int | None = None, checkpoints=None) -> dict:
    """Test BLEU of a trained model for each beam size (1 = greedy); ``model_dir`` may be a
    list of directories, decoded as an ensemble (``EnsembleTranslator``, with ``checkpoints``
    one per directory, None for the latest)."""
    ensemble = not isinstance(model_dir, (str, os.PathLike))
    config = load_config(model_dir[0] if ensemble else model_dir)
    if pairs is None:
        from tensorweave.data import load_de_en_pairs
        pairs = load_de_en_pairs()[split]
    pairs = pairs[:limit] if limit else pairs
    tr = EnsembleTranslator(model_dir, checkpoints=checkpoints) if ensemble else \
        Translator(model_dir)
    src, ref = _side(pairs, config.source), _side(pairs, config.target)
    out = {}
    for k in beam_sizes:
        t0 = time.perf_counter()
        hyps = tr.translate(src, beam_size=k)
        out[k] = {"bleu": corpus_bleu(hyps, ref), "seconds": time.perf_counter() - t0,
                  "examples": hyps[:5]}
    return out

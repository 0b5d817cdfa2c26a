"""Image captioning (Vinyals et al., "Show and Tell", 2015) on the emoji picture set.

The model, built from tensorweave ops and trained from scratch:

* a **CNN encoder**: four stride-2 3x3 convolutions with batch norm and ReLU
  (64x64x3 -> 32 -> 16 -> 8 -> 4x4xC); the 4x4 map is *flattened*, not pooled, so the image
  vector still knows what is where (a caption says "left of" and "above"), then a dense layer
  gives the image vector ``v``;
* an **LSTM decoder** (``tw.nn.rnn_cell.LSTMCell``) whose initial state is a projection of
  ``v`` and whose input at every step is ``[embedding(previous word); v]``; training runs it
  with ``tw.nn.dynamic_rnn`` over the teacher-forced caption and minimizes the cross-entropy
  of the next word, averaged over real (non-padding) words;
* decoding with **beam search** in the graph (``tw.nn.beam_search``, a ``tw.while_loop``);
  ``v`` travels in the decoder state, so the beam search tiles it with the state.

Vocabulary: the words of the 32 class names plus the caption grammar, fixed by
:mod:`tensorweave.data.emoji_captions`, so a model directory needs no vocabulary file.

Files in the model directory: ``config.json``, checkpoints (``model.ckpt-*``) and
``curve.jsonl`` (loss and held-out scores against training time).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass

import numpy as np

import tensorweave as tw
from tensorweave.data import emoji_captions as ec
from tensorweave.models.image_classifier import save_checkpoint

__all__ = ["CaptionConfig", "Vocabulary", "CaptionModel", "Captioner", "default_model_dir",
           "load_image", "train", "evaluate", "score", "objects_named", "ModelNotFoundError",
           "NotAnImageError"]

PAD, BOS, EOS = 0, 1, 2


def default_model_dir() -> str:
    """``$TENSORWEAVE_HOME/models/captioning`` (default ``~/.cache/tensorweave/...``)."""
    root = os.environ.get("TENSORWEAVE_HOME", os.path.expanduser("~/.cache/tensorweave"))
    return os.path.join(root, "models", "captioning")


class ModelNotFoundError(FileNotFoundError):
    """No trained captioning model in the directory; the message says how to train one."""


class NotAnImageError(ValueError):
    """The file is not an image Pillow can read."""


@dataclass
class CaptionConfig:
    image_size: int = 64
    channels: int = 32            # encoder widths: c, 2c, 2c, 4c
    feature_size: int = 256       # the image vector v
    embedding_size: int = 64
    num_units: int = 256          # LSTM
    max_length: int = 20          # decoding limit (the longest caption has 16 words)
    train_pictures: int = 24000
    test_pictures: int = 1000
    batch_size: int = 64
    epochs: int = 6
    learning_rate: float = 2e-3   # Adam, decayed linearly to 10% over the run
    beam_width: int = 3
    seed: int = 0
    device: str | None = None     # e.g. "/gpu:0" (soft placement)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CaptionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


class Vocabulary:
    """Word <-> id for the emoji captions: 0 <pad>, 1 <s>, 2 </s>, then the words, sorted."""

    def __init__(self):
        words = set()
        for name in ec.CLASS_NAMES:
            words.update(name.split())
        words.update("a an some left of above , and from to right".split())
        self.words = ["<pad>", "<s>", "</s>"] + sorted(words)
        self.ids = {w: i for i, w in enumerate(self.words)}

    def __len__(self):
        return len(self.words)

    def encode(self, caption: str) -> list[int]:
        try:
            return [self.ids[w] for w in caption.split()] + [EOS]
        except KeyError as e:
            raise ValueError(f"word {e.args[0]!r} of {caption!r} is not in the vocabulary") \
                from None

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i > EOS:
                out.append(self.words[i])
        return " ".join(out)


def _conv_bn_relu(x, filters, training, name):
    with tw.variable_scope(name):
        w = tw.get_variable("kernel", [3, 3, x.shape[-1].value, filters],
                            initializer=tw.variance_scaling_initializer(2.0))
        y = tw.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")
        c = filters
        gamma = tw.get_variable("gamma", [c], initializer=tw.ones_initializer())
        beta = tw.get_variable("beta", [c], initializer=tw.zeros_initializer())
        mm = tw.get_variable("moving_mean", [c], initializer=tw.zeros_initializer(),
                             trainable=False)
        mv = tw.get_variable("moving_variance", [c], initializer=tw.ones_initializer(),
                             trainable=False)
        if training:
            y, mean, var = tw.nn.fused_batch_norm(y, gamma, beta, is_training=True)
            for avg, value in ((mm, mean), (mv, var)):
                upd = tw.assign_sub(avg, (avg - value) * 0.1)
                tw.add_to_collection(tw.GraphKeys.UPDATE_OPS, upd.op)
        else:
            y, _, _ = tw.nn.fused_batch_norm(y, gamma, beta, mm, mv, is_training=False)
        return tw.nn.relu(y)


class CaptionModel:
    """The encoder and decoder; build it once per graph, then ``loss(...)`` for training and
    ``decode(...)`` for inference (both share the variables)."""

    def __init__(self, config: CaptionConfig, vocab_size: int):
        self.config = config
        self.vocab_size = vocab_size
        self.cell = tw.nn.rnn_cell.LSTMCell(config.num_units)
        with tw.variable_scope("decoder"):
            self.embedding = tw.get_variable(
                "embedding", [vocab_size, config.embedding_size],
                initializer=tw.random_uniform_initializer(-0.1, 0.1))
            self.w_out = tw.get_variable("out/kernel", [config.num_units, vocab_size],
                                         initializer=tw.glorot_uniform_initializer())
            self.b_out = tw.get_variable("out/bias", [vocab_size],
                                         initializer=tw.zeros_initializer())

    def encode(self, images, training: bool):
        """uint8 or float [N, S, S, 3] pixels (0..255) -> image vectors [N, feature_size]."""
        c = self.config.channels
        with tw.variable_scope("encoder", reuse=tw.AUTO_REUSE):
            x = tw.cast(images, tw.float32) * (2.0 / 255.0) - 1.0
            for i, width in enumerate((c, 2 * c, 2 * c, 4 * c)):
                x = _conv_bn_relu(x, width, training, f"conv{i + 1}")
            flat = tw.reshape(x, [-1, x.shape[1:].num_elements()])
            return tw.layers.dense(flat, self.config.feature_size, activation=tw.nn.relu,
                                   name="image_vector", reuse=tw.AUTO_REUSE)

    def initial_state(self, v):
        with tw.variable_scope("decoder/init", reuse=tw.AUTO_REUSE):
            c = tw.layers.dense(v, self.config.num_units, name="c", reuse=tw.AUTO_REUSE)
            h = tw.layers.dense(v, self.config.num_units, activation=tw.tanh, name="h",
                                reuse=tw.AUTO_REUSE)
        return tw.nn.rnn_cell.LSTMStateTuple(c, h)

    def _logits(self, outputs):
        return tw.nn.bias_add(tw.matmul(outputs, self.w_out), self.b_out)

    def loss(self, images, inputs, targets, lengths):
        """Mean cross-entropy of the next word: ``inputs`` [N, T] (<s> w1 ...), ``targets``
        [N, T] (w1 ... </s>), ``lengths`` [N] (real words, </s> included)."""
        v = self.encode(images, training=True)
        emb = tw.nn.embedding_lookup(self.embedding, inputs)
        steps = tw.shape(inputs)[1]
        v_seq = tw.tile(tw.expand_dims(v, 1), tw.stack([1, steps, 1]))
        state0 = self.initial_state(v)
        with tw.variable_scope("decoder"):
            outputs, _ = tw.nn.dynamic_rnn(self.cell, tw.concat([emb, v_seq], 2),
                                           sequence_length=lengths, initial_state=state0,
                                           scope="rnn")
        logits = self._logits(tw.reshape(outputs, [-1, self.config.num_units]))
        flat_targets = tw.reshape(targets, [-1])
        xent = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=flat_targets,
                                                               logits=logits)
        mask = tw.reshape(tw.sequence_mask(lengths, steps, dtype=tw.float32), [-1])
        return tw.reduce_sum(xent * mask) / tw.maximum(tw.reduce_sum(mask), 1.0)

    def decode(self, images, beam_width: int):
        """Beam search; returns ids [N, T] of the best hypothesis (</s> and padding after)."""
        v = self.encode(images, training=False)

        def step(tokens, state):
            lstm_state, image = state
            x = tw.concat([tw.nn.embedding_lookup(self.embedding, tokens), image], 1)
            # the scope of dynamic_rnn in loss(), for a graph without training ops
            with tw.variable_scope("decoder"), tw.variable_scope("rnn"):
                out, new_state = self.cell(x, lstm_state)
            return self._logits(out), (new_state, image)

        start = tw.fill(tw.shape(v)[:1], BOS)
        result = tw.nn.beam_search(step, (self.initial_state(v), v), start, EOS,
                                   beam_width=beam_width, max_length=self.config.max_length)
        return result.ids[:, 0]


def _pad(seqs, pad=PAD):
    t = max(len(s) for s in seqs)
    out = np.full((len(seqs), t), pad, np.int32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def batch_arrays(vocab: Vocabulary, captions):
    """(inputs, targets, lengths) for teacher forcing."""
    ids = [vocab.encode(c) for c in captions]
    return (_pad([[BOS] + s[:-1] for s in ids]), _pad(ids),
            np.array([len(s) for s in ids], np.int32))


# ---------------------------------------------------------------------------- metrics

_NAME_RES = [re.compile(r"(?:^| )" + re.escape(n) + r"(?: |$)") for n in ec.CLASS_NAMES]


def objects_named(caption: str) -> set[int]:
    """The class ids whose names appear in ``caption``."""
    return {i for i, r in enumerate(_NAME_RES) if r.search(caption)}


def score(hypotheses, references, objects) -> dict:
    """BLEU-4 (sacrebleu, corpus level), exact match, and for two-object pictures the share
    whose caption names exactly both objects (``two_object_named``) and also gets their order
    and relation right (that is exact match on those pictures)."""
    import sacrebleu
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    exact = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
    two = [i for i, o in enumerate(objects) if len(o) == 2]
    named = float(np.mean([objects_named(hypotheses[i]) == set(objects[i]) for i in two])) \
        if two else float("nan")
    two_exact = float(np.mean([hypotheses[i] == references[i] for i in two])) \
        if two else float("nan")
    return {"bleu4": bleu, "exact_match": exact, "two_object_named": named,
            "two_object_exact": two_exact, "pictures": len(references),
            "two_object_pictures": len(two)}


# ---------------------------------------------------------------------------- graph + session


class _Graphs:
    """One graph with the training loss/op and the beam-search decoder sharing variables."""

    def __init__(self, config: CaptionConfig, total_steps: int, with_training: bool = True):
        self.vocab = Vocabulary()
        self.graph = tw.Graph()
        size = config.image_size
        with self.graph.as_default(), self.graph.device(config.device):
            tw.set_random_seed(config.seed)
            self.model = CaptionModel(config, len(self.vocab))
            self.images = tw.placeholder(tw.uint8, [None, size, size, 3], name="images")
            if with_training:
                self.inputs = tw.placeholder(tw.int32, [None, None], name="inputs")
                self.targets = tw.placeholder(tw.int32, [None, None], name="targets")
                self.lengths = tw.placeholder(tw.int32, [None], name="lengths")
                self.loss = self.model.loss(self.images, self.inputs, self.targets,
                                            self.lengths)
                self.global_step = tw.train.get_or_create_global_step()
                progress = tw.minimum(tw.cast(self.global_step, tw.float32)
                                      / float(max(total_steps, 1)), 1.0)
                lr = config.learning_rate * (1.0 - 0.9 * progress)
                opt = tw.train.AdamOptimizer(lr)
                grads, variables = zip(*opt.compute_gradients(self.loss))
                grads, _ = tw.clip_by_global_norm(list(grads), 5.0)
                with tw.control_dependencies(tw.get_collection(tw.GraphKeys.UPDATE_OPS)):
                    self.train_op = opt.apply_gradients(zip(grads, variables),
                                                        global_step=self.global_step)
            self.decoded = self.model.decode(self.images, config.beam_width)
            self.init = tw.global_variables_initializer()
            self.saver = tw.train.Saver(max_to_keep=2)
        session_config = tw.ConfigProto(allow_soft_placement=True) if config.device else None
        self.session = tw.Session(graph=self.graph, config=session_config)

    def caption(self, images, batch_size: int = 200) -> list[str]:
        out = []
        for i in range(0, len(images), batch_size):
            ids = self.session.run(self.decoded, {self.images: images[i:i + batch_size]})
            out += [self.vocab.decode(row) for row in ids]
        return out


def _missing_model_message(model_dir: str) -> str:
    return (f"no trained captioning model in {model_dir}\n"
            f"Train one with `tensorweave train captioning` (or pass --model-dir).")


class Captioner:
    """A trained model loaded for captioning: ``Captioner(model_dir).caption(images)``."""

    def __init__(self, model_dir: str | None = None):
        model_dir = model_dir or default_model_dir()
        path = os.path.join(model_dir, "config.json")
        ckpt = tw.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None
        if not os.path.isfile(path) or ckpt is None:
            raise ModelNotFoundError(_missing_model_message(model_dir))
        with open(path) as f:
            self.config = dataclasses.replace(CaptionConfig.from_json(f.read()), device=None)
        self._g = _Graphs(self.config, 1, with_training=False)
        self._g.saver.restore(self._g.session, ckpt)

    def caption(self, images) -> list[str]:
        """Captions of uint8 images [N, S, S, 3] (S = the model's image size)."""
        return self._g.caption(np.asarray(images))

    def caption_file(self, path: str) -> str:
        """The caption of one image file of any size (see :func:`load_image`)."""
        return self.caption(load_image(path, self.config.image_size)[None])[0]

    def close(self):
        self._g.session.close()


def load_image(path: str, size: int = 64) -> np.ndarray:
    """Reads an image file of any size and format Pillow knows, composites transparency on
    white, and resizes it to ``size`` x ``size``: uint8 [size, size, 3]. A file that is not an
    image raises :class:`NotAnImageError`."""
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise NotAnImageError(f"{path} is not an image Pillow can read (PNG, JPEG, GIF, "
                              f"BMP, WebP...): {e}") from None
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.LANCZOS))


# ---------------------------------------------------------------------------- training


def make_data(config: CaptionConfig, cache_dir: str | None = None):
    """The training and held-out pictures (generated, or read from ``cache_dir``)."""
    path = os.path.join(cache_dir, f"emoji-{config.image_size}-{config.train_pictures}-"
                        f"{config.test_pictures}-{config.seed}.npz") if cache_dir else None
    if path and os.path.isfile(path):
        z = np.load(path, allow_pickle=False)
        to_objects = lambda a: [tuple(int(c) for c in row if c >= 0) for row in a]
        return {"train": (z["train_images"], list(z["train_captions"]),
                          to_objects(z["train_objects"])),
                "test": (z["test_images"], list(z["test_captions"]),
                         to_objects(z["test_objects"]))}
    workers = min(8, os.cpu_count() or 1)
    data = {"train": ec.generate(config.train_pictures, "train", config.seed,
                                 config.image_size, workers=workers),
            "test": ec.generate(config.test_pictures, "test", config.seed, config.image_size,
                                workers=workers)}
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        obj = lambda objs: np.array([list(o) + [-1] * (3 - len(o)) for o in objs], np.int32)
        np.savez_compressed(path, train_images=data["train"][0], train_captions=np.array(data["train"][1]),
                 train_objects=obj(data["train"][2]), test_images=data["test"][0],
                 test_captions=np.array(data["test"][1]), test_objects=obj(data["test"][2]))
    return data


def _save(g, prefix, step, device):
    save_checkpoint(g.session, g.saver, prefix, step, on_device=bool(device))


def evaluate(captioner, images, captions, objects) -> dict:
    """Scores of ``captioner`` (a :class:`Captioner` or the training graphs) on pictures."""
    hyps = captioner.caption(images)
    result = score(hyps, captions, objects)
    result["examples"] = [{"reference": r, "caption": h}
                          for h, r in list(zip(hyps, captions))[:8]]
    return result


def train(config: CaptionConfig | None = None, model_dir: str | None = None, data=None,
          progress: bool = True, log=print, max_steps: int | None = None,
          eval_every: int | None = None, time_limit: float | None = None) -> dict:
    """Trains the captioner on generated pictures and scores it on the held-out combinations.

    Returns the final scores (BLEU-4, exact match, two-object naming rate) plus ``seconds``,
    ``steps``, ``ms_per_step``. Checkpoints, ``config.json`` and ``curve.jsonl`` go to
    ``model_dir`` (default :func:`default_model_dir`); training resumes from its checkpoint.
    ``time_limit`` (seconds of training) stops early, then evaluates and saves.
    """
    from tqdm import tqdm

    config = config or CaptionConfig()
    model_dir = model_dir or default_model_dir()
    os.makedirs(model_dir, exist_ok=True)
    data = data or make_data(config)
    x_train, c_train, _ = data["train"]
    x_test, c_test, o_test = data["test"]
    steps_per_epoch = max(1, len(x_train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    if max_steps is not None:
        total = min(total, max_steps)
    eval_every = eval_every or steps_per_epoch
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        f.write(dataclasses.replace(config, device=None).to_json())
    g = _Graphs(config, total)
    vocab = g.vocab
    sess = g.session
    sess.run(g.init)
    latest = tw.train.latest_checkpoint(model_dir)
    if latest:
        g.saver.restore(sess, latest)
    step = first = int(sess.run(g.global_step))
    bar = tqdm(total=total, initial=step, desc="captioning", unit="step", disable=not progress,
               mininterval=1.0)
    start = time.perf_counter()
    last, result = float("nan"), None
    try:
        while step < total:
            epoch, s = divmod(step, steps_per_epoch)
            order = np.random.default_rng([config.seed, 2000 + epoch]).permutation(len(x_train))
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            inputs, targets, lengths = batch_arrays(vocab, [c_train[i] for i in idx])
            last, _ = sess.run([g.loss, g.train_op],
                               {g.images: x_train[idx], g.inputs: inputs, g.targets: targets,
                                g.lengths: lengths})
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{last:.3f}")
            out_of_time = time_limit is not None and time.perf_counter() - start > time_limit
            if step % eval_every == 0 or step == total or out_of_time:
                result = evaluate(g, x_test, c_test, o_test)
                entry = {"step": step, "seconds": round(time.perf_counter() - start, 1),
                         "loss": float(last),
                         **{k: result[k] for k in ("bleu4", "exact_match", "two_object_named")}}
                with open(os.path.join(model_dir, "curve.jsonl"), "a") as f:
                    f.write(json.dumps(entry) + "\n")
                if log:
                    bar.write(f"step {step}: loss {last:.3f}, BLEU-4 {result['bleu4']:.1f}, "
                              f"exact {result['exact_match']:.1%}, two objects named "
                              f"{result['two_object_named']:.1%}")
                _save(g, os.path.join(model_dir, "model.ckpt"), step, config.device)
            if out_of_time:
                break
        bar.close()
        seconds = time.perf_counter() - start
        if result is None:
            result = evaluate(g, x_test, c_test, o_test)
    finally:
        sess.close()
    result.update(seconds=seconds, steps=step, loss=float(last),
                  ms_per_step=1000.0 * seconds / max(step - first, 1))
    return result


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--model-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    cfg = CaptionConfig()
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    r = train(cfg, args.model_dir, data=make_data(cfg, args.cache_dir))
    print(json.dumps({k: v for k, v in r.items() if k != "examples"}))
    return r


if __name__ == "__main__":
    main()

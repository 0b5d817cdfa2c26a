"""``model_fn``s of the applications for the distributed driver (``training.py``): the image
classifier's ResNet and the translation seq2seq. Both are picklable dataclasses: Ray workers
rebuild the same replica graph from them.

* ``ImageClassifierModel``: the training tower (batch statistics, dropout) gives the loss; its
  batch-norm moving-average updates are in ``UPDATE_OPS`` and run with each worker's training
  step (``build_replica`` groups them with the train op), on the parameter servers where the
  moving averages live. Held-out loss and accuracy come from the inference tower (moving
  averages, no dropout), which shares the variables.
* ``TranslateModel``: one length bucket (default the largest, ``(30, 32)``: longer pairs are
  left out of training). The driver calls ``prepare()`` first, which writes ``config.json`` and
  builds the sentencepiece vocabularies into ``model_dir``; workers (same machine) load them
  from there. ``accuracy`` is held-out token accuracy (teacher forced). The driver's final
  checkpoint goes into ``model_dir`` (``checkpoint_dir``), so ``Translator(model_dir)`` (and
  ``tensorweave translate --model-dir``) loads the trained parameters; ``test_bleu`` scores
  greedy decoding of the first ``eval_pairs`` test pairs with sacrebleu.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ImageClassifierModel", "TranslateModel", "test_bleu"]

_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


# --- image classifier --------------------------------------------------------------------------
@dataclass
class ImageClassifierModel:
    """``model_fn`` for ``models/image_classifier.py``'s ResNet. Settings left as None
    (residual blocks, deskewing, dropout, augmentation) come from
    ``image_classifier.CONFIGS[dataset]``. ``train_examples`` /
    ``eval_examples`` (0: all) take the first so many images (for quick runs)."""

    dataset: str = "fashion"
    channels: int = 32
    blocks: int | None = None
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float | None = None
    shift: int | None = None
    flip: bool | None = None
    rotate: float | None = None
    scale: float | None = None
    elastic: float | None = None
    deskew: bool | None = None
    train_examples: int = 0
    eval_examples: int = 0
    seed: int = 0

    def _setting(self, name):
        from tensorweave.models.image_classifier import CONFIGS
        value = getattr(self, name, None)
        return getattr(CONFIGS[self.dataset], name) if value is None else value

    def data(self):
        from tensorweave.models.image_classifier import deskew, load

        def loaded():
            x_train, y_train, x_test, y_test = load(self.dataset)
            if self._setting("deskew"):
                x_train, x_test = deskew(x_train), deskew(x_test)
            return x_train, y_train, x_test, y_test
        x_train, y_train, x_test, y_test = _cached(
            ("images", self.dataset, bool(self._setting("deskew"))), loaded)
        if self.train_examples:
            x_train, y_train = x_train[:self.train_examples], y_train[:self.train_examples]
        if self.eval_examples:
            x_test, y_test = x_test[:self.eval_examples], y_test[:self.eval_examples]
        return x_train, y_train, x_test, y_test

    def steps_for_epochs(self, epochs, examples_per_step=1):
        """Global steps that show every worker's replicas ``epochs`` passes over the data."""
        n = len(self.data()[0])
        return max(1, int(epochs * n) // (self.batch_size * examples_per_step))

    def __call__(self):
        import tensorweave as tw
        from tensorweave.distributed.training import ReplicaModel
        from tensorweave.models.image_classifier import augment, build_towers
        x_train, y_train, x_test, y_test = self.data()
        images, labels, _, loss, eval_logits = build_towers(
            self.channels, self._setting("dropout"), self.weight_decay, self.seed,
            self._setting("blocks"))
        eval_loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=eval_logits), name="eval_loss")
        accuracy = tw.reduce_mean(tw.cast(tw.equal(tw.argmax(eval_logits, 1), labels),
                                          tw.float32), name="accuracy")
        lr, mom, bs, seed = self.learning_rate, self.momentum, self.batch_size, self.seed
        aug = (self._setting("shift"), self._setting("flip"), self._setting("rotate"),
               self._setting("scale"), self._setting("elastic"),
               self._setting("elastic_sigma"))

        def make_optimizer():
            return tw.train.MomentumOptimizer(lr, mom)

        def train_batches(worker, num_workers):
            rng = np.random.default_rng([seed, worker, 11])
            n = len(x_train)
            while True:
                order = rng.permutation(n)
                for s in range(max(1, n // bs)):
                    idx = order[s * bs:(s + 1) * bs]
                    yield augment(x_train[idx], rng, *aug), y_train[idx]

        def eval_batches():
            for i in range(0, len(x_test), 500):
                yield x_test[i:i + 500], y_test[i:i + 500]

        return ReplicaModel(loss, accuracy, (images, labels), make_optimizer, train_batches,
                            eval_batches, bs, eval_loss=eval_loss)


# --- translation -------------------------------------------------------------------------------
def _clipped_adam(learning_rate, clip_norm):
    import tensorweave as tw
    from tensorweave.models.translate import _clip_by_global_norm

    class ClippedAdam(tw.train.AdamOptimizer):
        """Adam whose gradients are clipped by their global norm (also under
        SyncReplicasOptimizer, which calls ``compute_gradients`` of the optimizer it wraps)."""

        def compute_gradients(self, loss, var_list=None, **kwargs):
            gv = [(g, v) for g, v in super().compute_gradients(loss, var_list, **kwargs)
                  if g is not None]
            grads = _clip_by_global_norm([g for g, _ in gv], clip_norm)
            return list(zip(grads, [v for _, v in gv]))

    return ClippedAdam(learning_rate)


@dataclass
class TranslateModel:
    """``model_fn`` for ``models/translate.py``'s attention seq2seq on one length bucket.
    Call ``prepare()`` in the driver before training (vocabularies, ``config.json``)."""

    model_dir: str
    source: str = "de"
    target: str = "en"
    vocab_size: int = 4000
    hidden: int = 256
    attention: bool = True
    batch_size: int = 32
    learning_rate: float = 0.002
    clip_norm: float = 5.0
    keep_prob: float = 1.0
    bucket: tuple = (30, 32)
    eval_pairs: int = 200         # held-out test pairs (token accuracy, and BLEU at the end)
    train_pairs: int = 0          # 0: every training pair that fits the bucket
    seed: int = 0

    def config(self):
        from tensorweave.models.translate import TranslateConfig
        return TranslateConfig(source=self.source, target=self.target,
                               vocab_size=self.vocab_size, embed=self.hidden,
                               hidden=self.hidden, attention=self.attention,
                               keep_prob=self.keep_prob, batch_size=self.batch_size,
                               learning_rate=self.learning_rate, clip_norm=self.clip_norm,
                               buckets=(tuple(self.bucket),), eval_pairs=self.eval_pairs,
                               seed=self.seed)

    @staticmethod
    def pairs():
        from tensorweave.data import load_de_en_pairs
        return _cached("de-en", load_de_en_pairs)

    def prepare(self):
        """Driver side, before workers start: ``config.json`` and the sentencepiece models in
        ``model_dir`` (reused when present)."""
        from tensorweave.models.translate import prepare_vocabs
        os.makedirs(self.model_dir, exist_ok=True)
        config = self.config()
        with open(os.path.join(self.model_dir, "config.json"), "w") as f:
            f.write(config.to_json())
        prepare_vocabs(self.pairs()["train"], config, self.model_dir)

    def _vocabs(self):
        from tensorweave.models.text import SubwordVocab
        paths = [os.path.join(self.model_dir, f"{lang}.model")
                 for lang in (self.source, self.target)]
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p} is missing: call TranslateModel.prepare() in "
                                        "the driver before training")
        return SubwordVocab(paths[0]), SubwordVocab(paths[1])

    def _encoded(self, vocabs):
        """(train ids [(src, tgt)] that fit the bucket, test ids [(src, tgt)])."""
        from tensorweave.models.translate import _side

        def make():
            src_v, tgt_v = vocabs
            data = self.pairs()
            s_max, t_max = self.bucket
            train = self.train_pairs and data["train"][:self.train_pairs] or data["train"]
            src = src_v.encode_batch(_side(train, self.source))
            tgt = tgt_v.encode_batch(_side(train, self.target))
            fit = [(s, t) for s, t in zip(src, tgt) if len(s) <= s_max and len(t) + 1 <= t_max]
            test = data["test"][:self.eval_pairs]
            test_ids = list(zip(src_v.encode_batch(_side(test, self.source)),
                                tgt_v.encode_batch(_side(test, self.target))))
            return fit, test_ids

        key = ("de-en-ids", os.path.abspath(self.model_dir), self.source, self.vocab_size,
               tuple(self.bucket), self.train_pairs, self.eval_pairs)
        return _cached(key, make)

    def _batch(self, examples, keep):
        from tensorweave.models.text import pad_batch
        s_max, t_max = self.bucket
        src, src_len = pad_batch([s for s, _ in examples], s_max)
        tin, _ = pad_batch([t for _, t in examples], t_max, bos=True)
        tout, tlen = pad_batch([t for _, t in examples], t_max, eos=True)
        return src, src_len, tin, tout, tlen, np.float32(keep)

    def __call__(self):
        import tensorweave as tw
        from tensorweave.distributed.training import ReplicaModel
        from tensorweave.models.translate import Seq2Seq
        vocabs = self._vocabs()
        train, test = self._encoded(vocabs)
        if not train:
            raise ValueError(f"no training pair fits the bucket {self.bucket}")
        tw.set_random_seed(self.seed)
        model = Seq2Seq(self.config(), len(vocabs[0]), len(vocabs[1]))
        keep = tw.placeholder_with_default(tw.constant(1.0), [], name="keep_prob")
        feeds, loss, accuracy = model.training_graph(*self.bucket, keep)
        inputs = (feeds["source"], feeds["source_length"], feeds["target_input"],
                  feeds["target_output"], feeds["target_length"], keep)
        lr, clip, bs, seed, kp = (self.learning_rate, self.clip_norm, self.batch_size,
                                  self.seed, self.keep_prob)

        def make_optimizer():
            return _clipped_adam(lr, clip)

        def train_batches(worker, num_workers):
            rng = np.random.default_rng([seed, worker, 13])
            while True:
                order = rng.permutation(len(train))
                for s in range(max(1, len(train) // bs)):
                    yield self._batch([train[i] for i in order[s * bs:(s + 1) * bs]], kp)

        def eval_batches():
            for i in range(0, len(test), 100):
                yield self._batch(test[i:i + 100], 1.0)

        return ReplicaModel(loss, accuracy, inputs, make_optimizer, train_batches,
                            eval_batches, bs)


def test_bleu(model: TranslateModel) -> float:
    """sacrebleu BLEU of greedy decoding of the first ``eval_pairs`` test pairs with the
    newest checkpoint in ``model.model_dir`` (the parameters the driver read off the PS)."""
    from tensorweave.models.text import corpus_bleu
    from tensorweave.models.translate import Translator, _side, limit_blas_threads
    limit_blas_threads()
    test = model.pairs()["test"][:model.eval_pairs]
    translator = Translator(model.model_dir)
    try:
        hyps = translator.translate(_side(test, model.source), beam_size=1)
    finally:
        translator.session.close()
    return corpus_bleu(hyps, _side(test, model.target))


test_bleu.__test__ = False  # not a pytest test

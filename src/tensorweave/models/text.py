"""Text handling for the sequence applications: subword vocabularies, padding, length
buckets and BLEU.

Subword units come from ``sentencepiece`` (BPE), trained on the training split only and saved
next to the model (``<model_dir>/<lang>.model``). Ids are fixed across vocabularies::

    PAD = 0, UNK = 1, BOS = 2, EOS = 3

so padded batches are zero-filled and a decoder starts from ``BOS`` and stops at ``EOS``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "PAD", "UNK", "BOS", "EOS",
    "SubwordVocab", "WordVocab", "normalize_message", "pad_batch", "bucket_batches",
    "corpus_bleu",
]

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class SubwordVocab:
    """A sentencepiece model: ``encode(text) -> ids`` and ``decode(ids) -> text``.

    Example::

        vocab = SubwordVocab.train(sentences, "/tmp/m/en", vocab_size=4000)
        vocab.decode(vocab.encode("She makes her own clothes."))  # the same string
    """

    def __init__(self, model_file: str):
        import sentencepiece as spm

        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"sentencepiece model not found: {model_file}")
        self.model_file = model_file
        self._sp = spm.SentencePieceProcessor(model_file=model_file)

    @classmethod
    def train(cls, sentences: Iterable[str], prefix: str, vocab_size: int = 4000,
              model_type: str = "bpe") -> SubwordVocab:
        """Trains a model on ``sentences`` and writes ``<prefix>.model`` / ``<prefix>.vocab``."""
        import sentencepiece as spm

        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        sentences = [s for s in sentences if s.strip()]
        # With few sentences the requested size may be unreachable; sentencepiece then fails,
        # so ask for no more pieces than a generous bound on what the text can give.
        chars = len(set("".join(sentences)))
        words = len({w for s in sentences for w in s.split()})
        vocab_size = max(min(vocab_size, chars + 2 * words + 4), chars + 8)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_prefix=prefix, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, pad_id=PAD, unk_id=UNK,
            bos_id=BOS, eos_id=EOS, hard_vocab_limit=False, num_threads=1,
            minloglevel=2)
        return cls(prefix + ".model")

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    @property
    def size(self) -> int:
        return len(self)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if EOS in ids:
            ids = ids[:ids.index(EOS)]
        return self._sp.decode([i for i in ids if i > EOS])

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)


_WORD_RE = re.compile(r"[a-z0-9']+|[?!.,]")


def normalize_message(text: str) -> list[str]:
    """Lower-cased word tokens of a chat message (AIML patterns are upper case)."""
    return _WORD_RE.findall(text.lower())


class WordVocab:
    """A word vocabulary (most frequent words of a training set) for short chat messages."""

    def __init__(self, words: Sequence[str]):
        self.words = ["<pad>", "<unk>", "<s>", "</s>", *words]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int = 8000,
              min_count: int = 1) -> WordVocab:
        from collections import Counter

        counts = Counter(w for toks in token_lists for w in toks)
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                        key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size - 4])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(w, UNK) for w in tokens]

    def save(self, path: str):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.words[4:]) + "\n")

    @classmethod
    def load(cls, path: str) -> WordVocab:
        with open(path, encoding="utf-8") as f:
            return cls([w for w in f.read().split("\n") if w])


def pad_batch(seqs: Sequence[Sequence[int]], length: int | None = None, pad: int = PAD,
              bos: bool = False, eos: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pads id lists into an ``int32`` matrix ``[batch, length]``; returns it and the lengths.

    ``bos``/``eos`` prepend/append those ids; a sequence longer than ``length`` is cut (its
    ``EOS``, if asked for, is kept as the last id).
    """
    rows = [([BOS] if bos else []) + list(s) + ([EOS] if eos else []) for s in seqs]
    width = max((len(r) for r in rows), default=0) if length is None else length
    out = np.full((len(rows), width), pad, dtype=np.int32)
    lengths = np.zeros(len(rows), dtype=np.int32)
    for i, r in enumerate(rows):
        if len(r) > width:
            r = r[:width - 1] + [r[-1]] if eos else r[:width]
        out[i, :len(r)] = r
        lengths[i] = len(r)
    return out, lengths


def bucket_batches(lengths: Sequence[tuple[int, int]], buckets: Sequence[tuple[int, int]],
                   batch_size: int, rng: np.random.Generator | None = None,
                   drop_long: bool = True) -> list[tuple[int, np.ndarray]]:
    """Groups example indices into batches of one length bucket each.

    ``lengths[i] = (source_len, target_len)``; an example goes to the first bucket
    ``(S, T)`` with ``source_len <= S`` and ``target_len <= T`` (longer ones are dropped, or
    put in the last bucket if ``drop_long`` is false). Returns ``[(bucket_id, indices)]``,
    shuffled when ``rng`` is given (batches and their order both).
    """
    members: list[list[int]] = [[] for _ in buckets]
    for i, (s, t) in enumerate(lengths):
        for b, (bs, bt) in enumerate(buckets):
            if s <= bs and t <= bt:
                members[b].append(i)
                break
        else:
            if not drop_long:
                members[-1].append(i)
    batches = []
    for b, idx in enumerate(members):
        idx = np.asarray(idx, dtype=np.int64)
        if rng is not None:
            idx = rng.permutation(idx)
        for start in range(0, len(idx), batch_size):
            batches.append((b, idx[start:start + batch_size]))
    if rng is not None:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with sacrebleu's defaults (13a tokenization) on detokenized text."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"corpus_bleu: {len(hypotheses)} hypotheses but "
                         f"{len(references)} references")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)

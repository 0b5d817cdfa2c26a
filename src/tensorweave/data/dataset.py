"""``tw.data``: input pipelines with TF1's ``tf.data`` API, run inside the session.

A :class:`Dataset` is a description (sources and transformations); nothing runs until an
iterator's op does. ``get_next()`` is one stateful ``IteratorGetNext`` op whose kernel pulls
the next element from a Python iterator kept in the session's ``ctx.resources``, so every
Session has its own position. Elements travel as flat tuples of NumPy arrays; the nesting
(tuples, dicts, namedtuples) is restored by ``get_next``. Functions given to ``map`` and
``filter`` are traced once on placeholders into a private Graph and run per element through
a plan compiled by a private Session, so tw ops work inside them.

Example::

    ds = tw.data.Dataset.from_tensor_slices((images, labels)).shuffle(1000, seed=1)
    ds = ds.map(lambda x, y: (x / 255.0, y)).batch(32).repeat().prefetch(2)
    x, y = ds.make_one_shot_iterator().get_next()
    while True:
        try:
            sess.run(train_op)
        except tw.errors.OutOfRangeError:
            break
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import weakref

import numpy as np

from tensorweave.framework import dtypes as dtypes_lib
from tensorweave.framework import errors
from tensorweave.framework.constant_op import constant_value
from tensorweave.framework.ops import (
    Graph,
    Tensor,
    convert_to_tensor,
    get_default_graph,
    numpy_value,
)
from tensorweave.framework.tensor_shape import TensorShape, as_shape
from tensorweave.ops import data_flow_ops

_POLL_S = 0.1  # every blocking wait wakes this often to check whether it should stop
AUTOTUNE = -1
_AUTOTUNE_BUFFER = 4


# --- nested structures: tuples, namedtuples and dicts nest; everything else is a leaf ------------
def _is_nested(x):
    return isinstance(x, (tuple, dict))


def _flatten(x):
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _flatten(x[k])]
    if isinstance(x, tuple):
        return [leaf for v in x for leaf in _flatten(v)]
    return [x]


def _pack(template, flat):
    """Rebuilds ``template``'s nesting around the leaves in ``flat``."""
    it = iter(flat)

    def build(t):
        if isinstance(t, dict):
            vals = {k: build(t[k]) for k in sorted(t)}
            return type(t)((k, vals[k]) for k in t)
        if isinstance(t, tuple):
            vals = [build(v) for v in t]
            return type(t)(*vals) if hasattr(t, "_fields") else type(t)(vals)
        return next(it)

    return build(template)


def _map_structure(fn, x):
    return _pack(x, [fn(leaf) for leaf in _flatten(x)])


def _same_structure(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and sorted(a) == sorted(b) and all(
            _same_structure(a[k], b[k]) for k in a)
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(
            _same_structure(x, y) for x, y in zip(a, b))
    return True


# --- per-iterator runtime state ---------------------------------------------------------------
class _IteratorEnv:
    """What one iterator instance's pipeline shares: captured values, a stop flag checked by
    every background thread, per-dataset state (shuffle epochs, caches), and thread pools."""

    def __init__(self, captured):
        self.captured = captured  # Tensor -> ndarray (values fed to the initializer)
        self.stopped = threading.Event()
        self.state: dict = {}
        self._pools: list = []
        self._lock = threading.Lock()

    def pool(self, n):
        from concurrent.futures import ThreadPoolExecutor  # lazily: it imports logging

        with self._lock:
            p = ThreadPoolExecutor(n, thread_name_prefix="tw-data-map")
            self._pools.append(p)
            return p

    def release_pool(self, pool):
        with self._lock:
            if pool in self._pools:
                self._pools.remove(pool)
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self):
        self.stopped.set()
        with self._lock:
            pools, self._pools = self._pools, []
        for p in pools:
            p.shutdown(wait=False, cancel_futures=True)


class _IteratorResource:
    """The session-side state of one iterator: the pipeline's Python iterator."""

    def __init__(self, dataset, captured):
        self.env = _IteratorEnv(captured)
        self.types = dataset._types
        self._it = dataset._iterate(self.env)
        self._lock = threading.Lock()
        self._done = False

    def get_next(self):
        with self._lock:
            if self._done:
                raise StopIteration
            try:
                return next(self._it)
            except StopIteration:
                self._done = True
                raise

    def close(self):
        self.env.close()
        close = getattr(self._it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001  (best effort while tearing down)
                pass


def _element_spec(values):
    """(structure, types, shapes) of a nested value whose leaves are arrays or Tensors."""
    flat = _flatten(values)
    types, shapes = [], []
    for v in flat:
        if isinstance(v, Tensor):
            types.append(v.dtype)
            shapes.append(v.shape)
        else:
            types.append(dtypes_lib.as_dtype(v.dtype))
            shapes.append(TensorShape(list(v.shape)))
    return values, tuple(types), tuple(shapes)


def _leaf_value(leaf, env):
    return env.captured[leaf] if isinstance(leaf, Tensor) else leaf


def _to_leaves(tensors, what):
    """NumPy leaves (Python values converted with TF's default dtypes) or tw Tensors."""
    def conv(x):
        if isinstance(x, Tensor):
            return x
        if hasattr(x, "_as_graph_element") or hasattr(x, "_snapshot"):
            return convert_to_tensor(x)
        if isinstance(x, Dataset):
            raise TypeError(f"{what}: got a Dataset where tensors were expected")
        arr = numpy_value(x)
        return arr.astype(object) if arr.dtype.kind in "US" else arr

    return _map_structure(conv, tensors)


# --- Dataset ----------------------------------------------------------------------------------
class Dataset:
    """A sequence of elements, each a nest (tuple/dict) of arrays (TF1's ``tf.data.Dataset``)."""

    _structure = None  # nest template of the element
    _types: tuple = ()
    _shapes: tuple = ()
    _inputs: tuple = ()

    # --- element spec ---
    @property
    def output_types(self):
        return _pack(self._structure, self._types)

    @property
    def output_shapes(self):
        return _pack(self._structure, self._shapes)

    @property
    def output_classes(self):
        return _pack(self._structure, [Tensor] * len(self._types))

    def _set_spec(self, structure, types, shapes):
        self._structure, self._types, self._shapes = structure, tuple(types), tuple(shapes)

    def __repr__(self):
        return (f"<{type(self).__name__} shapes: {self.output_shapes}, "
                f"types: {_map_structure(lambda d: d.name, self.output_types)}>")

    def __iter__(self):
        raise TypeError("A tw.data.Dataset is iterated through the graph: use "
                        "dataset.make_one_shot_iterator().get_next() and Session.run.")

    def _iterate(self, env):
        """A Python iterator over this dataset's elements (flat tuples of ndarrays)."""
        raise NotImplementedError

    # Vectorized path: ``batch`` asks its input for *blocks* (tuples of arrays holding several
    # consecutive elements along dimension 0) so a batch costs a few NumPy calls instead of
    # per-element Python work. Sources that can be indexed offer it, and so do shuffle (over
    # an indexable source it fully covers) and repeat; everything else returns None.
    def _indexable(self, env):
        """An _IndexedSource over this pass's elements, or None."""
        return None

    def _blocks(self, env, size):
        """An iterator of (block, owned) pairs, or None where this dataset has no block path.
        ``owned``: the arrays are fresh (not views of user data) and may be handed out."""
        src = self._indexable(env)
        if src is None:
            return None
        return ((src.rows(slice(i, i + size)), src.owned) for i in range(0, len(src), size))

    def _captures(self):
        """Tensors the pipeline reads (fed when an initializable iterator starts), in order."""
        seen, out = set(), []
        stack = [self]
        while stack:
            ds = stack.pop()
            for t in getattr(ds, "_captured", ()):
                if t not in seen:
                    seen.add(t)
                    out.append(t)
            stack.extend(reversed(ds._inputs))
        return out

    def _make_resource(self, captured_values, ctx):
        caps = self._captures()
        return _IteratorResource(self, dict(zip(caps, captured_values)))

    # --- sources ---
    @staticmethod
    def from_tensor_slices(tensors):
        """Elements are the slices of ``tensors`` (a nest of arrays) along dimension 0."""
        return _TensorSlices(tensors)

    @staticmethod
    def from_tensors(tensors):
        """One element: ``tensors`` itself."""
        return _Tensors(tensors)

    @staticmethod
    def from_generator(generator, output_types, output_shapes=None, args=None):
        """Elements from ``generator()`` (a callable returning an iterable), converted to
        ``output_types`` and checked against ``output_shapes``."""
        return _FromGenerator(generator, output_types, output_shapes, args)

    @staticmethod
    def range(*args, output_type=dtypes_lib.int64):
        """``Dataset.range(5)`` -> 0..4; ``range(start, stop, step)`` like Python's."""
        return _Range(args, output_type)

    @staticmethod
    def zip(datasets):
        """Elements are tuples (or dicts) of the elements of ``datasets``; stops at the shortest."""
        return _Zip(datasets)

    # --- transformations ---
    def map(self, map_func, num_parallel_calls=None):
        """Applies ``map_func`` (traced once with tw ops on placeholders) to each element."""
        return _Map(self, map_func, num_parallel_calls)

    def filter(self, predicate):
        """Keeps the elements for which ``predicate`` (a tw scalar bool) is true."""
        return _Filter(self, predicate)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """Randomly shuffles with a buffer of ``buffer_size`` elements (as TF does)."""
        return _Shuffle(self, buffer_size, seed, reshuffle_each_iteration)

    def batch(self, batch_size, drop_remainder=False):
        """Stacks ``batch_size`` consecutive elements; the last batch may be smaller."""
        return _Batch(self, batch_size, drop_remainder)

    def padded_batch(self, batch_size, padded_shapes, padding_values=None,
                     drop_remainder=False):
        """Like ``batch``, padding each component to ``padded_shapes`` (None/-1: the batch's
        longest) with ``padding_values`` (default 0 or b'')."""
        return _Batch(self, batch_size, drop_remainder, padded_shapes, padding_values)

    def repeat(self, count=None):
        """Repeats the dataset ``count`` times (None or -1: forever)."""
        return _Repeat(self, count)

    def take(self, count):
        """The first ``count`` elements (-1: all)."""
        return _Take(self, count)

    def skip(self, count):
        """All but the first ``count`` elements (-1: none)."""
        return _Skip(self, count)

    def shard(self, num_shards, index):
        """Every ``num_shards``-th element, starting at ``index``."""
        return _Shard(self, num_shards, index)

    def concatenate(self, dataset):
        """This dataset's elements followed by ``dataset``'s."""
        return _Concatenate(self, dataset)

    def prefetch(self, buffer_size):
        """Produces up to ``buffer_size`` elements ahead on a background thread."""
        return _Prefetch(self, buffer_size)

    def cache(self, filename=""):
        """Keeps the elements in memory after the first pass (per iterator)."""
        return _Cache(self, filename)

    def apply(self, transformation_func):
        """``transformation_func(self)``, for chaining."""
        ds = transformation_func(self)
        if not isinstance(ds, Dataset):
            raise TypeError(f"apply: transformation_func must return a Dataset, got "
                            f"{type(ds).__name__}")
        return ds

    # --- iterators ---
    def make_one_shot_iterator(self):
        """An iterator that needs no initialization (it cannot read placeholders)."""
        return Iterator._one_shot(self)

    def make_initializable_iterator(self, shared_name=None):
        """An iterator started (and restarted) by running its ``initializer`` op."""
        it = Iterator.from_structure(self.output_types, self.output_shapes,
                                     shared_name=shared_name)
        it._initializer = it.make_initializer(self)
        return it


def _slice_len(v):
    a = np.asarray(v)
    if a.ndim == 0:
        raise ValueError("from_tensor_slices: every component needs at least one dimension "
                         "to slice along")
    return a.shape[0]


class _TensorSlices(Dataset):
    def __init__(self, tensors):
        leaves = _to_leaves(tensors, "from_tensor_slices")
        flat = _flatten(leaves)
        if not flat:
            raise ValueError("from_tensor_slices: got an empty structure")
        self._leaves = flat
        self._captured = [v for v in flat if isinstance(v, Tensor)]
        structure, types, shapes = _element_spec(leaves)
        known = set()
        for i, s in enumerate(shapes):
            if s.ndims == 0:
                raise ValueError(f"from_tensor_slices: component {i} is a scalar (shape {s}); "
                                 "each component needs a dimension 0 to slice along")
            if s.ndims is not None and s[0].value is not None:
                known.add(s[0].value)
        if len(known) > 1:
            raise ValueError(f"from_tensor_slices: all components must have the same size in "
                             f"dimension 0, got sizes {sorted(known)}")
        self._set_spec(structure, types,
                       [TensorShape(None) if s.ndims is None else s[1:] for s in shapes])

    def _indexable(self, env):
        vals = [np.asarray(_leaf_value(v, env)) for v in self._leaves]
        ns = {_slice_len(v) for v in vals}
        if len(ns) != 1:
            raise errors.InvalidArgumentError(
                None, None, f"from_tensor_slices: components have different sizes in "
                f"dimension 0: {[v.shape for v in vals]}")
        return _ArraySource(vals, ns.pop())

    def _iterate(self, env):
        src = self._indexable(env)
        return (src.row(i) for i in range(len(src)))


class _ArraySource:
    """Elements are rows of arrays: gathered by index for shuffles and blocks."""

    owned = False  # contiguous blocks are views of the user's arrays

    def __init__(self, vals, n):
        self.vals, self.n = vals, n

    def __len__(self):
        return self.n

    def row(self, i):
        return tuple(v[i] for v in self.vals)

    def rows(self, idx):
        return tuple(v[idx] for v in self.vals)


class _RangeSource:
    owned = True

    def __init__(self, r, npd):
        self.r, self.npd = r, npd

    def __len__(self):
        return len(self.r)

    def row(self, i):
        return (np.array(self.r[i], dtype=self.npd),)

    def rows(self, idx):
        r = self.r
        if isinstance(idx, slice):
            return (np.arange(r.start, r.stop, r.step, dtype=self.npd)[idx],)
        return ((r.start + r.step * np.asarray(idx)).astype(self.npd),)


class _Tensors(Dataset):
    def __init__(self, tensors):
        leaves = _to_leaves(tensors, "from_tensors")
        self._leaves = _flatten(leaves)
        self._captured = [v for v in self._leaves if isinstance(v, Tensor)]
        self._set_spec(*_element_spec(leaves))

    def _iterate(self, env):
        return iter([tuple(np.asarray(_leaf_value(v, env)) for v in self._leaves)])


class _FromGenerator(Dataset):
    def __init__(self, generator, output_types, output_shapes, args):
        if not callable(generator):
            raise TypeError("from_generator: generator must be a callable returning an "
                            f"iterable, got {type(generator).__name__}")
        self._gen, self._args = generator, tuple(args or ())
        types = _map_structure(dtypes_lib.as_dtype, output_types)
        if output_shapes is None:
            shapes = _map_structure(lambda _: TensorShape(None), types)
        else:
            shapes = _pack(types, [as_shape(s) for s in _flat_shapes(types, output_shapes)])
        self._set_spec(types, _flatten(types), _flatten(shapes))

    def _iterate(self, env):
        npds = [d.as_numpy_dtype for d in self._types]
        for item in self._gen(*self._args):
            if _is_nested(self._structure) and not _same_structure(self._structure, item):
                raise errors.InvalidArgumentError(
                    None, None, f"from_generator: the generator yielded {item!r}, which does not "
                    f"match the structure of output_types {self.output_types}")
            flat = _flatten(item) if _is_nested(self._structure) else [item]
            out = []
            for i, (v, npd, shp) in enumerate(zip(flat, npds, self._shapes)):
                try:
                    a = np.asarray(v, dtype=npd)
                except (TypeError, ValueError) as e:
                    raise errors.InvalidArgumentError(
                        None, None, f"from_generator: component {i} value {v!r} cannot be "
                        f"converted to {self._types[i].name}: {e}") from None
                if not shp.is_compatible_with(TensorShape(list(a.shape))):
                    raise errors.InvalidArgumentError(
                        None, None, f"from_generator: component {i} has shape {a.shape}, "
                        f"which is not compatible with the expected shape {shp}")
                out.append(a)
            yield tuple(out)


def _flat_shapes(types, shapes):
    """Shapes (or per-component values) flattened along ``types``' structure: below a leaf of
    ``types`` a list or tuple is one shape, not a nest."""
    if isinstance(types, dict):
        if not isinstance(shapes, dict) or sorted(shapes) != sorted(types):
            raise ValueError(f"expected a dict with keys {sorted(types)} (the element's "
                             f"structure), got {shapes!r}")
        return [s for k in sorted(types) for s in _flat_shapes(types[k], shapes[k])]
    if isinstance(types, tuple):
        if not isinstance(shapes, (tuple, list)) or len(shapes) != len(types):
            raise ValueError(f"expected {len(types)} entries matching the element's structure, "
                             f"got {shapes!r}")
        return [s for t, sh in zip(types, shapes) for s in _flat_shapes(t, sh)]
    return [shapes]


class TextLineDataset(_FromGenerator):
    """The lines of one or more text files (``filenames``: a path or a list), as scalar
    ``tw.string`` elements (bytes, line endings removed), file after file. Gzip-compressed
    files with ``compression_type="GZIP"``. A missing file raises NotFoundError naming it
    when the iterator reaches it.

    Example::

        lines = tw.data.TextLineDataset(["train.en"]).map(
            lambda s: tw.py_func(lambda b: len(b.split()), [s], tw.int64))
    """

    def __init__(self, filenames, compression_type=None, buffer_size=None):
        if isinstance(filenames, Tensor):
            value = constant_value(filenames)
            if value is None:
                raise ValueError("TextLineDataset: filenames must be known when the dataset is "
                                 "built (a path, a list of paths or a constant)")
            filenames = value
        names = [filenames] if isinstance(filenames, (str, bytes)) else list(
            np.asarray(filenames).reshape(-1))
        self._files = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if compression_type not in (None, "", "GZIP", "ZLIB"):
            raise ValueError(f"TextLineDataset: compression_type must be None, '', 'GZIP' or "
                             f"'ZLIB', got {compression_type!r}")
        self._compression = compression_type or None
        super().__init__(self._lines, dtypes_lib.string, TensorShape([]), None)

    def _open(self, path):
        import gzip
        import zlib
        try:
            if self._compression == "GZIP":
                return gzip.open(path, "rb")
            if self._compression == "ZLIB":
                with open(path, "rb") as f:
                    import io
                    return io.BytesIO(zlib.decompress(f.read()))
            return open(path, "rb")  # noqa: SIM115  (closed by _lines)
        except FileNotFoundError:
            raise errors.NotFoundError(None, None, f"TextLineDataset: {path}: No such file or "
                                       "directory") from None

    def _lines(self):
        for path in self._files:
            with self._open(path) as f:
                for line in f:
                    yield line.rstrip(b"\r\n") if line.endswith(b"\n") else line


class _Range(Dataset):
    def __init__(self, args, output_type):
        if not 1 <= len(args) <= 3:
            raise ValueError(f"Dataset.range takes 1 to 3 arguments (start, stop, step), got "
                             f"{len(args)}")
        self._range = range(*[int(a) for a in args])
        dt = dtypes_lib.as_dtype(output_type)
        self._npd = dt.as_numpy_dtype
        self._set_spec(None, [dt], [TensorShape([])])

    def _indexable(self, env):
        return _RangeSource(self._range, self._npd)

    def _blocks(self, env, size):
        r, npd = self._range, self._npd
        return (((np.arange(r[i], r[i] + r.step * min(size, len(r) - i), r.step, dtype=npd),),
                 True) for i in range(0, len(r), size))

    def _iterate(self, env):
        npd = self._npd
        return ((np.array(i, dtype=npd),) for i in self._range)


class _Zip(Dataset):
    def __init__(self, datasets):
        if isinstance(datasets, Dataset) or not _is_nested(datasets):
            raise TypeError("Dataset.zip takes a tuple or dict of Datasets, got "
                            f"{type(datasets).__name__}")
        self._inputs = tuple(_flatten(datasets))
        for d in self._inputs:
            if not isinstance(d, Dataset):
                raise TypeError(f"Dataset.zip: expected Datasets, got {type(d).__name__}")
        self._set_spec(_pack(datasets, [d._structure for d in self._inputs]),
                       [t for d in self._inputs for t in d._types],
                       [s for d in self._inputs for s in d._shapes])

    def _iterate(self, env):
        its = [d._iterate(env) for d in self._inputs]
        while True:
            out = []
            for it in its:
                el = next(it, None)
                if el is None:
                    return
                out.extend(el)
            yield tuple(out)


class _Unary(Dataset):
    def __init__(self, input_dataset):
        if not isinstance(input_dataset, Dataset):
            raise TypeError(f"expected a Dataset, got {type(input_dataset).__name__}")
        self._input = input_dataset
        self._inputs = (input_dataset,)
        self._set_spec(input_dataset._structure, input_dataset._types, input_dataset._shapes)


# --- functions traced into a private graph (map, filter) --------------------------------------
class _TracedFunction:
    """``fn`` traced once on placeholders in a private Graph; run per element by a plan that a
    private Session compiles (one per iterator instance, so random ops get their own state)."""

    def __init__(self, fn, dataset, what):
        from tensorweave.ops import array_ops

        if not callable(fn):
            raise TypeError(f"{what}: expected a callable, got {type(fn).__name__}")
        self.graph = Graph()
        self.graph.seed = getattr(get_default_graph(), "seed", None)  # as TF: inherited
        self.what = what
        with self.graph.as_default():
            self.placeholders = [array_ops.placeholder(dt, shp, name=f"arg{i}")
                                 for i, (dt, shp) in enumerate(zip(dataset._types,
                                                                   dataset._shapes))]
            args = _pack(dataset._structure, self.placeholders)
            # As in TF: a tuple element is passed as positional arguments, anything else as one.
            ret = fn(*args) if type(args) is tuple else fn(args)
            if isinstance(ret, list):
                ret = tuple(ret)
            if ret is None:
                raise ValueError(f"{what}: the function returned None; return tensors")
            ret = _map_structure(lambda v: v if isinstance(v, Tensor) else convert_to_tensor(v),
                                 ret)
        self.structure = ret
        self.outputs = _flatten(ret)
        for t in self.outputs:
            if not isinstance(t, Tensor) or t.graph is not self.graph:
                raise ValueError(f"{what}: the function returned {t!r}, which is not a tensor "
                                 "built inside it (tensors from the outer graph cannot be "
                                 "captured; pass values as Python/NumPy constants)")
        self.types = tuple(t.dtype for t in self.outputs)
        self.shapes = tuple(t.shape for t in self.outputs)
        self._npds = [d.as_numpy_dtype for d in self.types]

    def instantiate(self):
        """A callable mapping a flat element to the flat outputs (ndarrays)."""
        from tensorweave.runtime import plan as plan_lib
        from tensorweave.runtime.session import Session

        sess = Session(graph=self.graph)
        plan = sess._get_plan(tuple(self.outputs), (), tuple(self.placeholders))
        npds, what = self._npds, self.what

        def call(values):
            try:
                out = plan.run(values)
            except errors.OpError:
                raise
            except Exception as e:
                st = plan_lib.exc_step(plan, e)
                where = f" [[node {st.op.describe()}]]" if st is not None else ""
                raise errors.InvalidArgumentError(
                    None, None, f"{what}: {type(e).__name__}: {e}{where}") from e
            return tuple(np.asarray(v, dtype=d) for v, d in zip(out, npds))

        call._session = sess  # keeps the private session (and its RNG state) alive
        return call


class _Map(_Unary):
    def __init__(self, input_dataset, map_func, num_parallel_calls):
        super().__init__(input_dataset)
        self._fn = _TracedFunction(map_func, input_dataset, "Dataset.map")
        if num_parallel_calls is not None and not isinstance(num_parallel_calls, int):
            raise TypeError(f"map: num_parallel_calls must be an int, got "
                            f"{num_parallel_calls!r}")
        n = num_parallel_calls
        self._parallel = _AUTOTUNE_BUFFER if n == AUTOTUNE else (n or 1)
        self._set_spec(self._fn.structure, self._fn.types, self._fn.shapes)

    def _iterate(self, env):
        call = self._fn.instantiate()
        upstream = self._input._iterate(env)
        if self._parallel <= 1:
            return (call(el) for el in upstream)
        return self._parallel_iter(env, call, upstream)

    def _parallel_iter(self, env, call, upstream):
        # Tasks map chunks of consecutive elements: a future per element costs more than a
        # small map function. num_parallel_calls chunks are in flight; order is kept.
        pool = env.pool(self._parallel)
        pending = collections.deque()

        def run_chunk(chunk):
            return [call(el) for el in chunk]

        try:
            chunks = iter(lambda: list(itertools.islice(upstream, _MAP_CHUNK)), [])
            for chunk in chunks:
                pending.append(pool.submit(run_chunk, chunk))
                if len(pending) >= self._parallel:
                    outs = _result(pending.popleft(), env)
                    if outs is _STOPPED:
                        return
                    yield from outs
            while pending:
                outs = _result(pending.popleft(), env)
                if outs is _STOPPED:
                    return
                yield from outs
        finally:
            env.release_pool(pool)


_MAP_CHUNK = 16
_STOPPED = object()


def _result(future, env):
    from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin before 3.11

    while True:
        try:
            return future.result(timeout=_POLL_S)
        except FutureTimeout:
            if env.stopped.is_set():
                return _STOPPED


class _Filter(_Unary):
    def __init__(self, input_dataset, predicate):
        super().__init__(input_dataset)
        self._fn = _TracedFunction(predicate, input_dataset, "Dataset.filter")
        if len(self._fn.outputs) != 1 or self._fn.types[0] != dtypes_lib.bool_ or \
                not self._fn.shapes[0].is_compatible_with(TensorShape([])):
            raise ValueError(f"filter: predicate must return a scalar bool tensor, got "
                             f"{self._fn.outputs}")

    def _iterate(self, env):
        call = self._fn.instantiate()
        return (el for el in self._input._iterate(env) if bool(call(el)[0]))


class _Shuffle(_Unary):
    def __init__(self, input_dataset, buffer_size, seed, reshuffle_each_iteration):
        super().__init__(input_dataset)
        if int(buffer_size) < 1:
            raise ValueError(f"shuffle: buffer_size must be >= 1, got {buffer_size!r}")
        self._buffer_size = int(buffer_size)
        from tensorweave.ops.random_ops import get_seed

        s1, s2 = get_seed(seed)  # TF1's rule: a graph-level seed makes it repeatable too
        self._seed = None if s1 is None and s2 is None else [int(s1 or 0), int(s2 or 0)]
        self._reshuffle = reshuffle_each_iteration

    def _epoch_rng(self, env):
        # Each pass (a repeat epoch) is one call; the pass number varies the seeded stream.
        key = ("shuffle", id(self))
        epoch = env.state.get(key, 0)
        env.state[key] = epoch + 1
        if self._seed is None:
            base = env.state.setdefault(("shuffle_seed", id(self)),
                                        int(np.random.SeedSequence().entropy % (1 << 63)))
        else:
            base = self._seed
        return np.random.default_rng([*np.atleast_1d(base).tolist(),
                                      epoch if self._reshuffle else 0])

    def _permutation(self, env):
        """When the buffer holds the whole (indexable) input, TF's buffered shuffle is a
        uniform random permutation: draw it at once. Returns (source, perm) or None."""
        src = self._input._indexable(env)
        if src is None or self._buffer_size < len(src):
            return None
        return src, self._epoch_rng(env).permutation(len(src))

    def _iterate(self, env):
        sp = self._permutation(env)
        if sp is not None:
            src, perm = sp
            return (src.row(i) for i in perm)
        return self._shuffled(self._input._iterate(env), self._epoch_rng(env))

    def _blocks(self, env, size):
        sp = self._permutation(env)
        if sp is None:
            return None
        src, perm = sp
        return ((src.rows(perm[i:i + size]), True) for i in range(0, len(perm), size))

    def _shuffled(self, upstream, rng):
        buf = []
        for el in upstream:
            if len(buf) < self._buffer_size:
                buf.append(el)
                continue
            i = int(rng.integers(len(buf)))
            yield buf[i]
            buf[i] = el
        while buf:
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()


class _Batch(_Unary):
    def __init__(self, input_dataset, batch_size, drop_remainder, padded_shapes=None,
                 padding_values=None):
        super().__init__(input_dataset)
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch: batch_size must be a positive int, got {batch_size!r}")
        self._n, self._drop = int(batch_size), bool(drop_remainder)
        lead = self._n if self._drop else None
        self._pad_to = None
        if padded_shapes is not None:
            flat = [as_shape(s) for s in _flat_shapes(input_dataset._structure, padded_shapes)]
            if len(flat) != len(self._types):
                raise ValueError(f"padded_batch: padded_shapes {padded_shapes!r} does not match "
                                 f"the element structure {input_dataset.output_shapes}")
            for i, (p, s) in enumerate(zip(flat, input_dataset._shapes)):
                if s.ndims is not None and p.ndims != s.ndims:
                    raise ValueError(f"padded_batch: component {i} has shape {s} but its "
                                     f"padded shape {p} has a different rank")
            self._pad_to = [tuple(d.value for d in p) for p in flat]
            if padding_values is None:
                self._pad_vals = [b"" if d == dtypes_lib.string else 0 for d in self._types]
            else:
                self._pad_vals = _flat_shapes(input_dataset._structure, padding_values)
            shapes = flat
        else:
            shapes = self._shapes
        self._set_spec(self._structure, self._types,
                       [TensorShape([lead]).concatenate(s) for s in shapes])

    def _iterate(self, env):
        if self._pad_to is None:
            blocks = self._input._blocks(env, self._n)
            if blocks is not None:
                return self._from_blocks(blocks)
        return self._from_elements(env)

    def _from_blocks(self, blocks):
        """Cuts batches out of blocks: slices, and one concatenate where a batch spans blocks."""
        n, pend, have = self._n, [], 0
        for block, owned in blocks:
            m, start = len(block[0]), 0
            while start < m:
                if not pend and m - start >= n:
                    out = tuple(a[start:start + n] for a in block)
                    yield out if owned else tuple(np.array(a) for a in out)
                    start += n
                    continue
                take = min(n - have, m - start)
                pend.append(tuple(a[start:start + take] for a in block))
                have, start = have + take, start + take
                if have == n:
                    yield tuple(np.concatenate(parts) for parts in zip(*pend))
                    pend, have = [], 0
        if pend and not self._drop:
            yield tuple(np.concatenate(parts) for parts in zip(*pend))

    def _from_elements(self, env):
        n, buf = self._n, []
        for el in self._input._iterate(env):
            buf.append(el)
            if len(buf) == n:
                yield self._stack(buf)
                buf = []
        if buf and not self._drop:
            yield self._stack(buf)

    def _stack(self, rows):
        out = []
        for k in range(len(rows[0])):
            parts = [r[k] for r in rows]
            if self._pad_to is not None:
                parts = self._padded(parts, k)
            else:
                s0 = parts[0].shape
                for j, p in enumerate(parts):
                    if p.shape != s0:
                        raise errors.InvalidArgumentError(
                            None, None, f"Cannot batch tensors with different shapes in "
                            f"component {k}. First element had shape {list(s0)} and element "
                            f"{j} had shape {list(p.shape)}. Use padded_batch to pad them.")
            out.append(np.stack(parts))
        return tuple(out)

    def _padded(self, parts, k):
        target = list(self._pad_to[k])
        for d in range(len(target)):
            longest = max(p.shape[d] for p in parts)
            if target[d] is None:
                target[d] = longest
            elif longest > target[d]:
                raise errors.InvalidArgumentError(
                    None, None, f"padded_batch: component {k} has size {longest} in dimension "
                    f"{d}, more than its padded shape {list(self._pad_to[k])}")
        out = []
        for p in parts:
            widths = [(0, t - s) for t, s in zip(target, p.shape)]
            out.append(np.pad(p, widths, constant_values=self._pad_vals[k])
                       if any(w for _, w in widths) else p)
        return out


class _Repeat(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = -1 if count is None else int(count)

    def _iterate(self, env):
        epoch = 0
        while self._count < 0 or epoch < self._count:
            produced = False
            for el in self._input._iterate(env):
                produced = True
                yield el
            if not produced:  # an empty dataset repeated forever is empty, not a hang
                return
            epoch += 1

    def _blocks(self, env, size):
        first = self._input._blocks(env, size)
        if first is None or self._count == 0:
            return None if first is None else iter(())
        return self._repeat_blocks(env, size, first)

    def _repeat_blocks(self, env, size, blocks):
        epoch = 0
        while True:
            produced = False
            for b in blocks:
                produced = True
                yield b
            epoch += 1
            if not produced or 0 <= self._count <= epoch:
                return
            blocks = self._input._blocks(env, size)


class _Take(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = int(count)

    def _iterate(self, env):
        if self._count < 0:
            return self._input._iterate(env)
        return itertools.islice(self._input._iterate(env), self._count)


class _Skip(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = int(count)

    def _iterate(self, env):
        if self._count < 0:
            return iter(())
        return itertools.islice(self._input._iterate(env), self._count, None)


class _Shard(_Unary):
    def __init__(self, input_dataset, num_shards, index):
        super().__init__(input_dataset)
        num_shards, index = int(num_shards), int(index)
        if num_shards < 1 or not 0 <= index < num_shards:
            raise ValueError(f"shard: need num_shards >= 1 and 0 <= index < num_shards, got "
                             f"num_shards={num_shards}, index={index}")
        self._num, self._index = num_shards, index

    def _iterate(self, env):
        return itertools.islice(self._input._iterate(env), self._index, None, self._num)


class _Concatenate(_Unary):
    def __init__(self, input_dataset, other):
        super().__init__(input_dataset)
        if not isinstance(other, Dataset):
            raise TypeError(f"concatenate: expected a Dataset, got {type(other).__name__}")
        if self._types != other._types or not _same_structure(self._structure,
                                                              other._structure):
            raise TypeError(f"concatenate: the datasets' types differ: {self.output_types} vs "
                            f"{other.output_types}")
        self._other = other
        self._inputs = (input_dataset, other)
        self._set_spec(self._structure, self._types,
                       [_most_specific(a, b) for a, b in zip(self._shapes, other._shapes)])

    def _iterate(self, env):
        yield from self._input._iterate(env)
        yield from self._other._iterate(env)


def _most_specific(a, b):
    if a.ndims is None or b.ndims is None or a.ndims != b.ndims:
        return TensorShape(None)
    return TensorShape([x.value if x.value == y.value else None for x, y in zip(a, b)])


class _Cache(_Unary):
    def __init__(self, input_dataset, filename):
        super().__init__(input_dataset)
        if filename:
            raise NotImplementedError("cache: only the in-memory cache (filename='') is "
                                      f"supported, got filename={filename!r}")

    def _iterate(self, env):
        key = ("cache", id(self))
        done = env.state.get(key)
        if done is not None:
            return iter(done)
        return self._record(env, key)

    def _record(self, env, key):
        rows = []
        for el in self._input._iterate(env):
            rows.append(el)
            yield el
        env.state[key] = rows


_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class _Prefetch(_Unary):
    def __init__(self, input_dataset, buffer_size):
        super().__init__(input_dataset)
        n = int(buffer_size)
        if n == AUTOTUNE:
            n = _AUTOTUNE_BUFFER
        if n < 0:
            raise ValueError(f"prefetch: buffer_size must be >= 0 or AUTOTUNE, got {buffer_size}")
        self._buffer_size = n

    def _iterate(self, env):
        if self._buffer_size == 0:
            return self._input._iterate(env)
        return _PrefetchIterator(self._input._iterate(env), self._buffer_size, env)


class _PrefetchIterator:
    """Consumer side of a prefetch: a daemon thread fills a bounded queue from ``upstream``.
    The thread stops when the iterator is closed, garbage-collected, or the env stops."""

    def __init__(self, upstream, buffer_size, env):
        self._q = queue.Queue(buffer_size)
        self._stop = threading.Event()
        self._env_stopped = env.stopped
        self._done = False
        self._thread = threading.Thread(
            target=_prefetch_worker, args=(upstream, self._q, self._stop, env.stopped),
            name="tw-data-prefetch", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._stop.set)

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._env_stopped.is_set() or self._stop.is_set():
                    self._done = True
                    raise StopIteration from None
                if not self._thread.is_alive() and self._q.empty():
                    raise errors.InternalError(None, None,
                                               "prefetch thread ended unexpectedly") from None
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        return item

    def close(self):
        self._stop.set()
        self._done = True


def _prefetch_worker(upstream, q, stop, env_stopped):
    def put(item):
        while not (stop.is_set() or env_stopped.is_set()):
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        for el in upstream:
            if not put(el):
                return
        put(_END)
    except BaseException as e:  # noqa: BLE001  (handed to the consumer, raised there)
        put(_Failure(e))
    finally:
        close = getattr(upstream, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass


# --- iterators --------------------------------------------------------------------------------
class Iterator:
    """A position in a Dataset, held by each Session (TF1's ``tf.data.Iterator``).

    ``get_next()`` returns the element's tensors (nested like the element); running them
    past the end raises ``tw.errors.OutOfRangeError``.
    """

    def __init__(self, handle, initializer, structure, types, shapes):
        self._handle = handle
        self._initializer = initializer
        self._structure, self._types, self._shapes = structure, tuple(types), tuple(shapes)

    @staticmethod
    def from_structure(output_types, output_shapes=None, shared_name=None, output_classes=None):
        """A reinitializable iterator: ``it.make_initializer(ds)`` switches between datasets
        of this structure (e.g. training and validation)."""
        types = _map_structure(dtypes_lib.as_dtype, output_types)
        flat_types = _flatten(types)
        if output_shapes is None:
            flat_shapes = [TensorShape(None)] * len(flat_types)
        else:
            flat_shapes = [as_shape(s) for s in _flat_shapes(types, output_shapes)]
        handle = data_flow_ops.iterator_op(flat_types, flat_shapes, shared_name or "")
        return Iterator(handle, None, types, flat_types, flat_shapes)

    @staticmethod
    def from_string_handle(string_handle, output_types, output_shapes=None, output_classes=None):
        """A feedable iterator: ``get_next`` reads from whichever iterator the fed
        ``string_handle`` (from ``other.string_handle()``) names, e.g. training or validation."""
        types = _map_structure(dtypes_lib.as_dtype, output_types)
        flat_types = _flatten(types)
        if output_shapes is None:
            flat_shapes = [TensorShape(None)] * len(flat_types)
        else:
            flat_shapes = [as_shape(s) for s in _flat_shapes(types, output_shapes)]
        handle = data_flow_ops.iterator_from_string_handle(string_handle, flat_types, flat_shapes)
        return Iterator(handle, None, types, flat_types, flat_shapes)

    def string_handle(self, name=None):
        """A string tensor naming this iterator (feed it to a ``from_string_handle`` one)."""
        return data_flow_ops.iterator_to_string_handle(self._handle, name=name)

    @staticmethod
    def _one_shot(dataset):
        caps = dataset._captures()
        if caps:
            consts = [constant_value(t) for t in caps]
            if any(c is None for c in consts):
                names = [t.name for t, c in zip(caps, consts) if c is None]
                raise ValueError(f"make_one_shot_iterator: the dataset reads tensors {names} "
                                 "that are not constants (placeholders?); use "
                                 "make_initializable_iterator() and feed them when running "
                                 "its initializer.")
            dataset = _WithConstants(dataset, dict(zip(caps, consts)))
        handle = data_flow_ops.iterator_op(dataset._types, dataset._shapes, dataset=dataset)
        return Iterator(handle, None, dataset._structure, dataset._types, dataset._shapes)

    @property
    def initializer(self):
        if self._initializer is None:
            raise ValueError("This iterator has no initializer: a one-shot iterator starts "
                             "itself; a from_structure iterator is started by the op from "
                             "make_initializer(dataset).")
        return self._initializer

    @property
    def output_types(self):
        return _pack(self._structure, self._types)

    @property
    def output_shapes(self):
        return _pack(self._structure, self._shapes)

    @property
    def output_classes(self):
        return _pack(self._structure, [Tensor] * len(self._types))

    def make_initializer(self, dataset, name=None):
        """The op that (re)starts this iterator on ``dataset``."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"make_initializer: expected a Dataset, got {type(dataset).__name__}")
        if not _same_structure(self._structure, dataset._structure) or \
                self._types != dataset._types:
            raise TypeError(f"make_initializer: the dataset's types {dataset.output_types} do "
                            f"not match this iterator's {self.output_types}")
        for a, b in zip(self._shapes, dataset._shapes):
            if not a.is_compatible_with(b):
                raise TypeError(f"make_initializer: the dataset's shapes "
                                f"{dataset.output_shapes} are not compatible with this "
                                f"iterator's {self.output_shapes}")
        return data_flow_ops.make_iterator(self._handle, dataset, dataset._captures(),
                                           name=name)

    def get_next(self, name=None):
        """The next element's tensors, nested like the dataset's elements."""
        outs = data_flow_ops.iterator_get_next(self._handle, self._types, self._shapes,
                                               name=name)
        return _pack(self._structure, outs)


class _WithConstants(_Unary):
    """Binds a dataset's captured constant tensors to their values (for one-shot iterators)."""

    def __init__(self, input_dataset, values):
        super().__init__(input_dataset)
        self._values = values

    def _captures(self):
        return []

    def _make_resource(self, captured_values, ctx):
        return _IteratorResource(self._input, dict(self._values))

    def _iterate(self, env):
        return self._input._iterate(env)


def make_one_shot_iterator(dataset):
    """``tw.data.make_one_shot_iterator(ds)`` (as ``tf.compat.v1.data``)."""
    return dataset.make_one_shot_iterator()


def make_initializable_iterator(dataset, shared_name=None):
    """``tw.data.make_initializable_iterator(ds)`` (as ``tf.compat.v1.data``)."""
    return dataset.make_initializable_iterator(shared_name=shared_name)


def get_output_types(dataset_or_iterator):
    return dataset_or_iterator.output_types


def get_output_shapes(dataset_or_iterator):
    return dataset_or_iterator.output_shapes


class experimental:  # noqa: N801  (a namespace, as tf.data.experimental)
    AUTOTUNE = AUTOTUNE


__all__ = ["Dataset", "Iterator", "make_one_shot_iterator", "make_initializable_iterator",
           "get_output_types", "get_output_shapes", "experimental", "AUTOTUNE"]

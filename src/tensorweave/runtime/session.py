"""``tw.Session``: feeds, fetches, the plan cache, and the state that lives across runs."""

from __future__ import annotations

import collections
import operator
import threading

import numpy as np

from tensorweave.framework import dtypes, errors, ops
from tensorweave.framework.device import DeviceSpec
from tensorweave.framework.ops import IndexedSlices, Operation, Tensor
from tensorweave.framework.registry import get_kernel_factory
from tensorweave.runtime import plan as plan_lib
from tensorweave.runtime.config import ConfigProto, RunOptions

_DEVICE_LOADERS: dict = {}  # device type -> callable returning True if usable


def register_device(device_type, loader):
    """Declares a device type; ``loader()`` imports its kernels and says if it is usable."""
    _DEVICE_LOADERS[device_type] = loader


def _device_available(device_type, _cache={}) -> bool:  # noqa: B006  (memo)
    if device_type not in _cache:
        loader = _DEVICE_LOADERS.get(device_type)
        if loader is None and device_type == "GPU":
            def loader():
                try:
                    from tensorweave.kernels import gpu
                except ImportError:
                    return False
                return bool(gpu.load())
        _cache[device_type] = bool(loader()) if loader is not None else False
    return _cache[device_type]


IndexedSlicesValue = collections.namedtuple("IndexedSlicesValue",
                                            ["values", "indices", "dense_shape"])


class RuntimeContext:
    """Per-session state that kernels may touch: variable storage, RNGs, queues, iterators."""

    def __init__(self, session):
        self.session = session
        self.variables: dict[str, np.ndarray] = {}
        self.resources: dict[str, object] = {}
        self._rngs: dict[str, np.random.Generator] = {}
        self.lock = threading.RLock()

    def rng(self, op) -> np.random.Generator:
        """The op's random stream: seeded from (graph seed, op seed) when set, as in TF."""
        g = self._rngs.get(op.name)
        if g is None:
            seed, seed2 = op.attrs.get("seed", 0), op.attrs.get("seed2", 0)
            g = np.random.default_rng([seed, seed2]) if (seed or seed2) else np.random.default_rng()
            self._rngs[op.name] = g
        return g


class _FetchMapper:
    """Flattens nested fetches (lists, tuples, namedtuples, dicts) and rebuilds the results."""

    def __init__(self, graph, fetches):
        self.graph = graph
        self.elements: list = []  # Tensors and Operations, unique, in order
        self._index: dict = {}
        self.build = self._map(fetches)

    def _add(self, el):
        i = self._index.get(el)
        if i is None:
            i = self._index[el] = len(self.elements)
            self.elements.append(el)
        return i

    def _map(self, f):
        if f is None:
            raise TypeError("Fetch argument None has invalid type <class 'NoneType'>: pass "
                            "a Tensor, an Operation, a tensor name or a nest of them.")
        if isinstance(f, (list, tuple)) and not hasattr(f, "_as_graph_element"):
            subs = [self._map(x) for x in f]
            if hasattr(f, "_fields"):
                cls = type(f)
                return lambda vals: cls(*[s(vals) for s in subs])
            cls = type(f)
            return lambda vals: cls(s(vals) for s in subs)
        if isinstance(f, dict):
            subs = {k: self._map(v) for k, v in f.items()}
            cls = type(f)
            return lambda vals: cls((k, s(vals)) for k, s in subs.items())
        if isinstance(f, IndexedSlices):
            parts = [self._map(f.values), self._map(f.indices)]
            ds = self._map(f.dense_shape) if isinstance(f.dense_shape, Tensor) else None
            return lambda vals: IndexedSlicesValue(parts[0](vals), parts[1](vals),
                                                   ds(vals) if ds else None)
        el = self.graph.as_graph_element(f)
        if isinstance(el, Operation):
            self._add(el)
            return lambda vals: None
        i = self._add(el)
        return lambda vals: vals[i]


class BaseSession:
    def __init__(self, target="", graph=None, config=None):
        self._graph = graph if graph is not None else ops.get_default_graph()
        self._target = target
        self._config = config or ConfigProto()
        self._closed = False
        self._ctx = RuntimeContext(self)
        self._plans: dict = {}
        self._callables: dict = {}
        threads = self._config.inter_op_parallelism_threads
        self._pool = None
        if threads and threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tw-inter-op")
        self._default_ctx = None
        self._run_lock = threading.Lock()
        self._blas_token = None
        if self._config.intra_op_parallelism_threads:
            from tensorweave.runtime import blas_threads
            self._blas_token = blas_threads.acquire(self._config.intra_op_parallelism_threads)

    @property
    def graph(self):
        return self._graph

    @property
    def graph_def(self):
        return self._graph.as_graph_def() if hasattr(self._graph, "as_graph_def") else None

    @property
    def sess_str(self):
        return self._target

    # --- context management ---------------------------------------------------------------
    def as_default(self):
        """``with sess.as_default():`` makes ``eval()``/``run()`` use this session."""
        return ops._session_as_default(self)

    def __enter__(self):
        self._graph_ctx = self._graph.as_default()
        self._graph_ctx.__enter__()
        ops._push_default_session(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        ops._pop_default_session(self)
        self._graph_ctx.__exit__(exc_type, exc, tb)
        self.close()

    def close(self):
        self._closed = True
        # resources first: closing a queue wakes kernels blocked on it, which the pool's
        # threads must finish before the pool can shut down
        for r in list(self._ctx.resources.values()):
            if hasattr(r, "close"):
                try:
                    r.close()
                except Exception:  # noqa: BLE001  (closing is best effort)
                    pass
        self._ctx.resources.clear()
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if getattr(self, "_blas_token", None) is not None:
            from tensorweave.runtime import blas_threads
            blas_threads.release(self._blas_token)
            self._blas_token = None
        self._plans.clear()
        self._callables.clear()
        self._ctx.variables.clear()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # --- run ---------------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Runs the ops needed for ``fetches`` and returns their values in the same structure.

        ``fetches``: a Tensor, Operation, tensor or op name, or lists/tuples/dicts/namedtuples
        of them. ``feed_dict``: maps tensors (placeholders or any other) to values.
        """
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session.")
        if feed_dict and not all(isinstance(k, (Tensor, str)) for k in feed_dict):
            feed_dict = self._flatten_feeds(feed_dict)
        key = _signature(fetches, feed_dict)
        if key is not None:
            key = (key, self._graph._rewrites)
        call = self._callables.get(key) if key is not None else None
        if call is None:
            call = self._make_call(fetches, feed_dict)
            if key is not None:
                self._callables[key] = call
        plan, build, feed_specs = call
        if feed_specs:
            values = [None] * len(feed_specs)
            for (pos, t, npd, shp), value in zip(feed_specs, feed_dict.values()):
                values[pos] = _check_feed(t, npd, shp, value)
        else:
            values = ()
        trace = options is not None and getattr(options, "trace_level", 0) > 0 \
            and run_metadata is not None
        try:
            if trace:
                out = plan_lib.run_traced(plan, values, run_metadata.step_stats)
            elif self._pool is not None:
                out = plan_lib.run_parallel(plan, values, self._pool)
            else:
                out = plan.run(values)
        except errors.OpError as e:
            if e.op is None:
                st = plan_lib.exc_step(plan, e)
                if st is not None:
                    e.op = st.op
                    e.message = f"{e.message}\n\t [[node {st.op.describe()}]]"
                    e.args = (e.message,)
            raise
        except Exception as e:  # a kernel failed: name the op, its type and the user's line
            st = plan_lib.exc_step(plan, e)
            if st is None:
                raise
            msg = (f"{type(e).__name__}: {e}\n\t [[node {st.op.describe()}]]")
            raise errors.InvalidArgumentError(None, st.op, msg) from e
        return build(out)

    def _make_call(self, fetches, feed_dict):
        """Resolves fetches and feeds once per signature: (plan, result builder, feed specs)."""
        mapper = _FetchMapper(self._graph, fetches)
        feed_tensors = []
        for k, v in (feed_dict or {}).items():
            feed_tensors += [t for t, _ in self._expand_feed(k, v)]
        if len(set(feed_tensors)) != len(feed_tensors):
            raise ValueError("The same tensor is fed twice in feed_dict")
        order = sorted(feed_tensors, key=lambda t: (t._op._id, t._value_index))
        fetch_tensors = tuple(e for e in mapper.elements if isinstance(e, Tensor))
        targets = tuple(e for e in mapper.elements if isinstance(e, Operation))
        plan = self._get_plan(fetch_tensors, targets, tuple(order))
        pos_of = {t: i for i, t in enumerate(fetch_tensors)}
        picks = [pos_of.get(e) for e in mapper.elements]
        inner = mapper.build
        if isinstance(fetches, (Tensor, str)) and picks == [0]:
            build = operator.itemgetter(0)
        else:
            def build(out):
                return inner([None if p is None else out[p] for p in picks])
        strings = [i for i, t in enumerate(fetch_tensors) if t.dtype == dtypes.string]
        if strings:  # TensorFlow's fetches: a string scalar as bytes, arrays of bytes objects
            plain = build

            def build(out):
                out = list(out)
                for i in strings:
                    a = ops.string_array(out[i])
                    out[i] = a.item() if a.ndim == 0 else a
                return plain(out)

        scalars = [i for i, t in enumerate(fetch_tensors)
                   if t.dtype != dtypes.string and t.shape.ndims in (0, None)]
        if scalars:  # TensorFlow's fetches: a scalar as a NumPy scalar (np.float32, ...)
            numeric = build

            def build(out):
                out = list(out)
                for i in scalars:
                    v = out[i]
                    if type(v) is np.ndarray and v.ndim == 0:
                        out[i] = v[()]
                return numeric(out)

        specs = [(order.index(t), t, t.dtype.as_numpy_dtype, t.shape.as_tuple())
                 for t in feed_tensors]
        return plan, build, specs

    def _get_plan(self, fetch_tensors, targets, feed_tensors):
        key = (fetch_tensors, targets, feed_tensors, self._graph._version_structure())
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_lib.compile_plan(list(fetch_tensors), list(targets), list(feed_tensors),
                                         self._ctx, options=self._config.graph_options,
                                         placer=self._place)
            self._plans[key] = plan
        return plan

    def _place(self, op) -> str:
        """The device type whose kernel runs ``op``: its requested type when that device and
        kernel exist, else the CPU with ``allow_soft_placement``, else a clear error."""
        want = op.device
        if not want or "device:CPU" in want:
            return "CPU"
        dev = DeviceSpec.from_string(want).device_type or "CPU"
        if dev == "CPU":
            return "CPU"
        if _device_available(dev) and get_kernel_factory(op.type, dev) is not None:
            return dev
        if self._config.allow_soft_placement:
            return "CPU"
        why = (f"no {dev} kernel is registered for op type {op.type}"
               if _device_available(dev) else f"no {dev} device is available here")
        raise errors.InvalidArgumentError(
            None, op, f"Cannot assign a device for operation {op.describe()}: it asks for "
            f"{want!r} but {why}. Pass config=tw.ConfigProto(allow_soft_placement=True) to "
            "run it on the CPU instead.")

    def _flatten_feeds(self, feed_dict):
        """Expands tuple/IndexedSlices/Variable keys into one entry per tensor."""
        flat = {}
        for k, v in feed_dict.items():
            for t, val in self._expand_feed(k, v):
                flat[t] = val
        return flat

    def _expand_feed(self, key, value):
        if isinstance(key, (list, tuple)) and not hasattr(key, "_as_graph_element"):
            if len(key) != len(value):
                raise ValueError(f"Feed key {key!r} is a sequence of {len(key)} tensors but "
                                 f"the value has {len(value)} items.")
            out = []
            for k, v in zip(key, value):
                out += self._expand_feed(k, v)
            return out
        if isinstance(key, IndexedSlices):
            return self._expand_feed([key.values, key.indices], value[:2])
        try:
            t = self._graph.as_graph_element(key, allow_operation=False)
        except (TypeError, ValueError, KeyError) as e:
            raise TypeError(f"Cannot interpret feed_dict key {key!r} as a Tensor: {e}") from None
        if isinstance(t, Operation):
            raise TypeError(f"Cannot feed Operation {t.name!r}: feed one of its outputs.")
        return [(t, value)]

    # --- partial run is not supported (TF1's partial_run is rarely used) -----------------------
    def make_callable(self, fetches, feed_list=None, accept_options=False):
        """Returns ``f(*feed_values)`` running ``fetches`` with the feeds in ``feed_list``."""
        feed_list = list(feed_list or [])

        def call(*args):
            return self.run(fetches, dict(zip(feed_list, args)))

        return call

    def list_devices(self):
        return ["/job:localhost/replica:0/task:0/device:CPU:0"]


def _signature(fetches, feed_dict):
    """A hashable key for the (fetches, feed keys) signature, or None when not cacheable."""
    try:
        if isinstance(fetches, (list, tuple)) and type(fetches) in (list, tuple):
            fk = (type(fetches), *fetches)
        elif isinstance(fetches, (dict, list, tuple)):
            fk = _nested_key(fetches)  # e.g. a MonitoredSession's {"caller": ..., "hook0": ...}
        else:
            fk = fetches
        key = (fk, tuple(feed_dict) if feed_dict else ())
        hash(key)
        return key
    except TypeError:
        return None


def _nested_key(f):
    """A hashable key for plain nested lists/tuples/dicts of fetches (dict order included);
    TypeError for other containers (namedtuples, dict subclasses), which stay uncached."""
    t = type(f)
    if t is list or t is tuple:
        return (t, tuple(_nested_key(x) for x in f))
    if t is dict:
        return (dict, tuple((k, _nested_key(v)) for k, v in f.items()))
    if isinstance(f, (list, tuple, dict)):
        raise TypeError("not a plain container")
    return f


_OBJECT = np.dtype(object)  # tw.string's NumPy dtype (NumPy keeps one instance)


def _check_feed(t, npd, shp, v):
    """Converts a fed value to the tensor's dtype and checks it against the static shape."""
    if npd is _OBJECT:  # strings: bytes objects, as TF holds them
        if isinstance(v, Tensor):
            raise TypeError(f"The value of a feed cannot be a tw.Tensor object ({v.name}).")
        v = ops.string_array(v)
    elif type(v) is not np.ndarray or v.dtype != npd:
        if isinstance(v, Tensor):
            raise TypeError(f"The value of a feed cannot be a tw.Tensor object ({v.name}). "
                            "Acceptable feed values include Python scalars, strings, lists, "
                            "numpy ndarrays.")
        try:
            arr = np.asarray(v)
            if arr.dtype != npd:
                if arr.dtype.kind == "f" and npd.kind in "iu" and arr.size and \
                        not np.all(np.mod(arr, 1) == 0):
                    raise TypeError("fractional values")
                if arr.dtype.kind in "OUS" and npd.kind != "O":
                    raise TypeError("strings")
                arr = arr.astype(npd)
        except (TypeError, ValueError) as e:
            raise TypeError(f"Cannot feed value {_short(v)} (dtype {np.asarray(v).dtype}) to "
                            f"Tensor {t.name!r}, which has dtype {t.dtype.name}: {e}.") from None
        v = arr
    if shp is not None:
        vs = v.shape
        if len(shp) != len(vs) or any(d is not None and d != a for d, a in zip(shp, vs)):
            raise ValueError(f"Cannot feed value of shape {vs} for Tensor {t.name!r}, "
                             f"which has shape {t.shape}")
    return v


def _short(v):
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


class Session(BaseSession):
    """Runs a graph. ``with tw.Session() as sess: sess.run(...)`` also makes it the default.

    ``target`` may be a cluster (``tw.distributed``): the session then runs partitions on
    the cluster's tasks.
    """

    def __new__(cls, target="", graph=None, config=None, **kwargs):
        if cls is Session and target not in ("", None) and hasattr(target, "call"):
            from tensorweave.distributed.session import DistributedSession
            return DistributedSession(target, graph=graph, config=config, **kwargs)
        return super().__new__(cls)


class InteractiveSession(BaseSession):
    """A session that installs itself as the default on construction (for shells, notebooks)."""

    def __init__(self, target="", graph=None, config=None):
        super().__init__(target, graph, config)
        ops._push_default_session(self)
        self._graph_ctx = self._graph.as_default()
        self._graph_ctx.__enter__()

    def close(self):
        ops._pop_default_session(self)
        if getattr(self, "_graph_ctx", None) is not None:
            ctx, self._graph_ctx = self._graph_ctx, None
            try:
                ctx.__exit__(None, None, None)
            except (IndexError, AssertionError):
                pass
        super().close()


RunOptions = RunOptions

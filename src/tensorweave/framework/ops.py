"""Graph, Operation and Tensor, and the scopes that shape them (name, device, control deps).

A :class:`Graph` owns operations; an :class:`Operation` has typed inputs, attrs and outputs;
a :class:`Tensor` is one output of an operation with a dtype and a static shape. Creating an
op runs its registered inference function immediately, so shape errors surface at the user's
line, which each op records (DESIGN.md rule 6).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

import numpy as np

from tensorweave.framework import dtypes as _dtypes
from tensorweave.framework import registry
from tensorweave.framework.device import DeviceSpec, canonical_name, merge_device
from tensorweave.framework.tensor_shape import TensorShape, as_shape

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VALID_OP_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


def _user_location():
    """(filename, lineno) of the innermost caller outside this package: where the user built it."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    if f is None:
        return ("<unknown>", 0)
    return (f.f_code.co_filename, f.f_lineno)


class GraphKeys:
    """Standard collection names, as in TensorFlow."""

    GLOBAL_VARIABLES = "variables"
    LOCAL_VARIABLES = "local_variables"
    METRIC_VARIABLES = "metric_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    MODEL_VARIABLES = "model_variables"
    SUMMARIES = "summaries"
    QUEUE_RUNNERS = "queue_runners"
    TABLE_INITIALIZERS = "table_initializer"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"
    REGULARIZATION_LOSSES = "regularization_losses"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    SAVERS = "savers"
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    READY_OP = "ready_op"
    COND_CONTEXT = "cond_context"
    WHILE_CONTEXT = "while_context"


class Tensor:
    """A symbolic handle to one output of an :class:`Operation`.

    Example::

        x = tw.placeholder(tw.float32, [None, 3])
        y = 2.0 * x[:, 1:]            # operators build ops
        y.shape                       # TensorShape([None, 2])
    """

    __array_priority__ = 100  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, op: Operation, value_index: int, dtype, shape):
        self._op = op
        self._value_index = value_index
        self._dtype = _dtypes.as_dtype(dtype)
        self._shape = as_shape(shape)
        self._consumers: list[Operation] = []

    # --- identity -----------------------------------------------------------------------
    @property
    def op(self) -> Operation:
        return self._op

    @property
    def value_index(self) -> int:
        return self._value_index

    @property
    def graph(self) -> Graph:
        return self._op.graph

    @property
    def name(self) -> str:
        return f"{self._op.name}:{self._value_index}"

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self) -> str:
        return self._op.device

    @property
    def shape(self) -> TensorShape:
        return self._shape

    def get_shape(self) -> TensorShape:
        return self._shape

    def set_shape(self, shape):
        """Refines the static shape; raises ValueError if incompatible."""
        self._shape = self._shape.merge_with(shape)

    def consumers(self) -> list[Operation]:
        return list(self._consumers)

    def _as_node_def_input(self) -> str:
        return self._op.name if self._value_index == 0 else self.name

    def __repr__(self):
        return f"<tw.Tensor '{self.name}' shape={self._shape} dtype={self._dtype.name}>"

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise TypeError("Using a tw.Tensor as a Python bool is not allowed: the value is only "
                        "known when the graph runs. Use tw.cond for data-dependent choices.")

    def __iter__(self):
        raise TypeError("Tensor objects are not iterable in graph mode; use tw.unstack(t) "
                        "to split along the first dimension.")

    def __len__(self):
        raise TypeError(f"len() is not defined for Tensor {self.name}; use tw.shape(t)[0] or "
                        "t.shape[0] for the static size.")

    # --- evaluation ----------------------------------------------------------------------
    def eval(self, feed_dict=None, session=None):
        """Runs the default (or given) session to compute this tensor's value."""
        return _run_using_default_session(self, feed_dict, self.graph, session)

    # --- operators are wired by ops/math_ops.py and ops/array_ops.py ---------------------
    def __getitem__(self, key):
        from tensorweave.ops import array_ops
        return array_ops.slice_helper(self, key)


def _overload(name, fn_path, reverse=False):
    module, _, attr = fn_path.rpartition(".")

    def method(self, other):
        import importlib
        fn = getattr(importlib.import_module(f"tensorweave.ops.{module}"), attr)
        return fn(other, self) if reverse else fn(self, other)

    method.__name__ = name
    setattr(Tensor, name, method)


for _name, _fn in [("add", "math_ops.add"), ("sub", "math_ops.subtract"),
                   ("mul", "math_ops.multiply"), ("truediv", "math_ops.truediv"),
                   ("floordiv", "math_ops.floordiv"), ("mod", "math_ops.floormod"),
                   ("pow", "math_ops.pow"), ("matmul", "math_ops.matmul"),
                   ("and", "math_ops.logical_and"), ("or", "math_ops.logical_or"),
                   ("xor", "math_ops.logical_xor")]:
    _overload(f"__{_name}__", _fn)
    _overload(f"__r{_name}__", _fn, reverse=True)
for _name, _fn in [("lt", "math_ops.less"), ("le", "math_ops.less_equal"),
                   ("gt", "math_ops.greater"), ("ge", "math_ops.greater_equal")]:
    _overload(f"__{_name}__", _fn)


def _unary(name, fn_path):
    module, _, attr = fn_path.rpartition(".")

    def method(self):
        import importlib
        return getattr(importlib.import_module(f"tensorweave.ops.{module}"), attr)(self)

    setattr(Tensor, name, method)


_unary("__neg__", "math_ops.negative")
_unary("__abs__", "math_ops.abs")
_unary("__invert__", "math_ops.logical_not")


class Operation:
    """A node of the graph: ``type``, ``name``, ``inputs``, ``control_inputs``, ``attrs``, ``device``.

    Created through op builders (``tw.matmul`` ...), never directly by users.
    """

    def __init__(self, graph, op_type, name, inputs, attrs, device, control_inputs, location):
        self.graph = graph
        self.type = op_type
        self.name = name
        self._inputs = tuple(inputs)
        self.attrs = attrs
        self.device = device
        self._control_inputs = list(control_inputs)
        self._location = location
        self._op_def = registry.get_op_def(op_type)
        self._id = graph._next_id()
        self.outputs: list[Tensor] = []
        self._control_outputs: list[Operation] = []

    @property
    def inputs(self) -> tuple[Tensor, ...]:
        return self._inputs

    @property
    def control_inputs(self) -> list[Operation]:
        return list(self._control_inputs)

    @property
    def op_def(self):
        return self._op_def

    @property
    def location(self) -> str:
        """``file:line`` of the user code that created this op."""
        return f"{self._location[0]}:{self._location[1]}"

    def get_attr(self, name):
        try:
            return self.attrs[name]
        except KeyError:
            raise ValueError(f"Operation {self.name!r} ({self.type}) has no attr named {name!r}; "
                             f"it has {sorted(self.attrs)}") from None

    def values(self):
        return tuple(self.outputs)

    def _add_control_input(self, op: Operation):
        self.graph._check_not_finalized()
        if op not in self._control_inputs:
            self._control_inputs.append(op)
            op._control_outputs.append(self)
            self.graph._rewrites += 1

    def _add_control_inputs(self, ops):
        for op in ops:
            self._add_control_input(op)

    def _update_input(self, index: int, tensor: Tensor):
        """Rewires input ``index`` (used by graph rewrites such as while-loop construction)."""
        old = self._inputs[index]
        if self in old._consumers:
            old._consumers.remove(self)
        self._inputs = self._inputs[:index] + (tensor,) + self._inputs[index + 1:]
        tensor._consumers.append(self)
        self.graph._rewrites += 1

    def run(self, feed_dict=None, session=None):
        """Runs this op in the default (or given) session."""
        _run_using_default_session(self, feed_dict, self.graph, session)

    def __repr__(self):
        ins = ", ".join(t.name for t in self._inputs)
        return f"<tw.Operation '{self.name}' type={self.type} inputs=[{ins}]>"

    def describe(self) -> str:
        """One line naming the op, its type and where the user built it (for error messages)."""
        return f"'{self.name}' (op type {self.type}, created at {self.location})"


class IndexedSlices:
    """A sparse representation of rows of a dense tensor: ``dense[indices] = values``.

    Gradients of ``gather``/``embedding_lookup`` take this form; optimizers apply it row-wise.
    """

    def __init__(self, values, indices, dense_shape=None):
        self.values = values
        self.indices = indices
        self.dense_shape = dense_shape

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def graph(self):
        return self.values.graph

    @property
    def name(self):
        return self.values.name

    @property
    def op(self):
        return self.values.op

    def __repr__(self):
        return f"IndexedSlices(values={self.values!r}, indices={self.indices!r})"


# --- the default graph stack ----------------------------------------------------------------
class _DefaultStack(threading.local):
    def __init__(self):
        self.graphs: list[Graph] = []
        self.sessions: list = []


_default = _DefaultStack()
_global_default_graph: Graph | None = None


def get_default_graph() -> Graph:
    """The graph new ops go into: the innermost ``with g.as_default()``, else a global one."""
    if _default.graphs:
        return _default.graphs[-1]
    global _global_default_graph
    if _global_default_graph is None:
        _global_default_graph = Graph()
    return _global_default_graph


def reset_default_graph():
    """Clears the global default graph (not allowed inside a ``with g.as_default()`` block)."""
    if _default.graphs:
        raise AssertionError("Do not use tw.reset_default_graph() inside a graph's as_default() "
                             "block or a session's with block: it would orphan that graph.")
    global _global_default_graph
    _global_default_graph = Graph()


def get_default_session():
    return _default.sessions[-1] if _default.sessions else None


@contextlib.contextmanager
def _session_as_default(sess):
    _default.sessions.append(sess)
    try:
        yield sess
    finally:
        _default.sessions.remove(sess)


def _push_default_session(sess):
    _default.sessions.append(sess)


def _pop_default_session(sess):
    if sess in _default.sessions:
        _default.sessions.remove(sess)


def _run_using_default_session(fetch, feed_dict, graph, session):
    if session is None:
        session = get_default_session()
        if session is None:
            raise ValueError("Cannot evaluate tensor using `eval()` or `run()`: no default session "
                             "is registered. Use `with tw.Session() as sess:` or pass "
                             "`session=sess`.")
    if session.graph is not graph:
        raise ValueError(f"Cannot use the given session to evaluate {fetch.name!r}: the "
                         "tensor's graph is different from the session's graph.")
    return session.run(fetch, feed_dict)


class Graph:
    """A dataflow graph: operations and the tensors that flow between them.

    Example::

        g = tw.Graph()
        with g.as_default():
            c = tw.constant(1.0)
        assert c.graph is g
    """

    def __init__(self):
        self._ops: list[Operation] = []
        self._ops_by_name: dict[str, Operation] = {}
        self._names_in_use: dict[str, int] = {}
        self._name_stack = ""
        self._control_stack: list[list[Operation] | None] = []
        self._device_stack: list = []
        self._collections: dict[str, list] = {}
        self._finalized = False
        self._last_id = 0
        self._version = 0  # bumps on every op creation
        self._rewrites = 0  # bumps when an existing op's inputs or control inputs change
        self.seed = None
        self._lock = threading.RLock()
        self._control_flow_context = None  # set by control-flow builders
        self._building_function = False

    def _next_id(self):
        self._last_id += 1
        return self._last_id

    # --- default ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self):
        _default.graphs.append(self)
        try:
            yield self
        finally:
            _default.graphs.pop()

    # --- finalize ----------------------------------------------------------------------------
    def finalize(self):
        """Makes the graph read-only: any later op creation raises RuntimeError."""
        self._finalized = True

    @property
    def finalized(self):
        return self._finalized

    def _unsafe_unfinalize(self):
        self._finalized = False

    def _check_not_finalized(self):
        if self._finalized:
            raise RuntimeError("Graph is finalized and cannot be modified. Build all ops before "
                               "calling graph.finalize() (MonitoredSession finalizes the graph).")

    # --- names ---------------------------------------------------------------------------------
    def get_name_scope(self) -> str:
        return self._name_stack

    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        if self._name_stack:
            name = f"{self._name_stack}/{name}"
        key = name.lower()
        i = self._names_in_use.get(key, 0)
        if mark_as_used:
            self._names_in_use[key] = i + 1
        if i > 0:
            base = key
            while f"{base}_{i}" in self._names_in_use:
                i += 1
            if mark_as_used:
                self._names_in_use[f"{base}_{i}"] = 1
            name = f"{name}_{i}"
        return name

    @contextlib.contextmanager
    def name_scope(self, name):
        """TF1 semantics: ``None``/"" resets to the root, a name ending in '/' is absolute,
        otherwise a fresh unique scope under the current one is opened."""
        old = self._name_stack
        if not name:
            new = ""
        elif name.endswith("/"):
            new = name[:-1]
        else:
            new = self.unique_name(name)
        self._name_stack = new
        try:
            yield "" if not new else new + "/"
        finally:
            self._name_stack = old

    # --- control dependencies -----------------------------------------------------------------
    @contextlib.contextmanager
    def control_dependencies(self, control_inputs):
        """Ops created inside run only after ``control_inputs``; ``None`` clears outer ones."""
        if control_inputs is None:
            saved, self._control_stack = self._control_stack, []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        ops = []
        for c in control_inputs:
            if hasattr(c, "_as_graph_element"):
                c = c._as_graph_element()
            if isinstance(c, IndexedSlices):
                c = c.op
            if isinstance(c, Tensor):
                c = c.op
            if not isinstance(c, Operation):
                raise TypeError(f"Control input must be an Operation or Tensor, got {c!r}")
            if c.graph is not self:
                raise ValueError(f"Control input {c.name!r} is from another graph")
            ops.append(c)
        self._control_stack.append(ops)
        try:
            yield
        finally:
            self._control_stack.pop()

    def _current_control_inputs(self):
        out = []
        for ops in self._control_stack:
            for op in ops:
                if op not in out:
                    out.append(op)
        return out

    # --- devices --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def device(self, device_name_or_function):
        """Records a device request for ops created inside (a string or a function of the op)."""
        self._device_stack.append(device_name_or_function)
        try:
            yield
        finally:
            self._device_stack.pop()

    def _apply_device_functions(self, op: Operation):
        dev = ""
        for spec in self._device_stack:
            if spec is None:
                dev = ""
            elif callable(spec):
                op.device = dev
                dev = canonical_name(spec(op) or "")
            else:
                dev = merge_device(dev, spec) if dev else canonical_name(spec)
        op.device = dev

    @contextlib.contextmanager
    def colocate_with(self, op, ignore_existing=False):
        """Ops created inside get the device of ``op`` (a Tensor, Operation or Variable)."""
        if hasattr(op, "_as_graph_element"):
            op = op._as_graph_element()
        if isinstance(op, Tensor):
            op = op.op
        dev = op.device if op is not None else None
        with self.device(dev or None) if dev else contextlib.nullcontext():
            yield

    # --- op creation ----------------------------------------------------------------------------
    def create_op(self, op_type: str, inputs, attrs=None, name=None, control_inputs=()):
        """Creates an op, runs its inference and returns it. Used by the op builders in ops/."""
        self._check_not_finalized()
        inputs = list(inputs)
        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"Input {i} of a {op_type} op must be a Tensor, got {t!r}")
            if t.graph is not self:
                raise ValueError(f"Tensor {t.name!r} must be from the same graph as the new "
                                 f"{op_type} op; it belongs to another tw.Graph.")
        with self._lock:
            if name is None:
                name = op_type
            if name.endswith("/"):  # an already-unique scope name
                name = name[:-1]
                if name in self._ops_by_name:
                    raise ValueError(f"Duplicate op name {name!r}")
                # the scope already reserved this name: mark it, but don't bump (TF: v, v_1)
                self._names_in_use.setdefault(name.lower(), 1)
            else:
                if not _VALID_OP_NAME.match(name):
                    raise ValueError(f"{name!r} is not a valid op name; use letters, digits, "
                                     "'_', '.', '-' and '/'")
                name = self.unique_name(name)
            ctrl = self._current_control_inputs() + list(control_inputs)
            input_ops = {t.op for t in inputs}
            ctrl = [c for c in ctrl if c not in input_ops]
            op = Operation(self, op_type, name, inputs, dict(attrs or {}), "", [],
                           _user_location())
            for c in ctrl:
                op._add_control_input(c)
            self._apply_device_functions(op)
            try:
                outs = op._op_def.infer(op)
            except (ValueError, TypeError) as e:
                raise type(e)(f"{e} (while building op {op.describe()})") from None
            op.outputs = [Tensor(op, i, dt, shape) for i, (dt, shape) in enumerate(outs)]
            for t in inputs:
                t._consumers.append(op)
            self._ops.append(op)
            self._ops_by_name[name] = op
            if self._control_flow_context is not None:
                self._control_flow_context.add_op(op)
            self._version += 1
        return op

    # --- lookup ---------------------------------------------------------------------------------
    def get_operations(self) -> list[Operation]:
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> Operation:
        try:
            return self._ops_by_name[name]
        except KeyError:
            raise KeyError(f"The name {name!r} refers to an Operation not in the graph.") from None

    def get_tensor_by_name(self, name: str) -> Tensor:
        op_name, sep, idx = name.rpartition(":")
        if not sep or not idx.isdigit():
            raise ValueError(f"The name {name!r} looks like an Operation name; tensor names "
                             "are 'op_name:output_index', e.g. 'dense/MatMul:0'.")
        op = self.get_operation_by_name(op_name)
        i = int(idx)
        if i >= len(op.outputs):
            raise ValueError(f"The name {name!r} refers to output {i} of {op_name!r}, which has "
                             f"{len(op.outputs)} outputs.")
        return op.outputs[i]

    def as_graph_element(self, obj, allow_tensor=True, allow_operation=True):
        if hasattr(obj, "_as_graph_element"):
            obj = obj._as_graph_element()
        if isinstance(obj, str):
            if ":" in obj and allow_tensor:
                return self.get_tensor_by_name(obj)
            if allow_operation:
                return self.get_operation_by_name(obj)
        if isinstance(obj, (Tensor, Operation)):
            if obj.graph is not self:
                raise ValueError(f"Fetch argument {obj.name!r} is not an element of this graph; "
                                 "it was built in another tw.Graph than the session's.")
            return obj
        raise TypeError(f"Can not convert a {type(obj).__name__} into a Tensor or Operation: "
                        f"{obj!r}")

    # --- collections ------------------------------------------------------------------------------
    def add_to_collection(self, name, value):
        self._collections.setdefault(name, []).append(value)

    def add_to_collections(self, names, value):
        for n in ([names] if isinstance(names, str) else names):
            self.add_to_collection(n, value)

    def get_collection_ref(self, name):
        return self._collections.setdefault(name, [])

    def get_collection(self, name, scope=None):
        items = list(self._collections.get(name, []))
        if scope is None:
            return items
        pat = re.compile(scope)
        return [it for it in items if hasattr(it, "name") and pat.match(it.name)]

    def get_all_collection_keys(self):
        return list(self._collections)

    def clear_collection(self, name):
        self._collections.pop(name, None)

    @property
    def version(self):
        return self._version

    def _version_structure(self):
        """Bumps only when existing ops are rewired (plans cached per signature stay valid
        when ops are merely added)."""
        return self._rewrites

    @property
    def building_function(self):
        return self._building_function


# --- module-level conveniences (tw.name_scope, tw.device, ...) ---------------------------------
def name_scope(name, default_name=None, values=None):
    """``with tw.name_scope("layer1") as scope:``; ops created inside are named ``layer1/...``."""
    g = get_default_graph()
    if values:
        for v in values:
            if isinstance(v, Tensor):
                g = v.graph
                break
    return g.name_scope(name if name is not None else default_name)


def control_dependencies(control_inputs):
    return get_default_graph().control_dependencies(control_inputs)


def device(device_name_or_function):
    return get_default_graph().device(device_name_or_function)


def colocate_with(op, ignore_existing=False):
    return get_default_graph().colocate_with(op, ignore_existing)


def add_to_collection(name, value):
    get_default_graph().add_to_collection(name, value)


def add_to_collections(names, value):
    get_default_graph().add_to_collections(names, value)


def get_collection(key, scope=None):
    return get_default_graph().get_collection(key, scope)


def get_collection_ref(key):
    return get_default_graph().get_collection_ref(key)


# --- tensor conversion ------------------------------------------------------------------------
_CONVERSION_FUNCTIONS: list[tuple[type, object]] = []


def register_tensor_conversion_function(base_type, conversion_func):
    """``conversion_func(value, dtype=None, name=None, as_ref=False) -> Tensor``."""
    _CONVERSION_FUNCTIONS.append((base_type, conversion_func))


def convert_to_tensor(value, dtype=None, name=None, preferred_dtype=None, as_ref=False):
    """Converts a Tensor, Variable, NumPy array or Python value to a Tensor of ``dtype``."""
    if isinstance(value, Tensor):
        if dtype is not None and _dtypes.as_dtype(dtype) != value.dtype:
            raise ValueError(f"Tensor conversion requested dtype {_dtypes.as_dtype(dtype).name} "
                             f"for Tensor with dtype {value.dtype.name}: {value!r}")
        return value
    for base, fn in _CONVERSION_FUNCTIONS:
        if isinstance(value, base):
            return fn(value, dtype=dtype, name=name, as_ref=as_ref)
    if isinstance(value, Operation):
        raise TypeError(f"Can't convert Operation {value.name!r} to a Tensor: use one of its "
                        "outputs (op.outputs[0]).")
    if isinstance(value, IndexedSlices):
        from tensorweave.ops import math_ops
        return math_ops.indexed_slices_to_dense(value)
    if isinstance(value, (list, tuple)) and _contains_tensor(value):
        from tensorweave.ops import array_ops  # lists holding tensors are packed, as in TF
        return array_ops.stack([convert_to_tensor(v, dtype=dtype) for v in value],
                               name=name or "packed")
    if dtype is None and preferred_dtype is not None:
        try:
            return constant_value_to_tensor(value, preferred_dtype, name)
        except (TypeError, ValueError):
            pass
    return constant_value_to_tensor(value, dtype, name)


def _contains_tensor(value) -> bool:
    for v in value:
        if isinstance(v, Tensor) or hasattr(v, "_snapshot"):
            return True
        if isinstance(v, (list, tuple)) and _contains_tensor(v):
            return True
    return False


def convert_n_to_tensor(values, dtype=None, name=None):
    return [convert_to_tensor(v, dtype) for v in values]


def constant_value_to_tensor(value, dtype, name):
    from tensorweave.framework.constant_op import constant
    return constant(value, dtype=dtype, name=name or "Const")


def convert_to_tensor_or_indexed_slices(value, dtype=None, name=None):
    if isinstance(value, IndexedSlices):
        return value
    return convert_to_tensor(value, dtype, name)


def string_array(value) -> np.ndarray:
    """``value`` as tensorweave holds ``tw.string`` data, TensorFlow's way: an object array of
    ``bytes`` (``str`` encoded as UTF-8)."""
    a = np.asarray(value, dtype=object)
    flat = [x.encode("utf-8") if isinstance(x, str) else x for x in a.reshape(-1).tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def numpy_value(value, dtype=None) -> np.ndarray:
    """Converts a Python/NumPy value to an ndarray with TensorFlow's default dtypes
    (Python floats become float32, ints int32), checking that ``dtype`` loses nothing."""
    if dtype is not None:
        dtype = _dtypes.as_dtype(dtype)
    if isinstance(value, np.ndarray) or np.isscalar(value) and isinstance(value, np.generic):
        arr = np.asarray(value)
    else:
        arr = np.asarray(value)
        if dtype is None:
            if arr.dtype.kind in "US":
                return string_array(arr)
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            elif arr.dtype == np.int64:
                if arr.size == 0 or (arr.min() >= -2**31 and arr.max() < 2**31):
                    arr = arr.astype(np.int32)
    if dtype is None:
        return string_array(arr) if arr.dtype.kind in "US" else arr
    npd = dtype.as_numpy_dtype
    if dtype is _dtypes.string:
        return string_array(arr)
    if arr.dtype.kind == "f" and dtype.is_integer:
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise TypeError(f"Expected {dtype.name}, got {value!r} of type "
                            f"'{type(value).__name__}' with fractional values instead.")
    if arr.dtype.kind in "fc" and dtype.is_bool:
        raise TypeError(f"Expected bool, got {value!r} instead.")
    return arr.astype(npd, copy=False)


def is_dense_tensor_like(x):
    return isinstance(x, Tensor)


def get_name_scope():
    return get_default_graph().get_name_scope()


DeviceSpec = DeviceSpec

"""``tw.get_variable`` and ``tw.variable_scope``: variables named by scope and shared on request.

Each graph keeps a variable store (full name -> Variable) and the current
:class:`VariableScope`. ``get_variable("w")`` inside ``variable_scope("layer1")`` creates or
returns ``layer1/w``: it creates when the scope's ``reuse`` is None/False (and refuses if the
name exists), returns the existing variable when ``reuse=True`` (and refuses if it doesn't
exist), and does whichever applies with ``reuse=tw.AUTO_REUSE``. Reuse is inherited by nested
scopes. A variable scope also opens a name scope, so ops built inside are named ``layer1/...``
(``layer1_1/...`` when the scope is entered again), while variable names depend only on the
variable scope.

Example::

    def dense(x, units):
        w = tw.get_variable("w", [x.shape[1].value, units])   # glorot_uniform by default
        b = tw.get_variable("b", [units], initializer=tw.zeros_initializer())
        return tw.matmul(x, w) + b

    with tw.variable_scope("net"):
        y1 = dense(x1, 10)
    with tw.variable_scope("net", reuse=True):
        y2 = dense(x2, 10)                                   # same net/w, net/b
"""

from __future__ import annotations

import contextlib
import enum

from tensorweave.framework import dtypes, ops
from tensorweave.framework.ops import GraphKeys, Tensor
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import init_ops
from tensorweave.ops.variables import Variable


class _ReuseMode(enum.Enum):
    AUTO_REUSE = 1


AUTO_REUSE = _ReuseMode.AUTO_REUSE
"""``reuse=tw.AUTO_REUSE``: get_variable creates a variable if absent, else returns it."""

_STORE_KEY = "__variable_store"  # graph collection holding the one _GraphVarState


class _GraphVarState:
    """A graph's variables created by get_variable, its current scope and scope-use counts."""

    def __init__(self):
        self.variables: dict[str, Variable] = {}
        self.current_scope = VariableScope(False)
        self.scope_counts: dict[str, int] = {}

    def open_scope(self, name):
        self.scope_counts[name] = self.scope_counts.get(name, 0) + 1
        # a scope entered afresh numbers its default-named sub-scopes from zero again (TF1)
        prefix = name + "/"
        for k in self.scope_counts:
            if k.startswith(prefix):
                self.scope_counts[k] = 0


def _state(graph=None) -> _GraphVarState:
    g = graph or ops.get_default_graph()
    ref = g.get_collection_ref(_STORE_KEY)
    if not ref:
        ref.append(_GraphVarState())
    return ref[0]


class VariableScope:
    """The settings ``get_variable`` applies inside a ``variable_scope``: name prefix, reuse,
    default initializer, regularizer, dtype, partitioner, custom getter and constraint."""

    def __init__(self, reuse, name="", initializer=None, regularizer=None, caching_device=None,
                 partitioner=None, custom_getter=None, name_scope="", dtype=dtypes.float32,
                 use_resource=None, constraint=None):
        self._name = name
        self._reuse = reuse
        self._initializer = initializer
        self._regularizer = regularizer
        self._caching_device = caching_device
        self._partitioner = partitioner
        self._custom_getter = custom_getter
        self._name_scope = name_scope
        self._dtype = dtypes.as_dtype(dtype)
        self._use_resource = use_resource
        self._constraint = constraint

    name = property(lambda self: self._name)
    original_name_scope = property(lambda self: self._name_scope)
    reuse = property(lambda self: self._reuse)
    initializer = property(lambda self: self._initializer)
    regularizer = property(lambda self: self._regularizer)
    caching_device = property(lambda self: self._caching_device)
    partitioner = property(lambda self: self._partitioner)
    custom_getter = property(lambda self: self._custom_getter)
    dtype = property(lambda self: self._dtype)
    use_resource = property(lambda self: self._use_resource)
    constraint = property(lambda self: self._constraint)

    def reuse_variables(self):
        """From now on ``get_variable`` in this scope returns existing variables."""
        self._reuse = True

    def set_initializer(self, initializer):
        self._initializer = initializer

    def set_regularizer(self, regularizer):
        self._regularizer = regularizer

    def set_dtype(self, dtype):
        self._dtype = dtypes.as_dtype(dtype)

    def set_partitioner(self, partitioner):
        self._partitioner = partitioner

    def set_custom_getter(self, custom_getter):
        self._custom_getter = custom_getter

    def set_caching_device(self, caching_device):
        self._caching_device = caching_device

    def set_use_resource(self, use_resource):
        self._use_resource = use_resource

    def global_variables(self):
        return ops.get_collection(GraphKeys.GLOBAL_VARIABLES, self._prefix())

    def trainable_variables(self):
        return ops.get_collection(GraphKeys.TRAINABLE_VARIABLES, self._prefix())

    def local_variables(self):
        return ops.get_collection(GraphKeys.LOCAL_VARIABLES, self._prefix())

    def _prefix(self):
        return self._name + "/" if self._name else None

    def _copy(self, name, reuse, name_scope):
        return VariableScope(reuse, name, self._initializer, self._regularizer,
                             self._caching_device, self._partitioner, self._custom_getter,
                             name_scope, self._dtype, self._use_resource, self._constraint)

    def get_variable(self, var_store, name, shape=None, dtype=None, initializer=None,
                     regularizer=None, reuse=None, trainable=None, collections=None,
                     caching_device=None, partitioner=None, validate_shape=True,
                     use_resource=None, custom_getter=None, constraint=None):
        """``get_variable`` with this scope's defaults; ``var_store`` is the graph's state."""
        full_name = f"{self._name}/{name}" if self._name else name
        if reuse is None or reuse is False:
            reuse = self._reuse
        kwargs = dict(
            shape=shape, dtype=dtype,
            initializer=initializer if initializer is not None else self._initializer,
            regularizer=regularizer if regularizer is not None else self._regularizer,
            reuse=reuse, trainable=trainable, collections=collections,
            partitioner=partitioner if partitioner is not None else self._partitioner,
            validate_shape=validate_shape,
            constraint=constraint if constraint is not None else self._constraint)

        scope_dtype = self._dtype

        def getter(name, *args, **kw):
            return _get_single_or_partitioned(var_store, name, *args, scope_dtype=scope_dtype,
                                              **kw)

        for g in (self._custom_getter, custom_getter):
            if g is not None:
                getter = _wrap_getter(g, getter)
        # variable names depend only on the variable scope, never on the current name scope
        with ops.name_scope(None):
            return getter(full_name, **kwargs)


def _wrap_getter(custom, inner):
    def getter(name, *args, **kwargs):
        return custom(inner, name, *args, **kwargs)

    return getter


def get_variable_scope() -> VariableScope:
    """The current variable scope of the default graph."""
    return _state().current_scope


def _var_store():
    return _state()


def get_variable(name, shape=None, dtype=None, initializer=None, regularizer=None,
                 trainable=None, collections=None, caching_device=None, partitioner=None,
                 validate_shape=True, use_resource=None, custom_getter=None, constraint=None,
                 synchronization=None, aggregation=None):
    """Gets an existing variable ``<scope>/name`` or creates a new one (see module docs).

    ``initializer`` is an initializer object or class, a Tensor or a Python/NumPy value (then
    ``shape`` comes from it); by default glorot_uniform for floats and zeros for integers.
    ``regularizer(variable)`` may return a loss tensor, added to REGULARIZATION_LOSSES.
    """
    state = _state()
    return state.current_scope.get_variable(
        state, name, shape=shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
        trainable=trainable, collections=collections, caching_device=caching_device,
        partitioner=partitioner, validate_shape=validate_shape, use_resource=use_resource,
        custom_getter=custom_getter, constraint=constraint)


def get_local_variable(name, shape=None, dtype=None, initializer=None, regularizer=None,
                       trainable=False, collections=None, **kwargs):
    """``get_variable`` into LOCAL_VARIABLES (not saved by default, not trainable)."""
    collections = list(collections or []) + [GraphKeys.LOCAL_VARIABLES]
    return get_variable(name, shape, dtype, initializer, regularizer, trainable=False,
                        collections=collections, **kwargs)


def _describe(v):
    return f"{v.op.location}"


def _get_single_or_partitioned(state, name, shape=None, dtype=None, initializer=None,
                               regularizer=None, reuse=None, trainable=None, collections=None,
                               partitioner=None, validate_shape=True, constraint=None,
                               scope_dtype=dtypes.float32, **_):
    if partitioner is not None:
        return _get_partitioned(state, name, partitioner, shape, dtype, initializer, regularizer,
                                reuse, trainable, collections, validate_shape, constraint,
                                scope_dtype)
    explicit_dtype = None if dtype is None else dtypes.as_dtype(dtype)
    dtype = explicit_dtype or dtypes.as_dtype(scope_dtype)
    shape = None if shape is None else (shape if isinstance(shape, TensorShape)
                                        else TensorShape(shape))
    found = state.variables.get(name)
    if found is not None:
        if reuse is not True and reuse is not AUTO_REUSE:
            raise ValueError(
                f"Variable {name} already exists, disallowed. Did you mean to set reuse=True or "
                f"reuse=tw.AUTO_REUSE in VarScope? Originally defined at: {_describe(found)}")
        if shape is not None and not shape.is_compatible_with(found.shape):
            raise ValueError(f"Trying to share variable {name}, but specified shape {shape} and "
                             f"found shape {found.shape}.")
        if dtype != found.dtype.base_dtype:
            raise ValueError(f"Trying to share variable {name}, but specified dtype "
                             f"{dtype.name} and found dtype {found.dtype.base_dtype.name}.")
        return found
    if reuse is True:
        raise ValueError(f"Variable {name} does not exist, or was not created with "
                         "tw.get_variable(). Did you mean to set reuse=tw.AUTO_REUSE in VarScope?")
    if isinstance(initializer, type):  # get_variable(..., initializer=tw.zeros_initializer)
        initializer = initializer(dtype=dtype)
    if initializer is not None and not callable(initializer):
        # a Tensor or a value: it carries the shape (TF1 forbids giving both)
        if shape is not None and isinstance(initializer, Tensor) and validate_shape \
                and not shape.is_compatible_with(initializer.shape):
            raise ValueError(f"get_variable({name!r}): shape {shape} does not match the "
                             f"initializer's shape {initializer.shape}")
        value = initializer
        # a value's own dtype counts unless one was asked for (TF1: 1 -> int32, 1.0 -> float32)
        init_dtype = explicit_dtype

        def initial_value():
            return value
    else:
        if shape is None or not shape.is_fully_defined():
            raise ValueError(f"Shape of a new variable ({name}) must be fully defined, but "
                             f"instead was {shape}.")
        if initializer is None:
            initializer = _default_initializer(name, dtype)
        init_dtype = dtype

        def initial_value():
            return initializer(shape.as_list(), dtype=dtype, partition_info=None)

    if trainable is None:
        trainable = True
    with ops.control_dependencies(None):
        v = Variable(initial_value, trainable=trainable, collections=collections,
                     validate_shape=validate_shape, name=name, dtype=init_dtype,
                     constraint=constraint)
    state.variables[name] = v
    if regularizer is not None:
        with ops.colocate_with(v), ops.name_scope(f"{name}/Regularizer/"):
            loss = regularizer(v)
        if loss is not None:
            ops.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
    return v


class _PartitionInfo:
    """What an initializer of one shard learns about the whole variable."""

    def __init__(self, full_shape, var_offset):
        self.full_shape = list(full_shape)
        self.var_offset = list(var_offset)


class PartitionedVariable:
    """A variable stored as shards ``<name>/part_<i>`` split along one axis (TF1's
    ``get_variable(..., partitioner=...)``). Iterating gives the shards (pass ``list(pv)`` to
    ``tw.nn.embedding_lookup``); converting to a tensor concatenates them."""

    def __init__(self, name, shape, dtype, variable_list, partitions):
        self._name, self._shape, self._dtype = name, shape, dtype
        self._variable_list = list(variable_list)
        self._partitions = list(partitions)
        self._axis = next((i for i, p in enumerate(self._partitions) if p > 1), 0)

    name = property(lambda self: self._name)
    dtype = property(lambda self: self._dtype)
    shape = property(lambda self: self._shape)
    graph = property(lambda self: self._variable_list[0].graph)

    def get_shape(self):
        return self._shape

    def __iter__(self):
        return iter(self._variable_list)

    def __len__(self):
        return len(self._variable_list)

    def _get_variable_list(self):
        return list(self._variable_list)

    def _get_partitions(self):
        return list(self._partitions)

    def as_tensor(self):
        from tensorweave.ops import array_ops
        if len(self._variable_list) == 1:
            return array_ops.identity(self._variable_list[0])
        with ops.name_scope(None), ops.name_scope(f"{self._name}/ConcatPartitions/"):
            return array_ops.concat(self._variable_list, self._axis, name="concat")

    def __repr__(self):
        return (f"<tw.PartitionedVariable '{self._name}' shape={self._shape} "
                f"parts={len(self._variable_list)}>")


ops.register_tensor_conversion_function(
    PartitionedVariable, lambda v, dtype=None, name=None, as_ref=False: v.as_tensor())


def _get_partitioned(state, name, partitioner, shape, dtype, initializer, regularizer, reuse,
                     trainable, collections, validate_shape, constraint, scope_dtype):
    dtype = dtypes.as_dtype(dtype if dtype is not None else scope_dtype)
    shape = None if shape is None else TensorShape(shape)
    found = state.variables.get(name)
    if found is not None or reuse is True:
        if found is not None and not isinstance(found, PartitionedVariable):
            raise ValueError(f"Trying to reuse variable {name} as partitioned, but it was "
                             "created without a partitioner.")
        got = _get_single_or_partitioned(state, name, shape=shape, dtype=dtype, reuse=reuse)
        if shape is not None and not shape.is_compatible_with(got.shape):
            raise ValueError(f"Trying to share variable {name}, but specified shape {shape} and "
                             f"found shape {got.shape}.")
        return got
    if shape is None or not shape.is_fully_defined():
        raise ValueError(f"Shape of a new partitioned variable ({name}) must be fully defined, "
                         f"but instead was {shape}.")
    if initializer is not None and not callable(initializer):
        raise ValueError(f"Partitioned variable {name} needs a callable initializer, not a value")
    dims = shape.as_list()
    partitions = [int(p) for p in partitioner(shape=shape, dtype=dtype)]
    if len(partitions) != len(dims) or any(p < 1 for p in partitions) or \
            sum(p > 1 for p in partitions) > 1:
        raise ValueError(f"Partitioner for {name} returned {partitions}: expected one positive "
                         f"int per dimension of {dims}, at most one of them above 1")
    axis = next((i for i, p in enumerate(partitions) if p > 1), 0)
    n = min(partitions[axis], dims[axis]) if dims else 1
    base, extra = divmod(dims[axis], n) if dims else (0, 0)
    shards, offset = [], 0
    if isinstance(initializer, type):
        initializer = initializer(dtype=dtype)
    init = initializer if initializer is not None else _default_initializer(name, dtype)
    for i in range(n):
        part = list(dims)
        if dims:
            part[axis] = base + (1 if i < extra else 0)
        off = [0] * len(dims)
        if dims:
            off[axis] = offset
        info = _PartitionInfo(dims, off)

        def initial_value(part=part, info=info):
            return init(part, dtype=dtype, partition_info=info)

        shards.append(_get_single_or_partitioned(
            state, f"{name}/part_{i}", shape=part, dtype=dtype,
            initializer=_Bound(initial_value), regularizer=regularizer, reuse=reuse,
            trainable=trainable, collections=collections, validate_shape=validate_shape,
            constraint=constraint))
        offset += part[axis] if dims else 0
    pv = PartitionedVariable(name, shape, dtype, shards, partitions)
    state.variables[name] = pv
    return pv


class _Bound:
    """An initializer for one shard whose shape and partition info are already fixed."""

    def __init__(self, make):
        self._make = make

    def __call__(self, shape, dtype=None, partition_info=None):
        return self._make()


def fixed_size_partitioner(num_shards, axis=0):
    """A partitioner splitting ``axis`` into ``num_shards`` shards."""
    def partitioner(shape, dtype=None):
        parts = [1] * TensorShape(shape).ndims
        parts[axis] = num_shards
        return parts

    return partitioner


def min_max_variable_partitioner(max_partitions=1, axis=0, min_slice_size=256 << 10,
                                 bytes_per_string_element=16):
    """A partitioner making shards of at least ``min_slice_size`` bytes, at most
    ``max_partitions`` of them."""
    def partitioner(shape, dtype):
        dims = TensorShape(shape).as_list()
        dtype = dtypes.as_dtype(dtype)
        elem = bytes_per_string_element if dtype is dtypes.string else dtype.size
        total = elem
        for d in dims:
            total *= d
        n = max(1, min(max_partitions, dims[axis], -(-total // min_slice_size)))
        parts = [1] * len(dims)
        parts[axis] = n
        return parts

    return partitioner


def _default_initializer(name, dtype):
    if dtype.is_floating:
        return init_ops.GlorotUniform()
    if dtype.is_integer or dtype.is_bool or dtype.is_complex:
        return init_ops.Zeros()
    raise ValueError(f"An initializer for variable {name} of {dtype.name} is required")


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, initializer=None,
                   regularizer=None, caching_device=None, partitioner=None, custom_getter=None,
                   reuse=None, dtype=None, use_resource=None, constraint=None,
                   auxiliary_name_scope=True):
    """Opens a variable scope (and a name scope) for ``get_variable`` and op names.

    ``name_or_scope``: a name (relative to the current scope) or a :class:`VariableScope` to
    re-enter (absolute); ``None`` uses ``default_name``, made unique. ``reuse``: True,
    ``tw.AUTO_REUSE`` or None (inherit; False also inherits, as in TF1). The other arguments
    become the scope's defaults for ``get_variable``.
    """
    if name_or_scope is None and default_name is None:
        raise TypeError("If default_name is None then name_or_scope is required")
    if name_or_scope is not None and not isinstance(name_or_scope, (str, VariableScope)):
        raise TypeError(f"VariableScope: name_or_scope must be a string or VariableScope, got "
                        f"{type(name_or_scope).__name__}")
    if reuse not in (None, True, False, AUTO_REUSE):
        raise ValueError(f"variable_scope: reuse must be True, False, None or tw.AUTO_REUSE, got "
                         f"{reuse!r}")
    graph = ops.get_default_graph()
    for v in values or ():
        if isinstance(v, Tensor) or hasattr(v, "_as_graph_element"):
            graph = v.graph
            break
    with graph.as_default():
        state = _state(graph)
        parent = state.current_scope
        if name_or_scope is None and reuse is True:
            raise ValueError("reuse=True cannot be used without a name_or_scope")
        if isinstance(name_or_scope, VariableScope):
            ns_name = name_or_scope.name.split("/")[-1]
        elif name_or_scope is not None:
            ns_name = name_or_scope
        else:
            ns_name = default_name
        if auxiliary_name_scope and ns_name:
            name_scope_cm = graph.name_scope(ns_name)
        else:
            name_scope_cm = contextlib.nullcontext(
                name_or_scope.original_name_scope if isinstance(name_or_scope, VariableScope)
                else "")
        with name_scope_cm as ns:
            if isinstance(name_or_scope, VariableScope):
                new = name_or_scope._copy(name_or_scope.name,
                                          reuse if reuse else name_or_scope.reuse,
                                          name_or_scope.original_name_scope)
            else:
                if name_or_scope is None:
                    rel = _unique_scope_name(state, parent, default_name)
                else:
                    rel = name_or_scope
                full = f"{parent.name}/{rel}" if parent.name else rel
                inherited = reuse if reuse else parent.reuse
                new = parent._copy(full, inherited, ns)
            if initializer is not None:
                new.set_initializer(initializer)
            if regularizer is not None:
                new.set_regularizer(regularizer)
            if caching_device is not None:
                new.set_caching_device(caching_device)
            if partitioner is not None:
                new.set_partitioner(partitioner)
            if custom_getter is not None:
                old_getter = new.custom_getter
                new.set_custom_getter(custom_getter if old_getter is None else
                                      _compose_getters(custom_getter, old_getter))
            if dtype is not None:
                new.set_dtype(dtype)
            if use_resource is not None:
                new.set_use_resource(use_resource)
            if constraint is not None:
                new._constraint = constraint
            state.open_scope(new.name)
            state.current_scope = new
            try:
                yield new
            finally:
                state.current_scope = parent


def _compose_getters(outer, inner):
    def getter(next_getter, name, *args, **kwargs):
        return outer(_wrap_getter(inner, next_getter), name, *args, **kwargs)

    return getter


def _unique_scope_name(state, parent, prefix):
    base = f"{parent.name}/{prefix}" if parent.name else prefix
    if state.scope_counts.get(base, 0) == 0:
        return prefix
    i = 1
    while state.scope_counts.get(f"{base}_{i}", 0) > 0:
        i += 1
    return f"{prefix}_{i}"


def variable_op_scope(values, name_or_scope, default_name=None, initializer=None,
                      regularizer=None, caching_device=None, partitioner=None,
                      custom_getter=None, reuse=None, dtype=None, use_resource=None,
                      constraint=None):
    """Deprecated TF1 spelling of ``variable_scope(name_or_scope, default_name, values)``."""
    return variable_scope(name_or_scope, default_name=default_name, values=values,
                          initializer=initializer, regularizer=regularizer,
                          caching_device=caching_device, partitioner=partitioner,
                          custom_getter=custom_getter, reuse=reuse, dtype=dtype,
                          use_resource=use_resource, constraint=constraint)


def no_regularizer(_):
    """Use as ``regularizer=tw.no_regularizer`` to switch off a scope's regularizer."""
    return None


__all__ = ["AUTO_REUSE", "VariableScope", "PartitionedVariable", "fixed_size_partitioner",
           "min_max_variable_partitioner", "get_variable", "get_local_variable",
           "get_variable_scope", "variable_scope", "variable_op_scope", "no_regularizer"]

"""``tw.Variable``: a stateful node (VariableV2) plus its initializer and a read snapshot.

Example::

    w = tw.Variable(tw.zeros([784, 10]), name="w")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(w.assign_add(tw.ones([784, 10])))
"""

from __future__ import annotations

from tensorweave.framework import dtypes as _dtypes
from tensorweave.framework import ops
from tensorweave.framework.ops import GraphKeys, Tensor, convert_to_tensor
from tensorweave.ops import state_ops


class Variable:
    def __init__(self, initial_value=None, trainable=True, collections=None, validate_shape=True,
                 caching_device=None, name=None, variable_def=None, dtype=None,
                 expected_shape=None, import_scope=None, constraint=None, use_resource=None,
                 synchronization=None, aggregation=None, shape=None):
        if initial_value is None:
            raise ValueError("initial_value must be specified for tw.Variable (e.g. "
                             "tw.zeros([10]) or a NumPy array).")
        from tensorweave.framework.func_graph import lifted_graph_scope
        # variables made inside loop bodies live outside them, and a variable made under
        # tw.control_dependencies does not make its initializer wait for those ops (TF1's
        # init_scope): global_variables_initializer must not run the training step
        with lifted_graph_scope(), ops.control_dependencies(None):
            self._init(initial_value, trainable, collections, validate_shape, name, dtype,
                       constraint, shape)

    def _init(self, initial_value, trainable, collections, validate_shape, name, dtype,
              constraint, shape):
        self._trainable = trainable
        self._constraint = constraint
        if collections is None:
            collections = [GraphKeys.GLOBAL_VARIABLES]
        collections = list(collections)
        if trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
            collections.append(GraphKeys.TRAINABLE_VARIABLES)
        with ops.name_scope(name, "Variable") as scope:
            with ops.name_scope("Initializer"), ops.control_dependencies(None):
                init_fn = initial_value
                value = init_fn() if callable(init_fn) else init_fn
                self._initial_value = convert_to_tensor(value, dtype=dtype, name="initial_value")
            if shape is not None:
                var_shape = ops.TensorShape(shape) if not isinstance(shape, ops.TensorShape) \
                    else shape
            elif validate_shape:
                var_shape = self._initial_value.shape
            else:
                var_shape = ops.TensorShape(None)
            self._variable = state_ops.variable_op(var_shape, self._initial_value.dtype,
                                                   name=scope)
            with ops.colocate_with(self._variable.op):
                self._initializer_op = state_ops.assign(
                    self._variable, self._initial_value, validate_shape=validate_shape,
                    name="Assign").op
                self._assign_initial = self._initializer_op
                self._snapshot = _identity(self._variable, "read")
        g = self._variable.graph
        for c in collections:
            g.add_to_collection(c, self)
        self._save_slice_info = None

    # --- properties ----------------------------------------------------------------------
    @property
    def name(self):
        return self._variable.name

    @property
    def op(self):
        return self._variable.op

    @property
    def graph(self):
        return self._variable.graph

    @property
    def device(self):
        return self._variable.device

    @property
    def dtype(self):
        return self._variable.dtype

    @property
    def shape(self):
        return self._variable.shape

    def get_shape(self):
        return self._variable.shape

    @property
    def trainable(self):
        return self._trainable

    @property
    def initializer(self):
        return self._initializer_op

    @property
    def initial_value(self):
        return self._initial_value

    @property
    def constraint(self):
        return self._constraint

    def value(self) -> Tensor:
        return self._snapshot

    def read_value(self) -> Tensor:
        return _identity(self._variable, "read")

    def initialized_value(self):
        from tensorweave.ops import control_flow_ops
        with ops.control_dependencies(None):
            return control_flow_ops.cond(
                state_ops.is_variable_initialized(self), self.read_value,
                lambda: self._initial_value)

    def _as_graph_element(self):
        return self._variable

    def _ref(self):
        return self._variable

    # --- updates -------------------------------------------------------------------------
    def assign(self, value, use_locking=False, name=None, read_value=True):
        return state_ops.assign(self._variable, value, use_locking=use_locking, name=name)

    def assign_add(self, delta, use_locking=False, name=None, read_value=True):
        return state_ops.assign_add(self._variable, delta, use_locking=use_locking, name=name)

    def assign_sub(self, delta, use_locking=False, name=None, read_value=True):
        return state_ops.assign_sub(self._variable, delta, use_locking=use_locking, name=name)

    def scatter_sub(self, sparse_delta, use_locking=False, name=None):
        return state_ops.scatter_sub(self._variable, sparse_delta.indices, sparse_delta.values,
                                     use_locking=use_locking, name=name)

    def eval(self, session=None):
        return self._variable.eval(session=session)

    def load(self, value, session=None):
        """Writes ``value`` into the variable through its initializer, without new ops."""
        session = session or ops.get_default_session()
        if session is None:
            raise ValueError("Variable.load needs a session: pass session= or use one as default")
        # the assign from the initial value (init_from_checkpoint may replace the initializer)
        session.run(self._assign_initial, {self._initial_value: value})

    def set_shape(self, shape):
        self._variable.set_shape(shape)
        self._snapshot.set_shape(shape)

    def __repr__(self):
        return f"<tw.Variable '{self.name}' shape={self.shape} dtype={self.dtype.name}>"

    def __hash__(self):
        return id(self)

    def __iter__(self):
        raise TypeError("Variable objects are not iterable; use tw.unstack(var).")

    def __bool__(self):
        raise TypeError("Using a tw.Variable as a Python bool is not allowed.")

    def to_proto(self, export_scope=None):
        return None


def _identity(t, name):
    from tensorweave.ops import array_ops
    return array_ops.identity(t, name=name)


def _delegate(name):
    def method(self, *args):
        return getattr(self._snapshot, name)(*args)

    method.__name__ = name
    setattr(Variable, name, method)


for _n in ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
           "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__",
           "__rpow__", "__matmul__", "__rmatmul__", "__neg__", "__abs__", "__lt__", "__le__",
           "__gt__", "__ge__", "__getitem__", "__and__", "__or__", "__invert__"]:
    _delegate(_n)
Variable.__array_priority__ = 100


def _to_tensor(v, dtype=None, name=None, as_ref=False):
    t = v._variable if as_ref else v._snapshot
    if dtype is not None and _dtypes.as_dtype(dtype) != t.dtype:
        raise ValueError(f"Incompatible type conversion requested to type "
                         f"{_dtypes.as_dtype(dtype).name} for variable of type {t.dtype.name}")
    return t


ops.register_tensor_conversion_function(Variable, _to_tensor)


# --- collections and initializers --------------------------------------------------------------
def global_variables(scope=None):
    return ops.get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


def local_variables(scope=None):
    return ops.get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def trainable_variables(scope=None):
    return ops.get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def model_variables(scope=None):
    return ops.get_collection(GraphKeys.MODEL_VARIABLES, scope)


all_variables = global_variables


def variables_initializer(var_list, name="init"):
    """One op that runs the initializers of ``var_list``."""
    from tensorweave.ops import control_flow_ops
    if var_list:
        return control_flow_ops.group(*[v.initializer for v in var_list], name=name)
    return control_flow_ops.no_op(name=name)


def global_variables_initializer():
    return variables_initializer(global_variables(), name="init")


def local_variables_initializer():
    return variables_initializer(local_variables(), name="init_local")


initialize_all_variables = global_variables_initializer


def is_variable_initialized(variable):
    return state_ops.is_variable_initialized(variable)


def report_uninitialized_variables(var_list=None, name="report_uninitialized_variables"):
    """A string tensor naming the variables of ``var_list`` that are not initialized."""
    from tensorweave.ops import array_ops
    var_list = global_variables() + local_variables() if var_list is None else var_list
    with ops.name_scope(name):
        if not var_list:
            return array_ops.constant([], dtype=_dtypes.string)
        flags = array_ops.stack([state_ops.is_variable_initialized(v) for v in var_list])
        names = array_ops.constant([v.op.name for v in var_list], dtype=_dtypes.string)
        from tensorweave.ops import math_ops
        return array_ops.boolean_mask(names, math_ops.logical_not(flags))


ops.TensorShape = __import__("tensorweave.framework.tensor_shape",
                             fromlist=["TensorShape"]).TensorShape

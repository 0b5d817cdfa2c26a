"""``tw.train.Optimizer``: the base class of every optimizer (TF1's ``tf.train.Optimizer``).

``minimize`` is ``compute_gradients`` (``tw.gradients`` over the trainable variables) followed by
``apply_gradients``, which creates the optimizer's slots, builds one update op per variable
(dense, or row-wise for ``tw.IndexedSlices`` gradients), groups them, and increments the
global step after them. Subclasses implement ``_create_slots``, ``_prepare``, ``_apply_dense``,
``_apply_sparse`` and optionally ``_finish``.

Example::

    opt = tw.train.MomentumOptimizer(0.1, momentum=0.9)
    train_op = opt.minimize(loss, global_step=tw.train.get_or_create_global_step())
    opt.get_slot(w, "momentum")          # the <w>/Momentum variable
"""

from __future__ import annotations

from tensorweave.framework import dtypes, ops
from tensorweave.framework.ops import GraphKeys, IndexedSlices, Tensor, convert_to_tensor
from tensorweave.gradients.gradients_impl import gradients
from tensorweave.ops import array_ops, control_flow_ops, math_ops, state_ops
from tensorweave.ops.variables import Variable, trainable_variables

_VALID_DTYPES = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)


def _var_key(var):
    """Slots are keyed by (graph, variable op name), so a Variable and its ref tensor agree."""
    return (var.op.graph, var.op.name)


def _is_variable(v):
    return isinstance(v, Variable) or hasattr(v, "_variable")


def _call_if_callable(v):
    return v() if callable(v) else v


def create_slot(primary, initial_value_fn, op_name):
    """A non-trainable variable named ``<primary>/<op_name>`` (uniquified), colocated with
    ``primary``, created outside any name scope or control dependencies, and in
    GLOBAL_VARIABLES so ``tw.global_variables_initializer()`` initializes it."""
    g = primary.graph
    with g.as_default(), g.name_scope(None), g.control_dependencies(None), \
            ops.colocate_with(primary):
        return Variable(initial_value_fn, trainable=False, name=f"{primary.op.name}/{op_name}",
                        validate_shape=primary.shape.is_fully_defined())


def _filled_like(primary, value):
    """An initializer function for a slot of ``primary``'s shape filled with ``value``. A Fill
    op keeps a large embedding's slot from embedding a full-size constant in the graph."""
    dtype = primary.dtype.base_dtype

    def init():
        if primary.shape.is_fully_defined():
            dims = primary.shape.as_list()
        else:
            dims = array_ops.shape(primary.initial_value)
        return array_ops.fill(dims, ops.constant_value_to_tensor(value, dtype, "value"))

    return init


class Optimizer:
    """Base class of optimizers: turns gradients into in-place update ops on variables."""

    GATE_NONE = 0
    GATE_OP = 1
    GATE_GRAPH = 2

    def __init__(self, use_locking, name):
        if not name:
            raise ValueError("Must specify the optimizer name (e.g. name='Momentum')")
        self._use_locking = use_locking
        self._name = name
        self._slots: dict = {}  # slot name -> {var key: slot Variable}
        self._non_slot_dict: dict = {}  # (name, graph) -> Variable
        self._hyper_cache: dict = {}

    def get_name(self):
        return self._name

    # --- the three public steps -------------------------------------------------------------
    def minimize(self, loss, global_step=None, var_list=None, gate_gradients=GATE_OP,
                 aggregation_method=None, colocate_gradients_with_ops=False, name=None,
                 grad_loss=None):
        """Adds ops that update ``var_list`` (default: trainable variables) to reduce ``loss``,
        and increment ``global_step`` if given. Returns the training op."""
        grads_and_vars = self.compute_gradients(
            loss, var_list=var_list, gate_gradients=gate_gradients,
            aggregation_method=aggregation_method,
            colocate_gradients_with_ops=colocate_gradients_with_ops, grad_loss=grad_loss)
        if not any(g is not None for g, _ in grads_and_vars):
            raise ValueError(
                "No gradients provided for any variable, check your graph for ops that do not "
                f"support gradients, between variables {[str(v) for _, v in grads_and_vars]} "
                f"and loss {loss}.")
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def compute_gradients(self, loss, var_list=None, gate_gradients=GATE_OP,
                          aggregation_method=None, colocate_gradients_with_ops=False,
                          grad_loss=None):
        """Returns ``[(gradient, variable)]`` for ``var_list`` (default: the trainable
        variables); a gradient is None where ``loss`` does not depend on the variable, and a
        ``tw.IndexedSlices`` for sparse reads (gather, embedding_lookup)."""
        if callable(loss):
            loss = loss()
        if gate_gradients not in (self.GATE_NONE, self.GATE_OP, self.GATE_GRAPH):
            raise ValueError("gate_gradients must be one of: Optimizer.GATE_NONE, "
                             f"Optimizer.GATE_OP, Optimizer.GATE_GRAPH. Not {gate_gradients}")
        loss = convert_to_tensor(loss)
        self._assert_valid_dtypes([loss])
        if grad_loss is not None:
            grad_loss = convert_to_tensor(grad_loss, dtype=loss.dtype)
        if var_list is None:
            var_list = trainable_variables() if loss.graph is ops.get_default_graph() else \
                loss.graph.get_collection(GraphKeys.TRAINABLE_VARIABLES)
        else:
            var_list = list(var_list.values() if isinstance(var_list, dict) else var_list)
        if not var_list:
            raise ValueError("No variables to optimize.")
        for v in var_list:
            if not _is_variable(v):
                raise TypeError(f"var_list must hold tw.Variable objects; got {v!r}")
        self._assert_valid_dtypes(var_list)
        grads = gradients(loss, var_list, grad_ys=grad_loss,
                          gate_gradients=gate_gradients == self.GATE_OP,
                          aggregation_method=aggregation_method,
                          colocate_gradients_with_ops=colocate_gradients_with_ops)
        if gate_gradients == self.GATE_GRAPH:
            grads = control_flow_ops.tuple_(grads)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """Returns one op that applies every (gradient, variable) update and then, if
        ``global_step`` is given, increments it by one."""
        grads_and_vars = tuple(grads_and_vars)
        if not grads_and_vars:
            raise ValueError("No variables provided.")
        converted = []
        for g, v in grads_and_vars:
            if not _is_variable(v):
                raise TypeError(f"apply_gradients: each pair must be (gradient, tw.Variable); "
                                f"got variable {v!r}")
            if g is not None:
                try:
                    g = ops.convert_to_tensor_or_indexed_slices(g)
                except (TypeError, ValueError) as e:
                    raise TypeError("Gradient must be convertible to a Tensor or IndexedSlices, "
                                    f"or None: {g!r} ({e})") from None
                if not isinstance(g, (Tensor, IndexedSlices)):
                    raise TypeError("Gradient must be a Tensor, IndexedSlices, or None: "
                                    f"{g!r}")
            converted.append((g, v))
        var_list = [v for g, v in converted if g is not None]
        if not var_list:
            raise ValueError(f"No gradients provided for any variable: "
                             f"{[str(v) for _, v in converted]}.")
        graph = var_list[0].graph
        with graph.as_default():
            self._create_slots(var_list)
            update_ops = []
            with ops.name_scope(name, self._name) as scope:
                self._hyper_cache = {}
                self._prepare()
                for grad, var in converted:
                    if grad is None:
                        continue
                    with ops.name_scope("update_" + var.op.name), ops.colocate_with(var):
                        if isinstance(grad, IndexedSlices):
                            update = self._apply_sparse_duplicate_indices(grad, var)
                        else:
                            update = self._apply_dense(grad, var)
                    update_ops.append(update)
                if global_step is None:
                    apply_updates = self._finish(update_ops, scope)
                else:
                    with ops.control_dependencies([self._finish(update_ops, "update")]), \
                            ops.colocate_with(global_step):
                        apply_updates = state_ops.assign_add(global_step, 1, name=scope).op
            train_ops = graph.get_collection_ref(GraphKeys.TRAIN_OP)
            if apply_updates not in train_ops:
                train_ops.append(apply_updates)
        return apply_updates

    # --- slots ------------------------------------------------------------------------------
    def get_slot_names(self):
        """Sorted names of the slots this optimizer creates (e.g. ``["m", "v"]`` for Adam)."""
        return sorted(self._slots)

    def get_slot(self, var, name):
        """The slot variable ``name`` of ``var``, or None."""
        return self._slots.get(name, {}).get(_var_key(var))

    def variables(self):
        """The optimizer's variables in the current graph (slots and e.g. Adam's beta powers),
        sorted by name."""
        g = ops.get_default_graph()
        found = [v for (_, vg), v in self._non_slot_dict.items() if vg is g]
        for slots in self._slots.values():
            found.extend(v for v in slots.values() if v.graph is g)
        return sorted(found, key=lambda v: v.name)

    def _slot_dict(self, slot_name):
        return self._slots.setdefault(slot_name, {})

    def _get_or_make_slot_with_initializer(self, var, init_fn, slot_name, op_name):
        slots = self._slot_dict(slot_name)
        key = _var_key(var)
        if key not in slots:
            slots[key] = create_slot(var, init_fn, op_name)
        return slots[key]

    def _zeros_slot(self, var, slot_name, op_name):
        return self._get_or_make_slot_with_initializer(var, _filled_like(var, 0), slot_name,
                                                       op_name)

    def _filled_slot(self, var, value, slot_name, op_name):
        return self._get_or_make_slot_with_initializer(var, _filled_like(var, value), slot_name,
                                                       op_name)

    def _create_non_slot_variable(self, initial_value, name, colocate_with):
        """One variable per graph shared by all of this optimizer's updates (Adam's
        ``beta1_power``): created at the root scope, colocated with ``colocate_with``."""
        g = colocate_with.graph
        key = (name, g)
        v = self._non_slot_dict.get(key)
        if v is None:
            with g.as_default(), g.name_scope(None), g.control_dependencies(None), \
                    ops.colocate_with(colocate_with):
                v = Variable(initial_value, name=name, trainable=False)
            self._non_slot_dict[key] = v
        return v

    def _get_non_slot_variable(self, name, graph=None):
        return self._non_slot_dict.get((name, graph or ops.get_default_graph()))

    # --- hyperparameters -----------------------------------------------------------------------
    def _hyper(self, name, value, var):
        """``value`` (a Python number, tensor or callable) as a scalar of ``var``'s dtype,
        built once per apply_gradients call and dtype."""
        dtype = var.dtype.base_dtype
        key = (name, dtype)
        t = self._hyper_cache.get(key)
        if t is None:
            value = _call_if_callable(value)
            if isinstance(value, (Tensor, Variable)) or hasattr(value, "_as_graph_element"):
                t = math_ops.cast(convert_to_tensor(value), dtype)
            else:
                t = ops.constant_value_to_tensor(value, dtype, name)
            self._hyper_cache[key] = t
        return t

    # --- what subclasses implement ------------------------------------------------------------
    def _create_slots(self, var_list):
        pass

    def _prepare(self):
        pass

    def _apply_dense(self, grad, var):
        raise NotImplementedError(f"{type(self).__name__} does not implement _apply_dense")

    def _apply_sparse_duplicate_indices(self, grad, var):
        """Sparse update; the kernels sum the rows of duplicate indices before applying."""
        return self._apply_sparse(grad, var)

    def _apply_sparse(self, grad, var):
        raise NotImplementedError(f"{type(self).__name__} does not implement _apply_sparse")

    def _finish(self, update_ops, name_scope):
        return control_flow_ops.group(*update_ops, name=name_scope)

    # --- checks ---------------------------------------------------------------------------------
    def _assert_valid_dtypes(self, tensors):
        for t in tensors:
            dtype = t.dtype.base_dtype
            if dtype not in _VALID_DTYPES:
                raise ValueError(f"Invalid type {dtype.name} for {t.name}, expected: "
                                 f"{[d.name for d in _VALID_DTYPES]}.")


__all__ = ["Optimizer"]

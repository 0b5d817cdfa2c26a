"""Variables' ops: storage (VariableV2), assignment, scatter updates, initialization checks."""

from __future__ import annotations

from tensorweave.framework import dtypes
from tensorweave.framework.ops import convert_to_tensor
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops.op_util import make, make_op


@register_op("VariableV2", stateful=True)
def _variable_infer(op):
    return [(op.attrs["dtype"], op.attrs["shape"])]


def _assign_like_infer(op):
    ref, value = op.inputs[0], op.inputs[1]
    if ref.dtype != value.dtype:
        raise TypeError(f"Cannot assign a {value.dtype.name} value to variable "
                        f"{ref.op.name!r} of dtype {ref.dtype.name}")
    if op.attrs.get("validate_shape", True) and not ref.shape.is_compatible_with(value.shape):
        raise ValueError(f"Shapes {ref.shape} and {value.shape} are incompatible: cannot assign "
                         f"a value of shape {value.shape} to variable {ref.op.name!r}")
    shape = ref.shape if op.attrs.get("validate_shape", True) else value.shape
    return [(ref.dtype, shape)]


for _t in ("Assign", "AssignAdd", "AssignSub"):
    register_op(_t, stateful=True, ref_inputs=(0,))(_assign_like_infer)


def _scatter_infer(op):
    ref, indices, updates = op.inputs
    if ref.dtype != updates.dtype:
        raise TypeError(f"Scatter update dtype {updates.dtype.name} does not match variable "
                        f"{ref.op.name!r} of dtype {ref.dtype.name}")
    return [(ref.dtype, ref.shape)]


for _t in ("ScatterUpdate", "ScatterAdd", "ScatterSub"):
    register_op(_t, stateful=True, ref_inputs=(0,))(_scatter_infer)


@register_op("IsVariableInitialized", stateful=True, ref_inputs=(0,))
def _is_init_infer(op):
    return [(dtypes.bool_, TensorShape([]))]


def variable_op(shape, dtype, name="Variable"):
    return make("VariableV2", [], {"shape": TensorShape(shape), "dtype": dtypes.as_dtype(dtype),
                                   "container": "", "shared_name": ""}, name=name)


def _ref(ref):
    return ref._variable if hasattr(ref, "_variable") else ref


def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """``ref = value``; returns the variable's new value."""
    ref = _ref(ref)
    value = convert_to_tensor(value, dtype=ref.dtype)
    return make("Assign", [ref, value], {"validate_shape": validate_shape is not False,
                                         "use_locking": bool(use_locking)}, name=name or "Assign")


def assign_add(ref, value, use_locking=None, name=None):
    ref = _ref(ref)
    return make("AssignAdd", [ref, convert_to_tensor(value, dtype=ref.dtype)],
                {"use_locking": bool(use_locking)}, name=name or "AssignAdd")


def assign_sub(ref, value, use_locking=None, name=None):
    ref = _ref(ref)
    return make("AssignSub", [ref, convert_to_tensor(value, dtype=ref.dtype)],
                {"use_locking": bool(use_locking)}, name=name or "AssignSub")


def _scatter(op_type, ref, indices, updates, use_locking, name):
    ref = _ref(ref)
    return make(op_type, [ref, convert_to_tensor(indices), convert_to_tensor(updates, ref.dtype)],
                {"use_locking": bool(use_locking)}, name=name or op_type)


def scatter_update(ref, indices, updates, use_locking=True, name=None):
    return _scatter("ScatterUpdate", ref, indices, updates, use_locking, name)


def scatter_add(ref, indices, updates, use_locking=False, name=None):
    return _scatter("ScatterAdd", ref, indices, updates, use_locking, name)


def scatter_sub(ref, indices, updates, use_locking=False, name=None):
    return _scatter("ScatterSub", ref, indices, updates, use_locking, name)


def is_variable_initialized(ref, name=None):
    return make_op("IsVariableInitialized", [_ref(ref)], {},
                   name=name or "IsVariableInitialized").outputs[0]

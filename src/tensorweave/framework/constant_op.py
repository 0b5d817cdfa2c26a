"""``tw.constant``: the Const op lives here because convert_to_tensor needs it."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.ops import get_default_graph, numpy_value
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape


@register_op("Const")
def _const_infer(op):
    v = op.attrs["value"]
    return [(op.attrs["dtype"], TensorShape(v.shape))]


def constant(value, dtype=None, shape=None, name="Const", verify_shape=False):
    """A tensor holding ``value`` (broadcast to ``shape`` if given), e.g. ``tw.constant([1., 2.])``."""
    arr = numpy_value(value, dtype)
    if shape is not None:
        shape = tuple(int(s) for s in (shape if isinstance(shape, (list, tuple)) else [shape]))
        if arr.shape != shape:
            if verify_shape:
                raise TypeError(f"Expected Tensor's shape: {shape}, got {arr.shape}.")
            if arr.size == 1:
                arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
            elif arr.size == int(np.prod(shape)):
                arr = arr.reshape(shape)
            else:
                raise TypeError(f"Cannot make a constant of shape {shape} from a value with "
                                f"{arr.size} elements.")
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)  # constants are shared by every run; kernels must not write them
    dt = dtypes.as_dtype(arr.dtype) if dtype is None else dtypes.as_dtype(dtype)
    op = get_default_graph().create_op("Const", [], {"value": arr, "dtype": dt}, name=name)
    return op.outputs[0]


def constant_value(tensor):
    """The NumPy value of ``tensor`` if it is known at graph-build time, else None."""
    op = tensor.op
    if op.type == "Const":
        return op.attrs["value"]
    if op.type == "Shape" and tensor.op.inputs[0].shape.is_fully_defined():
        return np.array(op.inputs[0].shape.as_list(), dtype=op.attrs["out_type"].as_numpy_dtype)
    if op.type == "Size" and op.inputs[0].shape.is_fully_defined():
        return np.array(op.inputs[0].shape.num_elements(),
                        dtype=op.attrs["out_type"].as_numpy_dtype)
    if op.type == "Rank" and op.inputs[0].shape.ndims is not None:
        return np.array(op.inputs[0].shape.ndims, dtype=np.int32)
    if op.type in ("Identity", "StopGradient"):
        return constant_value(op.inputs[0])
    if op.type == "Pack":
        vals = [constant_value(t) for t in op.inputs]
        if all(v is not None for v in vals):
            return np.stack(vals, axis=op.attrs["axis"])
    if op.type == "Cast":
        v = constant_value(op.inputs[0])
        if v is not None:
            return v.astype(op.attrs["DstT"].as_numpy_dtype)
    if op.type in _FOLDABLE and len(op.outputs) == 1:
        vals = [constant_value(t) for t in op.inputs]
        if all(v is not None for v in vals):
            from tensorweave.framework.registry import get_kernel_factory
            factory = get_kernel_factory(op.type)
            if factory is not None:
                try:
                    return np.asarray(factory(op, None)(*vals))
                except Exception:  # noqa: BLE001  (unknown at build time; the run will tell)
                    return None
    return None


# Small, pure ops whose constant inputs give a constant output (shape arithmetic mostly).
_FOLDABLE = {"StridedSlice", "Slice", "ConcatV2", "Reshape", "ExpandDims", "Squeeze",
             "GatherV2", "AddV2", "Sub", "Mul", "FloorDiv", "Maximum", "Minimum", "Prod", "Range",
             "Fill"}


def constant_value_as_shape(tensor) -> TensorShape:
    """The static shape described by a 1-D shape tensor, with None for unknown entries."""
    v = constant_value(tensor)
    if v is not None:
        return TensorShape([None if d < 0 else int(d) for d in np.asarray(v).reshape(-1)])
    op = tensor.op
    if op.type == "Shape":
        return op.inputs[0].shape
    if op.type == "Pack":
        dims = []
        for t in op.inputs:
            c = constant_value(t)
            dims.append(None if c is None or int(c) < 0 else int(c))
        return TensorShape(dims)
    if op.type == "ConcatV2":
        out = TensorShape([])
        for t in op.inputs[:-1]:
            out = out.concatenate(constant_value_as_shape(t))
        return out
    n = tensor.shape[0].value if tensor.shape.ndims == 1 else None
    return TensorShape(None if n is None else [None] * n)

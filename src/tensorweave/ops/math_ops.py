"""Math ops: elementwise arithmetic, comparisons, matmul, reductions, casting.

Each op type is declared here (inference); its CPU kernel is in kernels/cpu/math.py and its
gradient in gradients/math_grad.py.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.common_shapes import broadcasting_binary, unchanged
from tensorweave.framework.constant_op import constant, constant_value
from tensorweave.framework.ops import (IndexedSlices, convert_to_tensor, name_scope)
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops.op_util import binary_operands, make

# --- elementwise binary -----------------------------------------------------------------------
for _t in ("AddV2", "Sub", "Mul", "RealDiv"):
    register_op(_t)(broadcasting_binary)


def add(x, y, name=None):
    """``x + y`` with NumPy broadcasting."""
    x, y = binary_operands(x, y)
    return make("AddV2", [x, y], {}, name=name or "add")


def subtract(x, y, name=None):
    x, y = binary_operands(x, y)
    return make("Sub", [x, y], {}, name=name or "sub")


def multiply(x, y, name=None):
    x, y = binary_operands(x, y)
    return make("Mul", [x, y], {}, name=name or "mul")


def truediv(x, y, name=None):
    x, y = binary_operands(x, y)
    if x.dtype.is_integer:
        x, y = cast(x, dtypes.float64), cast(y, dtypes.float64)
    return make("RealDiv", [x, y], {}, name=name or "truediv")


divide = truediv
sub = subtract
mul = multiply

# --- unary ------------------------------------------------------------------------------------
for _t in ("Neg", "Tanh"):
    register_op(_t)(unchanged)


def negative(x, name=None):
    return make("Neg", [convert_to_tensor(x)], {}, name=name or "Neg")


def tanh(x, name=None):
    return make("Tanh", [convert_to_tensor(x)], {}, name=name or "Tanh")


@register_op("AddN")
def _add_n_infer(op):
    shape = op.inputs[0].shape
    for t in op.inputs[1:]:
        if t.dtype != op.inputs[0].dtype:
            raise TypeError(f"AddN inputs must share a dtype: {op.inputs[0].dtype.name} vs "
                            f"{t.dtype.name}")
        shape = shape.merge_with(t.shape)
    return [(op.inputs[0].dtype, shape)]


def add_n(inputs, name=None):
    """Sums a list of tensors of the same shape and dtype."""
    inputs = [convert_to_tensor(t) for t in inputs]
    if not inputs:
        raise ValueError("add_n needs at least one input tensor")
    if len(inputs) == 1:
        return inputs[0] if name is None else make("Identity", inputs, {}, name=name)
    return make("AddN", inputs, {"N": len(inputs)}, name=name or "AddN")


# --- cast -------------------------------------------------------------------------------------
@register_op("Cast")
def _cast_infer(op):
    return [(op.attrs["DstT"], op.inputs[0].shape)]


def cast(x, dtype, name=None):
    """Converts ``x`` to ``dtype`` (float->int truncates toward zero, as in TF)."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(x, IndexedSlices):
        return IndexedSlices(cast(x.values, dtype), x.indices, x.dense_shape)
    x = convert_to_tensor(x)
    if x.dtype == dtype:
        return x
    return make("Cast", [x], {"SrcT": x.dtype, "DstT": dtype}, name=name or "Cast")


# --- matmul -------------------------------------------------------------------------------------
@register_op("MatMul")
def _matmul_infer(op):
    a, b = op.inputs
    if a.dtype != b.dtype:
        raise TypeError(f"MatMul operands must share a dtype: {a.dtype.name} vs {b.dtype.name}")
    sa, sb = a.shape.with_rank(2), b.shape.with_rank(2)
    m, ka = (sa[1], sa[0]) if op.attrs["transpose_a"] else (sa[0], sa[1])
    kb, n = (sb[1], sb[0]) if op.attrs["transpose_b"] else (sb[0], sb[1])
    if not ka.is_compatible_with(kb):
        raise ValueError(f"Dimensions must be equal, but are {ka} and {kb} for MatMul with "
                         f"input shapes {a.shape} and {b.shape}")
    return [(a.dtype, TensorShape([m, n]))]


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, name=None):
    """Matrix product; rank > 2 inputs use BatchMatMulV2 (batched, broadcasting)."""
    a, b = binary_operands(a, b)
    transpose_a = transpose_a or adjoint_a
    transpose_b = transpose_b or adjoint_b
    if (a.shape.ndims or 2) > 2 or (b.shape.ndims or 2) > 2:
        return make("BatchMatMulV2", [a, b], {"adj_x": transpose_a, "adj_y": transpose_b},
                    name=name or "MatMul")
    return make("MatMul", [a, b], {"transpose_a": transpose_a, "transpose_b": transpose_b},
                name=name or "MatMul")


# --- reductions ---------------------------------------------------------------------------------
def reduced_shape(shape: TensorShape, axes, keep_dims: bool) -> TensorShape:
    dims = shape.as_tuple()
    if dims is None:
        return TensorShape(None)
    if axes is None:
        return TensorShape([1] * len(dims) if keep_dims else [])
    rank = len(dims)
    axes_set = set()
    for a in np.atleast_1d(axes).tolist():
        if not -rank <= a < rank:
            raise ValueError(f"Invalid reduction axis {a} for a tensor of shape {shape} "
                             f"(rank {rank})")
        axes_set.add(a % rank)
    return TensorShape([1 if i in axes_set else d for i, d in enumerate(dims)
                        if keep_dims or i not in axes_set])


def _reduce_infer(op):
    x, axes = op.inputs
    av = constant_value(axes)
    if av is None:
        if op.attrs["keep_dims"] and x.shape.ndims is not None:
            return [(x.dtype, TensorShape([None] * x.shape.ndims))]
        return [(x.dtype, TensorShape(None))]
    return [(x.dtype, reduced_shape(x.shape, av, op.attrs["keep_dims"]))]


for _t in ("Sum", "Mean", "Max", "Min", "Prod"):
    register_op(_t)(_reduce_infer)


def _reduction_axes(x, axis):
    if axis is None:
        rank = x.shape.ndims
        if rank is not None:
            return constant(np.arange(rank, dtype=np.int32), name="reduction_indices")
        from tensorweave.ops import array_ops
        return make("Range", [constant(0), array_ops.rank(x), constant(1)], {},
                    name="reduction_indices")
    return convert_to_tensor(axis, dtype=dtypes.int32)


def _reduce(op_type, x, axis, keepdims, name, keep_dims=None, reduction_indices=None):
    if keep_dims is not None:
        keepdims = keep_dims
    if reduction_indices is not None:
        axis = reduction_indices
    x = convert_to_tensor(x)
    with name_scope(name, op_type):
        axes = _reduction_axes(x, axis)
    return make(op_type, [x, axes], {"keep_dims": bool(keepdims)}, name=name or op_type)


def reduce_sum(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
               keep_dims=None):
    """Sum over ``axis`` (all axes when None)."""
    return _reduce("Sum", input_tensor, axis, keepdims, name, keep_dims, reduction_indices)


def reduce_mean(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
                keep_dims=None):
    return _reduce("Mean", input_tensor, axis, keepdims, name, keep_dims, reduction_indices)


def indexed_slices_to_dense(s: IndexedSlices):
    """Densifies a sparse gradient (rows + indices) with UnsortedSegmentSum."""
    from tensorweave.ops import array_ops
    n = s.dense_shape[0] if s.dense_shape is not None else None
    if n is None:
        raise ValueError("Cannot densify IndexedSlices without a dense_shape")
    return array_ops.unsorted_segment_sum(s.values, s.indices, n)


__all__ = ["add", "subtract", "multiply", "truediv", "divide", "negative", "tanh", "add_n",
           "cast", "matmul", "reduce_sum", "reduce_mean"]

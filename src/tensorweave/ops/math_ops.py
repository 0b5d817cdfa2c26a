"""Math ops: elementwise arithmetic, comparisons, matmul, reductions, casting.

Each op type is declared here (inference); its CPU kernel is in kernels/cpu/math.py and its
gradient in gradients/math_grad.py.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.common_shapes import broadcasting_binary, broadcasting_compare, unchanged
from tensorweave.framework.constant_op import constant, constant_value
from tensorweave.framework.ops import IndexedSlices, convert_to_tensor, name_scope
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





# --- more binary arithmetic ------------------------------------------------------------------
for _t in ("Pow", "Maximum", "Minimum", "SquaredDifference", "FloorDiv", "FloorMod"):
    register_op(_t)(broadcasting_binary)


def _binary(op_type, default_name):
    def builder(x, y, name=None):
        x, y = binary_operands(x, y)
        return make(op_type, [x, y], {}, name=name or default_name)

    builder.__name__ = default_name
    builder.__doc__ = f"Elementwise {op_type} with NumPy broadcasting."
    return builder


pow = _binary("Pow", "pow")  # noqa: A001  (TF's name)
maximum = _binary("Maximum", "maximum")
minimum = _binary("Minimum", "minimum")
squared_difference = _binary("SquaredDifference", "squared_difference")
floordiv = _binary("FloorDiv", "floordiv")
floormod = _binary("FloorMod", "floormod")
mod = floormod
floor_div = floordiv

# --- unary -------------------------------------------------------------------------------------
_UNARY = {"Abs": "abs", "Square": "square", "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Exp": "exp",
          "Log": "log", "Log1p": "log1p", "Sigmoid": "sigmoid", "Sin": "sin", "Cos": "cos",
          "Sign": "sign", "Reciprocal": "reciprocal", "Floor": "floor", "Ceil": "ceil",
          "Round": "round", "Erf": "erf", "Expm1": "expm1", "Tan": "tan"}


def _unary(op_type, default_name):
    register_op(op_type)(unchanged)

    def builder(x, name=None):
        return make(op_type, [convert_to_tensor(x)], {}, name=name or op_type)

    builder.__name__ = default_name
    builder.__doc__ = f"Elementwise {default_name}."
    return builder


for _t, _n in _UNARY.items():
    globals()[_n] = _unary(_t, _n)
log, exp = globals()["log"], globals()["exp"]  # used below by name

# --- comparisons and logic ---------------------------------------------------------------------
for _t in ("Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual"):
    register_op(_t)(broadcasting_compare)


def _compare(op_type, default_name):
    def builder(x, y, name=None):
        x, y = binary_operands(x, y)
        return make(op_type, [x, y], {}, name=name or op_type)

    builder.__name__ = default_name
    return builder


equal = _compare("Equal", "equal")
not_equal = _compare("NotEqual", "not_equal")
less = _compare("Less", "less")
less_equal = _compare("LessEqual", "less_equal")
greater = _compare("Greater", "greater")
greater_equal = _compare("GreaterEqual", "greater_equal")


def _logical_infer(op):
    for t in op.inputs:
        if t.dtype != dtypes.bool_:
            raise TypeError(f"{op.type} needs bool inputs, got {t.dtype.name} ({t.name})")
    return broadcasting_binary(op) if len(op.inputs) == 2 else unchanged(op)


for _t in ("LogicalAnd", "LogicalOr", "LogicalNot"):
    register_op(_t)(_logical_infer)


def logical_and(x, y, name=None):
    return make("LogicalAnd", [convert_to_tensor(x, dtypes.bool_),
                               convert_to_tensor(y, dtypes.bool_)], {}, name=name or "LogicalAnd")


def logical_or(x, y, name=None):
    return make("LogicalOr", [convert_to_tensor(x, dtypes.bool_),
                              convert_to_tensor(y, dtypes.bool_)], {}, name=name or "LogicalOr")


def logical_not(x, name=None):
    return make("LogicalNot", [convert_to_tensor(x, dtypes.bool_)], {},
                name=name or "LogicalNot")


def logical_xor(x, y, name="LogicalXor"):
    with name_scope(name):
        return logical_and(logical_or(x, y), logical_not(logical_and(x, y)))


# --- selection ---------------------------------------------------------------------------------
@register_op("SelectV2")
def _select_infer(op):
    from tensorweave.framework.tensor_shape import broadcast_shape
    c, x, y = op.inputs
    if c.dtype != dtypes.bool_:
        raise TypeError(f"where's condition must be bool, got {c.dtype.name}")
    if x.dtype != y.dtype:
        raise TypeError(f"where's x and y must share a dtype: {x.dtype.name} vs {y.dtype.name}")
    return [(x.dtype, broadcast_shape(broadcast_shape(c.shape, x.shape), y.shape))]


def where(condition, x=None, y=None, name=None):
    """``where(c, x, y)`` picks elementwise (broadcasting); ``where(c)`` gives the int64
    coordinates of true elements, shape [N, rank(c)]."""
    if x is None and y is None:
        from tensorweave.ops import array_ops
        return array_ops._where_indices(condition, name=name)
    if x is None or y is None:
        raise ValueError("where needs both x and y, or neither")
    c = convert_to_tensor(condition, dtypes.bool_)
    x, y = binary_operands(x, y)
    if c.shape.ndims == 1 and x.shape.ndims not in (None, 1) and \
            c.shape[0].is_compatible_with(x.shape[0]):
        # TF1's where: a vector condition selects rows
        from tensorweave.ops import array_ops
        c = array_ops.reshape(c, [-1] + [1] * (x.shape.ndims - 1))
    return make("SelectV2", [c, x, y], {}, name=name or "Select")


where_v2 = where


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """Clips ``t`` to [min, max]; the gradient passes where ``t`` was inside."""
    with name_scope(name, "clip_by_value"):
        t = convert_to_tensor(t)
        return minimum(maximum(t, clip_value_min), clip_value_max)


def to_float(x, name="ToFloat"):
    return cast(x, dtypes.float32, name=name)


def to_double(x, name="ToDouble"):
    return cast(x, dtypes.float64, name=name)


def to_int32(x, name="ToInt32"):
    return cast(x, dtypes.int32, name=name)


def to_int64(x, name="ToInt64"):
    return cast(x, dtypes.int64, name=name)


# --- batched matmul ----------------------------------------------------------------------------
@register_op("BatchMatMulV2")
def _batch_matmul_infer(op):
    from tensorweave.framework.tensor_shape import broadcast_shape
    a, b = op.inputs
    if a.dtype != b.dtype:
        raise TypeError(f"MatMul operands must share a dtype: {a.dtype.name} vs {b.dtype.name}")
    sa, sb = a.shape, b.shape
    if sa.ndims is None or sb.ndims is None:
        return [(a.dtype, TensorShape(None))]
    if sa.ndims < 2 or sb.ndims < 2:
        raise ValueError(f"matmul needs rank >= 2 operands, got {sa} and {sb}")
    m, ka = (sa[-1], sa[-2]) if op.attrs["adj_x"] else (sa[-2], sa[-1])
    kb, n = (sb[-1], sb[-2]) if op.attrs["adj_y"] else (sb[-2], sb[-1])
    if not ka.is_compatible_with(kb):
        raise ValueError(f"Dimensions must be equal, but are {ka} and {kb} for MatMul with "
                         f"input shapes {sa} and {sb}")
    batch = broadcast_shape(sa[:-2], sb[:-2])
    return [(a.dtype, batch.concatenate([m, n]))]


# --- more reductions ---------------------------------------------------------------------------
def reduce_max(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
               keep_dims=None):
    return _reduce("Max", input_tensor, axis, keepdims, name, keep_dims, reduction_indices)


def reduce_min(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
               keep_dims=None):
    return _reduce("Min", input_tensor, axis, keepdims, name, keep_dims, reduction_indices)


def reduce_prod(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
                keep_dims=None):
    return _reduce("Prod", input_tensor, axis, keepdims, name, keep_dims, reduction_indices)


for _t in ("All", "Any"):
    register_op(_t)(_reduce_infer)


def reduce_all(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
               keep_dims=None):
    return _reduce("All", convert_to_tensor(input_tensor, dtypes.bool_), axis, keepdims, name,
                   keep_dims, reduction_indices)


def reduce_any(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
               keep_dims=None):
    return _reduce("Any", convert_to_tensor(input_tensor, dtypes.bool_), axis, keepdims, name,
                   keep_dims, reduction_indices)


def reduce_logsumexp(input_tensor, axis=None, keepdims=False, name=None,
                     reduction_indices=None, keep_dims=None):
    """log(sum(exp(x))) computed stably (the max is subtracted first)."""
    if keep_dims is not None:
        keepdims = keep_dims
    if reduction_indices is not None:
        axis = reduction_indices
    from tensorweave.ops import array_ops
    with name_scope(name, "ReduceLogSumExp"):
        x = convert_to_tensor(input_tensor)
        m = array_ops.stop_gradient(reduce_max(x, axis, keepdims=True))
        out = log(reduce_sum(exp(x - m), axis, keepdims=True)) + m
        if not keepdims:
            out = array_ops.squeeze(out, axis if axis is None or isinstance(axis, (list, tuple))
                                    else [axis]) if axis is not None else \
                array_ops.reshape(out, [])
        return out


def _argminmax_infer(op):
    x, axis = op.inputs
    a = constant_value(axis)
    if a is None or x.shape.ndims is None:
        return [(op.attrs["output_type"], TensorShape(None))]
    a = int(a) % x.shape.ndims
    dims = x.shape.as_list()
    return [(op.attrs["output_type"], TensorShape(dims[:a] + dims[a + 1:]))]


register_op("ArgMax")(_argminmax_infer)
register_op("ArgMin")(_argminmax_infer)


def argmax(input, axis=None, name=None, dimension=None, output_type=dtypes.int64):  # noqa: A002
    """Index of the largest value along ``axis`` (default 0)."""
    if dimension is not None:
        axis = dimension
    return make("ArgMax", [convert_to_tensor(input),
                           convert_to_tensor(0 if axis is None else axis, dtypes.int32)],
                {"output_type": dtypes.as_dtype(output_type)}, name=name or "ArgMax")


def argmin(input, axis=None, name=None, dimension=None, output_type=dtypes.int64):  # noqa: A002
    if dimension is not None:
        axis = dimension
    return make("ArgMin", [convert_to_tensor(input),
                           convert_to_tensor(0 if axis is None else axis, dtypes.int32)],
                {"output_type": dtypes.as_dtype(output_type)}, name=name or "ArgMin")


def count_nonzero(input_tensor, axis=None, keepdims=False, dtype=dtypes.int64, name=None):
    with name_scope(name, "count_nonzero"):
        x = convert_to_tensor(input_tensor)
        nz = cast(not_equal(x, constant(0, dtype=x.dtype)), dtype)
        return reduce_sum(nz, axis, keepdims=keepdims)


@register_op("Cumsum")
def _cumsum_infer(op):
    return [(op.inputs[0].dtype, op.inputs[0].shape)]


def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    return make("Cumsum", [convert_to_tensor(x), convert_to_tensor(axis, dtypes.int32)],
                {"exclusive": bool(exclusive), "reverse": bool(reverse)}, name=name or "Cumsum")


def tensordot(a, b, axes, name=None):
    """Sums products over ``axes`` (an int or a pair of axis lists), via transpose+reshape."""
    from tensorweave.ops import array_ops
    with name_scope(name, "Tensordot"):
        a, b = binary_operands(a, b)
        ra, rb = a.shape.ndims, b.shape.ndims
        if isinstance(axes, int):
            ax_a, ax_b = list(range(ra - axes, ra)), list(range(axes))
        else:
            ax_a, ax_b = [list(np.atleast_1d(v)) for v in axes]
        ax_a = [x % ra for x in ax_a]
        ax_b = [x % rb for x in ax_b]
        free_a = [i for i in range(ra) if i not in ax_a]
        free_b = [i for i in range(rb) if i not in ax_b]
        sa, sb = a.shape.as_list(), b.shape.as_list()
        k = int(np.prod([sa[i] for i in ax_a]))
        at = array_ops.reshape(array_ops.transpose(a, free_a + ax_a), [-1, k])
        bt = array_ops.reshape(array_ops.transpose(b, ax_b + free_b), [k, -1])
        out = matmul(at, bt)
        shape_a = [sa[i] if sa[i] is not None else -1 for i in free_a]
        shape_b = [sb[i] if sb[i] is not None else -1 for i in free_b]
        if shape_a.count(-1) + shape_b.count(-1) > 1:
            sha, shb = array_ops.shape(a), array_ops.shape(b)
            dims = [sha[i] for i in free_a] + [shb[i] for i in free_b]
            return array_ops.reshape(out, array_ops.stack(dims))
        return array_ops.reshape(out, shape_a + shape_b)


__all__ = ["add", "subtract", "multiply", "truediv", "divide", "negative", "tanh", "add_n",
           "cast", "matmul", "reduce_sum", "reduce_mean", "pow", "maximum", "minimum",
           "squared_difference", "floordiv", "floormod", "mod", "floor_div", *_UNARY.values(),
           "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
           "logical_and", "logical_or", "logical_not", "logical_xor", "where", "where_v2",
           "clip_by_value", "to_float", "to_double", "to_int32", "to_int64", "reduce_max",
           "reduce_min", "reduce_prod", "reduce_all", "reduce_any", "reduce_logsumexp", "argmax",
           "argmin", "count_nonzero", "cumsum", "tensordot", "sub", "mul"]

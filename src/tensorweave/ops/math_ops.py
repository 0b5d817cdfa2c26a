"""Math ops: elementwise arithmetic, comparisons, selection, matmul, reductions, casting.

Each op type is declared here (shape and dtype inference, run at construction); its CPU kernel is
in kernels/cpu/math.py and its gradient in gradients/math_grad.py. Type and attr names follow
TensorFlow's (``AddV2``, ``RealDiv``, ``BatchMatMulV2`` with ``adj_x``, ``Sum`` with
``keep_dims``...).
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes, ops
from tensorweave.framework.common_shapes import broadcasting_binary, broadcasting_compare, unchanged
from tensorweave.framework.constant_op import constant, constant_value
from tensorweave.framework.ops import IndexedSlices, Tensor, convert_to_tensor, name_scope
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape, broadcast_shape
from tensorweave.ops.op_util import binary_operands, make

# --- elementwise binary -------------------------------------------------------------------------
# "Add" is TensorFlow's older name for AddV2; declared so imported GraphDefs run.
for _t in ("AddV2", "Add", "Sub", "Mul", "Pow", "Maximum", "Minimum", "SquaredDifference",
           "FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod", "RealDiv", "DivNoNan", "Atan2"):
    register_op(_t)(broadcasting_binary)


def _binary(op_type, default_name):
    def builder(x, y, name=None):
        x, y = binary_operands(x, y)
        return make(op_type, [x, y], {}, name=name or default_name)

    builder.__name__ = builder.__qualname__ = default_name
    builder.__doc__ = f"Elementwise {op_type} of ``x`` and ``y`` (NumPy broadcasting)."
    return builder


add = _binary("AddV2", "add")
subtract = _binary("Sub", "subtract")
multiply = _binary("Mul", "multiply")
pow = _binary("Pow", "pow")  # noqa: A001  (TF's name)
maximum = _binary("Maximum", "maximum")
minimum = _binary("Minimum", "minimum")
squared_difference = _binary("SquaredDifference", "squared_difference")
floordiv = _binary("FloorDiv", "floordiv")
floormod = _binary("FloorMod", "floormod")
truncatediv = _binary("TruncateDiv", "truncatediv")
truncatemod = _binary("TruncateMod", "truncatemod")
realdiv = _binary("RealDiv", "realdiv")
div_no_nan = _binary("DivNoNan", "div_no_nan")
div_no_nan.__doc__ = "``x / y``, but 0 wherever ``y`` is 0 (even for ``x`` 0 or inf)."
sub, mul, mod, floor_div = subtract, multiply, floormod, floordiv


def atan2(y, x, name=None):
    """Elementwise angle of the point (x, y), in [-pi, pi] (TF's argument order)."""
    y, x = binary_operands(y, x)
    return make("Atan2", [y, x], {}, name=name or "Atan2")


# TF's truediv: small ints divide in float32, wide ones in float64 (exact for every int32).
_TRUEDIV_FLOAT = {dtypes.int8: dtypes.float32, dtypes.uint8: dtypes.float32,
                  dtypes.int16: dtypes.float32, dtypes.uint16: dtypes.float32,
                  dtypes.int32: dtypes.float64, dtypes.int64: dtypes.float64}


def truediv(x, y, name=None):
    """``x / y`` with Python 3 semantics: integer operands are cast to float first."""
    x, y = binary_operands(x, y)
    if x.dtype.is_integer and x.dtype == y.dtype:
        to = _TRUEDIV_FLOAT.get(x.dtype, dtypes.float64)
        x, y = cast(x, to), cast(y, to)
    return make("RealDiv", [x, y], {}, name=name or "truediv")


divide = truediv


def div(x, y, name=None):
    """TF1's ``tf.div``: floor division for integers, true division for floats (Python 2)."""
    x, y = binary_operands(x, y)
    if x.dtype.is_integer:
        return make("FloorDiv", [x, y], {}, name=name or "div")
    return make("RealDiv", [x, y], {}, name=name or "div")


def scalar_mul(scalar, x, name=None):
    """Multiplies ``x`` by a scalar (checked to be 0-d)."""
    s, x = binary_operands(scalar, x)
    if s.shape.ndims not in (None, 0):
        raise ValueError(f"scalar_mul: 'scalar' must be a scalar, got shape {s.shape}")
    return multiply(s, x, name=name)


# --- elementwise unary --------------------------------------------------------------------------
def _float_unary_infer(op):
    x = op.inputs[0]
    if not (x.dtype.is_floating or x.dtype.is_complex):
        raise TypeError(f"{op.type} needs a floating-point input, got {x.dtype.name} ({x.name});"
                        " use tw.cast first")
    return [(x.dtype, x.shape)]


def _float_predicate_infer(op):
    (_, shape), = _float_unary_infer(op)
    return [(dtypes.bool_, shape)]


def _unary(op_type, default_name, infer=_float_unary_infer):
    register_op(op_type)(infer)

    def builder(x, name=None):
        return make(op_type, [convert_to_tensor(x)], {}, name=name or op_type)

    builder.__name__ = builder.__qualname__ = default_name
    builder.__doc__ = f"Elementwise {default_name} (op type {op_type})."
    return builder


# numeric: integers allowed, as in TF
negative = _unary("Neg", "negative", unchanged)
abs = _unary("Abs", "abs", unchanged)  # noqa: A001  (TF's name)
square = _unary("Square", "square", unchanged)
sign = _unary("Sign", "sign", unchanged)
reciprocal = _unary("Reciprocal", "reciprocal", unchanged)
round = _unary("Round", "round", unchanged)  # noqa: A001  (half to even, as in TF)
# floating point only
sqrt = _unary("Sqrt", "sqrt")
rsqrt = _unary("Rsqrt", "rsqrt")
exp = _unary("Exp", "exp")
expm1 = _unary("Expm1", "expm1")
log = _unary("Log", "log")
log1p = _unary("Log1p", "log1p")
tanh = _unary("Tanh", "tanh")
sigmoid = _unary("Sigmoid", "sigmoid")
sin = _unary("Sin", "sin")
cos = _unary("Cos", "cos")
tan = _unary("Tan", "tan")
asin = _unary("Asin", "asin")
acos = _unary("Acos", "acos")
atan = _unary("Atan", "atan")
sinh = _unary("Sinh", "sinh")
cosh = _unary("Cosh", "cosh")
asinh = _unary("Asinh", "asinh")
acosh = _unary("Acosh", "acosh")
atanh = _unary("Atanh", "atanh")
erf = _unary("Erf", "erf")
floor = _unary("Floor", "floor")
ceil = _unary("Ceil", "ceil")
rint = _unary("Rint", "rint")
is_nan = _unary("IsNan", "is_nan", _float_predicate_infer)
is_inf = _unary("IsInf", "is_inf", _float_predicate_infer)
is_finite = _unary("IsFinite", "is_finite", _float_predicate_infer)
_UNARY_NAMES = ["negative", "abs", "square", "sign", "reciprocal", "round", "sqrt", "rsqrt",
                "exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "tan", "asin",
                "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "floor", "ceil",
                "rint", "is_nan", "is_inf", "is_finite"]


def log_sigmoid(x, name=None):
    """``log(sigmoid(x))`` computed as ``-softplus(-x)``, finite for large ``|x|``."""
    from tensorweave.ops import nn_ops
    with name_scope(name, "LogSigmoid"):
        return negative(nn_ops.softplus(negative(x)))


# Gradient ops of TF's shape (y, dy) -> dy * f'(x) expressed through y: one kernel per step
# where the composed form would take two or three, and each has its own gradient.
def _grad_op(op_type, default_name):
    register_op(op_type)(broadcasting_binary)

    def builder(y, dy, name=None):
        y, dy = binary_operands(y, dy)
        return make(op_type, [y, dy], {}, name=name or op_type)

    builder.__name__ = builder.__qualname__ = default_name
    builder.__doc__ = f"{op_type}(y, dy): the gradient helper used by math_grad.py."
    return builder


tanh_grad = _grad_op("TanhGrad", "tanh_grad")
sigmoid_grad = _grad_op("SigmoidGrad", "sigmoid_grad")
sqrt_grad = _grad_op("SqrtGrad", "sqrt_grad")
rsqrt_grad = _grad_op("RsqrtGrad", "rsqrt_grad")
reciprocal_grad = _grad_op("ReciprocalGrad", "reciprocal_grad")


# --- add_n, cast ------------------------------------------------------------------------------
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


def accumulate_n(inputs, shape=None, tensor_dtype=None, name=None):
    """TF1's ``accumulate_n``: the sum of ``inputs`` (checked against ``shape``/``tensor_dtype``
    when given); here the same AddN op as ``add_n``."""
    inputs = [convert_to_tensor(t) for t in inputs]
    for t in inputs:
        if tensor_dtype is not None and t.dtype != dtypes.as_dtype(tensor_dtype):
            raise TypeError(f"accumulate_n: input {t.name} has dtype {t.dtype.name}, expected "
                            f"tensor_dtype {dtypes.as_dtype(tensor_dtype).name}")
        if shape is not None and not t.shape.is_compatible_with(TensorShape(shape)):
            raise ValueError(f"accumulate_n: input {t.name} has shape {t.shape}, expected "
                             f"shape {TensorShape(shape)}")
    return add_n(inputs, name=name)


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


def to_float(x, name="ToFloat"):
    """TF1 alias of ``cast(x, tw.float32)``."""
    return cast(x, dtypes.float32, name=name)


def to_double(x, name="ToDouble"):
    """TF1 alias of ``cast(x, tw.float64)``."""
    return cast(x, dtypes.float64, name=name)


def to_int32(x, name="ToInt32"):
    """TF1 alias of ``cast(x, tw.int32)``."""
    return cast(x, dtypes.int32, name=name)


def to_int64(x, name="ToInt64"):
    """TF1 alias of ``cast(x, tw.int64)``."""
    return cast(x, dtypes.int64, name=name)


# --- comparisons and logic --------------------------------------------------------------------
def _compare(op_type, default_name):
    register_op(op_type)(broadcasting_compare)
    builder = _binary(op_type, default_name)
    builder.__doc__ = f"Elementwise {op_type} of ``x`` and ``y`` (bool result, broadcasting)."
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
    """Elementwise ``x AND y`` of bool tensors."""
    return make("LogicalAnd", [convert_to_tensor(x, dtypes.bool_),
                               convert_to_tensor(y, dtypes.bool_)], {}, name=name or "LogicalAnd")


def logical_or(x, y, name=None):
    """Elementwise ``x OR y`` of bool tensors."""
    return make("LogicalOr", [convert_to_tensor(x, dtypes.bool_),
                              convert_to_tensor(y, dtypes.bool_)], {}, name=name or "LogicalOr")


def logical_not(x, name=None):
    """Elementwise ``NOT x`` of a bool tensor."""
    return make("LogicalNot", [convert_to_tensor(x, dtypes.bool_)], {},
                name=name or "LogicalNot")


def logical_xor(x, y, name="LogicalXor"):
    """Elementwise ``x XOR y`` (composed, as in TF: ``(x | y) & ~(x & y)``)."""
    with name_scope(name):
        return logical_and(logical_or(x, y), logical_not(logical_and(x, y)))


# --- selection and clipping -------------------------------------------------------------------
@register_op("SelectV2")
def _select_infer(op):
    c, x, y = op.inputs
    if c.dtype != dtypes.bool_:
        raise TypeError(f"where's condition must be bool, got {c.dtype.name}")
    if x.dtype != y.dtype:
        raise TypeError(f"where's x and y must share a dtype: {x.dtype.name} vs {y.dtype.name}")
    return [(x.dtype, broadcast_shape(broadcast_shape(c.shape, x.shape), y.shape))]


def where(condition, x=None, y=None, name=None):
    """``where(c, x, y)`` picks elementwise (broadcasting; a vector ``c`` picks rows, as in TF1);
    ``where(c)`` gives the int64 coordinates of true elements, shape [N, rank(c)].

    Example: ``tw.where([True, False], [1, 2], [3, 4])`` is ``[1, 4]``.
    """
    if x is None and y is None:
        from tensorweave.ops import array_ops
        return array_ops._where_indices(condition, name=name)
    if x is None or y is None:
        raise ValueError("where needs both x and y, or neither")
    c = convert_to_tensor(condition, dtypes.bool_)
    x, y = binary_operands(x, y)
    if c.shape.ndims == 1 and x.shape.ndims not in (None, 1) and \
            c.shape[0].is_compatible_with(x.shape[0]):
        from tensorweave.ops import array_ops
        c = array_ops.reshape(c, [-1] + [1] * (x.shape.ndims - 1))
    return make("SelectV2", [c, x, y], {}, name=name or "Select")


where_v2 = where


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """Clips ``t`` to [min, max]; the gradient passes where ``t`` was inside."""
    with name_scope(name, "clip_by_value"):
        t = convert_to_tensor(t)
        out = minimum(maximum(t, clip_value_min), clip_value_max)
        if not out.shape.is_compatible_with(t.shape):
            raise ValueError(f"clip_by_value: clip values broadcast t of shape {t.shape} to "
                             f"{out.shape}; they must be scalars or t's shape")
        return out


# --- matmul -----------------------------------------------------------------------------------
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


@register_op("BatchMatMulV2")
def _batch_matmul_infer(op):
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
    try:
        batch = broadcast_shape(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul batch dimensions do not broadcast: input shapes {sa} and "
                         f"{sb}") from None
    return [(a.dtype, batch.concatenate([m, n]))]


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, name=None):
    """Matrix product ``a @ b``; rank > 2 operands use BatchMatMulV2 (batch dims broadcast).

    Example: ``tw.matmul(x, w, transpose_b=True)`` is ``x @ w.T``.
    """
    a, b = binary_operands(a, b)
    transpose_a = transpose_a or adjoint_a
    transpose_b = transpose_b or adjoint_b
    if (a.shape.ndims or 2) > 2 or (b.shape.ndims or 2) > 2:
        return make("BatchMatMulV2", [a, b], {"adj_x": transpose_a, "adj_y": transpose_b},
                    name=name or "MatMul")
    return make("MatMul", [a, b], {"transpose_a": transpose_a, "transpose_b": transpose_b},
                name=name or "MatMul")


# --- reductions -------------------------------------------------------------------------------
def reduced_shape(shape: TensorShape, axes, keep_dims: bool) -> TensorShape:
    """The static shape of reducing ``shape`` over ``axes`` (None: all axes)."""
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
    if op.type in ("All", "Any") and x.dtype != dtypes.bool_:
        raise TypeError(f"{op.type} needs a bool input, got {x.dtype.name} ({x.name})")
    av = constant_value(axes)
    if av is None:
        if op.attrs["keep_dims"] and x.shape.ndims is not None:
            return [(x.dtype, TensorShape([None] * x.shape.ndims))]
        return [(x.dtype, TensorShape(None))]
    return [(x.dtype, reduced_shape(x.shape, av, op.attrs["keep_dims"]))]


for _t in ("Sum", "Mean", "Max", "Min", "Prod", "All", "Any"):
    register_op(_t)(_reduce_infer)


def _reduction_axes(x, axis):
    if axis is None:
        rank = x.shape.ndims
        if rank is not None:
            return constant(np.arange(rank, dtype=np.int32), name="reduction_indices")
        from tensorweave.ops import array_ops
        return array_ops.range(0, array_ops.rank(x), 1, name="reduction_indices")
    if isinstance(axis, Tensor) and axis.dtype in (dtypes.int32, dtypes.int64):
        return axis  # TF accepts int32 or int64 axes
    return convert_to_tensor(axis, dtype=dtypes.int32)


def _reduce(op_type, x, axis, keepdims, name, keep_dims=None, reduction_indices=None):
    if keep_dims is not None:
        keepdims = keep_dims
    if reduction_indices is not None:
        if axis is not None:
            raise ValueError("Give only one of 'axis' and 'reduction_indices'")
        axis = reduction_indices
    x = convert_to_tensor(x)
    # the axes are made outside any name scope so the reduction itself gets ``name`` (TF's naming)
    axes = _reduction_axes(x, axis)
    return make(op_type, [x, axes], {"keep_dims": bool(keepdims)}, name=name or op_type)


def _reduction(op_type, default_name, doc, input_dtype=None):
    def builder(input_tensor, axis=None, keepdims=False, name=None, reduction_indices=None,
                keep_dims=None):
        x = convert_to_tensor(input_tensor, input_dtype)
        return _reduce(op_type, x, axis, keepdims, name, keep_dims, reduction_indices)

    builder.__name__ = builder.__qualname__ = default_name
    builder.__doc__ = (f"{doc} over ``axis`` (all axes when None; negative axes count from the "
                       "end); ``keepdims`` keeps reduced axes with length 1. TF1's "
                       "``keep_dims``/``reduction_indices`` are accepted.")
    return builder


reduce_sum = _reduction("Sum", "reduce_sum", "Sum")
reduce_mean = _reduction("Mean", "reduce_mean", "Mean (integer means truncate, as in TF)")
reduce_max = _reduction("Max", "reduce_max", "Maximum")
reduce_min = _reduction("Min", "reduce_min", "Minimum")
reduce_prod = _reduction("Prod", "reduce_prod", "Product")
reduce_all = _reduction("All", "reduce_all", "Logical AND", dtypes.bool_)
reduce_any = _reduction("Any", "reduce_any", "Logical OR", dtypes.bool_)


def reduce_logsumexp(input_tensor, axis=None, keepdims=False, name=None,
                     reduction_indices=None, keep_dims=None):
    """``log(sum(exp(x), axis))``, computed stably: the (finite) max is subtracted first."""
    if keep_dims is not None:
        keepdims = keep_dims
    if reduction_indices is not None:
        axis = reduction_indices
    from tensorweave.ops import array_ops
    with name_scope(name, "ReduceLogSumExp") as scope:
        x = convert_to_tensor(input_tensor)
        raw_max = reduce_max(x, axis, keepdims=True)
        # an all -inf (or +inf) slice would give inf - inf = nan: shift by 0 there instead
        m = array_ops.stop_gradient(where(is_finite(raw_max), raw_max, 0.0))
        out = log(reduce_sum(exp(x - m), axis, keepdims=keepdims))
        if not keepdims:
            m = array_ops.reshape(m, out.shape.as_list() if out.shape.is_fully_defined()
                                  else array_ops.shape(out))
        return add(out, m, name=scope)


def reduce_euclidean_norm(input_tensor, axis=None, keepdims=False, name=None):
    """``sqrt(sum(x**2, axis))``."""
    with name_scope(name, "ReduceEuclideanNorm"):
        return sqrt(reduce_sum(square(input_tensor), axis, keepdims=keepdims))


def norm(tensor, ord="euclidean", axis=None, keepdims=None, name=None,  # noqa: A002
         keep_dims=None):
    """Vector norms over one axis (or all elements when ``axis`` is None): ``ord`` is
    ``"euclidean"``/2, 1, ``np.inf`` or any p > 0; matrix norms over a pair of axes: ``"fro"``
    (= ``"euclidean"``), 1 (largest column sum of absolute values) or ``np.inf`` (largest
    row sum). The spectral norm (``ord=2`` over a pair) is not implemented."""
    keep = bool(keepdims if keepdims is not None else keep_dims)
    with name_scope(name, "norm"):
        x = convert_to_tensor(tensor)
        pair = isinstance(axis, (list, tuple)) and len(axis) == 2
        if isinstance(axis, (list, tuple)) and len(axis) not in (1, 2):
            raise ValueError(f"norm: axis must be None, an int or a pair, got {axis!r}")
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if pair:
            if ord in ("euclidean", "fro"):
                return sqrt(reduce_sum(square(x), list(axis), keepdims=keep))
            if ord in (1, np.inf):
                rows, cols = axis
                inner, outer = (rows, cols) if ord == 1 else (cols, rows)
                s = reduce_sum(abs(x), inner, keepdims=True)
                out = reduce_max(s, outer, keepdims=True)
                if keep:
                    return out
                from tensorweave.ops import array_ops
                return array_ops.squeeze(out, sorted(axis))
            raise ValueError(f"norm: ord={ord!r} over a pair of axes is not supported: use "
                             "'fro', 'euclidean', 1 or np.inf")
        if ord in ("euclidean", "fro", 2, 2.0):
            return sqrt(reduce_sum(square(x), axis, keepdims=keep))
        if ord == 1:
            return reduce_sum(abs(x), axis, keepdims=keep)
        if ord == np.inf:
            return reduce_max(abs(x), axis, keepdims=keep)
        if isinstance(ord, (int, float)) and ord > 0:
            p = constant(float(ord), dtype=x.dtype)
            return pow(reduce_sum(pow(abs(x), p), axis, keepdims=keep), 1.0 / p)
        raise ValueError(f"norm: ord must be 'euclidean', 'fro', 1, 2, np.inf or a number "
                         f"> 0, got {ord!r}")


def _segment_count(segment_ids, num_segments, dtype):
    from tensorweave.ops import array_ops
    ones = array_ops.ones_like(segment_ids, dtype=dtype)
    return array_ops.unsorted_segment_sum(ones, segment_ids, num_segments)


def _per_segment(counts, data, segment_ids):
    """Counts [num_segments] reshaped to broadcast against segment sums of ``data`` (whose
    leading ``rank(segment_ids)`` axes the ids index)."""
    from tensorweave.ops import array_ops
    if data.shape.ndims is None or segment_ids.shape.ndims is None:
        raise ValueError(f"segment means need data and segment_ids of known rank, got "
                         f"{data.shape} and {segment_ids.shape}")
    return array_ops.reshape(counts, [-1] + [1] * (data.shape.ndims - segment_ids.shape.ndims))


def unsorted_segment_mean(data, segment_ids, num_segments, name=None):
    """The mean of the rows of ``data`` in each of ``num_segments`` segments (0 for an empty
    segment)."""
    from tensorweave.ops import array_ops
    with name_scope(name, "UnsortedSegmentMean"):
        data = convert_to_tensor(data)
        ids = convert_to_tensor(segment_ids)
        total = array_ops.unsorted_segment_sum(data, ids, num_segments)
        n = _segment_count(ids, num_segments, data.dtype)
        return div_no_nan(total, _per_segment(n, data, ids))


def _num_segments(ids):
    """``max(ids) + 1``, 0 for no ids."""
    from tensorweave.ops import array_ops
    flat = cast(array_ops.reshape(ids, [-1]), dtypes.int32)
    return reduce_max(array_ops.concat([flat, [-1]], 0)) + 1


def segment_sum(data, segment_ids, name=None):
    """Sums the rows of ``data`` per segment id (sorted ids; ``max(ids) + 1`` segments)."""
    from tensorweave.ops import array_ops
    with name_scope(name, "SegmentSum"):
        ids = convert_to_tensor(segment_ids)
        return array_ops.unsorted_segment_sum(data, ids, _num_segments(ids))


def segment_mean(data, segment_ids, name=None):
    """The mean of the rows of ``data`` per segment id (sorted ids)."""
    with name_scope(name, "SegmentMean"):
        ids = convert_to_tensor(segment_ids)
        return unsorted_segment_mean(data, ids, _num_segments(ids))


def bincount(arr, weights=None, minlength=None, maxlength=None, dtype=dtypes.int32,
             name=None):
    """How often each value 0, 1, ... occurs in the non-negative int ``arr`` (or the sum of
    ``weights`` at its positions): length ``max(arr) + 1``, at least ``minlength``, at most
    ``maxlength`` (larger values are dropped)."""
    from tensorweave.ops import array_ops
    with name_scope(name, "bincount"):
        a = cast(array_ops.reshape(convert_to_tensor(arr), [-1]), dtypes.int32)
        n = maximum(cast(reduce_max(array_ops.concat([a, [-1]], 0)), dtypes.int32) + 1, 0)
        if minlength is not None:
            n = maximum(n, minlength)
        if maxlength is not None:
            n = minimum(n, maxlength)
            a = where(a < maxlength, a, -array_ops.ones_like(a))  # dropped below
        out_dtype = dtypes.as_dtype(dtype) if weights is None else \
            convert_to_tensor(weights).dtype
        w = array_ops.ones_like(a, dtype=dtypes.float64) if weights is None else \
            array_ops.reshape(cast(convert_to_tensor(weights), dtypes.float64), [-1])
        keep = a >= 0
        counts = array_ops.unsorted_segment_sum(
            where(keep, w, array_ops.zeros_like(w)), where(keep, a, array_ops.zeros_like(a)), n)
        return cast(counts, out_dtype)


def confusion_matrix(labels, predictions, num_classes=None, weights=None, dtype=dtypes.int32,
                     name=None):
    """``[num_classes, num_classes]`` counts (or summed ``weights``): row = label, column =
    prediction. Without ``num_classes``, ``max(labels, predictions) + 1``."""
    from tensorweave.ops import array_ops
    with name_scope(name, "confusion_matrix"):
        lab = cast(array_ops.reshape(convert_to_tensor(labels), [-1]), dtypes.int32)
        pred = cast(array_ops.reshape(convert_to_tensor(predictions), [-1]), dtypes.int32)
        from tensorweave.ops import script_ops
        checks = [script_ops.assert_non_negative(lab, message="confusion_matrix: `labels` "
                                                 "contains negative values"),
                  script_ops.assert_non_negative(pred, message="confusion_matrix: "
                                                 "`predictions` contains negative values")]
        if num_classes is None:
            n = maximum(reduce_max(lab), reduce_max(pred)) + 1
        else:
            n = convert_to_tensor(num_classes, dtype=dtypes.int32)
            checks += [script_ops.assert_less(lab, n, message="confusion_matrix: `labels` "
                                              "out of bound [0, num_classes)"),
                       script_ops.assert_less(pred, n, message="confusion_matrix: "
                                              "`predictions` out of bound [0, num_classes)")]
        with ops.control_dependencies(checks):
            index = lab * n + pred
        if weights is not None:  # TF1 casts the weights to the result's dtype
            weights = cast(convert_to_tensor(weights), dtypes.as_dtype(dtype))
        flat = bincount(index, weights=weights, minlength=n * n, maxlength=n * n,
                        dtype=dtype)
        out = array_ops.reshape(flat, array_ops.stack([n, n]))
        if isinstance(num_classes, int):
            out.set_shape([num_classes, num_classes])
        return out


def trace(x, name=None):
    """The sum of the main diagonal of each innermost matrix."""
    from tensorweave.ops import array_ops
    with name_scope(name, "Trace"):
        return reduce_sum(array_ops.matrix_diag_part(x), -1)


def count_nonzero(input_tensor, axis=None, keepdims=False, dtype=dtypes.int64, name=None,
                  reduction_indices=None, keep_dims=None):
    """Number of non-zero elements over ``axis``, as ``dtype`` (int64)."""
    with name_scope(name, "count_nonzero"):
        x = convert_to_tensor(input_tensor)
        zero = False if x.dtype == dtypes.bool_ else 0
        nz = cast(not_equal(x, constant(zero, dtype=x.dtype)), dtype)
        return _reduce("Sum", nz, axis, keepdims, None, keep_dims, reduction_indices)


def _argminmax_infer(op):
    x, axis = op.inputs
    if not op.attrs["output_type"].is_integer:
        raise TypeError(f"{op.type}: output_type must be int32 or int64, got "
                        f"{op.attrs['output_type'].name}")
    a = constant_value(axis)
    if a is None or x.shape.ndims is None:
        return [(op.attrs["output_type"], TensorShape(None))]
    rank = x.shape.ndims
    if not -rank <= int(a) < rank:
        raise ValueError(f"{op.type}: axis {int(a)} is out of range for a tensor of shape "
                         f"{x.shape}")
    a = int(a) % rank
    dims = x.shape.as_list()
    return [(op.attrs["output_type"], TensorShape(dims[:a] + dims[a + 1:]))]


register_op("ArgMax")(_argminmax_infer)
register_op("ArgMin")(_argminmax_infer)


def _arg(op_type, default_name, what):
    def builder(input, axis=None, name=None, dimension=None,  # noqa: A002  (TF's name)
                output_type=dtypes.int64):
        if dimension is not None:
            if axis is not None:
                raise ValueError("Give only one of 'axis' and 'dimension'")
            axis = dimension
        return make(op_type, [convert_to_tensor(input),
                              convert_to_tensor(0 if axis is None else axis, dtypes.int32)],
                    {"output_type": dtypes.as_dtype(output_type)}, name=name or op_type)

    builder.__name__ = builder.__qualname__ = default_name
    builder.__doc__ = (f"Index of the {what} value along ``axis`` (default 0), as "
                       "``output_type`` (int64).")
    return builder


argmax = _arg("ArgMax", "argmax", "largest")
argmin = _arg("ArgMin", "argmin", "smallest")


# --- scans --------------------------------------------------------------------------------------
def _scan_infer(op):
    x, axis = op.inputs
    a = constant_value(axis)
    rank = x.shape.ndims
    if a is not None and rank and not -rank <= int(a) < rank:
        raise ValueError(f"{op.type}: axis {int(a)} is out of range for shape {x.shape}")
    return [(x.dtype, x.shape)]


register_op("Cumsum")(_scan_infer)
register_op("Cumprod")(_scan_infer)


def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    """Running sum along ``axis``; ``exclusive`` leaves out the current element, ``reverse``
    runs from the end. ``cumsum([a, b, c])`` is ``[a, a + b, a + b + c]``."""
    return make("Cumsum", [convert_to_tensor(x), convert_to_tensor(axis, dtypes.int32)],
                {"exclusive": bool(exclusive), "reverse": bool(reverse)}, name=name or "Cumsum")


def cumprod(x, axis=0, exclusive=False, reverse=False, name=None):
    """Running product along ``axis`` (``exclusive``/``reverse`` as in ``cumsum``)."""
    return make("Cumprod", [convert_to_tensor(x), convert_to_tensor(axis, dtypes.int32)],
                {"exclusive": bool(exclusive), "reverse": bool(reverse)}, name=name or "Cumprod")


# --- contractions -------------------------------------------------------------------------------
def tensordot(a, b, axes, name=None):
    """Sums products over ``axes`` (an int or a pair of axis lists), via transpose+reshape."""
    from tensorweave.ops import array_ops
    with name_scope(name, "Tensordot"):
        a, b = binary_operands(a, b)
        ra, rb = a.shape.ndims, b.shape.ndims
        if ra is None or rb is None:
            raise ValueError("tensordot needs operands of known rank")
        if isinstance(axes, int):
            ax_a, ax_b = list(range(ra - axes, ra)), list(range(axes))
        else:
            ax_a, ax_b = [list(np.atleast_1d(v)) for v in axes]
        ax_a = [int(x) % ra for x in ax_a]
        ax_b = [int(x) % rb for x in ax_b]
        free_a = [i for i in range(ra) if i not in ax_a]
        free_b = [i for i in range(rb) if i not in ax_b]
        sa, sb = a.shape.as_list(), b.shape.as_list()
        for i, j in zip(ax_a, ax_b):
            if sa[i] is not None and sb[j] is not None and sa[i] != sb[j]:
                raise ValueError(f"tensordot: axis {i} of a (shape {a.shape}) and axis {j} of b "
                                 f"(shape {b.shape}) differ")
        k = int(np.prod([sa[i] if sa[i] is not None else sb[j] for i, j in zip(ax_a, ax_b)]))
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


def parse_einsum(equation: str, n_operands: int):
    """Splits an einsum equation into (input subscripts, output subscripts), making an implicit
    output explicit (``...`` first, then the letters used once, sorted), as NumPy and TF do."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != n_operands:
        raise ValueError(f"einsum equation {equation!r} names {len(ins)} operands, got "
                         f"{n_operands}")
    for sub in (*ins, out):
        if not all(c.isalpha() for c in sub.replace("...", "")):
            raise ValueError(f"einsum equation {equation!r}: subscripts are letters and '...'")
    if not arrow:
        letters = "".join(ins).replace(".", "")
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        out = ("..." if "..." in lhs else "") + "".join(once)
    unknown = set(out.replace(".", "")) - set(lhs)
    if unknown:
        raise ValueError(f"einsum equation {equation!r}: output subscripts {sorted(unknown)} "
                         "appear in no input")
    return ins, out


@register_op("Einsum")
def _einsum_infer(op):
    ins, out = parse_einsum(op.attrs["equation"], len(op.inputs))
    dtype = op.inputs[0].dtype
    sizes, ell = {}, TensorShape([])
    for sub, t in zip(ins, op.inputs):
        if t.dtype != dtype:
            raise TypeError(f"einsum operands must share a dtype: {dtype.name} vs {t.dtype.name}")
        dims = t.shape.as_list() if t.shape.ndims is not None else None
        letters = sub.replace("...", "")
        if dims is None:
            if "..." in sub:
                ell = TensorShape(None)
            continue
        if len(dims) < len(letters) or ("..." not in sub and len(dims) != len(letters)):
            raise ValueError(f"einsum: subscripts {sub!r} do not fit operand shape {t.shape}")
        head, _, _ = sub.partition("...")
        n_ell = len(dims) - len(letters)
        if "..." in sub:
            ell = broadcast_shape(ell, TensorShape(dims[len(head):len(head) + n_ell]))
        for c, d in zip(letters, dims[:len(head)] + dims[len(head) + n_ell:]):
            # sizes broadcast: 1 yields to anything, unknown to a known size
            old = sizes.get(c, 1)
            if old not in (1, None) and d not in (1, None) and old != d:
                raise ValueError(f"einsum {op.attrs['equation']!r}: subscript {c!r} has sizes "
                                 f"{old} and {d} (operand shapes "
                                 f"{[str(x.shape) for x in op.inputs]})")
            sizes[c] = d if old == 1 else old if d == 1 or d is None else d
    if ell.ndims is None and "..." in out:
        return [(dtype, TensorShape(None))]
    head, _, tail = out.partition("...")
    dims = [sizes.get(c) for c in head] + (ell.as_list() if "..." in out else []) + \
        [sizes.get(c) for c in tail]
    return [(dtype, TensorShape(dims))]


def einsum(equation, *inputs, **kwargs):
    """Einstein summation, e.g. ``einsum("ij,jk->ik", a, b)`` (matmul), ``einsum("bij->bji",
    x)``, ``einsum("...i,...i->...", u, v)``; operands broadcast like NumPy's ``einsum``."""
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"einsum got unexpected keyword arguments {sorted(kwargs)}")
    if not inputs:
        raise ValueError("einsum needs at least one operand")
    ts = [convert_to_tensor(t) for t in inputs]
    ins, out = parse_einsum(equation, len(ts))
    return make("Einsum", ts, {"equation": ",".join(ins) + "->" + out, "N": len(ts)},
                name=name or "Einsum")


def indexed_slices_to_dense(s: IndexedSlices):
    """Densifies a sparse gradient (rows + indices) with UnsortedSegmentSum."""
    from tensorweave.ops import array_ops
    n = s.dense_shape[0] if s.dense_shape is not None else None
    if n is None:
        raise ValueError("Cannot densify IndexedSlices without a dense_shape")
    return array_ops.unsorted_segment_sum(s.values, s.indices, n)


__all__ = [
    "add", "subtract", "multiply", "pow", "maximum", "minimum", "squared_difference",
    "floordiv", "floormod", "truncatediv", "truncatemod", "realdiv", "div_no_nan", "atan2",
    "truediv", "divide", "div", "scalar_mul", "sub", "mul", "mod", "floor_div", *_UNARY_NAMES,
    "log_sigmoid", "add_n", "accumulate_n", "cast", "to_float", "to_double", "to_int32",
    "to_int64", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and",
    "logical_or", "logical_not", "logical_xor", "where", "where_v2", "clip_by_value", "matmul",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_all",
    "reduce_any", "reduce_logsumexp", "reduce_euclidean_norm", "count_nonzero", "argmax",
    "argmin", "cumsum", "cumprod", "tensordot", "einsum", "norm", "segment_sum",
    "segment_mean", "unsorted_segment_mean", "bincount", "confusion_matrix", "trace",
]

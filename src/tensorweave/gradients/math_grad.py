"""Gradients of ops/math_ops.py, as graph code (TensorFlow's math_grad.py is the model)."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.constant_op import constant, constant_value
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import array_ops, math_ops
from tensorweave.ops.op_util import make


def sum_to_shape(grad, x, other=None):
    """Reduces a broadcast gradient back to ``x``'s shape (summing broadcast axes).

    Decided statically when shapes allow (the common case costs no op at all); otherwise at
    run time with BroadcastGradientArgs, as TensorFlow does.
    """
    gs, xs = grad.shape.as_tuple(), x.shape.as_tuple()
    os_ = other.shape.as_tuple() if other is not None else None
    if gs is not None and xs is not None and gs == xs:
        if None not in xs:
            return grad
        # None dims could hide broadcasting only where the other operand may be > 1 there
        if os_ is not None:
            off = len(xs) - len(os_)
            if all(d is not None or i < off or os_[i - off] == 1 for i, d in enumerate(xs)):
                return grad
    if gs is not None and xs is not None and None not in xs:
        lead = len(gs) - len(xs)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(xs)
                                    if d == 1 and gs[lead + i] != 1]
        out = math_ops.reduce_sum(grad, axes) if axes else grad
        if out.shape.as_tuple() != xs:
            out = array_ops.reshape(out, list(xs))
        return out
    rx, _ = array_ops.broadcast_gradient_args(array_ops.shape(x), array_ops.shape(grad))
    return array_ops.reshape(math_ops.reduce_sum(grad, rx), array_ops.shape(x))


def _select(cond, a, b):
    """SelectV2 with NumPy broadcasting; ``a``/``b`` may be Python scalars (bound as constants,
    so no zeros_like op runs per step)."""
    dtype = (b if isinstance(a, (int, float)) else a).dtype
    a, b = [constant(v, dtype=dtype) if isinstance(v, (int, float)) else v for v in (a, b)]
    return make("SelectV2", [cond, a, b], {}, name="Select")


# --- binary -----------------------------------------------------------------------------------
@RegisterGradient("AddV2")
def _add_grad(op, grad):
    x, y = op.inputs
    return [sum_to_shape(grad, x, y), sum_to_shape(grad, y, x)]


RegisterGradient("Add")(_add_grad)


@RegisterGradient("Sub")
def _sub_grad(op, grad):
    x, y = op.inputs
    return [sum_to_shape(grad, x, y), sum_to_shape(math_ops.negative(grad), y, x)]


@RegisterGradient("Mul")
def _mul_grad(op, grad):
    x, y = op.inputs
    return [sum_to_shape(grad * y, x, y), sum_to_shape(x * grad, y, x)]


@RegisterGradient("RealDiv")
def _realdiv_grad(op, grad):
    x, y = op.inputs
    return [sum_to_shape(grad / y, x, y),
            sum_to_shape(math_ops.negative(grad) * x / (y * y), y, x)]


@RegisterGradient("DivNoNan")
def _div_no_nan_grad(op, grad):
    x, y = op.inputs
    dnn = math_ops.div_no_nan
    return [sum_to_shape(dnn(grad, y), x, y),
            sum_to_shape(grad * dnn(dnn(math_ops.negative(x), y), y), y, x)]


@RegisterGradient("Pow")
def _pow_grad(op, grad):
    x, y = op.inputs
    z = op.outputs[0]
    gx = grad * y * math_ops.pow(x, y - 1)
    # d/dy x^y = x^y log x, taken as 0 where x <= 0 (as TF does)
    positive = math_ops.greater(x, constant(0, dtype=x.dtype))
    log_x = _select(positive, math_ops.log(_select(positive, x, 1)), 0)
    return [sum_to_shape(gx, x, y), sum_to_shape(grad * z * log_x, y, x)]


def _minmax_grad(op, grad, x_wins):
    x, y = op.inputs
    mask = x_wins(x, y)  # broadcast to the output's (= grad's) shape by the comparison itself
    return [sum_to_shape(_select(mask, grad, 0), x, y), sum_to_shape(_select(mask, 0, grad), y, x)]


@RegisterGradient("Maximum")
def _maximum_grad(op, grad):
    return _minmax_grad(op, grad, math_ops.greater_equal)


@RegisterGradient("Minimum")
def _minimum_grad(op, grad):
    return _minmax_grad(op, grad, math_ops.less_equal)


@RegisterGradient("SquaredDifference")
def _squared_difference_grad(op, grad):
    x, y = op.inputs
    d = grad * 2.0 * (x - y)
    return [sum_to_shape(d, x, y), sum_to_shape(math_ops.negative(d), y, x)]


@RegisterGradient("FloorMod")
def _floor_mod_grad(op, grad):
    # x mod y = x - floor(x / y) * y, with floor(x / y) piecewise constant
    x, y = op.inputs
    return [sum_to_shape(grad, x, y),
            sum_to_shape(grad * math_ops.negative(math_ops.floordiv(x, y)), y, x)]


@RegisterGradient("Atan2")
def _atan2_grad(op, grad):
    y, x = op.inputs
    inv = grad / (x * x + y * y)
    return [sum_to_shape(x * inv, y, x), sum_to_shape(math_ops.negative(y) * inv, x, y)]


@RegisterGradient("SelectV2")
def _select_grad(op, grad):
    c, x, y = op.inputs
    return [None, sum_to_shape(_select(c, grad, 0), x, y), sum_to_shape(_select(c, 0, grad), y, x)]


for _t in ("FloorDiv", "TruncateDiv", "TruncateMod", "Equal", "NotEqual", "Less", "LessEqual",
           "Greater", "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "ArgMax",
           "ArgMin", "All", "Any", "Floor", "Ceil", "Round", "Rint", "Sign", "IsNan", "IsInf",
           "IsFinite"):
    NotDifferentiable(_t)


# --- unary: the ones with a gradient op take (y, dy), as in TF ---------------------------------
@RegisterGradient("Neg")
def _neg_grad(op, grad):
    return [math_ops.negative(grad)]


@RegisterGradient("Tanh")
def _tanh_grad(op, grad):
    return [math_ops.tanh_grad(op.outputs[0], grad)]


@RegisterGradient("Sigmoid")
def _sigmoid_grad(op, grad):
    return [math_ops.sigmoid_grad(op.outputs[0], grad)]


@RegisterGradient("Sqrt")
def _sqrt_grad(op, grad):
    return [math_ops.sqrt_grad(op.outputs[0], grad)]


@RegisterGradient("Rsqrt")
def _rsqrt_grad(op, grad):
    return [math_ops.rsqrt_grad(op.outputs[0], grad)]


@RegisterGradient("Reciprocal")
def _reciprocal_grad(op, grad):
    return [math_ops.reciprocal_grad(op.outputs[0], grad)]


# Second order: each gradient op is bilinear-ish in (y, dy); d/d(dy) is the same op again.
@RegisterGradient("TanhGrad")
def _tanh_grad_grad(op, grad):
    y, dy = op.inputs  # out = dy * (1 - y^2)
    return [grad * -2.0 * dy * y, math_ops.tanh_grad(y, grad)]


@RegisterGradient("SigmoidGrad")
def _sigmoid_grad_grad(op, grad):
    y, dy = op.inputs  # out = dy * y * (1 - y)
    return [grad * dy * (1.0 - 2.0 * y), math_ops.sigmoid_grad(y, grad)]


@RegisterGradient("SqrtGrad")
def _sqrt_grad_grad(op, grad):
    y, dy = op.inputs  # out = 0.5 * dy / y
    return [math_ops.negative(grad) * op.outputs[0] / y, math_ops.sqrt_grad(y, grad)]


@RegisterGradient("RsqrtGrad")
def _rsqrt_grad_grad(op, grad):
    y, dy = op.inputs  # out = -0.5 * dy * y^3
    return [grad * -1.5 * dy * y * y, math_ops.rsqrt_grad(y, grad)]


@RegisterGradient("ReciprocalGrad")
def _reciprocal_grad_grad(op, grad):
    y, dy = op.inputs  # out = -dy * y^2
    return [grad * -2.0 * dy * y, math_ops.reciprocal_grad(y, grad)]


@RegisterGradient("Abs")
def _abs_grad(op, grad):
    return [grad * math_ops.sign(op.inputs[0])]


@RegisterGradient("Square")
def _square_grad(op, grad):
    return [grad * (2.0 * op.inputs[0])]


@RegisterGradient("Exp")
def _exp_grad(op, grad):
    return [grad * op.outputs[0]]


@RegisterGradient("Expm1")
def _expm1_grad(op, grad):
    return [grad * math_ops.exp(op.inputs[0])]


@RegisterGradient("Log")
def _log_grad(op, grad):
    return [grad / op.inputs[0]]


@RegisterGradient("Log1p")
def _log1p_grad(op, grad):
    return [grad / (1.0 + op.inputs[0])]


@RegisterGradient("Sin")
def _sin_grad(op, grad):
    return [grad * math_ops.cos(op.inputs[0])]


@RegisterGradient("Cos")
def _cos_grad(op, grad):
    return [math_ops.negative(grad * math_ops.sin(op.inputs[0]))]


@RegisterGradient("Tan")
def _tan_grad(op, grad):
    c = math_ops.cos(op.inputs[0])
    return [grad / (c * c)]


@RegisterGradient("Asin")
def _asin_grad(op, grad):
    x = op.inputs[0]
    return [grad * math_ops.rsqrt(1.0 - x * x)]


@RegisterGradient("Acos")
def _acos_grad(op, grad):
    x = op.inputs[0]
    return [math_ops.negative(grad) * math_ops.rsqrt(1.0 - x * x)]


@RegisterGradient("Atan")
def _atan_grad(op, grad):
    x = op.inputs[0]
    return [grad / (1.0 + x * x)]


@RegisterGradient("Sinh")
def _sinh_grad(op, grad):
    return [grad * math_ops.cosh(op.inputs[0])]


@RegisterGradient("Cosh")
def _cosh_grad(op, grad):
    return [grad * math_ops.sinh(op.inputs[0])]


@RegisterGradient("Asinh")
def _asinh_grad(op, grad):
    return [grad / math_ops.cosh(op.outputs[0])]


@RegisterGradient("Acosh")
def _acosh_grad(op, grad):
    return [grad / math_ops.sinh(op.outputs[0])]


@RegisterGradient("Atanh")
def _atanh_grad(op, grad):
    x = op.inputs[0]
    return [grad / (1.0 - x * x)]


@RegisterGradient("Erf")
def _erf_grad(op, grad):
    x = op.inputs[0]
    return [grad * (2.0 / np.sqrt(np.pi)) * math_ops.exp(math_ops.negative(x * x))]


# --- AddN, Cast, matmul -----------------------------------------------------------------------
@RegisterGradient("AddN")
def _add_n_grad(op, grad):
    return [grad] * len(op.inputs)


@RegisterGradient("Cast")
def _cast_grad(op, grad):
    src = op.inputs[0].dtype
    if src.is_floating and op.outputs[0].dtype.is_floating:
        return [math_ops.cast(grad, src)]
    return [None]


def _matmul_grads(a, b, grad, ta, tb):
    """Gradients of op(a) @ op(b) where op transposes (the last two axes) when flagged."""
    mm = math_ops.matmul
    if not ta and not tb:
        return mm(grad, b, transpose_b=True), mm(a, grad, transpose_a=True)
    if not ta and tb:
        return mm(grad, b), mm(grad, a, transpose_a=True)
    if ta and not tb:
        return mm(b, grad, transpose_b=True), mm(a, grad)
    return (mm(b, grad, transpose_a=True, transpose_b=True),
            mm(grad, a, transpose_a=True, transpose_b=True))


@RegisterGradient("MatMul")
def _matmul_grad(op, grad):
    a, b = op.inputs
    return list(_matmul_grads(a, b, grad, op.attrs["transpose_a"], op.attrs["transpose_b"]))


@RegisterGradient("BatchMatMulV2")
def _batch_matmul_grad(op, grad):
    a, b = op.inputs
    ga, gb = _matmul_grads(a, b, grad, op.attrs["adj_x"], op.attrs["adj_y"])
    # broadcast batch dims are summed back to each operand's own shape
    return [sum_to_shape(ga, a), sum_to_shape(gb, b)]


@RegisterGradient("Einsum")
def _einsum_grad(op, grad):
    # einsum is linear in each operand: d/dx_i = einsum(grad and the other operands -> x_i's
    # subscripts). Letters only x_i has are summed out forward: broadcast them back afterwards.
    ins, out = math_ops.parse_einsum(op.attrs["equation"], len(op.inputs))
    if any("..." in s for s in ins) and "..." not in out:
        raise NotImplementedError(f"einsum gradient: {op.attrs['equation']!r} sums over '...'; "
                                  "name those axes with letters")
    grads = []
    for i, (sub, x) in enumerate(zip(ins, op.inputs)):
        letters = sub.replace("...", "")
        if len(set(letters)) != len(letters):
            raise NotImplementedError(f"einsum gradient: repeated subscript in {sub!r} "
                                      f"({op.attrs['equation']!r})")
        others = [s for j, s in enumerate(ins) if j != i]
        seen = set(out + "".join(others))
        target = "".join(c for c in sub if c == "." or c in seen)
        g = math_ops.einsum(f"{','.join([out, *others])}->{target}", grad,
                            *[t for j, t in enumerate(op.inputs) if j != i])
        if target != sub:
            rank = x.shape.ndims
            if rank is None:
                raise NotImplementedError("einsum gradient: an operand of unknown rank")
            head, _, tail = sub.partition("...")
            expanded = head + "." * (rank - len(letters)) + tail
            for pos, c in enumerate(expanded):
                if c != "." and c not in seen:
                    g = array_ops.expand_dims(g, pos)
            g = array_ops.broadcast_to(g, x.shape.as_list() if x.shape.is_fully_defined()
                                       else array_ops.shape(x))
        grads.append(sum_to_shape(g, x))
    return grads


# --- reductions -------------------------------------------------------------------------------
def _reduction_grad_broadcast(op, grad):
    """Reshapes the reduced gradient so it broadcasts against the reduction's input."""
    x, axes = op.inputs
    if op.attrs["keep_dims"]:
        return grad
    av = constant_value(axes)
    xs = x.shape.as_tuple()
    if av is not None and xs is not None:
        rank = len(xs)
        ax = {int(a) % rank for a in np.atleast_1d(av)}
        kept = [1 if i in ax else (d if d is not None else -1) for i, d in enumerate(xs)]
        if kept.count(-1) <= 1:
            return array_ops.reshape(grad, kept)
    return array_ops.reshape(grad, array_ops.reduced_shape(array_ops.shape(x), axes))


@RegisterGradient("Sum")
def _sum_grad(op, grad):
    x = op.inputs[0]
    g = _reduction_grad_broadcast(op, grad)
    if x.shape.is_fully_defined():
        return [array_ops.broadcast_to(g, x.shape.as_list()), None]
    return [array_ops.broadcast_to(g, array_ops.shape(x)), None]


@RegisterGradient("Mean")
def _mean_grad(op, grad):
    (g, _) = _sum_grad(op, grad)
    x, y = op.inputs[0], op.outputs[0]
    nx, ny = x.shape.num_elements(), y.shape.num_elements()
    if nx is not None and ny is not None:
        factor = constant(max(nx // max(ny, 1), 1), dtype=g.dtype)
    else:
        # y is empty only when x is, and then the quotient is never used
        factor = math_ops.cast(array_ops.size(x), g.dtype) / math_ops.cast(
            array_ops.size(y), g.dtype)
    return [g / factor, None]


def _minmax_reduction_grad(op, grad):
    # ties share the gradient equally, as in TF
    x, y = op.inputs[0], op.outputs[0]
    g = _reduction_grad_broadcast(op, grad)
    yk = _reduction_grad_broadcast(op, y)
    ind = math_ops.cast(math_ops.equal(x, yk), grad.dtype)
    num = math_ops.reduce_sum(ind, op.inputs[1], keepdims=True)
    return [ind / num * g, None]


RegisterGradient("Max")(_minmax_reduction_grad)
RegisterGradient("Min")(_minmax_reduction_grad)


@RegisterGradient("Prod")
def _prod_grad(op, grad):
    # d prod / d x_i is the product of the others: y / x_i where x_i != 0; at a zero it is the
    # product of the non-zeros when that zero is its group's only one, and 0 otherwise
    x, y, axes = op.inputs[0], op.outputs[0], op.inputs[1]
    g = _reduction_grad_broadcast(op, grad)
    yk = _reduction_grad_broadcast(op, y)
    is_zero = math_ops.equal(x, constant(0, dtype=x.dtype))
    safe_x = _select(is_zero, 1, x)
    others_nonzero = math_ops.reduce_prod(safe_x, axes, keepdims=True)
    zeros = math_ops.reduce_sum(math_ops.cast(is_zero, x.dtype), axes, keepdims=True)
    at_zero = _select(math_ops.equal(zeros, constant(1, dtype=x.dtype)), others_nonzero, 0)
    return [g * _select(is_zero, at_zero, yk / safe_x), None]


# --- scans ------------------------------------------------------------------------------------
@RegisterGradient("Cumsum")
def _cumsum_grad(op, grad):
    return [math_ops.cumsum(grad, op.inputs[1], exclusive=op.attrs["exclusive"],
                            reverse=not op.attrs["reverse"]), None]


@RegisterGradient("Cumprod")
def _cumprod_grad(op, grad):
    # exact for non-zero inputs (as in TF): d out_j / d x_i = out_j / x_i for j past i
    x, axis = op.inputs
    ex, rev = op.attrs["exclusive"], op.attrs["reverse"]
    out = math_ops.cumsum(op.outputs[0] * grad, axis, exclusive=ex, reverse=not rev)
    return [out / x, None]

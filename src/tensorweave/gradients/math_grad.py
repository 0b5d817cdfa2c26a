"""Gradients of ops/math_ops.py, as graph code (TensorFlow's math_grad.py is the model)."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.constant_op import constant
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import array_ops, math_ops


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


@RegisterGradient("AddV2")
def _add_grad(op, grad):
    x, y = op.inputs
    return [sum_to_shape(grad, x, y), sum_to_shape(grad, y, x)]


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


@RegisterGradient("Neg")
def _neg_grad(op, grad):
    return [math_ops.negative(grad)]


@RegisterGradient("Tanh")
def _tanh_grad(op, grad):
    y = op.outputs[0]
    return [grad * (1.0 - y * y)]


@RegisterGradient("AddN")
def _add_n_grad(op, grad):
    return [grad] * len(op.inputs)


@RegisterGradient("Cast")
def _cast_grad(op, grad):
    src = op.inputs[0].dtype
    if src.is_floating and op.outputs[0].dtype.is_floating:
        return [math_ops.cast(grad, src)]
    return [None]


@RegisterGradient("MatMul")
def _matmul_grad(op, grad):
    a, b = op.inputs
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    mm = math_ops.matmul
    if not ta and not tb:
        return [mm(grad, b, transpose_b=True), mm(a, grad, transpose_a=True)]
    if not ta and tb:
        return [mm(grad, b), mm(grad, a, transpose_a=True)]
    if ta and not tb:
        return [mm(b, grad, transpose_b=True), mm(a, grad)]
    return [mm(b, grad, transpose_a=True, transpose_b=True),
            mm(grad, a, transpose_a=True, transpose_b=True)]


def _reduction_grad_broadcast(op, grad):
    """Reshapes the reduced gradient so it broadcasts against the reduction's input."""
    x, axes = op.inputs
    if op.attrs["keep_dims"]:
        return grad
    from tensorweave.framework.constant_op import constant_value
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


# --- binary ------------------------------------------------------------------------------------
@RegisterGradient("Pow")
def _pow_grad(op, grad):
    x, y = op.inputs
    z = op.outputs[0]
    gx = grad * y * math_ops.pow(x, y - 1.0)
    # d/dy x^y = x^y log x, defined as 0 where x <= 0 (as TF does)
    safe = math_ops.where(x > 0.0, x, array_ops.ones_like(x))
    gy = grad * z * math_ops.where(x > 0.0, math_ops.log(safe), array_ops.zeros_like(x))
    return [sum_to_shape(gx, x, y), sum_to_shape(gy, y, x)]


def _minmax_grad(op, grad, pick_x):
    x, y = op.inputs
    xmask = pick_x(x, y)
    zeros = array_ops.zeros_like(grad)
    gx = math_ops.where(xmask, grad, zeros)
    gy = math_ops.where(xmask, zeros, grad)
    return [sum_to_shape(gx, x, y), sum_to_shape(gy, y, x)]


@RegisterGradient("Maximum")
def _maximum_grad(op, grad):
    return _minmax_grad(op, grad, lambda x, y: math_ops.greater_equal(
        x + array_ops.zeros_like(op.outputs[0]), y))


@RegisterGradient("Minimum")
def _minimum_grad(op, grad):
    return _minmax_grad(op, grad, lambda x, y: math_ops.less_equal(
        x + array_ops.zeros_like(op.outputs[0]), y))


@RegisterGradient("SquaredDifference")
def _squared_difference_grad(op, grad):
    x, y = op.inputs
    d = grad * 2.0 * (x - y)
    return [sum_to_shape(d, x, y), sum_to_shape(math_ops.negative(d), y, x)]


for _t in ("FloorDiv", "FloorMod", "Equal", "NotEqual", "Less", "LessEqual", "Greater",
           "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "ArgMax", "ArgMin", "All",
           "Any", "Floor", "Ceil", "Round", "Sign"):
    NotDifferentiable(_t)


# --- unary -------------------------------------------------------------------------------------
@RegisterGradient("Abs")
def _abs_grad(op, grad):
    return [grad * math_ops.sign(op.inputs[0])]


@RegisterGradient("Square")
def _square_grad(op, grad):
    return [grad * 2.0 * op.inputs[0]]


@RegisterGradient("Sqrt")
def _sqrt_grad(op, grad):
    return [grad * 0.5 / op.outputs[0]]


@RegisterGradient("Rsqrt")
def _rsqrt_grad(op, grad):
    y = op.outputs[0]
    return [grad * -0.5 * y * y * y]


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


@RegisterGradient("Sigmoid")
def _sigmoid_grad(op, grad):
    y = op.outputs[0]
    return [grad * y * (1.0 - y)]


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


@RegisterGradient("Reciprocal")
def _reciprocal_grad(op, grad):
    y = op.outputs[0]
    return [math_ops.negative(grad) * y * y]


@RegisterGradient("Erf")
def _erf_grad(op, grad):
    x = op.inputs[0]
    return [grad * (2.0 / np.sqrt(np.pi)) * math_ops.exp(math_ops.negative(x * x))]


@RegisterGradient("SelectV2")
def _select_grad(op, grad):
    c, x, y = op.inputs
    zeros = array_ops.zeros_like(grad)
    return [None, sum_to_shape(math_ops.where(c, grad, zeros), x, y),
            sum_to_shape(math_ops.where(c, zeros, grad), y, x)]


# --- batched matmul ----------------------------------------------------------------------------
@RegisterGradient("BatchMatMulV2")
def _batch_matmul_grad(op, grad):
    a, b = op.inputs
    ax, ay = op.attrs["adj_x"], op.attrs["adj_y"]
    mm = math_ops.matmul
    if not ax and not ay:
        ga, gb = mm(grad, b, transpose_b=True), mm(a, grad, transpose_a=True)
    elif not ax and ay:
        ga, gb = mm(grad, b), mm(grad, a, transpose_a=True)
    elif ax and not ay:
        ga, gb = mm(b, grad, transpose_b=True), mm(a, grad)
    else:
        ga = mm(b, grad, transpose_a=True, transpose_b=True)
        gb = mm(grad, a, transpose_a=True, transpose_b=True)
    return [sum_to_shape(ga, a), sum_to_shape(gb, b)]


# --- reductions --------------------------------------------------------------------------------
def _minmax_reduction_grad(op, grad):
    x, y = op.inputs[0], op.outputs[0]
    g = _reduction_grad_broadcast(op, grad)
    yk = _reduction_grad_broadcast(op, y)
    ind = math_ops.cast(math_ops.equal(x, yk), grad.dtype)
    axes = op.inputs[1]
    num = math_ops.reduce_sum(ind, axes, keepdims=True)
    return [ind / num * g, None]


RegisterGradient("Max")(_minmax_reduction_grad)
RegisterGradient("Min")(_minmax_reduction_grad)


@RegisterGradient("Prod")
def _prod_grad(op, grad):
    # exact where x != 0 (y / x); inputs containing zeros get the product of the others
    # only for a single zero per reduction group, which this formula does not cover
    x, y = op.inputs[0], op.outputs[0]
    g = _reduction_grad_broadcast(op, grad)
    yk = _reduction_grad_broadcast(op, y)
    return [g * yk / x, None]


@RegisterGradient("Cumsum")
def _cumsum_grad(op, grad):
    return [math_ops.cumsum(grad, op.inputs[1], exclusive=op.attrs["exclusive"],
                            reverse=not op.attrs["reverse"]), None]

"""Gradients of ops/nn_ops.py, as graph code: activations differentiate into their dedicated
gradient ops (``ReluGrad``...), which have gradients of their own, so second order works."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.constant_op import constant
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import array_ops, math_ops, nn_ops


def _is_zero(t):
    """True for the zero gradients the backward walk fills in for unused outputs."""
    if t.op.type == "ZerosLike":
        return True
    if t.op.type == "Const":
        v = t.op.attrs["value"]
        return not np.any(v)
    return False


def _sigmoid(x):
    return math_ops.sigmoid(x)


# --- activations ---------------------------------------------------------------------------------
def _first_order(grad_type, of_output=False):
    """``of_output``: the gradient op reads the activation's output, as TensorFlow's Relu and
    Relu6 gradients do (the mask is the same; the pre-activation buffer can die at once, and
    the planner can fuse ``max_pool(relu(z))``'s gradient, see runtime/plan.py)."""
    def rule(op, grad):
        alpha = op.attrs.get("alpha")
        x = op.outputs[0] if of_output else op.inputs[0]
        return [nn_ops.activation_grad(grad_type, grad, x, alpha=alpha)]

    return rule


for _t in ("Relu", "Relu6", "Softplus", "Softsign", "LeakyRelu"):
    RegisterGradient(_t)(_first_order(_t + "Grad", of_output=_t in ("Relu", "Relu6")))


@RegisterGradient("Elu")
def _elu_grad(op, grad):
    # EluGrad is written in terms of the output: exp(x) - 1 + 1 = exp(x) where x < 0
    return [nn_ops.activation_grad("EluGrad", grad, op.outputs[0])]


def _piecewise_linear_grad_grad(op, grad):
    """Relu/Relu6/LeakyRelu gradients are linear in ``gradients`` and piecewise constant in
    ``features``: the second derivative with respect to the features is zero."""
    alpha = op.attrs.get("alpha")
    x = op.inputs[1]
    return [nn_ops.activation_grad(op.type, grad, x, alpha=alpha), array_ops.zeros_like(x)]


for _t in ("ReluGrad", "Relu6Grad", "LeakyReluGrad"):
    RegisterGradient(_t)(_piecewise_linear_grad_grad)


@RegisterGradient("EluGrad")
def _elu_grad_grad(op, grad):
    # EluGrad(g, y) = g * (y + 1) where y < 0, else g; d/dy = g where y < 0.
    # ReluGrad(a, -y) is exactly "a where y < 0, else 0".
    g, y = op.inputs
    return [nn_ops.activation_grad("EluGrad", grad, y),
            nn_ops.activation_grad("ReluGrad", grad * g, math_ops.negative(y))]


@RegisterGradient("SoftplusGrad")
def _softplus_grad_grad(op, grad):
    # SoftplusGrad(g, x) = g * sigmoid(x); sigmoid' = s * (1 - s)
    g, x = op.inputs
    s = _sigmoid(x)
    one = constant(1, dtype=x.dtype)
    return [nn_ops.activation_grad("SoftplusGrad", grad, x), grad * g * s * (one - s)]


@RegisterGradient("SoftsignGrad")
def _softsign_grad_grad(op, grad):
    # SoftsignGrad(g, x) = g / (1 + |x|)^2; d/dx = -2 g sign(x) / (1 + |x|)^3
    g, x = op.inputs
    one = constant(1, dtype=x.dtype)
    d = one + math_ops.abs(x)
    return [nn_ops.activation_grad("SoftsignGrad", grad, x),
            constant(-2, dtype=x.dtype) * grad * g * math_ops.sign(x) / (d * d * d)]


# --- softmax -------------------------------------------------------------------------------------------
def _softmax_vjp(grad, y):
    """Vector-Jacobian product of softmax at output ``y`` (last axis)."""
    return (grad - math_ops.reduce_sum(grad * y, -1, keepdims=True)) * y


@RegisterGradient("Softmax")
def _softmax_grad(op, grad):
    return [_softmax_vjp(grad, op.outputs[0])]


@RegisterGradient("LogSoftmax")
def _log_softmax_grad(op, grad):
    # d log_softmax = I - softmax; softmax is rebuilt from the input so this stays
    # differentiable without an Exp op
    sm = nn_ops.softmax(op.inputs[0])
    return [grad - math_ops.reduce_sum(grad, -1, keepdims=True) * sm]


# --- bias_add --------------------------------------------------------------------------------------------
@RegisterGradient("BiasAdd")
def _bias_add_grad(op, grad):
    return [grad, nn_ops.bias_add_grad(grad, data_format=op.attrs["data_format"])]


@RegisterGradient("BiasAddGrad")
def _bias_add_grad_grad(op, grad):
    # BiasAddGrad sums over all but the channel axis: its transpose broadcasts back
    g = op.inputs[0]
    rank = g.shape.ndims
    if rank is None:
        raise NotImplementedError("The gradient of BiasAddGrad needs out_backprop of known rank")
    shape = [1] * rank
    shape[1 if op.attrs["data_format"] == "NCHW" else rank - 1] = -1
    b = array_ops.reshape(grad, shape)
    target = g.shape.as_list() if g.shape.is_fully_defined() else array_ops.shape(g)
    return [array_ops.broadcast_to(b, target)]


# --- losses ----------------------------------------------------------------------------------------------
@RegisterGradient("L2Loss")
def _l2_loss_grad(op, grad):
    return [op.inputs[0] * grad]


def _xent_logits_grad(op, grad_loss, grad_backprop):
    """The logits gradient of both softmax cross entropies: ``backprop`` scaled by the loss
    gradient, plus the softmax Jacobian applied to a gradient arriving at ``backprop``
    (second order: ``backprop = softmax(logits) - labels``)."""
    g = array_ops.expand_dims(grad_loss, -1) * op.outputs[1]
    if not _is_zero(grad_backprop):
        g = g + _softmax_vjp(grad_backprop, nn_ops.softmax(op.inputs[0]))
    return g


@RegisterGradient("SoftmaxCrossEntropyWithLogits")
def _softmax_xent_grad(op, grad_loss, grad_backprop):
    logits = op.inputs[0]
    d_labels = array_ops.expand_dims(grad_loss, -1) * math_ops.negative(
        nn_ops.log_softmax(logits))
    if not _is_zero(grad_backprop):
        d_labels = d_labels - grad_backprop
    return [_xent_logits_grad(op, grad_loss, grad_backprop), d_labels]


@RegisterGradient("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_xent_grad(op, grad_loss, grad_backprop):
    return [_xent_logits_grad(op, grad_loss, grad_backprop), None]


# --- top-k ---------------------------------------------------------------------------------------------
@RegisterGradient("TopKV2")
def _top_k_grad(op, grad_values, grad_indices):
    """Scatters the values' gradient back to the positions the indices name."""
    x, idx = op.inputs[0], op.outputs[1]
    dims, kdims = x.shape.as_tuple(), idx.shape.as_tuple()
    if dims is not None and None not in dims and kdims is not None and None not in kdims:
        last, total = dims[-1], int(np.prod(dims))
        offsets = constant((np.arange(total // max(last, 1)) * last).reshape(
            list(dims[:-1]) + [1]).astype(np.int32))
        flat = array_ops.reshape(idx + offsets, [-1])
        out = array_ops.unsorted_segment_sum(array_ops.reshape(grad_values, [-1]), flat, total)
        return [array_ops.reshape(out, list(dims)), None]
    xs = array_ops.shape(x)
    last = xs[-1]
    total = array_ops.size(x)
    k = array_ops.shape(idx)[-1]
    rows = array_ops.reshape(idx, array_ops.stack([-1, k]))
    offsets = array_ops.expand_dims(array_ops.range(0, total, last), -1)
    flat = array_ops.reshape(rows + offsets, [-1])
    out = array_ops.unsorted_segment_sum(array_ops.reshape(grad_values, [-1]), flat, total)
    return [array_ops.reshape(out, xs), None]


NotDifferentiable("InTopKV2")

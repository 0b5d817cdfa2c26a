"""Gradients of ops/conv_ops.py. Each backprop op is itself differentiable, as in TensorFlow:
the backprops are linear in their tensor inputs, so their gradients are the other members of
the family (a conv's input gradient differentiated w.r.t. the filter is a filter backprop...)."""

from __future__ import annotations

from tensorweave.framework.constant_op import constant
from tensorweave.framework.registry import RegisterGradient
from tensorweave.gradients.gradients_impl import gradients
from tensorweave.ops import array_ops
from tensorweave.ops import math_ops as m
from tensorweave.ops.conv_ops import shape_tensor
from tensorweave.ops.op_util import make, make_op


def _register_conv_family(conv):
    bp_input, bp_filter = conv + "BackpropInput", conv + "BackpropFilter"

    @RegisterGradient(conv)
    def _conv_grad(op, grad):
        x, f = op.inputs
        a = dict(op.attrs)
        return [make(bp_input, [shape_tensor(x), f, grad], a, name=bp_input),
                make(bp_filter, [x, shape_tensor(f), grad], a, name=bp_filter)]

    @RegisterGradient(bp_input)
    def _bp_input_grad(op, grad):
        _, f, dy = op.inputs
        a = dict(op.attrs)
        return [None, make(bp_filter, [grad, shape_tensor(f), dy], a, name=bp_filter),
                make(conv, [grad, f], a, name=conv)]

    @RegisterGradient(bp_filter)
    def _bp_filter_grad(op, grad):
        x, _, dy = op.inputs
        a = dict(op.attrs)
        return [make(bp_input, [shape_tensor(x), grad, dy], a, name=bp_input), None,
                make(conv, [x, grad], a, name=conv)]


_register_conv_family("Conv2D")
_register_conv_family("DepthwiseConv2dNative")


# Max pooling is piecewise linear: each output copies one input (its window's argmax), so the
# only nonzero derivatives route gradients through that argmax, forward or backward.
@RegisterGradient("MaxPool")
def _max_pool_grad(op, grad):
    return [make("MaxPoolGrad", [op.inputs[0], op.outputs[0], grad], dict(op.attrs),
                 name="MaxPoolGrad")]


@RegisterGradient("MaxPoolGrad")
def _max_pool_grad_grad(op, grad):
    x, y, _ = op.inputs
    return [None, None, make("MaxPoolGradGrad", [x, y, grad], dict(op.attrs),
                             name="MaxPoolGradGrad")]


@RegisterGradient("MaxPoolGradGrad")
def _max_pool_grad_grad_grad(op, grad):
    x, y, _ = op.inputs
    return [None, None, make("MaxPoolGrad", [x, y, grad], dict(op.attrs), name="MaxPoolGrad")]


@RegisterGradient("AvgPool")
def _avg_pool_grad(op, grad):
    return [make("AvgPoolGrad", [shape_tensor(op.inputs[0]), grad], dict(op.attrs),
                 name="AvgPoolGrad")]


@RegisterGradient("AvgPoolGrad")
def _avg_pool_grad_grad(op, grad):
    return [None, make("AvgPool", [grad], dict(op.attrs), name="AvgPool")]


def _fused_batch_norm_grad(op, dy, *unused_output_grads):
    x, scale, _, mean, variance = op.inputs
    training = op.attrs["is_training"]
    # training normalized with the batch statistics the op saved; inference with the inputs
    saved = [op.outputs[3], op.outputs[4]] if training else [mean, variance]
    v3 = op.type == "FusedBatchNormV3"
    if v3:
        saved.append(op.outputs[5])
    grad_type = "FusedBatchNormGradV3" if v3 else "FusedBatchNormGrad"
    attrs = {k: op.attrs[k] for k in ("T", "U", "epsilon", "data_format", "is_training")
             if k in op.attrs}
    g = make_op(grad_type, [dy, x, scale] + saved, attrs, name=grad_type)
    return [g.outputs[0], g.outputs[1], g.outputs[2], None, None]


RegisterGradient("FusedBatchNorm")(_fused_batch_norm_grad)
RegisterGradient("FusedBatchNormV3")(_fused_batch_norm_grad)


@RegisterGradient("LRN")
def _lrn_grad(op, grad):
    return [make("LRNGrad", [grad, op.inputs[0], op.outputs[0]], dict(op.attrs), name="LRNGrad")]


def _fused_batch_norm_grad_grad(op, g_dx, g_dscale, g_doffset, *unused):
    """Second order: rebuild the batch-norm backward pass from math ops and differentiate that
    (as TensorFlow does); in training the batch statistics are recomputed from x, so their
    dependence on x is part of the derivative."""
    dy, x, scale, saved_mean, saved_var = op.inputs[:5]
    rank = x.shape.ndims or 4
    nchw = op.attrs["data_format"] in ("NCHW", "NCDHW")
    axes = [0] + list(range(2, rank)) if nchw else list(range(rank - 1))

    def per_channel(v):  # a (C,) vector shaped to broadcast against x
        return array_ops.reshape(v, [1, -1] + [1] * (rank - 2)) if nchw else v

    eps = constant(op.attrs["epsilon"], dtype=scale.dtype)
    xf, dyf = m.cast(x, scale.dtype), m.cast(dy, scale.dtype)
    if op.attrs["is_training"]:
        mean = m.reduce_mean(xf, axes, keepdims=True)
        centered = xf - mean
        inv = m.rsqrt(m.reduce_mean(centered * centered, axes, keepdims=True) + eps)
    else:
        centered = xf - per_channel(saved_mean)
        inv = per_channel(m.rsqrt(saved_var + eps))
    x_hat = centered * inv
    d_offset = m.reduce_sum(dyf, axes)
    d_scale = m.reduce_sum(dyf * x_hat, axes)
    if op.attrs["is_training"]:
        dx = per_channel(scale) * inv * (dyf - m.reduce_mean(dyf, axes, keepdims=True)
                                         - x_hat * m.reduce_mean(dyf * x_hat, axes,
                                                                 keepdims=True))
        wrt = [dy, x, scale]
    else:
        dx = dyf * per_channel(scale) * inv
        wrt = [dy, x, scale, saved_mean, saved_var]
    grads = gradients([m.cast(dx, x.dtype), d_scale, d_offset], wrt,
                      grad_ys=[g_dx, g_dscale, g_doffset])
    return grads + [None] * (len(op.inputs) - len(grads))


RegisterGradient("FusedBatchNormGrad")(_fused_batch_norm_grad_grad)
RegisterGradient("FusedBatchNormGradV3")(_fused_batch_norm_grad_grad)

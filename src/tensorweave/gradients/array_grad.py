"""Gradients of ops/array_ops.py."""

from __future__ import annotations

from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import array_ops


@RegisterGradient("Identity")
def _identity_grad(op, grad):
    return [grad]


@RegisterGradient("PlaceholderWithDefault")
def _pwd_grad(op, grad):
    return [grad]


@RegisterGradient("Reshape")
def _reshape_grad(op, grad):
    x = op.inputs[0]
    if x.shape.is_fully_defined():
        return [array_ops.reshape(grad, x.shape.as_list()), None]
    return [array_ops.reshape(grad, array_ops.shape(x)), None]


@RegisterGradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(op, grad):
    return [array_ops.gather(grad, op.inputs[1]), None, None]


for _t in ("StopGradient", "Shape", "ZerosLike", "OnesLike", "Placeholder", "Const",
           "VariableV2", "IsVariableInitialized"):
    NotDifferentiable(_t)


@RegisterGradient("Fill")
def _fill_grad(op, grad):
    from tensorweave.ops import math_ops
    return [None, math_ops.reduce_sum(grad)]


@RegisterGradient("BroadcastTo")
def _broadcast_to_grad(op, grad):
    from tensorweave.gradients.math_grad import sum_to_shape
    return [sum_to_shape(grad, op.inputs[0]), None]


NotDifferentiable("Size")
NotDifferentiable("Rank")

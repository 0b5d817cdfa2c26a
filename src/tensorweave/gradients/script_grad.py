"""Gradients of ops/script_ops.py."""

from __future__ import annotations

from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import script_ops

NotDifferentiable("PyFunc")  # a Python function: no gradient flows through (as in TF1)
NotDifferentiable("PyFuncStateless")
NotDifferentiable("Assert")


@RegisterGradient("Print")
def _print_grad(op, grad):
    return [grad] + [None] * (len(op.inputs) - 1)


@RegisterGradient("CheckNumerics")
def _check_numerics_grad(op, grad):
    """The gradient is checked too, naming the same place."""
    return [script_ops.check_numerics(
        grad, "Not a number (NaN) or infinity (Inf) values detected in gradient. " +
        op.attrs["message"])]

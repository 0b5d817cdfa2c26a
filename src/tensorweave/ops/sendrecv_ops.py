"""``_Send`` / ``_Recv``: the edges the partitioner puts where a tensor crosses tasks.

Both take the step id as an input (fed to every partition of a step), so concurrent steps of
several clients sharing a parameter server never mix their tensors.
"""

from __future__ import annotations

from tensorweave.framework.registry import NotDifferentiable, register_op


@register_op("_Send", stateful=True)
def _send_infer(op):
    return []


@register_op("_Recv", stateful=True)
def _recv_infer(op):
    return [(op.attrs["tensor_type"], op.attrs["shape"])]


NotDifferentiable("_Send")
NotDifferentiable("_Recv")

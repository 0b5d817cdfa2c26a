"""Gradient accumulators and the step barrier behind ``tw.train.SyncReplicasOptimizer``.

A ``ConditionalAccumulator`` op names an accumulator living on its task (a parameter server);
the ops that use it take its handle as a *ref* input, so the partitioner runs them on that task
and their kernels bind the accumulator at plan time (as update ops bind their variable).

* ``AccumulatorApplyGradient(handle, local_step, gradient)``: stores the gradient with the
  step its parameters were read at; gradients older than the aggregated step are dropped.
* ``AccumulatorWaitReady(handle, num_required, current_step)``: blocks (with a timeout) until
  ``num_required`` gradients computed at step >= ``current_step`` have arrived. It consumes
  nothing, so a timed-out aggregation step is safe to retry.
* ``AccumulatorTakeGradient(handle, num_required, current_step)``: the average of the first
  ``num_required`` fresh gradients (arrival order) and clears the accumulator; a gradient
  arriving later for that step is dropped by the next wait. Sparse variants carry rows.
* ``SyncStepWait(step_ref, local_step)``: blocks until the step variable differs from
  ``local_step`` (the aggregator applied the step, or a restore moved it) and returns it.
* ``SyncStepNotify(step_ref)``: wakes the waiters after the step variable changed.
"""

from __future__ import annotations

from tensorweave.framework import dtypes
from tensorweave.framework.ops import convert_to_tensor
from tensorweave.framework.registry import NotDifferentiable, register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops.op_util import make, make_op

__all__: list[str] = []

_SCALAR = TensorShape([])


@register_op("ConditionalAccumulator", stateful=True)
def _accumulator_infer(op):
    return [(dtypes.string, _SCALAR)]


register_op("SparseConditionalAccumulator", stateful=True)(_accumulator_infer)


@register_op("AccumulatorApplyGradient", stateful=True, ref_inputs=(0,))
def _apply_infer(op):
    return []


register_op("SparseAccumulatorApplyGradient", stateful=True, ref_inputs=(0,))(_apply_infer)


@register_op("AccumulatorWaitReady", stateful=True, ref_inputs=(0,))
def _wait_ready_infer(op):
    return []


@register_op("AccumulatorNumAccumulated", stateful=True, ref_inputs=(0,))
def _num_infer(op):
    return [(dtypes.int32, _SCALAR)]


@register_op("AccumulatorTakeGradient", stateful=True, ref_inputs=(0,))
def _take_infer(op):
    return [(op.attrs["dtype"], op.attrs["shape"])]


@register_op("SparseAccumulatorTakeGradient", stateful=True, ref_inputs=(0,))
def _sparse_take_infer(op):
    shape = op.attrs["shape"]
    rows = TensorShape([None]).concatenate(shape[1:]) if shape.ndims else TensorShape(None)
    return [(dtypes.int64, TensorShape([None])), (op.attrs["dtype"], rows)]


@register_op("SyncStepWait", stateful=True, ref_inputs=(0,))
def _step_wait_infer(op):
    return [(op.inputs[0].dtype, _SCALAR)]


@register_op("SyncStepNotify", stateful=True, ref_inputs=(0,))
def _step_notify_infer(op):
    return []


for _t in ("ConditionalAccumulator", "SparseConditionalAccumulator", "AccumulatorApplyGradient",
           "SparseAccumulatorApplyGradient", "AccumulatorWaitReady", "AccumulatorNumAccumulated",
           "AccumulatorTakeGradient", "SparseAccumulatorTakeGradient", "SyncStepWait",
           "SyncStepNotify"):
    NotDifferentiable(_t)


def conditional_accumulator(dtype, shape, shared_name, sparse=False, name=None):
    """A handle naming the accumulator ``shared_name`` on the task this op is placed on."""
    op_type = "SparseConditionalAccumulator" if sparse else "ConditionalAccumulator"
    return make(op_type, [], {"dtype": dtypes.as_dtype(dtype), "shape": TensorShape(shape),
                              "shared_name": shared_name}, name=name or op_type)


def accumulator_apply_gradient(handle, local_step, gradient, name=None):
    local_step = convert_to_tensor(local_step, dtype=dtypes.int64)
    return make_op("AccumulatorApplyGradient", [handle, local_step, convert_to_tensor(gradient)],
                   {}, name=name or "AccumulatorApplyGradient")


def sparse_accumulator_apply_gradient(handle, local_step, indices, values, name=None):
    local_step = convert_to_tensor(local_step, dtype=dtypes.int64)
    indices = convert_to_tensor(indices)
    return make_op("SparseAccumulatorApplyGradient",
                   [handle, local_step, indices, convert_to_tensor(values)], {},
                   name=name or "SparseAccumulatorApplyGradient")


def accumulator_wait_ready(handle, num_required, current_step, timeout, name=None):
    return make_op("AccumulatorWaitReady",
                   [handle, convert_to_tensor(num_required, dtype=dtypes.int32),
                    convert_to_tensor(current_step, dtype=dtypes.int64)],
                   {"timeout": float(timeout)}, name=name or "AccumulatorWaitReady")


def accumulator_num_accumulated(handle, name=None):
    return make("AccumulatorNumAccumulated", [handle], {},
                name=name or "AccumulatorNumAccumulated")


def accumulator_take_gradient(handle, num_required, current_step, name=None):
    acc = handle.op
    sparse = acc.type == "SparseConditionalAccumulator"
    op = make_op("SparseAccumulatorTakeGradient" if sparse else "AccumulatorTakeGradient",
                 [handle, convert_to_tensor(num_required, dtype=dtypes.int32),
                  convert_to_tensor(current_step, dtype=dtypes.int64)],
                 {"dtype": acc.attrs["dtype"], "shape": acc.attrs["shape"]},
                 name=name or "AccumulatorTakeGradient")
    return tuple(op.outputs) if sparse else op.outputs[0]


def sync_step_wait(step_ref, local_step, timeout, name=None):
    step_ref = getattr(step_ref, "_variable", step_ref)
    return make("SyncStepWait", [step_ref, convert_to_tensor(local_step, dtype=step_ref.dtype)],
                {"timeout": float(timeout)}, name=name or "SyncStepWait")


def sync_step_notify(step_ref, name=None):
    step_ref = getattr(step_ref, "_variable", step_ref)
    return make_op("SyncStepNotify", [step_ref], {}, name=name or "SyncStepNotify")

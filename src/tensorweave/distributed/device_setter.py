"""``tw.train.replica_device_setter``: variables on parameter-server tasks, the rest on the
worker (between-graph replication, as in TF1).

Example::

    with tw.device(tw.train.replica_device_setter(ps_tasks=2)):
        w = tw.Variable(...)        # /job:ps/task:0
        b = tw.Variable(...)        # /job:ps/task:1
        y = tw.matmul(x, w) + b     # /job:worker

Optimizer updates follow their variable (they are built under ``colocate_with(var)``, and the
partitioner moves every op with a ref input to its variable's task).
"""

from __future__ import annotations

import numpy as np

from tensorweave.distributed.cluster import ClusterSpec
from tensorweave.framework.device import DeviceSpec

__all__ = ["ClusterSpec", "replica_device_setter", "GreedyLoadBalancingStrategy", "byte_size_load_fn",
           "RoundRobinStrategy"]

STANDARD_PS_OPS = ("Variable", "VariableV2", "AutoReloadVariable", "MutableHashTable",
                   "MutableHashTableV2", "MutableHashTableOfTensors",
                   "MutableHashTableOfTensorsV2", "MutableDenseHashTable",
                   "MutableDenseHashTableV2", "VarHandleOp", "BoostedTreesEnsembleResourceHandleOp")


class RoundRobinStrategy:
    """Assigns ps ops to tasks 0, 1, ..., ps_tasks-1, 0, ... in creation order."""

    def __init__(self, num_tasks):
        self._num_tasks = num_tasks
        self._next = 0

    def __call__(self, op):
        task = self._next
        self._next = (self._next + 1) % self._num_tasks
        return task


def byte_size_load_fn(op):
    """Bytes of a variable op's value (its ``shape`` and ``dtype`` attrs); 0 if unknown."""
    shape = op.attrs.get("shape")
    dtype = op.attrs.get("dtype")
    try:
        dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
        if any(d is None for d in dims):
            return 0
        itemsize = np.dtype(dtype.base_dtype.as_numpy_dtype if hasattr(dtype, "base_dtype")
                            else dtype).itemsize
        return int(np.prod(dims, dtype=np.int64)) * itemsize
    except (TypeError, ValueError, AttributeError):
        return 0


class GreedyLoadBalancingStrategy:
    """Puts each ps op on the task with the least load so far (``load_fn``: bytes by default),
    as TF's ``tf.contrib.training.GreedyLoadBalancingStrategy``."""

    def __init__(self, num_tasks, load_fn=byte_size_load_fn):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self._load_fn = load_fn
        self._loads = np.zeros(num_tasks, dtype=np.int64)

    def __call__(self, op):
        task = int(np.argmin(self._loads))
        self._loads[task] += self._load_fn(op)
        return task

    @property
    def loads(self):
        return self._loads.tolist()


class _ReplicaDeviceChooser:
    def __init__(self, ps_tasks, ps_device, worker_device, merge_devices, ps_ops, ps_strategy):
        self._ps_tasks = ps_tasks
        self._ps_device = ps_device
        self._worker_device = worker_device
        self._merge_devices = merge_devices
        self._ps_ops = set(ps_ops)
        self._ps_strategy = ps_strategy

    def device_function(self, op):
        current = DeviceSpec.from_string(op.device or "")
        if not self._merge_devices and op.device:
            return op.device
        if self._ps_tasks and self._ps_device and op.type in self._ps_ops:
            ps = DeviceSpec.from_string(self._ps_device)
            # a variable already pinned to another job (e.g. a worker-local step) stays there
            if ps.job and (current.job is None or current.job == ps.job):
                from dataclasses import replace
                if current.task is None:
                    ps = replace(ps, task=self._ps_strategy(op))
            return ps.merge_from(current).to_string()
        worker = DeviceSpec.from_string(self._worker_device or "")
        return worker.merge_from(current).to_string()


def replica_device_setter(ps_tasks=0, ps_device="/job:ps", worker_device="/job:worker",
                          merge_devices=True, cluster=None, ps_ops=None, ps_strategy=None):
    """A device function for ``tw.device``: ``ps_ops`` (variables) go to ``ps_device`` tasks
    chosen by ``ps_strategy`` (round-robin by default), every other op to ``worker_device``.

    ``cluster`` (a ClusterSpec or dict) sets ``ps_tasks`` from its ``ps`` job. Returns None
    when there are no ps tasks (then ``tw.device(None)`` places nothing), as in TF.
    """
    if cluster is not None:
        cluster = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(cluster)
        job = DeviceSpec.from_string(ps_device).job or "ps"
        ps_tasks = cluster.num_tasks(job) if job in cluster.jobs else 0
    if not isinstance(ps_tasks, int) or ps_tasks < 0:
        raise ValueError(f"ps_tasks must be an int >= 0, got {ps_tasks!r}")
    if ps_tasks == 0:
        return None
    if ps_ops is None:
        ps_ops = list(STANDARD_PS_OPS)
    if ps_strategy is None:
        ps_strategy = RoundRobinStrategy(ps_tasks)
    elif not callable(ps_strategy):
        raise TypeError(f"ps_strategy must be callable (op -> task index), got {ps_strategy!r}")
    chooser = _ReplicaDeviceChooser(ps_tasks, ps_device, worker_device, merge_devices, ps_ops,
                                    ps_strategy)
    return chooser.device_function

"""A task (``/job:ps/task:0``): holds partitions, runs them, and receives tensors.

The same class runs inside a Ray actor or, for tests and one machine, in this process.
Variables live in the task's RuntimeContext and persist across steps and clients.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.graph_io import nodes_to_graph
from tensorweave.runtime import plan as plan_lib
from tensorweave.runtime.config import GraphOptions
from tensorweave.runtime.session import RuntimeContext


class Rendezvous:
    """Tensors that arrived for this task, keyed by (step, tensor, src, dst)."""

    def __init__(self):
        self._items: dict = {}
        self._cond = threading.Condition()

    def put(self, key, value):
        with self._cond:
            self._items[key] = value
            self._cond.notify_all()

    def recv(self, key, timeout, op=None):
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._items:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceededError(
                        None, op, f"Timed out after {timeout:.0f} s waiting for tensor "
                        f"{key.split(';')[1]} from task {key.split(';')[2]}: that task may "
                        "have failed or be unreachable.")
                self._cond.wait(min(left, 1.0))
            return self._items.pop(key)

    def abort_step(self, step_id):
        with self._cond:
            for k in [k for k in self._items if k.startswith(f"{step_id};")]:
                del self._items[k]


class TaskServer:
    """Runs the partitions registered on this task."""

    def __init__(self, name: str, transport, recv_timeout: float = 120.0):
        self.name = name
        self.ctx = RuntimeContext(None)
        self.rendezvous = Rendezvous()
        self.ctx.resources["rendezvous"] = self.rendezvous
        self.ctx.resources["transport"] = transport
        self.ctx.resources["recv_timeout"] = recv_timeout
        self._partitions: dict = {}
        self._lock = threading.Lock()

    def register_partition(self, pid, partition, options=None):
        """Builds the partition's graph and plan once; later steps only call ``run``."""
        with self._lock:
            if pid in self._partitions:
                return True
            g = nodes_to_graph(partition.nodes)
            step = g.get_operation_by_name("_step_id").outputs[0]
            feeds = [g.get_operation_by_name(n).outputs[0] for _, n in partition.feeds]
            fetches = [g.get_tensor_by_name(n if ":" in n else n + ":0")
                       for _, n in partition.fetches]
            targets = [g.get_operation_by_name(n) for n in partition.targets]
            order = {n["name"]: n.get("pos", -1.0) for n in partition.nodes}
            plan = plan_lib.compile_plan(fetches, targets, [step] + feeds, self.ctx,
                                         options=options or GraphOptions(), order_key=order)
            self._partitions[pid] = (g, plan)
        return True

    def has_partition(self, pid) -> bool:
        return pid in self._partitions

    def run_partition(self, pid, step_id, feed_values):
        _, plan = self._partitions[pid]
        try:
            return plan.run((np.int64(step_id), *feed_values))
        except errors.OpError:
            self.rendezvous.abort_step(step_id)
            raise
        except Exception as e:
            self.rendezvous.abort_step(step_id)
            st = plan_lib.exc_step(plan, e)
            if st is None:
                raise
            raise errors.InvalidArgumentError(
                None, None, f"{type(e).__name__}: {e}\n\t [[node {st.op.describe()} on task "
                f"{self.name}]]") from None

    def deliver(self, key, value):
        self.rendezvous.put(key, value)

    # --- state, for checkpoints and recovery ------------------------------------------------
    def get_variables(self, names=None) -> dict:
        vs = self.ctx.variables
        return {k: np.array(v) for k, v in vs.items() if names is None or k in names}

    def set_variables(self, values: dict):
        for k, v in values.items():
            self.ctx.variables[k] = np.array(v, copy=True)

    def variable_names(self):
        return sorted(self.ctx.variables)

    def ping(self):
        return self.name

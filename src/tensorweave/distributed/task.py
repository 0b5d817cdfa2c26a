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
        self.closed = False
        self.before_block = None  # called with the step id before a recv waits (Outbox.flush)
        self._blocked: dict = {}  # step id -> receives of that step waiting now

    def put(self, key, value):
        with self._cond:
            self._items[key] = value
            self._cond.notify_all()

    def recv(self, key, timeout, op=None):
        deadline = time.monotonic() + timeout
        with self._cond:
            if key in self._items:
                return self._items.pop(key)
        step = key.split(";", 1)[0]
        with self._cond:
            self._blocked[step] = self._blocked.get(step, 0) + 1
        try:
            if self.before_block is not None:
                self.before_block(step)
            return self._wait(key, deadline, timeout, op)
        finally:
            with self._cond:
                n = self._blocked.pop(step) - 1
                if n:
                    self._blocked[step] = n

    def blocked(self, step) -> bool:
        """True while a receive of ``step`` waits (its sends must not be held back)."""
        return step in self._blocked

    def _wait(self, key, deadline, timeout, op):
        with self._cond:
            while key not in self._items:
                if self.closed:
                    raise errors.UnavailableError(None, op, "Task shut down while waiting "
                                                  f"for tensor {key.split(';')[1]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceededError(
                        None, op, f"Timed out after {timeout:.0f} s waiting for tensor "
                        f"{key.split(';')[1]} from task {key.split(';')[2]}: that task may "
                        "have failed or be unreachable.")
                self._cond.wait(min(left, 1.0))
            return self._items.pop(key)

    def close(self):
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def abort_step(self, step_id):
        with self._cond:
            for k in [k for k in self._items if k.startswith(f"{step_id};")]:
                del self._items[k]


class Outbox:
    """Holds a step's outgoing tensors and sends them per destination in one message.

    Every message costs a fixed price on the transport (a Ray actor call: about 1 ms of CPU
    at each end on this machine, measured), so tensors that no peer computes with right away
    travel together: the partitioner marks such sends ``batch`` (a gradient pushed to a
    parameter server, parameters read one after another: ``partition._mark_batched_sends``).
    Held tensors go out with the next unmarked send of the step, before any receive of the
    step waits, and when the partition finishes; while a receive of the step waits (inter-op
    threads), everything goes out at once. Peers so get every tensor no later than they
    could need it: no deadlock that unbatched sends would not also have.
    """

    def __init__(self, transport, rendezvous: Rendezvous):
        self.transport = transport
        self.rendezvous = rendezvous
        self._held: dict = {}  # step id -> {dst: [(key, value)]}
        self._lock = threading.Lock()
        rendezvous.before_block = self.flush

    def send(self, dst, key, value, hold=True):
        step = key.split(";", 1)[0]
        with self._lock:
            self._held.setdefault(step, {}).setdefault(dst, []).append((key, value))
            if hold and not self.rendezvous.blocked(step):
                return
        self.flush(step)

    def flush(self, step):
        with self._lock:
            held = self._held.pop(str(step), None)
        if not held:
            return
        send_many = getattr(self.transport, "send_many", None)
        for dst, items in held.items():
            if send_many is not None and len(items) > 1:
                send_many(dst, items)
            else:
                for key, value in items:
                    self.transport.send(dst, key, value)


class Bfloat16Payload:
    """A float32 array sent as its upper 16 bits (bfloat16, round to nearest even): half the
    bytes on the wire for a relative error below 2**-8. Decoded on delivery."""

    __slots__ = ("bits",)

    def __init__(self, array):
        u = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        self.bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

    def decode(self):
        return (self.bits.astype(np.uint32) << 16).view(np.float32)


def encode_for_wire(value, compress):
    """``value`` as it should cross processes: bfloat16 for large float32 arrays when asked."""
    if compress == "bfloat16" and type(value) is np.ndarray and value.dtype == np.float32 \
            and value.size >= 64:
        return Bfloat16Payload(value)
    return value


class TaskServer:
    """Runs the partitions registered on this task."""

    def __init__(self, name: str, transport, recv_timeout: float = 120.0):
        self.name = name
        self.ctx = RuntimeContext(None)
        self.rendezvous = Rendezvous()
        self.ctx.resources["rendezvous"] = self.rendezvous
        self.ctx.resources["transport"] = transport
        self.outbox = Outbox(transport, self.rendezvous)
        self.ctx.resources["sender"] = self.outbox
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
        entry = self._partitions.get(pid)
        if entry is None:  # this task was restarted since the client registered its plans
            raise errors.UnavailableError(
                None, None, f"Task {self.name} does not hold partition {pid}: it was restarted "
                "and lost its state. The client re-registers its partitions on the next run.")
        _, plan = entry
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
        finally:  # what was sent before an error goes out too, as unbatched sends would
            self.outbox.flush(step_id)

    def deliver(self, key, value):
        if type(value) is Bfloat16Payload:
            value = value.decode()
        self.rendezvous.put(key, value)

    def deliver_many(self, items):
        """The tensors of one Outbox message: ``[(key, value)]``."""
        for key, value in items:
            self.deliver(key, value)

    def forget_peer(self, task):
        """Drops the transport's cached handle of ``task`` (after that task was restarted)."""
        forget = getattr(self.ctx.resources["transport"], "forget", None)
        if forget is not None:
            forget(task)

    # --- state, for checkpoints and recovery ------------------------------------------------
    def get_variables(self, names=None) -> dict:
        vs = self.ctx.variables
        return {k: np.array(v) for k, v in vs.items() if names is None or k in names}

    def set_variables(self, values: dict):
        for k, v in values.items():
            self.ctx.variables[k] = np.array(v, copy=True)

    def variable_names(self):
        return sorted(self.ctx.variables)

    def shutdown(self):
        """Fails every blocked wait in this task at once (its process is going away)."""
        self.ctx.resources["closed"] = True
        self.rendezvous.close()
        for r in list(self.ctx.resources.values()):
            if hasattr(r, "close") and r is not self.rendezvous:
                try:
                    r.close()
                except Exception:  # noqa: BLE001  (best effort)
                    pass

    def ping(self):
        return self.name

"""Kernels of the sync-replicas ops (ops/sync_ops.py): accumulators and the step barrier.

An accumulator is a task resource (``ctx.resources``) created on first use, so a restarted
parameter server starts with empty accumulators; the aggregator passes the current step to
every wait and take, which makes them correct whatever the accumulator saw before.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel
from tensorweave.kernels.cpu.state import uninitialized, variable_name


class Accumulator:
    """Gradients for one variable, as (local_step, value) entries in arrival order."""

    def __init__(self, name, sparse):
        self.name = name
        self.sparse = sparse
        self.entries: list = []
        self.cond = threading.Condition()
        self.dropped = 0  # gradients never used: stale, or beyond the first num_required
        self.taken = 0  # aggregation steps
        self.closed = False

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def apply(self, local_step, value):
        # Staleness is judged against the step the aggregator passes in, not a step kept
        # here: after a parameter server is restored the step may move backwards.
        with self.cond:
            self.entries.append((local_step, value))
            self.cond.notify_all()

    def _fresh(self, current_step):
        return [v for s, v in self.entries if s >= current_step]

    def _purge(self, current_step):
        kept = [(s, v) for s, v in self.entries if s >= current_step]
        self.dropped += len(self.entries) - len(kept)
        self.entries = kept

    def wait_ready(self, num_required, current_step, timeout, op):
        deadline = time.monotonic() + timeout
        with self.cond:
            self._purge(current_step)
            while len(self._fresh(current_step)) < num_required:
                if self.closed:
                    raise errors.UnavailableError(None, op, f"Accumulator {self.name!r}: its "
                                                  "task shut down")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceededError(
                        None, op, f"Sync replicas: only {len(self._fresh(current_step))} of "
                        f"{num_required} gradients for step {current_step} reached accumulator "
                        f"{self.name!r} within {timeout:g} s; workers may have failed or be "
                        "slow. Nothing was consumed: the aggregation step can be retried.")
                self.cond.wait(min(left, 1.0))

    def take(self, num_required, current_step, op):
        with self.cond:
            fresh = self._fresh(current_step)
            if len(fresh) < num_required:
                raise errors.FailedPreconditionError(
                    None, op, f"Accumulator {self.name!r} holds {len(fresh)} fresh gradients "
                    f"for step {current_step}, fewer than the {num_required} required: run "
                    "AccumulatorWaitReady first.")
            used = fresh[:num_required]
            self.dropped += len(self.entries) - num_required
            self.entries = []
            self.taken += 1
        return used


def accumulator(ctx, handle_op) -> Accumulator:
    """The accumulator named by ``handle_op`` on this task (created on first use)."""
    key = ("accumulator", handle_op.attrs["shared_name"])
    acc = ctx.resources.get(key)
    if acc is None:
        with ctx.lock:
            acc = ctx.resources.get(key)
            if acc is None:
                acc = ctx.resources[key] = Accumulator(
                    handle_op.attrs["shared_name"],
                    handle_op.type == "SparseConditionalAccumulator")
    return acc


def _bind(op, ctx):
    """Binds the accumulator lazily: a plan may be compiled before its first step."""
    handle_op = op.inputs[0].op
    cache = []

    def get():
        if not cache:
            cache.append(accumulator(ctx, handle_op))
        return cache[0]

    return get


@register_kernel("ConditionalAccumulator")
def _handle(op, ctx):
    name = np.array(op.attrs["shared_name"].encode(), dtype=object)
    return lambda: name


register_kernel("SparseConditionalAccumulator")(_handle)


@register_kernel("AccumulatorApplyGradient")
def _apply(op, ctx):
    get = _bind(op, ctx)
    npd = op.inputs[0].op.attrs["dtype"].as_numpy_dtype

    def run(local_step, grad):
        get().apply(int(local_step), np.array(grad, dtype=npd, copy=True))

    return run


@register_kernel("SparseAccumulatorApplyGradient")
def _sparse_apply(op, ctx):
    get = _bind(op, ctx)
    npd = op.inputs[0].op.attrs["dtype"].as_numpy_dtype

    def run(local_step, indices, values):
        get().apply(int(local_step), (np.array(indices, dtype=np.int64, copy=True),
                                      np.array(values, dtype=npd, copy=True)))

    return run


@register_kernel("AccumulatorWaitReady")
def _wait_ready(op, ctx):
    get = _bind(op, ctx)
    timeout = op.attrs["timeout"]

    def run(num_required, current_step):
        get().wait_ready(int(num_required), int(current_step), timeout, op)

    return run


@register_kernel("AccumulatorNumAccumulated")
def _num_accumulated(op, ctx):
    get = _bind(op, ctx)

    def run():
        acc = get()
        with acc.cond:
            return np.int32(len(acc.entries))

    return run


@register_kernel("AccumulatorTakeGradient")
def _take(op, ctx):
    get = _bind(op, ctx)

    def run(num_required, current_step):
        used = get().take(int(num_required), int(current_step), op)
        out = used[0].copy()
        for g in used[1:]:
            out += g
        out /= len(used)
        return out

    return run


@register_kernel("SparseAccumulatorTakeGradient")
def _sparse_take(op, ctx):
    get = _bind(op, ctx)

    def run(num_required, current_step):
        used = get().take(int(num_required), int(current_step), op)
        indices = np.concatenate([i for i, _ in used])
        values = np.concatenate([v for _, v in used]) / len(used)
        return indices, values.astype(used[0][1].dtype, copy=False)

    return run


def _step_cond(ctx, name) -> threading.Condition:
    key = ("sync_step", name)
    cond = ctx.resources.get(key)
    if cond is None:
        with ctx.lock:
            cond = ctx.resources.setdefault(key, threading.Condition())
    return cond


@register_kernel("SyncStepWait")
def _step_wait(op, ctx):
    store, name = ctx.variables, variable_name(op)
    timeout = op.attrs["timeout"]

    def run(local_step):
        cond = _step_cond(ctx, name)
        deadline = time.monotonic() + timeout
        with cond:
            while True:
                if ctx.resources.get("closed"):
                    raise errors.UnavailableError(None, op, "Task shut down during the wait")
                cur = store.get(name)
                if cur is None:
                    raise uninitialized(op, name)
                if cur != local_step:
                    return np.array(cur, copy=True)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceededError(
                        None, op, f"Sync replicas: step {int(local_step)} was not aggregated "
                        f"within {timeout:g} s (variable {name}); the aggregator (chief) or "
                        "too many workers may have failed.")
                # a short wait also covers a step moved by a restore, which notifies no one
                cond.wait(min(left, 0.05))

    return run


@register_kernel("SyncStepNotify")
def _step_notify(op, ctx):
    name = variable_name(op)

    def run():
        cond = _step_cond(ctx, name)
        with cond:
            cond.notify_all()

    return run

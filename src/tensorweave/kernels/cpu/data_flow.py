"""Kernels for ops/data_flow_ops.py: thread-safe queues and dataset iterators, kept in the
session's ``ctx.resources`` so every Session has its own.

Every blocking wait polls in short slices, so a wait notices a session being closed and the
``ConfigProto.operation_timeout_in_ms`` deadline (when > 0) instead of hanging.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel

_POLL_S = 0.1


def handle_op(op):
    """The queue/iterator op whose handle feeds ``op``'s input 0."""
    t = op.inputs[0]
    while t.op.type in ("Identity", "StopGradient"):
        t = t.op.inputs[0]
    return t.op


def resource_key(hop) -> str:
    return hop.attrs.get("shared_name") or hop.name


def _timeout_s(ctx):
    config = getattr(ctx.session, "_config", None)
    ms = getattr(config, "operation_timeout_in_ms", 0) or 0
    return ms / 1000.0 if ms > 0 else None


class QueueResource:
    """The state behind a FIFOQueue or RandomShuffleQueue in one session."""

    def __init__(self, kind, name, capacity, shapes, min_after_dequeue=0, rng=None):
        self.kind, self.name, self.capacity = kind, name, capacity
        self.shapes = [s.as_tuple() if s is not None and s.is_fully_defined() else None
                       for s in shapes]
        self.min_after_dequeue = min_after_dequeue
        self._rng = rng  # set for a shuffling queue
        self._items = [] if rng is not None else collections.deque()
        self._cv = threading.Condition()
        self.closed = False
        self._cancel_enqueues = False
        self._torn_down = False

    def __len__(self):
        return len(self._items)

    def _wait(self, ready, deadline, op, what):
        """Waits (lock held) until ``ready()``; raises when the session closes or on timeout."""
        while self._torn_down or not ready():
            if self._torn_down:
                raise errors.CancelledError(
                    None, op, f"{what} on {self.kind} '{self.name}' was cancelled: the session "
                    "was closed")
            wait = _POLL_S
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.DeadlineExceededError(
                        None, op, f"Timed out waiting for notification: {what} on {self.kind} "
                        f"'{self.name}' (size {len(self._items)}, capacity {self.capacity}) "
                        "exceeded ConfigProto.operation_timeout_in_ms")
                wait = min(wait, left)
            self._cv.wait(wait)

    def _check_row(self, row, op):
        for i, (v, shp) in enumerate(zip(row, self.shapes)):
            if shp is not None and v.shape != shp:
                raise errors.InvalidArgumentError(
                    None, op, f"Shape mismatch in tuple component {i}. Expected {list(shp)}, "
                    f"got {list(v.shape)}")

    def enqueue(self, rows, op, timeout):
        """Adds each row (a tuple of arrays, copied) as space allows."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if self.closed:
                raise errors.CancelledError(None, op, f"{self.kind} '{self.name}' is closed.")
            for row in rows:
                self._check_row(row, op)
                self._wait(lambda: len(self._items) < self.capacity or self._cancel_enqueues,
                           deadline, op, "Enqueue")
                if self._cancel_enqueues:
                    raise errors.CancelledError(
                        None, op, f"Enqueue cancelled: {self.kind} '{self.name}' was closed "
                        "with cancel_pending_enqueues=True.")
                self._items.append(tuple(np.array(v) for v in row))
                self._cv.notify_all()

    def dequeue(self, n, op, timeout, allow_partial=False):
        """Removes ``n`` rows (fewer only when ``allow_partial`` and the queue is closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._wait(lambda: self.closed or len(self._items) >= n + self.min_after_dequeue,
                       deadline, op, "Dequeue")
            size = len(self._items)
            if size < n and (not allow_partial or size == 0):
                raise errors.OutOfRangeError(
                    None, op, f"{self.kind} '{self.name}' is closed and has insufficient "
                    f"elements (requested {n}, current size {size})")
            rows = [self._take() for _ in range(min(n, size))]
            self._cv.notify_all()
        return rows

    def _take(self):
        if self._rng is None:
            return self._items.popleft()
        i = int(self._rng.integers(len(self._items)))
        items = self._items
        items[i], items[-1] = items[-1], items[i]
        return items.pop()

    def close_queue(self, cancel_pending_enqueues):
        with self._cv:
            self.closed = True
            self._cancel_enqueues = self._cancel_enqueues or cancel_pending_enqueues
            self._cv.notify_all()

    def close(self):
        """Session teardown: every blocked wait ends with CancelledError."""
        with self._cv:
            self._torn_down = True
            self._cv.notify_all()


def _queue_handle(kind):
    def factory(op, ctx):
        key = resource_key(op)
        shapes = op.attrs.get("shapes") or [None] * len(op.attrs["component_types"])
        min_after = op.attrs.get("min_after_dequeue", 0)
        shuffle = op.type == "RandomShuffleQueueV2"

        def run():
            if key not in ctx.resources:
                with ctx.lock:
                    if key not in ctx.resources:
                        ctx.resources[key] = QueueResource(
                            kind, key, op.attrs["capacity"], shapes, min_after,
                            ctx.rng(op) if shuffle else None)
            return key

        return run

    return factory


register_kernel("FIFOQueueV2")(_queue_handle("FIFOQueue"))
register_kernel("RandomShuffleQueueV2")(_queue_handle("RandomShuffleQueue"))


def _lookup(ctx, op, key):
    res = ctx.resources.get(key)
    if res is None:
        raise errors.NotFoundError(None, op, f"Resource {key!r} does not exist in this session")
    return res


@register_kernel("QueueEnqueueV2")
def _enqueue(op, ctx):
    key, timeout = resource_key(handle_op(op)), _timeout_s(ctx)

    def run(handle, *components):
        _lookup(ctx, op, key).enqueue([tuple(np.asarray(c) for c in components)], op, timeout)

    return run


@register_kernel("QueueEnqueueManyV2")
def _enqueue_many(op, ctx):
    key, timeout = resource_key(handle_op(op)), _timeout_s(ctx)

    def run(handle, *components):
        cs = [np.asarray(c) for c in components]
        n = cs[0].shape[0]
        for i, c in enumerate(cs):
            if c.shape[0] != n:
                raise errors.InvalidArgumentError(
                    None, op, f"enqueue_many: component {i} has {c.shape[0]} elements along "
                    f"dimension 0 but component 0 has {n}")
        _lookup(ctx, op, key).enqueue([tuple(c[k] for c in cs) for k in range(n)], op, timeout)

    return run


def _stack(rows, op):
    dts = op.attrs["component_types"]
    shapes = op.attrs.get("shapes") or [None] * len(dts)
    out = []
    for k, (dt, shp) in enumerate(zip(dts, shapes)):
        if rows:
            parts = [r[k] for r in rows]
            if any(p.shape != parts[0].shape for p in parts):
                raise errors.InvalidArgumentError(
                    None, op, f"dequeue_many: component {k} holds elements of different shapes "
                    f"({parts[0].shape} and others); give the queue fully defined shapes")
            out.append(np.stack(parts))
        else:
            tail = shp.as_tuple() if shp is not None and shp.is_fully_defined() else ()
            out.append(np.zeros((0,) + tuple(tail), dtype=dt.as_numpy_dtype))
    return out[0] if len(out) == 1 else tuple(out)


@register_kernel("QueueDequeueV2")
def _dequeue(op, ctx):
    key, timeout = resource_key(handle_op(op)), _timeout_s(ctx)
    single = len(op.outputs) == 1

    def run(handle):
        row, = _lookup(ctx, op, key).dequeue(1, op, timeout)
        return row[0] if single else row

    return run


def _dequeue_n(allow_partial):
    def factory(op, ctx):
        key, timeout = resource_key(handle_op(op)), _timeout_s(ctx)

        def run(handle, n):
            n = int(n)
            if n < 0:
                raise errors.InvalidArgumentError(None, op, f"n must be >= 0, got {n}")
            rows = _lookup(ctx, op, key).dequeue(n, op, timeout, allow_partial)
            return _stack(rows, op)

        return run

    return factory


register_kernel("QueueDequeueManyV2")(_dequeue_n(False))
register_kernel("QueueDequeueUpToV2")(_dequeue_n(True))


@register_kernel("QueueCloseV2")
def _close(op, ctx):
    key, cancel = resource_key(handle_op(op)), op.attrs.get("cancel_pending_enqueues", False)

    def run(handle):
        _lookup(ctx, op, key).close_queue(cancel)

    return run


@register_kernel("QueueSizeV2")
def _size(op, ctx):
    key = resource_key(handle_op(op))
    return lambda handle: np.int32(len(_lookup(ctx, op, key)))


@register_kernel("QueueIsClosedV2")
def _is_closed(op, ctx):
    key = resource_key(handle_op(op))
    return lambda handle: np.bool_(_lookup(ctx, op, key).closed)


# --- iterators ---------------------------------------------------------------------------------
@register_kernel("IteratorV2")
def _iterator(op, ctx):
    key = resource_key(op)
    return lambda: key


@register_kernel("OneShotIterator")
def _one_shot_iterator(op, ctx):
    key, dataset = resource_key(op), op.attrs["dataset"]

    def run():
        if key not in ctx.resources:
            with ctx.lock:
                if key not in ctx.resources:
                    ctx.resources[key] = dataset._make_resource((), ctx)
        return key

    return run


@register_kernel("MakeIterator")
def _make_iterator(op, ctx):
    key, dataset = resource_key(handle_op(op)), op.attrs["dataset"]

    def run(handle, *captured):
        res = dataset._make_resource(captured, ctx)
        with ctx.lock:
            old = ctx.resources.get(key)
            ctx.resources[key] = res
        if old is not None:
            old.close()

    return run


@register_kernel("IteratorToStringHandle")
def _to_string_handle(op, ctx):
    return lambda handle: np.array(handle, dtype=object)


@register_kernel("IteratorFromStringHandleV2")
def _from_string_handle(op, ctx):
    want = tuple(op.attrs["output_types"])

    def run(string_handle):
        key = string_handle.item() if isinstance(string_handle, np.ndarray) else string_handle
        if isinstance(key, bytes):
            key = key.decode()
        if not isinstance(key, str) or not key:
            raise errors.InvalidArgumentError(
                None, op, f"from_string_handle: expected a handle from "
                f"iterator.string_handle(), got {key!r}")
        res = ctx.resources.get(key)
        have = getattr(res, "types", None)
        if have is not None and tuple(have) != want:
            raise errors.InvalidArgumentError(
                None, op, f"from_string_handle: iterator {key!r} yields "
                f"{[d.name for d in have]} but this iterator expects {[d.name for d in want]}")
        return key

    return run


@register_kernel("IteratorGetNext")
def _get_next(op, ctx):
    single = len(op.outputs) == 1

    def run(handle):  # the handle's value is its iterator's key (so feedable handles work)
        res = ctx.resources.get(handle)
        if res is None:
            raise errors.FailedPreconditionError(
                None, op, "GetNext() failed because the iterator has not been initialized. "
                "Ensure that you have run the initializer operation for this iterator before "
                "getting the next element (sess.run(iterator.initializer)).")
        try:
            el = res.get_next()
        except StopIteration:
            raise errors.OutOfRangeError(None, op, "End of sequence") from None
        return el[0] if single else el

    return run

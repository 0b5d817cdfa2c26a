"""Threads that keep queues full: ``Coordinator``, ``QueueRunner``, ``start_queue_runners``,
and the ``batch``/``shuffle_batch`` input helpers built on them (TF1's queue-based input).

Example::

    q = tw.FIFOQueue(32, [tw.float32], shapes=[[784]])
    tw.train.add_queue_runner(tw.train.QueueRunner(q, [q.enqueue(make_example())]))
    coord = tw.train.Coordinator()
    threads = tw.train.start_queue_runners(sess, coord)
    ...
    coord.request_stop()
    coord.join(threads)
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from tensorweave.framework import errors, ops
from tensorweave.framework.ops import GraphKeys
from tensorweave.framework.tensor_shape import TensorShape, as_shape
from tensorweave.ops import data_flow_ops


class Coordinator:
    """Lets threads stop together: any thread may ``request_stop(exc)``; ``join`` waits for
    them and re-raises the first exception reported (OutOfRangeError counts as a clean stop)."""

    def __init__(self, clean_stop_exception_types=None):
        self._clean = tuple(clean_stop_exception_types
                            if clean_stop_exception_types is not None
                            else (errors.OutOfRangeError,))
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._exc_info = None
        self._registered: set = set()
        self._joined = False

    def request_stop(self, ex=None):
        """Asks every thread to stop; ``ex`` (an exception or exc_info) is re-raised by join."""
        with self._lock:
            if ex is not None and self._exc_info is None:
                if isinstance(ex, tuple):
                    exc_info = ex
                else:
                    exc_info = (type(ex), ex, ex.__traceback__)
                if not issubclass(exc_info[0], self._clean):
                    self._exc_info = exc_info
            self._stop_event.set()

    def clear_stop(self):
        with self._lock:
            self._joined = False
            self._exc_info = None
            self._stop_event.clear()

    def should_stop(self):
        return self._stop_event.is_set()

    @contextlib.contextmanager
    def stop_on_exception(self):
        """``with coord.stop_on_exception():`` reports an exception raised inside."""
        try:
            yield
        except Exception:  # noqa: BLE001  (reported to the coordinator)
            self.request_stop(ex=sys.exc_info())

    def wait_for_stop(self, timeout=None):
        return self._stop_event.wait(timeout)

    def register_thread(self, thread):
        with self._lock:
            self._registered.add(thread)

    def join(self, threads=None, stop_grace_period_secs=120, ignore_live_threads=False):
        """Waits for ``threads`` (and registered ones) after a stop is requested; raises the
        reported exception, or RuntimeError if threads outlive the grace period."""
        with self._lock:
            threads = set(threads or ()) | self._registered
        while any(t.is_alive() for t in threads) and not self.wait_for_stop(0.05):
            pass
        deadline = time.monotonic() + stop_grace_period_secs
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._joined = True
        stragglers = [t.name for t in threads if t.is_alive()]
        if self._exc_info is not None:
            raise self._exc_info[1].with_traceback(self._exc_info[2])
        if stragglers and not ignore_live_threads:
            raise RuntimeError(f"Coordinator stopped with threads still running: {stragglers}")

    @property
    def joined(self):
        return self._joined

    def raise_requested_exception(self):
        if self._exc_info is not None:
            raise self._exc_info[1].with_traceback(self._exc_info[2])


class QueueRunner:
    """Runs ``enqueue_ops`` in threads (one per op) until the input ends or a stop is
    requested; the queue is closed when the last thread ends, and cancelled on stop."""

    def __init__(self, queue=None, enqueue_ops=None, close_op=None, cancel_op=None,
                 queue_closed_exception_types=None):
        if queue is None or not enqueue_ops:
            raise ValueError("QueueRunner needs a queue and a non-empty list of enqueue_ops")
        self._queue = queue
        self._enqueue_ops = list(enqueue_ops)
        self._close_op = close_op if close_op is not None else queue.close()
        self._cancel_op = cancel_op if cancel_op is not None else queue.close(
            cancel_pending_enqueues=True)
        self._closed_types = tuple(queue_closed_exception_types or
                                   (errors.OutOfRangeError, errors.CancelledError))
        self._lock = threading.Lock()
        self._runs_per_session: dict = {}
        self._exceptions_raised: list = []

    @property
    def queue(self):
        return self._queue

    @property
    def enqueue_ops(self):
        return self._enqueue_ops

    @property
    def close_op(self):
        return self._close_op

    @property
    def cancel_op(self):
        return self._cancel_op

    @property
    def name(self):
        return self._queue.name

    @property
    def exceptions_raised(self):
        return list(self._exceptions_raised)

    def _run(self, sess, enqueue_op, coord):
        decremented = False
        try:
            while not (coord is not None and coord.should_stop()):
                try:
                    sess.run(enqueue_op)
                except self._closed_types:
                    with self._lock:
                        self._runs_per_session[sess] -= 1
                        decremented = True
                        last = self._runs_per_session[sess] == 0
                    if last:
                        try:
                            sess.run(self._close_op)
                        except Exception:  # noqa: BLE001  (the session may be closing)
                            pass
                    return
        except Exception as e:  # noqa: BLE001  (reported to the coordinator or kept)
            if coord is not None:
                coord.request_stop(e)
            else:
                with self._lock:
                    self._exceptions_raised.append(e)
        finally:
            if not decremented:
                with self._lock:
                    self._runs_per_session[sess] -= 1

    def _close_on_stop(self, sess, coord):
        coord.wait_for_stop()
        try:
            sess.run(self._cancel_op)
        except Exception:  # noqa: BLE001  (the session may already be closed)
            pass

    def create_threads(self, sess, coord=None, daemon=False, start=False):
        """Threads running the enqueue ops in ``sess`` (plus one cancelling the queue when
        ``coord`` requests a stop); started if ``start``."""
        with self._lock:
            if self._runs_per_session.get(sess, 0) > 0:
                return []  # already running in this session
            self._runs_per_session[sess] = len(self._enqueue_ops)
            self._exceptions_raised = []
        threads = [threading.Thread(target=self._run, args=(sess, op, coord), daemon=daemon,
                                    name=f"QueueRunner-{self.name}-{i}")
                   for i, op in enumerate(self._enqueue_ops)]
        if coord is not None:
            threads.append(threading.Thread(target=self._close_on_stop, args=(sess, coord),
                                            daemon=True, name=f"QueueRunner-{self.name}-close"))
        for t in threads:
            if coord is not None:
                coord.register_thread(t)
            if start:
                t.start()
        return threads


def add_queue_runner(qr, collection=GraphKeys.QUEUE_RUNNERS):
    """Adds ``qr`` to the graph's queue runners (started by ``start_queue_runners``)."""
    ops.add_to_collection(collection, qr)


def start_queue_runners(sess=None, coord=None, daemon=True, start=True,
                        collection=GraphKeys.QUEUE_RUNNERS):
    """Starts the threads of every QueueRunner in the graph's collection; returns them."""
    sess = sess if sess is not None else ops.get_default_session()
    if sess is None:
        raise ValueError("start_queue_runners: pass sess, or call it inside 'with tw.Session()'")
    threads = []
    for qr in sess.graph.get_collection(collection):
        threads += qr.create_threads(sess, coord=coord, daemon=daemon, start=start)
    return threads


# --- queue-based batching (tf.train.batch / shuffle_batch) -------------------------------------
def _as_list(tensors):
    if isinstance(tensors, dict):
        return sorted(tensors), [tensors[k] for k in sorted(tensors)]
    if isinstance(tensors, (list, tuple)):
        return None, list(tensors)
    return None, [tensors]


def _restore(keys, tensors, like, outs):
    if not isinstance(outs, (list, dict)):
        outs = [outs]
    if isinstance(outs, dict):
        return outs
    if keys is not None:
        return dict(zip(keys, outs))
    return outs if isinstance(like, (list, tuple)) else outs[0]


def _shapes_for(ts, shapes, enqueue_many):
    if shapes is not None:
        return [as_shape(s) for s in shapes]
    out = []
    for t in ts:
        s = t.shape[1:] if enqueue_many and t.shape.ndims else t.shape
        if not s.is_fully_defined():
            raise ValueError(f"All shapes must be fully defined: {t.name} has shape {s}; pass "
                             "shapes=")
        out.append(TensorShape(s.as_list()))
    return out


def _batch_queue(make_queue, tensors, batch_size, num_threads, enqueue_many, shapes,
                 allow_smaller_final_batch, name):
    keys, ts = _as_list(tensors)
    ts = [ops.convert_to_tensor(t) for t in ts]
    shps = _shapes_for(ts, shapes, enqueue_many)
    with ops.name_scope(name):
        q = make_queue([t.dtype for t in ts], shps)
        enq = q.enqueue_many(ts) if enqueue_many else q.enqueue(ts)
        add_queue_runner(QueueRunner(q, [enq] * int(num_threads)))
        out = q.dequeue_up_to(batch_size) if allow_smaller_final_batch else \
            q.dequeue_many(batch_size)
    return _restore(keys, ts, tensors, out)


def batch(tensors, batch_size, num_threads=1, capacity=32, enqueue_many=False, shapes=None,
          dynamic_pad=False, allow_smaller_final_batch=False, shared_name=None, name=None):
    """Batches ``tensors`` through a FIFOQueue filled by a QueueRunner (start it with
    ``start_queue_runners``)."""
    if dynamic_pad:
        raise NotImplementedError("batch: dynamic_pad is not supported; use "
                                  "tw.data.Dataset.padded_batch")
    return _batch_queue(
        lambda dts, shps: data_flow_ops.FIFOQueue(capacity, dts, shps, shared_name=shared_name),
        tensors, batch_size, num_threads, enqueue_many, shapes, allow_smaller_final_batch,
        name or "batch")


def shuffle_batch(tensors, batch_size, capacity, min_after_dequeue, num_threads=1, seed=None,
                  enqueue_many=False, shapes=None, allow_smaller_final_batch=False,
                  shared_name=None, name=None):
    """Like ``batch`` through a RandomShuffleQueue holding at least ``min_after_dequeue``."""
    return _batch_queue(
        lambda dts, shps: data_flow_ops.RandomShuffleQueue(
            capacity, min_after_dequeue, dts, shps, seed=seed, shared_name=shared_name),
        tensors, batch_size, num_threads, enqueue_many, shapes, allow_smaller_final_batch,
        name or "shuffle_batch")


__all__ = ["Coordinator", "QueueRunner", "add_queue_runner", "start_queue_runners", "batch",
           "shuffle_batch"]

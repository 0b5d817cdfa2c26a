"""``tw.summary.FileWriter``: TensorBoard event files through TensorBoard's own writer.

Records are framed and queued by TensorBoard's ``EventFileWriter`` machinery (``RecordWriter``
under its asynchronous writer thread); this module only builds ``Event`` protos.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer import event_file_writer as _efw
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter


class _LocalEventFileWriter(EventFileWriter):
    """TensorBoard's EventFileWriter on a local file. The stock one opens files through
    ``tensorboard.compat.tf``, which imports all of TensorFlow when it is installed (~5 s);
    remote logdirs (``gs://``...) still go through it."""

    def __init__(self, logdir, max_queue_size=10, flush_secs=120, filename_suffix=""):
        self._logdir = logdir
        os.makedirs(logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{_efw._global_uid.get()}{filename_suffix}")
        self._file_name = os.path.join(logdir, name)
        self._general_file_writer = open(self._file_name, "wb")  # noqa: SIM115  (async writer closes it)
        self._async_writer = _efw._AsyncWriter(RecordWriter(self._general_file_writer),
                                               max_queue_size, flush_secs)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()


def _event_file_writer(logdir, max_queue, flush_secs, suffix):
    if "://" not in logdir and hasattr(_efw, "_AsyncWriter") and hasattr(_efw, "_global_uid"):
        return _LocalEventFileWriter(logdir, max_queue, flush_secs, suffix)
    return EventFileWriter(logdir, max_queue, flush_secs, suffix)

__all__ = ["FileWriter", "FileWriterCache"]


def _summary_message(summary):
    if isinstance(summary, summary_pb2.Summary):
        return summary
    if isinstance(summary, np.ndarray):
        summary = summary.item()
    if isinstance(summary, (bytes, bytearray)):
        return summary_pb2.Summary.FromString(bytes(summary))
    if hasattr(summary, "SerializeToString"):  # TensorFlow's own Summary class
        return summary_pb2.Summary.FromString(summary.SerializeToString())
    raise TypeError(f"add_summary expects a serialized Summary (the value of a summary op) "
                    f"or a Summary proto, got {type(summary).__name__}")


class FileWriter:
    """Writes summaries, the graph and run metadata to an event file in ``logdir``.

    Example::

        merged = tw.summary.merge_all()
        writer = tw.summary.FileWriter("/tmp/logs/run1", sess.graph)
        summary, _ = sess.run([merged, train_op], feed)
        writer.add_summary(summary, step)
        writer.close()
    """

    def __init__(self, logdir, graph=None, max_queue=10, flush_secs=120, graph_def=None,
                 filename_suffix=None, session=None):
        self._logdir = str(logdir)
        self._writer = _event_file_writer(self._logdir, max_queue, flush_secs,
                                          filename_suffix or "")
        self._closed = False
        self._reopen_args = (max_queue, flush_secs, filename_suffix or "")
        if graph is not None or graph_def is not None:
            self.add_graph(graph, graph_def=graph_def)

    def get_logdir(self):
        return self._logdir

    def add_event(self, event):
        """Writes one ``Event`` proto (wall time filled in when missing)."""
        if self._closed:
            raise RuntimeError("FileWriter is closed; call reopen() first")
        if not event.wall_time:
            event.wall_time = time.time()
        self._writer.add_event(event)

    def add_summary(self, summary, global_step=None):
        """Adds a summary (the bytes a summary op returns, or a ``Summary`` proto)."""
        ev = event_pb2.Event(summary=_summary_message(summary))
        if global_step is not None:
            ev.step = int(global_step)
        self.add_event(ev)

    def add_graph(self, graph, global_step=None, graph_def=None):
        """Adds the graph (with output shapes and devices) for TensorBoard's graph dashboard."""
        if graph is not None and graph_def is None:
            from tensorweave.framework.graph_def import as_graph_def
            graph_def = as_graph_def(graph, add_shapes=True)
        if graph_def is None:
            raise ValueError("add_graph needs a graph or a graph_def")
        ev = event_pb2.Event(graph_def=graph_def.SerializeToString())
        if global_step is not None:
            ev.step = int(global_step)
        self.add_event(ev)

    def add_run_metadata(self, run_metadata, tag, global_step=None):
        """Adds a traced step's metadata (``Session.run(..., run_metadata=md)``) under ``tag``:
        TensorBoard's graph dashboard then shows each op's compute time."""
        from tensorweave.timeline import run_metadata_to_proto
        ev = event_pb2.Event()
        ev.tagged_run_metadata.tag = tag
        ev.tagged_run_metadata.run_metadata = run_metadata_to_proto(run_metadata) \
            .SerializeToString()
        if global_step is not None:
            ev.step = int(global_step)
        self.add_event(ev)

    def add_session_log(self, session_log, global_step=None):
        ev = event_pb2.Event(session_log=session_log)
        if global_step is not None:
            ev.step = int(global_step)
        self.add_event(ev)

    def flush(self):
        """Writes every pending event to disk."""
        if not self._closed:
            self._writer.flush()

    def close(self):
        """Flushes and closes the event file."""
        if not self._closed:
            self._writer.close()
            self._closed = True

    def reopen(self):
        """Opens a new event file in the same ``logdir`` after :meth:`close`."""
        if self._closed:
            self._writer = _event_file_writer(self._logdir, *self._reopen_args)
            self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class FileWriterCache:
    """One FileWriter per logdir, shared (TF1's ``tf.summary.FileWriterCache``)."""

    _cache: dict = {}

    @staticmethod
    def get(logdir):
        w = FileWriterCache._cache.get(logdir)
        if w is None or w._closed:
            w = FileWriterCache._cache[logdir] = FileWriter(logdir)
        return w

    @staticmethod
    def clear():
        for w in FileWriterCache._cache.values():
            w.close()
        FileWriterCache._cache.clear()

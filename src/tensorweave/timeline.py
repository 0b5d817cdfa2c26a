"""``tw.timeline``: a traced step as a Chrome trace (opens in Perfetto and chrome://tracing).

Example::

    md = tw.RunMetadata()
    sess.run(train_op, feed, options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE),
             run_metadata=md)
    with open("timeline.json", "w") as f:
        f.write(tw.timeline.Timeline(md.step_stats).generate_chrome_trace_format())

Each device becomes a process (``pid``), each executor thread a thread (``tid``), and each op
one complete event (``ph: "X"``) named by its op type with ``args`` {name, op, inputs}.
Dataflow between ops appears as flow arrows (``ph: "s"``/``"f"``).
"""

from __future__ import annotations

import json
import re

__all__ = ["Timeline", "run_metadata_to_proto", "step_stats_to_proto"]

_LABEL = re.compile(r"^(?P<name>[^=]+?) = (?P<op>[^(]+)\((?P<inputs>.*)\)$")


def _node_fields(ns):
    """(name, op type, start us, duration us, thread, inputs) of one node stat (ours or a
    TensorFlow ``NodeExecStats`` proto)."""
    label = getattr(ns, "timeline_label", "") or ""
    m = _LABEL.match(label)
    op = getattr(ns, "op_type", "") or (m.group("op") if m else ns.node_name)
    inputs = [s.strip() for s in m.group("inputs").split(",") if s.strip()] if m else []
    dur = int(ns.all_end_rel_micros) or int(getattr(ns, "op_end_rel_micros", 0))
    return ns.node_name, op, int(ns.all_start_micros), max(dur, 1), int(ns.thread_id), inputs


class Timeline:
    """A Chrome-trace view of ``step_stats`` (``RunMetadata.step_stats``)."""

    def __init__(self, step_stats, graph=None):
        self._step_stats = step_stats
        self._graph = graph

    def _events(self, show_dataflow=True):
        events, ends = [], {}
        for pid, dev in enumerate(self._step_stats.dev_stats):
            events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                           "args": {"name": f"{dev.device} Compute"}})
            events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                           "args": {"sort_index": pid}})
            tids = set()
            for ns in dev.node_stats:
                name, op, start, dur, tid, inputs = _node_fields(ns)
                if tid not in tids:
                    tids.add(tid)
                    events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                                   "args": {"name": f"thread {tid}"}})
                args = {"name": name, "op": op}
                for i, s in enumerate(inputs):
                    args[f"input{i}"] = s
                events.append({"ph": "X", "cat": "Op", "name": op, "pid": pid, "tid": tid,
                               "ts": start, "dur": dur, "args": args})
                ends[name] = (pid, tid, start + dur)
        if show_dataflow:
            events += self._flows(ends)
        return events

    def _flows(self, ends):
        flows, fid = [], 0
        for dev_pid, dev in enumerate(self._step_stats.dev_stats):
            for ns in dev.node_stats:
                name, _, start, _, tid, inputs = _node_fields(ns)
                for s in inputs:
                    src = s.lstrip("^").rsplit(":", 1)[0]
                    if src not in ends or src == name:
                        continue
                    pid, stid, end = ends[src]
                    if pid == dev_pid and stid == tid:
                        continue  # same thread: order already shows the dependency
                    flows.append({"ph": "s", "id": fid, "cat": "DataFlow", "name": "dataflow",
                                  "pid": pid, "tid": stid, "ts": end - 1})
                    flows.append({"ph": "f", "bp": "e", "id": fid, "cat": "DataFlow",
                                  "name": "dataflow", "pid": dev_pid, "tid": tid, "ts": start})
                    fid += 1
        return flows

    def generate_chrome_trace_format(self, show_dataflow=True, show_memory=False):
        """The trace as a JSON string: ``{"traceEvents": [...], "displayTimeUnit": "ms"}``."""
        return json.dumps({"traceEvents": self._events(show_dataflow),
                           "displayTimeUnit": "ms"}, separators=(",", ":"))


def step_stats_to_proto(step_stats):
    """Our ``StepStats`` as TensorFlow's ``StepStats`` protobuf (for TensorBoard)."""
    from tensorboard.compat.proto import step_stats_pb2
    out = step_stats_pb2.StepStats()
    for dev in step_stats.dev_stats:
        d = out.dev_stats.add(device=dev.device)
        for ns in dev.node_stats:
            name, _, start, dur, tid, _ = _node_fields(ns)
            d.node_stats.add(node_name=name, all_start_micros=start, op_start_rel_micros=0,
                             op_end_rel_micros=dur, all_end_rel_micros=dur,
                             timeline_label=getattr(ns, "timeline_label", ""), thread_id=tid)
    return out


def run_metadata_to_proto(run_metadata):
    """Our ``RunMetadata`` as TensorFlow's ``RunMetadata`` protobuf."""
    from tensorboard.compat.proto import config_pb2
    if type(run_metadata).__module__.startswith("tensorboard"):
        return run_metadata
    out = config_pb2.RunMetadata()
    out.step_stats.CopyFrom(step_stats_to_proto(run_metadata.step_stats))
    return out

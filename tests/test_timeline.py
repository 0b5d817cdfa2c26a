"""tw.timeline: traced steps as Chrome trace JSON."""

from __future__ import annotations

import json

import numpy as np

import tensorweave as tw
from tensorweave.runtime.config import DeviceStepStats, NodeExecStats, StepStats


def _traced_step():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 4], name="x")
        with tw.name_scope("dense"):
            y = tw.nn.relu(tw.matmul(x, tw.ones([4, 3])))
        loss = tw.reduce_sum(y, name="loss")
    md = tw.RunMetadata()
    with tw.Session(graph=g) as sess:
        sess.run(loss, {x: np.ones((2, 4), np.float32)},
                 options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE), run_metadata=md)
    return md


def test_trace_has_one_complete_event_per_op():
    md = _traced_step()
    trace = json.loads(tw.timeline.Timeline(md.step_stats).generate_chrome_trace_format())
    events = trace["traceEvents"]
    ops = [e for e in events if e["ph"] == "X"]
    names = {e["args"]["name"] for e in ops}
    assert {"dense/MatMul", "dense/Relu", "loss"} <= names
    for e in ops:
        assert isinstance(e["ts"], int) and e["dur"] >= 1
        assert e["name"] == e["args"]["op"]
        assert {"pid", "tid", "cat"} <= set(e)
    mm = next(e for e in ops if e["args"]["name"] == "dense/MatMul")
    assert mm["name"] == "MatMul" and mm["args"]["input0"] == "x:0"
    procs = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    assert len(procs) == 1 and "CPU:0" in procs[0]["args"]["name"]
    # ops ran in order: the relu starts after the matmul ended
    relu = next(e for e in ops if e["args"]["name"] == "dense/Relu")
    assert relu["ts"] >= mm["ts"]


def test_devices_and_threads_map_to_pids_tids_with_flows():
    stats = StepStats(dev_stats=[
        DeviceStepStats("/job:worker/task:0/device:CPU:0", [
            NodeExecStats("a", "Const", 100, 5, thread_id=1, timeline_label="a = Const()")]),
        DeviceStepStats("/job:worker/task:1/device:CPU:0", [
            NodeExecStats("b", "Neg", 110, 7, thread_id=2, timeline_label="b = Neg(a:0)")])])
    events = json.loads(tw.timeline.Timeline(stats).generate_chrome_trace_format())["traceEvents"]
    x = {e["args"]["name"]: e for e in events if e["ph"] == "X"}
    assert (x["a"]["pid"], x["a"]["tid"]) == (0, 1)
    assert (x["b"]["pid"], x["b"]["tid"], x["b"]["dur"]) == (1, 2, 7)
    s = [e for e in events if e["ph"] == "s"]
    f = [e for e in events if e["ph"] == "f"]
    assert len(s) == len(f) == 1 and s[0]["id"] == f[0]["id"]
    assert s[0]["pid"] == 0 and f[0]["pid"] == 1 and f[0]["ts"] == 110


def test_step_stats_convert_to_tensorflow_proto():
    import pytest
    pytest.importorskip("tensorboard.compat.proto.step_stats_pb2")
    md = _traced_step()
    proto = tw.timeline.run_metadata_to_proto(md)
    names = [n.node_name for d in proto.step_stats.dev_stats for n in d.node_stats]
    assert "dense/MatMul" in names
    # the same Timeline code reads TensorFlow's proto
    trace = json.loads(tw.timeline.Timeline(proto.step_stats).generate_chrome_trace_format())
    assert {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "X"} >= set(names)

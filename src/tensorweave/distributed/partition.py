"""Splitting a graph into per-task partitions joined by _Send/_Recv pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorweave.framework import dtypes
from tensorweave.framework.device import DeviceSpec
from tensorweave.framework.graph_io import op_to_node, tensor_ref
from tensorweave.framework.tensor_shape import TensorShape

STEP_ID = "_step_id"


def task_of(device: str, default_task: str) -> str:
    """The task part of a device name: '/job:ps/task:0/device:CPU:0' -> '/job:ps/task:0'."""
    spec = DeviceSpec.from_string(device)
    if spec.job is None:
        return default_task
    return f"/job:{spec.job}/task:{spec.task or 0}"


@dataclass
class Partition:
    task: str
    nodes: list = field(default_factory=list)
    feeds: list = field(default_factory=list)  # (client feed index, placeholder name)
    fetches: list = field(default_factory=list)  # (client fetch index, tensor name here)
    targets: list = field(default_factory=list)  # op names to run here (incl. sends)


def _placement(ops, default_task):
    """Task of every op; ops updating a variable (ref inputs) follow the variable."""
    where = {}
    for op in ops:
        t = task_of(op.device, default_task)
        for i in op._op_def.ref_inputs:
            src = op.inputs[i].op
            t = where.get(src) or task_of(src.device, default_task)
        where[op] = t
    return where


def partition_graph(ops, fetch_tensors, target_ops, feed_tensors, default_task):
    """Splits ``ops`` (pruned, topologically ordered) by task.

    Returns ``{task: Partition}``. Cross-task data edges become _Send on the producer's task
    and _Recv on the consumer's; cross-task control edges send a scalar token. Every partition
    gets a ``_step_id`` placeholder feeding its sends and receives.
    """
    where = _placement(ops, default_task)
    fed = {t: i for i, t in enumerate(feed_tensors)}
    # Every partition runs its ops in the global topological order; a send sits right after
    # its producer and a receive right before its first consumer. Then the op blocked at the
    # smallest position can always proceed: partitions run serially yet never deadlock.
    pos = {op: float(i) for i, op in enumerate(ops)}
    consumer_pos = [0.0]
    parts: dict[str, Partition] = {}

    def part(task):
        if task not in parts:
            p = parts[task] = Partition(task)
            p.nodes.append({"name": STEP_ID, "op": "Placeholder", "input": [], "device": "",
                            "attr": {"dtype": dtypes.int64, "shape": TensorShape([])}})
        return parts[task]

    recv_names: dict = {}  # (tensor, dst task) -> name of the tensor on dst
    sent: dict = {}  # send node name -> (tensor, dst task), for _mark_batched_sends
    feed_names: dict = {}  # (tensor, task) -> placeholder name

    def on_task(t, task):
        """Name of tensor ``t`` as seen in ``task``'s partition (adding feeds/recvs)."""
        if t in fed:
            key = (t, task)
            if key not in feed_names:
                name = f"_feed_{fed[t]}"
                part(task).nodes.append({"name": name, "op": "Placeholder", "input": [],
                                         "device": "", "attr": {"dtype": t.dtype,
                                                                "shape": t.shape}})
                part(task).feeds.append((fed[t], name))
                feed_names[key] = name
            return feed_names[key]
        src = where[t.op]
        if src == task:
            return tensor_ref(t)
        key = (t, task)
        if key not in recv_names:
            tname = t.name
            attrs = {"tensor_name": tname, "send_device": src, "recv_device": task}
            send = f"_send/{t.op.name}_{t.value_index}/to{_tag(task)}"
            recv = f"_recv/{t.op.name}_{t.value_index}/from{_tag(src)}"
            part(src).nodes.append({"name": send, "op": "_Send", "input": [tensor_ref(t), STEP_ID],
                                    "device": "", "attr": dict(attrs),
                                    "pos": pos[t.op] + 0.25})
            part(src).targets.append(send)
            sent[send] = (t, task)
            part(task).nodes.append({"name": recv, "op": "_Recv", "input": [STEP_ID],
                                     "device": "", "attr": dict(attrs, tensor_type=t.dtype,
                                                                 shape=t.shape),
                                     "pos": consumer_pos[0] - 0.25})
            recv_names[key] = recv
        return recv_names[key]

    control_tokens: dict = {}

    def control_on(op, task):
        """A control input on ``op`` from another task: wait for a token it sends."""
        src = where[op]
        if src == task:
            return f"^{op.name}"
        key = (op, task)
        if key not in control_tokens:
            tok = f"_ctrl/{op.name}/to{_tag(task)}"
            part(src).nodes.append({"name": tok, "op": "Const", "input": [f"^{op.name}"],
                                    "device": "", "attr": {"value": _token(),
                                                           "dtype": dtypes.int32},
                                    "pos": pos[op] + 0.1})

            name = f"{tok}:0"
            attrs = {"tensor_name": name, "send_device": src, "recv_device": task}
            send, recv = f"_send/{tok}", f"_recv/{tok}"
            part(src).nodes.append({"name": send, "op": "_Send", "input": [tok, STEP_ID],
                                    "device": "", "attr": dict(attrs), "pos": pos[op] + 0.2})
            part(src).targets.append(send)
            sent[send] = (op, task)
            part(task).nodes.append({"name": recv, "op": "_Recv", "input": [STEP_ID],
                                     "device": "", "attr": dict(attrs, tensor_type=dtypes.int32,
                                                                 shape=TensorShape([])),
                                     "pos": consumer_pos[0] - 0.25})
            control_tokens[key] = f"^{recv}"
        return control_tokens[key]

    in_ops = set(ops)
    ref_vars: dict = {}  # variables named by ref inputs but not run: declared on their task

    for op in ops:
        task = where[op]
        consumer_pos[0] = pos[op]
        ref = op._op_def.ref_inputs
        for i in ref:
            var = op.inputs[i].op
            if var not in in_ops and (var, task) not in ref_vars:
                ref_vars[(var, task)] = True
                vnode = op_to_node(var)
                vnode["device"] = ""
                part(task).nodes.append(vnode)
        node = op_to_node(op)
        ins = []
        for i, t in enumerate(op.inputs):
            ins.append(tensor_ref(t) if i in ref else on_task(t, task))
        ins += [control_on(c, task) for c in op.control_inputs if c in where]
        node["input"] = ins
        node["device"] = ""  # a partition runs on its task's local devices
        node["pos"] = pos[op]
        part(task).nodes.append(node)
    consumer_pos[0] = float(len(ops))
    for i, t in enumerate(fetch_tensors):
        if t in fed:
            task = default_task
        else:
            task = where[t.op]
        p = part(task)
        p.fetches.append((i, on_task(t, task) if t in fed else tensor_ref(t)))
    for op in target_ops:
        part(where[op]).targets.append(op.name)
    _hoist_parameter_reads(parts, sent, ops, pos)
    _mark_batched_sends(parts, sent, where, in_ops, set(fetch_tensors), set(target_ops))
    return parts


def _hoist_parameter_reads(parts, sent, ops, pos):
    """Moves the sends of plain variable reads to the start of their partition.

    The global order puts a read where its consumer's subgraph is: a batch-norm moving average
    is read, sent, updated by the worker and sent back one variable after another (a round
    trip each on the parameter server). Its value cannot change before a write to it, so a
    read that no write of the same variable precedes is taken first, in the original order,
    and travels with the other parameters (one message: ``_mark_batched_sends``)."""
    first_write: dict = {}
    for op in ops:
        for i in op._op_def.ref_inputs:
            var = op.inputs[i].op
            first_write[var] = min(first_write.get(var, pos[op]), pos[op])
    scale = 1.0 / (len(ops) + 1)
    moved: dict = {}  # node name -> new position
    for name, (t, _) in sent.items():
        if not hasattr(t, "op"):
            continue  # a control token
        read, var = (t.op, t.op.inputs[0].op) if t.op.type == "Identity" and t.op.inputs \
            else (None, t.op)
        if var.type != "VariableV2" or (read is not None and read.control_inputs):
            continue
        at = pos[read if read is not None else var]
        if first_write.get(var, float("inf")) < at:
            continue
        base = -1.0 + at * scale  # in (-1, 0): before every other op, order kept
        moved[var.name] = min(moved.get(var.name, base), base - 0.5 * scale)
        if read is not None:
            moved[read.name] = base
        moved[name] = base + 0.25 * scale
    for p in parts.values():
        for n in p.nodes:
            if n["name"] in moved and "pos" in n:
                n["pos"] = min(n["pos"], moved[n["name"]])


# ops that only move values (a send between them and the next send still makes a group)
_TRIVIAL = frozenset({"VariableV2", "VarHandleOp", "ReadVariableOp", "Identity", "Const",
                      "Placeholder", "NoOp"})
# updates of state: what a parameter server does with a pushed gradient
_UPDATES = ("Apply", "SparseApply", "Assign", "Scatter", "AccumulatorApplyGradient",
            "SparseAccumulatorApplyGradient")


def _mark_batched_sends(parts, sent, where, in_ops, fetched, targets):
    """Sets ``batch`` on the _Send nodes whose tensor may wait in the task's Outbox (sent with
    the step's other held tensors in one message; task.py):

    * a send followed, past trivial ops, by another send (parameters read one after another);
    * a tensor that the receiving task only uses to update state, directly or through pure ops
      there (a gradient pushed to a parameter server; batch statistics for moving averages);
    * a control token whose receivers are NoOps (``tw.group``: a train op's updates done).

    Any other send (an activation for model parallelism: the peer computes with it) goes out
    at once, together with whatever was held, so batching never delays a peer's computation.
    """
    memo: dict = {}

    def pure_into_updates(t, dst):
        key = (t, dst)
        if key not in memo:
            memo[key] = False  # cycles (none in a pruned DAG) and depth: be conservative
            users = [c for c in t.consumers() if c in in_ops]
            ok = bool(users) and t not in fetched
            for c in users:
                if not ok:
                    break
                if where[c] != dst:
                    ok = False
                elif c._op_def.ref_inputs and c.type.startswith(_UPDATES):
                    continue
                elif c._op_def.stateful or c._control_outputs or c in targets:
                    ok = False
                else:
                    ok = all(pure_into_updates(o, dst) for o in c.outputs
                             if any(u in in_ops for u in o.consumers()) or o in fetched) \
                        and any(u in in_ops for o in c.outputs for u in o.consumers())
            memo[key] = ok
        return memo[key]

    def only_groups(op, dst):
        users = [c for c in op._control_outputs if c in in_ops and where[c] == dst]
        return bool(users) and all(c.type == "NoOp" for c in users)

    for p in parts.values():
        order = sorted((n for n in p.nodes if "pos" in n), key=lambda n: n["pos"])
        for k, n in enumerate(order):
            if n["op"] != "_Send":
                continue
            nxt = next((m for m in order[k + 1:] if m["op"] not in _TRIVIAL), None)
            hold = nxt is not None and nxt["op"] == "_Send"
            if not hold and n["name"] in sent:
                src, dst = sent[n["name"]]
                hold = only_groups(src, dst) if n["name"].startswith("_send/_ctrl/") \
                    else pure_into_updates(src, dst)
            n["attr"]["batch"] = hold


def _tag(task: str) -> str:
    return task.replace("/job:", "_").replace("/task:", "_")


def _token():
    import numpy as np
    v = np.array(0, dtype=np.int32)
    v.setflags(write=False)
    return v

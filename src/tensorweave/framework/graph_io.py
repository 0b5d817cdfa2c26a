"""Graphs as plain data: a list of node dicts that rebuilds ops in another Graph or process.

This is the form partitions travel in (to in-process or Ray tasks); the TensorFlow GraphDef
protobuf converter builds on the same walk. A node is::

    {"name": "dense/MatMul", "op": "MatMul", "input": ["x", "w/read:0", "^init"],
     "device": "/job:worker/task:0", "attr": {"transpose_a": False, ...}}

``input`` uses TensorFlow's spelling: ``op`` for output 0, ``op:i`` for others, ``^op`` for
a control input.
"""

from __future__ import annotations

from tensorweave.framework.ops import Graph


def tensor_ref(t) -> str:
    return t.op.name if t.value_index == 0 else f"{t.op.name}:{t.value_index}"


def op_to_node(op, input_map=None) -> dict:
    """One op as a node dict; ``input_map`` may rename input tensors (tensor -> string)."""
    ins = []
    for t in op.inputs:
        ins.append(input_map[t] if input_map and t in input_map else tensor_ref(t))
    ins += [f"^{c.name}" for c in op.control_inputs]
    return {"name": op.name, "op": op.type, "input": ins, "device": op.device,
            "attr": dict(op.attrs)}


def ops_to_nodes(ops) -> list[dict]:
    return [op_to_node(op) for op in ops]


def _parse_input(s):
    if s.startswith("^"):
        return s[1:], None
    name, sep, idx = s.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return s, 0


def nodes_to_graph(nodes, graph: Graph | None = None, prefix: str = "") -> Graph:
    """Rebuilds ops from node dicts (in an order where inputs come first, or any order: nodes
    are created once all their inputs exist). Names are kept exactly (plus ``prefix``)."""
    g = graph or Graph()
    pending = list(nodes)
    created = {}
    with g.as_default():
        while pending:
            progress = False
            rest = []
            for n in pending:
                refs = [_parse_input(s) for s in n["input"]]
                if not all(name in created or (prefix + name) in g._ops_by_name
                           for name, _ in refs):
                    rest.append(n)
                    continue

                def lookup(name):
                    return created.get(name) or g._ops_by_name[prefix + name]

                inputs = [lookup(name).outputs[i] for name, i in refs if i is not None]
                controls = [lookup(name) for name, i in refs if i is None]
                with g.device(n.get("device") or None) if n.get("device") else _null():
                    op = g.create_op(n["op"], inputs, dict(n.get("attr", {})),
                                     name=prefix + n["name"] + "/", control_inputs=controls)
                created[n["name"]] = op
                progress = True
            if not progress:
                missing = sorted({name for n in rest for name, _ in
                                  (_parse_input(s) for s in n["input"])
                                  if name not in created and prefix + name not in g._ops_by_name})
                raise ValueError(f"Cannot rebuild graph: nodes {[n['name'] for n in rest][:5]} "
                                 f"refer to unknown inputs {missing[:5]}")
            pending = rest
    return g


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False

"""Grouping and control flow: ``no_op``, ``group``, ``tuple``; ``cond``/``while_loop`` live here too."""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.common_shapes import no_outputs
from tensorweave.framework.ops import Operation, Tensor
from tensorweave.framework.registry import register_op
from tensorweave.ops.op_util import make_op

register_op("NoOp")(no_outputs)


def no_op(name=None):
    return make_op("NoOp", [], {}, name=name or "NoOp", graph=ops.get_default_graph())


def group(*inputs, **kwargs):
    """An op that runs all ``inputs`` (ops or tensors) and has no output."""
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"Unknown keyword arguments to group: {sorted(kwargs)}")
    deps = []
    for x in inputs:
        if isinstance(x, (list, tuple)):
            deps.extend(x)
        else:
            deps.append(x)
    deps = [d.op if isinstance(d, Tensor) else (d._as_graph_element().op
                                                if hasattr(d, "_as_graph_element") else d)
            for d in deps if d is not None]
    g = deps[0].graph if deps else ops.get_default_graph()
    with g.as_default(), g.control_dependencies(deps):
        return no_op(name=name or "group_deps")


def tuple_(tensors, name=None, control_inputs=None):
    """Returns identities of ``tensors`` that are available only after all of them are."""
    from tensorweave.ops import array_ops
    deps = [t for t in tensors if t is not None] + list(control_inputs or [])
    with ops.name_scope(name, "tuple"):
        gate = group(*deps)
        with ops.control_dependencies([gate]):
            return [array_ops.identity(t) if isinstance(t, Tensor) else t for t in tensors]


def with_dependencies(dependencies, output_tensor, name=None):
    from tensorweave.ops import array_ops
    with ops.name_scope(name, "control_dependency"):
        with ops.control_dependencies(dependencies):
            return array_ops.identity(output_tensor)


__all__ = ["no_op", "group", "tuple_", "with_dependencies", "Operation"]

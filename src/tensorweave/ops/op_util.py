"""Small helpers every op builder uses."""

from __future__ import annotations

from tensorweave.framework.ops import Tensor, convert_to_tensor, get_default_graph


def graph_of(values):
    default = get_default_graph()
    if default._building_function:  # inside a control-flow body: it captures outer tensors
        return default
    for v in values:
        if isinstance(v, Tensor):
            return v.graph
        g = getattr(v, "graph", None)
        if g is not None and hasattr(v, "_as_graph_element"):
            return g
    return get_default_graph()


def make_op(op_type, inputs, attrs=None, name=None, graph=None, control_inputs=()):
    """Creates an op from already-converted input tensors; returns the Operation."""
    g = graph or graph_of(inputs)
    return g.create_op(op_type, inputs, attrs, name=name, control_inputs=control_inputs)


def make(op_type, inputs, attrs=None, name=None):
    """Creates an op and returns its single output tensor."""
    return make_op(op_type, inputs, attrs, name).outputs[0]


def binary_operands(x, y, name_x="x", name_y="y"):
    """Converts two operands, giving Python values the other operand's dtype (``x * 2.0``)."""
    if isinstance(x, Tensor) or hasattr(x, "_as_graph_element") or hasattr(x, "_snapshot"):
        x = convert_to_tensor(x)
        y = convert_to_tensor(y, dtype=None if _is_tensorlike(y) else x.dtype)
    else:
        y = convert_to_tensor(y)
        x = convert_to_tensor(x, dtype=y.dtype)
    return x, y


def _is_tensorlike(v):
    return isinstance(v, Tensor) or hasattr(v, "_snapshot")

"""FuncGraph: the sub-graph a control-flow op holds (DESIGN.md rule 5).

Tensors of enclosing graphs used inside are *captured*: each becomes a placeholder of the
FuncGraph and an input of the control-flow op. Variables created inside are lifted to the
outermost graph, and collections are shared with it (TF1 semantics for loop bodies).
"""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.ops import Graph, Tensor


class FuncGraph(Graph):
    def __init__(self, name: str, outer_graph: Graph):
        super().__init__()
        self.name = name
        self.outer_graph = outer_graph
        self.inputs: list[Tensor] = []  # placeholders, in the op's input order
        self.outputs: list[Tensor] = []
        self.captures: dict = {}  # outer tensor -> inner placeholder
        self.seed = outer_graph.seed
        self._collections = outermost(outer_graph)._collections
        self._building_function = True
        self._device_stack = list(outer_graph._device_stack)

    def capture(self, tensor: Tensor) -> Tensor:
        if tensor.graph is self:
            return tensor
        ph = self.captures.get(tensor)
        if ph is not None:
            return ph
        outer = tensor
        if isinstance(self.outer_graph, FuncGraph) and tensor.graph is not self.outer_graph:
            outer = self.outer_graph.capture(tensor)  # thread it through every level
        saved, self._control_stack = self._control_stack, []
        try:
            ph = Graph.create_op(self, "Placeholder", [], {"dtype": tensor.dtype,
                                                          "shape": tensor.shape},
                                 name="capture").outputs[0]
        finally:
            self._control_stack = saved
        self.captures[tensor] = ph
        self._capture_order.append((tensor, outer, ph))
        return ph

    @property
    def _capture_order(self):
        if not hasattr(self, "_cap_list"):
            self._cap_list = []
        return self._cap_list

    def captured_outer(self):
        """[(tensor in the immediately enclosing graph, inner placeholder)] in capture order."""
        return [(outer, ph) for _, outer, ph in self._capture_order]

    def create_op(self, op_type, inputs, attrs=None, name=None, control_inputs=()):
        inputs = [self.capture(t) if isinstance(t, Tensor) and t.graph is not self else t
                  for t in inputs]
        control_inputs = [c for c in control_inputs if c.graph is self]
        return super().create_op(op_type, inputs, attrs, name, control_inputs)

    def _current_control_inputs(self):
        return [c for c in super()._current_control_inputs() if c.graph is self]


def outermost(graph: Graph) -> Graph:
    while isinstance(graph, FuncGraph):
        graph = graph.outer_graph
    return graph


def lifted_graph_scope():
    """``with lifted_graph_scope():`` builds in the outermost graph (for variable creation),
    under the name scope that is current in the function being built."""
    g = ops.get_default_graph()
    return _Lifted(g, outermost(g)) if isinstance(g, FuncGraph) else _Null()


class _Lifted:
    def __init__(self, inner, outer):
        self.inner, self.outer = inner, outer

    def __enter__(self):
        self._ctx = self.outer.as_default()
        self._ctx.__enter__()
        self._saved = self.outer._name_stack
        self.outer._name_stack = self.inner._name_stack
        return self.outer

    def __exit__(self, *a):
        self.outer._name_stack = self._saved
        return self._ctx.__exit__(*a)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def copy_into(src: FuncGraph, dst: Graph, input_map: dict) -> dict:
    """Copies ``src``'s ops into ``dst``, feeding ``src`` tensors from ``input_map``
    (src tensor -> dst tensor). Returns the map for every copied tensor."""
    tmap = dict(input_map)
    with dst.as_default():
        for op in src.get_operations():
            if all(t in tmap for t in op.outputs) and op.outputs:
                continue
            if op.type == "Placeholder" and op.outputs[0] not in tmap:
                raise ValueError(f"copy_into: input {op.name} of {src.name} is not mapped")
            ins = [tmap[t] for t in op.inputs]
            ctrl = [tmap.get(c) or (tmap[c.outputs[0]].op if c.outputs and c.outputs[0] in tmap
                                    else None) for c in op.control_inputs]
            new = dst.create_op(op.type, ins, dict(op.attrs), name=op.name.split("/")[-1],
                                control_inputs=[c for c in ctrl if c is not None])
            for a, b in zip(op.outputs, new.outputs):
                tmap[a] = b
            if not op.outputs:
                tmap[op] = new
    return tmap

"""Elementwise fusion for device plans: groups of elementwise steps become one generated kernel.

On a GPU every op costs a kernel launch plus the Python around it (several microseconds), far
more than the arithmetic of a small elementwise op. An unrolled LSTM step has hundreds of them:
``sigmoid(f + 1) * c + sigmoid(i) * tanh(g)`` is five launches, and its gradient a dozen more.
This pass (DESIGN.md rule 3: decided once, when the plan is compiled) merges connected
elementwise steps of one device into one step whose kernel computes every value the rest of the
plan needs (a multi-output kernel: forward activations that the gradient reads stay outputs).

A group is legal when, placed at its last member's position, every outside consumer of its
outputs still runs after it (so no cycle and no reordering of readers), no step in between can
write a buffer that a member reads (variables updated in place), all its outputs have one static
shape (the kernel's iteration shape: the broadcast of its inputs), and its ops have no control
edges inside the plan. A device registers a ``Fuser`` in ``FUSERS`` (``kernels/gpu`` does for
CuPy and for the NumPy emulation) that gives each op's formula and compiles a program.

Example: with ``tw.ConfigProto(graph_options=tw.GraphOptions(fusion=False))`` nothing is fused;
``plan.rewrite_stats["elementwise_fused_ops"]`` counts the ops that were.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tensorweave.kernels.gpu.elementwise import KernelUnavailable

# device type -> Fuser with ``expression(op)`` (fn(*input expressions) -> expression, or None)
# and ``compile(program)`` (-> kernel(*inputs) -> tuple of outputs).
FUSERS: dict = {}

MAX_MEMBERS = 64  # ops per kernel (bounds compile time and register pressure)
MAX_INPUTS = 48  # kernel parameters


def register_fuser(device_type: str, fuser):
    """Makes ``device_type``'s plans fuse their elementwise steps with ``fuser``."""
    FUSERS[device_type] = fuser


def _mutates(st) -> bool:
    """A step that may write a buffer another step reads (variables updated in place)."""
    if st.const is not None or st.transfer:
        return False
    d = st.op._op_def
    return bool(d.ref_inputs) or (d.stateful and not st.op.type.startswith(("Variable",
                                                                             "VarHandle")))


def fuse_elementwise(steps, fetch_slots):
    """Returns (steps with each fused group replaced by one step, stats dict)."""
    plan_ops = {st.op for st in steps if not st.transfer}
    exprs = {}
    for i, st in enumerate(steps):
        fuser = FUSERS.get(st.device)
        if fuser is None or st.const is not None or st.transfer or len(st.out_slots) != 1 \
                or len(st.in_slots) != len(st.op.inputs) or st.op._control_inputs \
                or any(c in plan_ops for c in st.op._control_outputs) \
                or st.op.outputs[0].shape.ndims is None:
            continue
        e = fuser.expression(st.op)
        if e is not None:
            exprs[i] = e
    if not exprs:
        return steps, {"elementwise_fused_ops": 0, "elementwise_kernels": 0}

    producer, consumers = {}, defaultdict(list)
    for i, st in enumerate(steps):
        for s in st.out_slots:
            producer[s] = i
        for s in st.in_slots:
            consumers[s].append(i)
    fetched = set(fetch_slots)
    mut = np.cumsum([0] + [_mutates(st) for st in steps])  # mut[k]: mutating steps before k

    def key(i):
        st = steps[i]
        return st.device, st.op.outputs[0].dtype

    def legal(members):
        mset = set(members)
        lo, p = members[0], members[-1]
        if len(members) > MAX_MEMBERS or mut[p] - mut[lo + 1] > 0:
            return False
        inputs, shapes = set(), set()
        for m in members:
            inputs.update(s for s in steps[m].in_slots if producer.get(s) not in mset)
            s = steps[m].out_slots[0]
            outside = [c for c in consumers[s] if c not in mset]
            if any(c < p for c in outside):
                return False
            if outside or s in fetched:
                shapes.add(steps[m].op.outputs[0].shape.as_tuple())
        return len(inputs) <= MAX_INPUTS and len(shapes) == 1

    owner = {i: i for i in exprs}
    groups = {i: [i] for i in exprs}
    for i in sorted(exprs):
        for s in steps[i].in_slots:
            j = producer.get(s)
            if j not in exprs or owner[j] == owner[i] or key(j) != key(i):
                continue
            gi, gj = owner[i], owner[j]
            cand = sorted(groups[gi] + groups[gj])
            if legal(cand):
                groups[gi] = cand
                for m in groups.pop(gj):
                    owner[m] = gi

    replaced, removed, n_ops = {}, set(), 0
    for members in groups.values():
        if len(members) < 2:
            continue
        replaced[members[-1]] = _fused_step(steps, members, exprs, consumers, fetched)
        removed.update(members[:-1])
        n_ops += len(members)
    out = [replaced.get(i, st) for i, st in enumerate(steps) if i not in removed]
    return out, {"elementwise_fused_ops": n_ops, "elementwise_kernels": len(replaced)}


def _fused_step(steps, members, exprs, consumers, fetched):
    from tensorweave.kernels.gpu.elementwise import Program
    from tensorweave.runtime.plan import Step

    mset = set(members)
    name, ins, outs, body, tail = {}, [], [], [], []
    for m in members:
        st = steps[m]
        args = []
        for s in st.in_slots:
            if s not in name:
                name[s] = f"a{len(ins)}"
                ins.append(s)
            args.append(name[s])
        s = st.out_slots[0]
        name[s] = f"v{len(body)}"
        body.append((name[s], "let", exprs[m](*args)))
        if s in fetched or any(c not in mset for c in consumers[s]):
            tail.append((f"o{len(outs)}", "=", name[s]))
            outs.append(s)
    prog = Program(tuple(name[s] for s in ins), tuple(o for o, _, _ in tail),
                   tuple(body + tail))
    root = steps[members[-1]]
    kernel = FUSERS[root.device].compile(prog)
    member_steps = [steps[m] for m in members]
    shape = root.op.outputs[0].shape
    fn = FusedKernel(kernel, prog, member_steps, tuple(ins), tuple(outs),
                     check_shapes=not shape.is_fully_defined())
    return Step(root.op, fn, tuple(ins), tuple(outs), device=root.device)


class FusedKernel:
    """The kernel of a fused step: the generated kernel, or the members' own kernels one by one
    when the inputs' run-time shapes would give an output a shape it does not have unfused
    (possible only where static shapes are partly unknown)."""

    def __init__(self, kernel, program, member_steps, in_slots, out_slots, check_shapes):
        self.kernel = kernel
        self.program = program
        self.ops = [st.op for st in member_steps]
        self._members = member_steps
        self._in_slots = in_slots
        self._out_slots = out_slots
        self._single = len(out_slots) == 1
        self._ok_shapes = {} if check_shapes else None

    def __call__(self, *args):
        if self._ok_shapes is not None:
            shapes = tuple(a.shape for a in args)
            ok = self._ok_shapes.get(shapes)
            if ok is None:
                ok = self._ok_shapes[shapes] = self._fusable(shapes)
            if not ok:
                return self.unfused(*args)
        try:
            r = self.kernel(*args)
        except KernelUnavailable:  # the generated kernel never ran: the members' kernels do
            return self.unfused(*args)
        return r[0] if self._single else r

    def _fusable(self, shapes) -> bool:
        shape_of = dict(zip(self._in_slots, shapes))
        try:
            full = np.broadcast_shapes(*shapes)
            for st in self._members:
                shape_of[st.out_slots[0]] = np.broadcast_shapes(
                    *(shape_of[s] for s in st.in_slots))
        except ValueError:
            return False  # the unfused kernels raise their own error
        return all(shape_of[s] == full for s in self._out_slots)

    def unfused(self, *args):
        """The members' own kernels, in plan order."""
        buf = dict(zip(self._in_slots, args))
        for st in self._members:
            buf[st.out_slots[0]] = st.fn(*(buf[s] for s in st.in_slots))
        r = tuple(buf[s] for s in self._out_slots)
        return r[0] if self._single else r

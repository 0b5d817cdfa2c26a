"""Plan compilation (DESIGN.md rule 3): decide everything once per (fetches, feeds) signature.

``compile_plan`` prunes the graph to what the fetches need, orders it, gives every tensor a
slot, instantiates each kernel once, and generates one straight-line Python function in which
each op is a single kernel call on local variables, with ``del`` after each buffer's last use.
Per step only that function runs. A second, interpreted executor walks the same steps with a
timer around each kernel (tracing) or on a thread pool (inter-op parallelism).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import get_kernel_factory

_plan_ids = itertools.count()


@dataclass
class Step:
    op: object
    fn: object
    in_slots: tuple
    out_slots: tuple
    const: object = None  # Const ops: the value, bound once instead of a kernel call
    inplace: int | None = None  # index of the input buffer the kernel writes its result into
    device: str = "CPU"  # device type whose kernel runs this step
    transfer: bool = False  # a copy between devices inserted by the planner


@dataclass
class Plan:
    steps: list
    feed_slots: tuple
    fetch_slots: tuple
    fetch_copy: tuple  # fetch i may alias variable storage: copy it out
    run: object = None  # generated fn(feed_values) -> tuple of fetch values
    source: str = ""
    filename: str = ""
    line_to_step: dict = field(default_factory=dict)
    frees: list = field(default_factory=list)  # per step: slots whose last use it is


def _postorder(roots, push_order):
    """Ops reachable from ``roots`` in DFS post-order (a topological order), iteratively.
    ``push_order(op)`` lists an op's dependencies in the order they go on the stack."""
    needed, order = set(), []
    for root in roots:
        if root in needed:
            continue
        stack = [(root, False)]
        while stack:
            op, expanded = stack.pop()
            if expanded:
                order.append(op)
                continue
            if op in needed:
                continue
            needed.add(op)
            stack.append((op, True))
            stack.extend((d, False) for d in push_order(op) if d not in needed)
    return order


def prune(fetch_tensors, target_ops, feed_tensors):
    """Ops needed to compute the fetches and run the targets, in a topological order."""
    fed = set(feed_tensors)

    def deps(op):
        ref = op._op_def.ref_inputs
        return [c for c in reversed(op._control_inputs)] + \
            [t.op for i, t in reversed(list(enumerate(op._inputs)))
             if t not in fed and i not in ref]

    roots = [t.op for t in fetch_tensors if t not in fed] + list(target_ops)
    return _postorder(roots, deps)


def aliases_variable(tensor) -> bool:
    """True if ``tensor``'s buffer may be a variable's storage (a fetch must copy it)."""
    seen = 0
    while seen < 64:
        op = tensor.op
        if op._op_def.stateful and op.type.startswith(("Variable", "Apply", "ResourceApply",
                                                       "Assign", "Scatter", "SparseApply")):
            return True
        view = op._op_def.view_of
        if view is None:
            return False
        tensor = op._inputs[view]
        seen += 1
    return True


def _kernel_for(op, ctx, device_type):
    factory = get_kernel_factory(op.type, device_type)
    if factory is None and device_type != "CPU":
        factory = get_kernel_factory(op.type, "CPU")
    if factory is None:
        raise errors.UnimplementedError(
            None, op, f"No {device_type} kernel is registered for op {op.describe()}. "
            "Register one with @register_kernel in tensorweave/kernels/.")
    return factory(op, ctx)


_allocator_tuned = None  # None: not tried yet; then whether it was applied


def tune_allocator():
    """Keeps freed step buffers in the process instead of handing them back to the OS.

    glibc serves blocks above its mmap threshold (128 KiB at first) with fresh mmaps and
    returns freed heap tops above its trim threshold: a training step that allocates tens of
    MB of temporaries then page-faults every page of every buffer again on every step (the
    LSTM benchmark: ~10,000 faults and a third of its time). Raising both thresholds once lets
    the heap recycle those pages, which is what a framework's caching allocator does. Only on
    glibc; ``TENSORWEAVE_MALLOC_TUNING=0`` turns it off. Returns True when applied.
    """
    global _allocator_tuned
    if _allocator_tuned is None:  # once per process
        _allocator_tuned = _mallopt_thresholds()
    return _allocator_tuned


def _mallopt_thresholds() -> bool:
    if os.environ.get("TENSORWEAVE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
            "linux"):
        return False
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum on 64-bit
    return bool(ok and mallopt(m_trim_threshold, 256 << 20))


def _order_by_key(ops, order_key, rw=None):
    """``ops`` in ``order_key`` order as far as the dependencies allow: an op never comes
    before the producer of one of its inputs *after rewrites* (``rw.resolve``: common
    subexpression elimination may make an op read a twin that sorts later) or a control
    input. A topological sort that always takes the ready op with the smallest key."""
    import heapq
    members = {op: i for i, op in enumerate(ops)}  # the pruned order breaks ties
    waiting = {}
    users: dict = {op: [] for op in ops}
    for op in ops:
        deps = {(rw.resolve(t) if rw is not None else t).op for t in op._inputs}
        deps.update(op._control_inputs)
        deps = {d for d in deps if d in members and d is not op}
        waiting[op] = len(deps)
        for d in deps:
            users[d].append(op)
    ready = [(order_key.get(op.name, -1.0), members[op], op) for op in ops if not waiting[op]]
    heapq.heapify(ready)
    out = []
    while ready:
        _, _, op = heapq.heappop(ready)
        out.append(op)
        for u in users[op]:
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, (order_key.get(u.name, -1.0), members[u], u))
    if len(out) != len(ops):  # a cycle cannot happen in a pruned graph; keep the plain sort
        return sorted(ops, key=lambda op: order_key.get(op.name, -1.0))
    return out


def compile_plan(fetch_tensors, target_ops, feed_tensors, ctx, device_type="CPU",
                 options=None, placer=None, order_key=None) -> Plan:
    """Compiles the (fetches, targets, feeds) signature into a Plan.

    ``options``: a GraphOptions (rewrites on/off); ``placer(op) -> device type`` picks each
    op's kernel device (default: everything on ``device_type``); ``order_key`` (op name ->
    number consistent with the dependencies) fixes the run order.
    """
    tune_allocator()
    ops = prune(fetch_tensors, target_ops, feed_tensors)
    rw = None
    if options is not None and (options.constant_folding or options.remove_identities
                                or options.common_subexpression_elimination):
        from tensorweave.runtime.optimize import rewrite
        rw = rewrite(ops, feed_tensors, ctx, options)
        fetch_tensors = [rw.resolve(t) for t in fetch_tensors]
        ops = _reprune(fetch_tensors, target_ops, feed_tensors, rw)
    if order_key is not None:  # e.g. a partition keeps the global order (no Send/Recv deadlock)
        ops = _order_by_key(ops, order_key, rw)
    slot_of: dict = {}

    def slot(t):
        s = slot_of.get(t)
        if s is None:
            s = slot_of[t] = len(slot_of)
        return s

    feed_slots = tuple(slot(t) for t in feed_tensors)
    steps = []
    if rw is not None:  # constants used by the remaining ops (or fetched) are bound once
        used = {rw.resolve(t) for op in ops for t in op._inputs} | set(fetch_tensors)
        for t, v in rw.consts.items():
            if t in used:
                steps.append(Step(t.op, None, (), (slot(t),), const=v))
    for op in ops:
        ref = op._op_def.ref_inputs
        ins = tuple(slot(rw.resolve(t) if rw else t) for i, t in enumerate(op._inputs)
                    if i not in ref)
        outs = tuple(slot(t) for t in op.outputs)
        if op.type == "Const":
            steps.append(Step(op, None, ins, outs, const=op.attrs["value"]))
        else:
            dev = placer(op) if placer is not None else device_type
            steps.append(Step(op, _kernel_for(op, ctx, dev), ins, outs, device=dev))
    fetch_slots = tuple(slot(t) for t in fetch_tensors)
    if any(st.device != "CPU" for st in steps):
        steps, fetch_slots = _insert_transfers(steps, fetch_slots, feed_slots, len(slot_of))
    fetch_copy = tuple(aliases_variable(t) or t.op.type == "Const" or
                       (rw is not None and t in rw.consts) for t in fetch_tensors)
    fused = fused_sgd = fused_conv = fused_pool = 0
    if options is not None and getattr(options, "fusion", False) and \
            all(st.device == "CPU" for st in steps):
        steps, fused = _fuse_matmul_sums(steps, fetch_slots)
        steps, fused_sgd = _fuse_matmul_sgd(steps, fetch_slots, ctx)
        steps, fused_conv = _fuse_conv_bias_relu(steps, fetch_slots)
        steps, fused_pool = _fuse_pool_relu_grad(steps, fetch_slots)
    ew_stats = {}
    if options is not None and getattr(options, "fusion", False) and \
            any(st.device != "CPU" for st in steps):
        # device plans: elementwise steps -> one generated kernel per group (runtime/fusion.py)
        from tensorweave.runtime.fusion import fuse_elementwise
        steps, ew_stats = fuse_elementwise(steps, fetch_slots)
    plan = Plan(steps, feed_slots, fetch_slots, fetch_copy)
    plan.rewrite_stats = dict(rw.stats) if rw is not None else {}
    plan.rewrite_stats["matmul_sums_fused"] = fused
    plan.rewrite_stats["matmul_sgd_fused"] = fused_sgd
    plan.rewrite_stats["conv_bias_relu_fused"] = fused_conv
    plan.rewrite_stats["pool_relu_grad_fused"] = fused_pool
    plan.rewrite_stats.update(ew_stats)
    _free_lists(plan)
    if options is not None and getattr(options, "fusion", False):
        _mark_inplace(plan)
    _generate(plan)
    return plan


# (source device type, destination device type) -> copy function; GPU kernels register theirs
TRANSFERS: dict = {}


def _insert_transfers(steps, fetch_slots, feed_slots, n_slots):
    """Adds a copy step wherever a value produced on one device is consumed on another.
    Feeds and fetches live on the host; each (value, device) pair is copied once."""
    where = {s: "CPU" for s in feed_slots}
    copies: dict = {}
    out = []

    def on(slot, dev, op):
        nonlocal n_slots
        src = where[slot]
        if src == dev:
            return slot
        key = (slot, dev)
        if key not in copies:
            fn = TRANSFERS.get((src, dev))
            if fn is None:
                raise errors.InvalidArgumentError(
                    None, op, f"No way to copy a tensor from {src} to {dev} for op "
                    f"{op.describe()}: is the {dev} kernel package loaded?")
            copies[key] = n_slots
            where[n_slots] = dev
            out.append(Step(op, fn, (slot,), (n_slots,), device=dev, transfer=True))
            n_slots += 1
        return copies[key]

    consts = {}

    def on_const_aware(slot, dev, op):
        """Constants are copied to a device once, at compile time."""
        nonlocal n_slots
        if slot in consts and dev != "CPU":
            key = (slot, dev)
            if key not in copies:
                fn = TRANSFERS.get(("CPU", dev))
                if fn is None:
                    return on(slot, dev, op)
                copies[key] = n_slots
                where[n_slots] = dev
                out.append(Step(op, None, (), (n_slots,), const=fn(consts[slot]), device=dev,
                                transfer=True))
                n_slots += 1
            return copies[key]
        return on(slot, dev, op)

    for st in steps:
        if st.const is None:
            ref = st.op._op_def.ref_inputs
            data_idx = [i for i in range(len(st.op.inputs)) if i not in ref]
            host = st.op._op_def.host_memory.get(st.device, ())
            st.in_slots = tuple(
                s if (i in host and where[s] == "CPU") else on_const_aware(s, st.device, st.op)
                for i, s in zip(data_idx, st.in_slots))
        else:
            for s in st.out_slots:
                consts[s] = st.const
        out.append(st)
        for s in st.out_slots:
            where[s] = st.device if st.const is None else "CPU"
    fetch_slots = tuple(on(s, "CPU", steps[-1].op if steps else None) for s in fetch_slots)
    return out, fetch_slots


def _reprune(fetch_tensors, target_ops, feed_tensors, rw):
    """Prunes again after rewrites: aliased and folded tensors cut their producers off."""
    fed = set(feed_tensors)

    def dep_ops(op):
        ref = op._op_def.ref_inputs
        out = []
        for c in op._control_inputs:
            while c in rw.removed and c is not None:
                c = rw.removed[c]
            if c is not None:
                out.append(c)
        for i, t in enumerate(op._inputs):
            if i in ref:
                continue
            t = rw.resolve(t)
            if t not in fed and t not in rw.consts:
                out.append(t.op)
        return out

    roots = [rw.resolve(t).op for t in fetch_tensors
             if rw.resolve(t) not in fed and rw.resolve(t) not in rw.consts]
    for op in target_ops:
        while op is not None and op in rw.removed:
            op = rw.removed[op]
        if op is not None:
            roots.append(op)
    return _postorder(roots, lambda op: list(reversed(dep_ops(op))))


def _producers_and_consumers(steps):
    """({slot: index of the step that writes it}, {slot: how many step inputs read it})."""
    producer, consumers = {}, {}
    for i, st in enumerate(steps):
        for s in st.out_slots:
            producer[s] = i
        for s in st.in_slots:
            consumers[s] = consumers.get(s, 0) + 1
    return producer, consumers


def _fuse_matmul_sums(steps, fetch_slots):
    """``AddN(a_1 @ b_1, ..., a_n @ b_n, ...)`` -> one matmul over concatenated operands.

    This is the gradient of a weight shared by n matmuls (an unrolled RNN cell: one
    ``x_t.T @ dz_t`` per time step, then their sum): n small-K matmuls and n full-size partial
    results alive at once become one large-K matmul (what BLAS is fast at) and one result.
    Fused only where each partial feeds nothing but the sum, shapes are static, and the
    operands are smaller than the partials they replace (so peak memory never grows).
    Returns (steps, number of sums fused).
    """
    producer, consumers = _producers_and_consumers(steps)
    keep = set(fetch_slots)
    removed, replaced, n_fused = set(), {}, 0
    for i, st in enumerate(steps):
        if st.const is not None or st.op.type != "AddN" or not st.out_slots:
            continue
        groups: dict = {}
        rest = []
        for s in st.in_slots:
            j = producer.get(s)
            m = steps[j] if j is not None else None
            if m is not None and m.const is None and m.op.type == "MatMul" and j not in removed \
                    and consumers.get(s) == 1 and s not in keep and len(m.in_slots) == 2 \
                    and not m.op._control_outputs and m.op.outputs[0].dtype == st.op.outputs[0].dtype \
                    and all(t.shape.is_fully_defined() for t in (*m.op.inputs, m.op.outputs[0])):
                key = (bool(m.op.attrs["transpose_a"]), bool(m.op.attrs["transpose_b"]))
                groups.setdefault(key, []).append(j)
            else:
                rest.append(s)
        spec, ins = [], []
        for key, js in groups.items():
            operand = sum(int(np.prod(t.shape.as_list())) for j in js for t in steps[j].op.inputs)
            partial = sum(int(np.prod(steps[j].op.outputs[0].shape.as_list())) for j in js)
            if len(js) < 2 or operand > partial:
                rest += [steps[j].out_slots[0] for j in js]
                continue
            spec.append((*key, len(js)))
            for j in js:
                ins += list(steps[j].in_slots)
                removed.add(j)
        if not spec:
            continue
        replaced[i] = Step(st.op, _matmul_sum_kernel(tuple(spec)), tuple(ins + rest),
                           st.out_slots, device=st.device)
        n_fused += 1
    if not n_fused:
        return steps, 0
    return [replaced.get(i, st) for i, st in enumerate(steps) if i not in removed], n_fused


def _fuse_matmul_sgd(steps, fetch_slots, ctx):
    """``ApplyGradientDescent(var, alpha, MatMul(a, b))`` -> one step that updates ``var`` with
    a single GEMM (``kernels/cpu/training.matmul_gradient_descent``): the weight update of
    plain SGD costs no gradient buffer and no extra pass. Fused where the matmul's result
    feeds nothing else, is not fetched, and no step between the two may write a buffer (a
    variable updated in place) that the matmul reads. Returns (steps, number fused)."""
    from tensorweave.framework import dtypes
    from tensorweave.kernels.cpu.training import matmul_gradient_descent

    producer, consumers = _producers_and_consumers(steps)
    keep = set(fetch_slots)
    removed, replaced = set(), {}
    for i, st in enumerate(steps):
        op = st.op
        if st.const is not None or op.type != "ApplyGradientDescent" or \
                op.attrs.get("use_locking") or len(st.in_slots) != 2 or \
                op.inputs[0].dtype.base_dtype != dtypes.float32:
            continue
        delta = st.in_slots[1]
        j = producer.get(delta)
        m = steps[j] if j is not None else None
        if m is None or m.const is not None or m.op.type != "MatMul" or j in removed or \
                consumers.get(delta) != 1 or delta in keep or len(m.in_slots) != 2 or \
                m.op._control_outputs or m.device != "CPU" or \
                any(_writes_state(steps[k]) for k in range(j + 1, i)):
            continue
        kernel = matmul_gradient_descent(op, ctx, bool(m.op.attrs["transpose_a"]),
                                         bool(m.op.attrs["transpose_b"]))
        replaced[i] = Step(op, kernel, (st.in_slots[0], *m.in_slots), st.out_slots,
                           device=st.device)
        removed.add(j)
    if not replaced:
        return steps, 0
    return [replaced.get(i, st) for i, st in enumerate(steps) if i not in removed], len(replaced)


def _sole_reader(steps, i, slot, consumers, keep, op_types, first=True):
    """Index of the step after ``i`` that reads ``slot`` (as its first input, unless ``first``
    is False) when it is of one of ``op_types``, is the slot's only reader, and the slot is not
    fetched; else None."""
    if consumers.get(slot) != 1 or slot in keep:
        return None
    for k in range(i + 1, len(steps)):
        st = steps[k]
        if slot in st.in_slots:
            ok = st.const is None and st.op.type in op_types and \
                (st.in_slots[0] == slot or not first)
            return k if ok else None
    return None


def _bias_operand(step, slot, channels):
    """For a BiasAdd (NHWC) or Add/AddV2 step reading ``slot``: the other input's slot when it
    is a bias, i.e. of static shape [channels] and the same dtype (then ``slot + bias`` is
    BiasAdd's channel-wise sum, the TF1 tutorials' ``conv2d(x, W) + b``); else None."""
    op = step.op
    if op.type == "BiasAdd":
        return step.in_slots[1] if _nhwc(op) and step.in_slots[0] == slot else None
    if len(step.in_slots) != 2 or len(set(step.in_slots)) != 2 or channels is None:
        return None
    k = 1 if step.in_slots[0] == slot else 0
    t = op.inputs[k]
    if t.dtype != op.inputs[1 - k].dtype or t.shape.as_list() != [channels]:
        return None
    return step.in_slots[k]


def _fusable(st) -> bool:
    """A CPU kernel step with no control edges: merging it into a neighbour loses nothing."""
    return st.const is None and not st.transfer and st.device == "CPU" and \
        not st.op._control_inputs and not st.op._control_outputs


def _nhwc(op) -> bool:
    return op.attrs.get("data_format", "NHWC") in ("NHWC", b"NHWC")


def _fuse_conv_bias_relu(steps, fetch_slots):
    """``Relu(BiasAdd(Conv2D(x, f), b))`` and ``BiasAdd(Conv2D(x, f), b)`` (NHWC, CPU; or ``+ b``
    with a [channels] bias, as TF1's tutorials write it) -> one
    step (``kernels/cpu/conv.conv2d_bias_relu``) that adds the bias and rectifies each block of
    the convolution's output while it is in cache: two passes over the activation and one
    buffer fewer. Fused where each intermediate feeds only the next op and is not fetched, and
    no step in between writes state. Returns (steps, number fused)."""
    from tensorweave.kernels.cpu.conv import conv2d_bias_relu

    _, consumers = _producers_and_consumers(steps)
    keep = set(fetch_slots)
    removed, replaced = set(), {}
    for j, st in enumerate(steps):
        if st.const is not None or st.op.type != "Conv2D" or not _fusable(st) or \
                not _nhwc(st.op) or len(st.in_slots) != 2:
            continue
        b = _sole_reader(steps, j, st.out_slots[0], consumers, keep,
                         ("BiasAdd", "Add", "AddV2"), first=False)
        if b is None or not _fusable(steps[b]):
            continue
        shape = st.op.outputs[0].shape
        channels = shape.as_list()[-1] if shape.ndims == 4 else None
        bias = _bias_operand(steps[b], st.out_slots[0], channels)
        if bias is None:
            continue
        last, relu = b, _sole_reader(steps, b, steps[b].out_slots[0], consumers, keep, ("Relu",))
        if relu is not None and _fusable(steps[relu]):
            last = relu
        else:
            relu = None
        if any(_writes_state(steps[k]) for k in range(j + 1, last)):
            continue
        kernel = conv2d_bias_relu(st.op, steps[b].op, relu is not None,
                                  bias_first=steps[b].in_slots[0] == bias)
        replaced[last] = Step(steps[last].op, kernel, (*st.in_slots, bias),
                              steps[last].out_slots, device="CPU")
        removed |= {j, b} - {last}
    if not replaced:
        return steps, 0
    return [replaced.get(i, st) for i, st in enumerate(steps) if i not in removed], len(replaced)


_POOL_ATTRS = ("ksize", "strides", "padding", "data_format", "explicit_paddings")


def _fuse_pool_relu_grad(steps, fetch_slots):
    """``ReluGrad(MaxPoolGrad(x, MaxPool(x), dy), x)`` (CPU) -> one step
    (``kernels/cpu/conv.max_pool_relu_grad``) that masks ``dy`` at the pooled size: the
    gradient of ``max_pool(relu(z))``, every conv layer's. Fused where the pool's output
    really is that MaxPool of ``x`` (same window), the pool gradient feeds only the ReluGrad
    and is not fetched. Returns (steps, number fused)."""
    from tensorweave.kernels.cpu.conv import max_pool_relu_grad

    producer, consumers = _producers_and_consumers(steps)
    keep = set(fetch_slots)
    removed, replaced = set(), {}
    for j, st in enumerate(steps):
        if st.const is not None or st.op.type != "MaxPoolGrad" or not _fusable(st) or \
                len(st.in_slots) != 3:
            continue
        x, y, _ = st.in_slots
        p = producer.get(y)
        pool = steps[p].op if p is not None and steps[p].const is None else None
        if pool is None or pool.type != "MaxPool" or steps[p].in_slots != (x,) or \
                any(pool.attrs.get(a) != st.op.attrs.get(a) for a in _POOL_ATTRS):
            continue
        k = _sole_reader(steps, j, st.out_slots[0], consumers, keep, ("ReluGrad",))
        if k is None or not _fusable(steps[k]) or steps[k].in_slots[1:] != (x,) or \
                any(_writes_state(steps[m]) for m in range(j + 1, k)):
            continue
        replaced[k] = Step(steps[k].op, max_pool_relu_grad(st.op), st.in_slots,
                           steps[k].out_slots, device="CPU")
        removed.add(j)
    if not replaced:
        return steps, 0
    return [replaced.get(i, st) for i, st in enumerate(steps) if i not in removed], len(replaced)


def _writes_state(st) -> bool:
    d = st.op._op_def
    return st.const is None and (bool(d.ref_inputs) or (d.stateful and not st.op.type.startswith(
        ("Variable", "VarHandle", "Placeholder"))))


def _matmul_sum_kernel(spec):
    """The fused step of :func:`_fuse_matmul_sums`: ``spec`` holds (transpose_a, transpose_b,
    n) per group of matmuls; inputs are their (a, b) operands in order, then other addends."""

    def run(*ins):
        total, pos = None, 0
        for ta, tb, n in spec:
            a = np.concatenate(ins[pos:pos + 2 * n:2], axis=0 if ta else 1)
            b = np.concatenate(ins[pos + 1:pos + 2 * n:2], axis=1 if tb else 0)
            r = np.matmul(a.T if ta else a, b.T if tb else b)
            total = r if total is None else np.add(total, r, out=total)
            pos += 2 * n
        for x in ins[pos:]:
            np.add(total, x, out=total)
        return total

    run.fresh_output = True
    return run


_FRESH_PRODUCERS = {np.matmul}
# Below this size passing out= costs more (keyword parsing) than the allocation it saves.
_INPLACE_MIN_ELEMENTS = 2048
_UNKNOWN_DIM_GUESS = 16  # an unknown (batch) dimension counts this much towards the size


def _accepts_out(fn) -> bool:
    """ufuncs, and kernels marked ``fn.accepts_out = True``: called as ``fn(*inputs, out=b)``
    they write their (broadcast) result into ``b`` and return it. A kernel also marked
    ``no_broadcast`` requires every input to have the output's shape."""
    return (isinstance(fn, np.ufunc) and fn.nout == 1) or getattr(fn, "accepts_out", False)


def _fresh(fn) -> bool:
    """Kernels whose result is a new array no one else holds (not a view, not scratch):
    ufuncs, np.matmul, and kernels marked ``accepts_out`` or ``fresh_output`` (on a kernel
    with several outputs, ``fresh_output`` says that every one of them is new)."""
    return fn in _FRESH_PRODUCERS or isinstance(fn, np.ufunc) or \
        getattr(fn, "accepts_out", False) or getattr(fn, "fresh_output", False)


def _same_shape_safely(ishape, oshape, others) -> bool:
    """True when an input of static shape ``ishape`` surely has the output's shape at run
    time: equal static shapes where known, and no other input (static shapes ``others``)
    can broadcast a dimension that is unknown."""
    if ishape is None or oshape is None or ishape != oshape:
        return False
    for tshape in others:
        if tshape is None or len(tshape) > len(ishape):
            return False
        for d_in, d in zip(ishape[len(ishape) - len(tshape):], tshape):
            if d_in is None and d != 1:
                return False
    return True


def _mark_inplace(plan: Plan):
    """Lets elementwise kernels (ufuncs and kernels that accept ``out=``) write into an input
    buffer that dies at that step and that a previous step freshly allocated (never a feed,
    constant, view or variable)."""
    fresh = set()
    tensor_of = {s: t for st in plan.steps if not st.transfer and st.const is None
                 for s, t in zip(st.out_slots, st.op.outputs)}
    const_shape = {st.out_slots[0]: np.shape(st.const) for st in plan.steps
                   if st.const is not None and st.out_slots}

    def static_shape(slot):
        if slot in const_shape:
            return const_shape[slot]
        t = tensor_of.get(slot)
        return None if t is None else t.shape.as_tuple()

    # Only a buffer's sole consumer may overwrite it: any other consumer could hold a view.
    _, consumers = _producers_and_consumers(plan.steps)
    last = {}
    for i, fr in enumerate(plan.frees):
        for s in fr:
            last[s] = i
    for i, st in enumerate(plan.steps):
        st.inplace = None
        fn = st.fn
        if st.transfer:
            continue
        if _accepts_out(fn) and len(st.out_slots) == 1 and st.device == "CPU":
            out_t = st.op.outputs[0]
            oshape = out_t.shape.as_tuple()
            size = 0 if oshape is None else int(np.prod(
                [_UNKNOWN_DIM_GUESS if d is None else d for d in oshape]))
            for k, s in enumerate(st.in_slots):
                if s in fresh and last.get(s) == i and consumers.get(s) == 1 \
                        and s not in plan.fetch_slots and size >= _INPLACE_MIN_ELEMENTS:
                    in_t = tensor_of.get(s)
                    others = [] if getattr(fn, "no_broadcast", False) else \
                        [static_shape(o) for j, o in enumerate(st.in_slots) if j != k]
                    if in_t is not None and in_t.dtype == out_t.dtype and \
                            _same_shape_safely(in_t.shape.as_tuple(), oshape, others):
                        st.inplace = k
                        break
            fresh.add(st.out_slots[0])
        elif st.device == "CPU" and (_fresh(fn) and len(st.out_slots) == 1
                                     or getattr(fn, "fresh_output", False)):
            fresh.update(st.out_slots)  # a multi-output kernel vouches for all its outputs


def _free_lists(plan: Plan):
    keep = set(plan.fetch_slots)
    last_use = {}
    for i, st in enumerate(plan.steps):
        for s in st.in_slots:
            last_use[s] = i
        for s in st.out_slots:
            last_use.setdefault(s, i)
    frees = [[] for _ in plan.steps]
    for s, i in last_use.items():
        if s not in keep:
            frees[i].append(s)
    for i in range(len(frees)):
        frees[i].sort()
    plan.frees = frees


def _generate(plan: Plan):
    pid = next(_plan_ids)
    filename = f"<tensorweave-plan-{pid}>"
    env = {}
    lines = ["def _run(_feeds):"]
    if plan.feed_slots:
        names = ", ".join(f"t{s}" for s in plan.feed_slots)
        lines.append(f"    {names}, = _feeds")
    line_to_step = {}
    for i, st in enumerate(plan.steps):
        args = ", ".join(f"t{s}" for s in st.in_slots)
        outs = [s for s in st.out_slots]
        if st.const is not None:
            env[f"c{i}"] = st.const
            lines.append(f"    t{outs[0]} = c{i}")
        else:
            env[f"k{i}"] = st.fn
            if getattr(st, "inplace", None) is not None:
                args += f", out=t{st.in_slots[st.inplace]}"
            if not outs:
                lhs = ""
            elif len(outs) == 1:
                lhs = f"t{outs[0]} = "
            else:
                lhs = ", ".join(f"t{s}" for s in outs) + ", = "
            lines.append(f"    {lhs}k{i}({args})")
        line_to_step[len(lines)] = i
        dead = plan.frees[i]
        if dead:
            lines.append("    del " + ", ".join(f"t{s}" for s in dead))
    rets = []
    for s, cp in zip(plan.fetch_slots, plan.fetch_copy):
        rets.append(f"_copy(t{s})" if cp else f"t{s}")
    lines.append("    return (" + "".join(r + ", " for r in rets) + ")")
    env["_copy"] = _copy_value
    src = "\n".join(lines) + "\n"
    exec(compile(src, filename, "exec"), env)  # noqa: S102  (generated from our own plan)
    plan.run = env["_run"]
    plan.source = src
    plan.filename = filename
    plan.line_to_step = line_to_step


def _copy_value(v):
    return v.copy() if hasattr(v, "copy") else v


def failing_step(plan: Plan, tb):
    """The Step whose kernel raised, found from the generated code's line in the traceback."""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == plan.filename:
            return plan.steps[plan.line_to_step.get(tb.tb_lineno, 0)]
        tb = tb.tb_next
    return None


def run_traced(plan: Plan, feed_values, step_stats, device_name="/job:localhost/replica:0/task:0/device:CPU:0"):
    """Interpreted run recording each op's start and duration (``RunOptions.FULL_TRACE``)."""
    from tensorweave.runtime.config import DeviceStepStats, NodeExecStats

    buf = {}
    for s, v in zip(plan.feed_slots, feed_values):
        buf[s] = v
    base = device_name.rsplit("/device:", 1)[0]
    devs: dict = {}
    for st in plan.steps:
        dev = devs.get(st.device)
        if dev is None:  # one DeviceStepStats per device type the plan runs on
            dev = devs[st.device] = DeviceStepStats(device=f"{base}/device:{st.device}:0")
        start = time.time()
        t0 = time.perf_counter()
        if st.const is not None:
            buf[st.out_slots[0]] = st.const
        else:
            try:
                r = st.fn(*[buf[s] for s in st.in_slots])
            except Exception as e:
                e._tw_step = st
                raise
            if len(st.out_slots) == 1:
                buf[st.out_slots[0]] = r
            elif st.out_slots:
                for s, v in zip(st.out_slots, r):
                    buf[s] = v
        dt = time.perf_counter() - t0
        dev.node_stats.append(NodeExecStats(
            st.op.name, getattr(st.fn, "trace_type", st.op.type), int(start * 1e6),
            max(1, int(dt * 1e6)),
            timeline_label=f"{st.op.name} = {st.op.type}({', '.join(t.name for t in st.op.inputs)})"))
    step_stats.dev_stats.extend(devs.values())
    return tuple(_copy_value(buf[s]) if cp else buf[s]
                 for s, cp in zip(plan.fetch_slots, plan.fetch_copy))


def exc_step(plan, exc):
    st = getattr(exc, "_tw_step", None)
    return st if st is not None else failing_step(plan, sys.exc_info()[2] or exc.__traceback__)


def _dependencies(plan: Plan):
    """Per step: the steps it must wait for. Data edges, control edges, and a chain through
    every stateful step in serial order, so parallel runs compute what the serial run does."""
    producer = {}
    step_of_op = {}
    for i, st in enumerate(plan.steps):
        for s in st.out_slots:
            producer[s] = i
        if not st.transfer:
            step_of_op.setdefault(st.op, i)
    deps = []
    last_stateful = None
    for i, st in enumerate(plan.steps):
        d = {producer[s] for s in st.in_slots if s in producer}
        if not st.transfer:
            d |= {step_of_op[c] for c in st.op._control_inputs if c in step_of_op}
            if st.op._op_def.stateful or st.op._op_def.ref_inputs:
                if last_stateful is not None:
                    d.add(last_stateful)
                last_stateful = i
        d.discard(i)
        deps.append(sorted(d))
    return deps


def run_parallel(plan: Plan, feed_values, pool):
    """Runs independent steps concurrently on ``pool``; results equal the serial order's."""
    import threading

    if not hasattr(plan, "_deps"):
        plan._deps = _dependencies(plan)
        succ = [[] for _ in plan.steps]
        for i, d in enumerate(plan._deps):
            for j in d:
                succ[j].append(i)
        plan._succ = succ
    deps, succ = plan._deps, plan._succ
    buf = dict(zip(plan.feed_slots, feed_values))
    remaining = [len(d) for d in deps]
    lock = threading.Lock()
    done = threading.Event()
    left = [len(plan.steps)]
    failure = []

    def execute(i):
        st = plan.steps[i]
        try:
            if not failure:
                if st.const is not None:
                    buf[st.out_slots[0]] = st.const
                else:
                    r = st.fn(*[buf[s] for s in st.in_slots])
                    if len(st.out_slots) == 1:
                        buf[st.out_slots[0]] = r
                    elif st.out_slots:
                        for s, v in zip(st.out_slots, r):
                            buf[s] = v
        except BaseException as e:  # noqa: BLE001  (re-raised on the caller's thread)
            e._tw_step = st
            failure.append(e)

    def run_step(i):
        while i is not None:
            execute(i)
            ready = []
            with lock:
                left[0] -= 1
                for j in succ[i]:
                    remaining[j] -= 1
                    if remaining[j] == 0:
                        ready.append(j)
                finished = left[0] == 0
            for j in ready[1:]:
                pool.submit(run_step, j)
            i = ready[0] if ready else None  # keep the chain on this thread: no hand-off
            if finished:
                done.set()

    if not plan.steps:
        done.set()
    for i, d in enumerate(deps):
        if not d:
            pool.submit(run_step, i)
    done.wait()
    if failure:
        raise failure[0]
    return tuple(_copy_value(buf[s]) if cp else buf[s]
                 for s, cp in zip(plan.fetch_slots, plan.fetch_copy))

"""Grouping and control flow: ``no_op``, ``group``, ``tuple``; ``cond``/``while_loop`` live here too."""

from __future__ import annotations

from tensorweave.framework import dtypes as _dtypes
from tensorweave.framework import nest, ops
from tensorweave.framework.common_shapes import no_outputs
from tensorweave.framework.func_graph import FuncGraph
from tensorweave.framework.ops import Operation, Tensor, convert_to_tensor
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
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


# --- functional control flow (DESIGN.md rule 5) ---------------------------------------------
# If, While and Scan hold FuncGraphs; their kernels run compiled sub-plans, and their gradients
# build reverse computations from copies of the bodies (kernels/cpu/control_flow.py,
# gradients/control_flow_grad.py).


def _outputs_infer(op):
    return [(d, s) for d, s in zip(op.attrs["Tout"], op.attrs["output_shapes"])]


register_op("If", stateful=True)(_outputs_infer)
register_op("While", stateful=True)(_outputs_infer)
register_op("Scan", stateful=True)(_outputs_infer)
register_op("WhileGrad", stateful=True)(_outputs_infer)  # built by gradients/control_flow_grad
register_op("ScanGrad", stateful=True)(_outputs_infer)


def trace(fn, specs, outer, name):
    """Builds ``fn(*placeholders)`` for ``specs`` [(dtype, shape)] in a new FuncGraph.
    Returns (graph, structure of fn's result); graph.outputs are the flattened results."""
    fg = FuncGraph(name, outer)
    with fg.as_default():
        phs = [fg.create_op("Placeholder", [], {"dtype": d, "shape": TensorShape(s)},
                            name="arg").outputs[0] for d, s in specs]
        result = fn(*phs)
        flat = []
        for x in nest.flatten(result):
            t = convert_to_tensor(x)
            flat.append(fg.capture(t) if t.graph is not fg else t)
    fg.inputs = phs
    fg.outputs = flat
    return fg, result


def _bind_captures(graphs):
    """Unions the outer tensors captured by ``graphs``; appends aligned inputs to each."""
    caps = []
    for g in graphs:
        for outer, _ in g.captured_outer():
            if outer not in caps:
                caps.append(outer)
    for g in graphs:
        mine = dict(g.captured_outer())
        for outer in caps:
            ph = mine.get(outer)
            if ph is None:  # unused by this graph: an input it ignores
                ph = FuncGraph.create_op(g, "Placeholder", [], {"dtype": outer.dtype,
                                                               "shape": outer.shape},
                                         name="unused_capture").outputs[0]
            g.inputs.append(ph)
    return caps


def cond(pred, true_fn=None, false_fn=None, strict=False, name=None, fn1=None, fn2=None):
    """Runs ``true_fn()`` or ``false_fn()`` depending on the scalar bool ``pred``, in the graph.

    Example::

        y = tw.cond(x > 0, lambda: x * 2.0, lambda: -x)
    """
    true_fn = true_fn or fn1
    false_fn = false_fn or fn2
    if not callable(true_fn) or not callable(false_fn):
        raise TypeError("cond needs callables true_fn and false_fn")
    pred = convert_to_tensor(pred)
    if pred.dtype != _dtypes.bool_ or pred.shape.ndims not in (None, 0):
        raise ValueError(f"cond's pred must be a scalar bool tensor, got {pred!r}")
    g = pred.graph
    with g.as_default(), ops.name_scope(name, "cond"):
        tg, tres = trace(lambda: true_fn(), [], g, "cond_true")
        fg, fres = trace(lambda: false_fn(), [], g, "cond_false")
        if len(tg.outputs) != len(fg.outputs):
            raise ValueError(f"true_fn and false_fn must return the same structure: "
                             f"{tres!r} vs {fres!r}")
        for a, b in zip(tg.outputs, fg.outputs):
            if a.dtype != b.dtype:
                raise TypeError(f"cond branches return different dtypes: {a.dtype.name} vs "
                                f"{b.dtype.name}")
        caps = _bind_captures([tg, fg])
        shapes = [_most_specific(a.shape, b.shape) for a, b in zip(tg.outputs, fg.outputs)]
        op = g.create_op("If", [pred] + caps, {
            "then_branch": tg, "else_branch": fg, "Tout": [t.dtype for t in tg.outputs],
            "output_shapes": shapes}, name="If")
    if tres is None:
        return op
    out = nest.pack_sequence_as(tres, op.outputs)
    return out


def _most_specific(a, b):
    da, db = a.as_tuple(), b.as_tuple()
    if da is None or db is None or len(da) != len(db):
        return TensorShape(None)
    return TensorShape([x if x == y else None for x, y in zip(da, db)])


def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, name=None, maximum_iterations=None,
               return_same_structure=False):
    """Repeats ``body`` while ``cond`` is true, in the graph; gradients flow through it.

    Example::

        i, s = tw.while_loop(lambda i, s: i < 10, lambda i, s: (i + 1, s + i), [0, 0])
    """
    from tensorweave.ops import tensor_array_ops
    if tensor_array_ops.has_tensor_arrays(loop_vars):  # they travel as their buffers
        return tensor_array_ops.while_loop(
            while_loop, cond, body, loop_vars, shape_invariants,
            dict(parallel_iterations=parallel_iterations, back_prop=back_prop,
                 swap_memory=swap_memory, name=name, maximum_iterations=maximum_iterations))
    single = not isinstance(loop_vars, (list, tuple, dict))
    structure = [loop_vars] if single else loop_vars
    flat = [convert_to_tensor(v) for v in nest.flatten(structure)]
    g = flat[0].graph if flat else ops.get_default_graph()
    with g.as_default(), ops.name_scope(name, "while"):
        if shape_invariants is not None:
            inv = nest.flatten([shape_invariants] if single else shape_invariants)
            shapes = [TensorShape(s) for s in inv]
        else:
            shapes = [t.shape for t in flat]
        specs = [(t.dtype, s) for t, s in zip(flat, shapes)]
        if maximum_iterations is not None:  # an internal counter bounds the loop
            limit = convert_to_tensor(maximum_iterations, dtype=_dtypes.int32)
            from tensorweave.ops import math_ops
            zero = convert_to_tensor(0, dtype=_dtypes.int32)
            user_cond, user_body, n_user = cond, body, len(flat)

            def cond(i, *vs):  # noqa: F811
                vs_s = nest.pack_sequence_as(structure, vs)
                return math_ops.logical_and(math_ops.less(i, limit),
                                            user_cond(*_as_args(vs_s, single)))

            def body(i, *vs):  # noqa: F811
                vs_s = nest.pack_sequence_as(structure, vs)
                out = user_body(*_as_args(vs_s, single))
                return [i + 1] + nest.flatten([out] if single else out)

            specs = [(_dtypes.int32, TensorShape([]))] + specs
            flat = [zero] + flat
            wrapped = True
        else:
            n_user = len(flat)
            wrapped = False

        def call(fn):
            def f(*phs):
                if wrapped:
                    return fn(*phs)
                return fn(*_as_args(nest.pack_sequence_as(structure, phs), single))
            return f

        cg, _ = trace(call(cond), specs, g, "while_cond")
        bg, bres = trace(call(body), specs, g, "while_body")
        bflat = bg.outputs
        if len(bflat) != len(flat):
            raise ValueError(f"while_loop body returned {len(bflat)} tensors, expected "
                             f"{len(flat)} (the loop variables' structure)")
        out_shapes = []
        for t, s, b in zip(flat, [sp[1] for sp in specs], bflat):
            if b.dtype != t.dtype:
                raise TypeError(f"while_loop body changed the dtype of a loop variable from "
                                f"{t.dtype.name} to {b.dtype.name}")
            if not s.is_compatible_with(b.shape):
                raise ValueError(f"The loop variable {t.name} has shape {s} entering the loop "
                                 f"but shape {b.shape} after one iteration. To allow the shape "
                                 "to vary across iterations, use the `shape_invariants` "
                                 "argument of tw.while_loop.")
            out_shapes.append(s)
        caps = _bind_captures([cg, bg])
        op = g.create_op("While", flat + caps, {
            "cond": cg, "body": bg, "n": len(flat), "Tout": [t.dtype for t in flat] +
            [_dtypes.variant], "output_shapes": out_shapes + [TensorShape(None)]}, name="While")
    outs = op.outputs[:len(flat)]
    if wrapped:
        outs = outs[1:]
    del n_user
    result = nest.pack_sequence_as(structure, outs)
    if single:
        return result[0]
    if len(result) == 1 and not return_same_structure and isinstance(loop_vars, list):
        return result[0]
    return result


def _as_args(vs, single):
    return (vs[0],) if single else tuple(vs) if isinstance(vs, (list, tuple)) and \
        not hasattr(vs, "_fields") else (vs,)


def _scan_op(body_fn, carry, elems, reverse, name, n_ys_hint=None):
    """The general Scan: ``body_fn(carry, x) -> (new_carry, y)`` over the first axis of
    ``elems``; returns (final carry, stacked ys). carry/elems/y are nests of tensors."""
    cflat = [convert_to_tensor(c) for c in nest.flatten(carry)]
    eflat = [convert_to_tensor(e) for e in nest.flatten(elems)]
    if not eflat:
        raise ValueError("scan needs at least one sequence in elems")
    g = eflat[0].graph
    T = eflat[0].shape[0].value if eflat[0].shape.ndims else None
    specs = [(t.dtype, t.shape) for t in cflat] + \
            [(e.dtype, e.shape[1:] if e.shape.ndims is not None else TensorShape(None))
             for e in eflat]
    y_structure = []

    def f(*phs):
        c = nest.pack_sequence_as(carry, phs[:len(cflat)])
        x = nest.pack_sequence_as(elems, phs[len(cflat):])
        new_c, y = body_fn(c, x)
        y_structure.append(y)
        return nest.flatten(new_c) + nest.flatten(y)

    with g.as_default(), ops.name_scope(name, "scan"):
        bg, _ = trace(f, specs, g, "scan_body")
        n_c = len(cflat)
        for t, b in zip(cflat, bg.outputs[:n_c]):
            if t.dtype != b.dtype:
                raise TypeError(f"scan's fn changed the accumulator dtype from {t.dtype.name} "
                                f"to {b.dtype.name}")
            if not t.shape.is_compatible_with(b.shape):
                raise ValueError(f"scan's fn changed the accumulator shape from {t.shape} to "
                                 f"{b.shape}")
        ys = bg.outputs[n_c:]
        caps = _bind_captures([bg])
        out_shapes = [t.shape for t in cflat] + \
            [TensorShape([T]).concatenate(y.shape) for y in ys] + [TensorShape(None)]
        op = g.create_op("Scan", cflat + eflat + caps, {
            "body": bg, "n_carry": n_c, "n_elems": len(eflat), "n_ys": len(ys),
            "reverse": bool(reverse),
            "Tout": [t.dtype for t in cflat] + [y.dtype for y in ys] + [_dtypes.variant],
            "output_shapes": out_shapes}, name="Scan")
    final = nest.pack_sequence_as(carry, op.outputs[:n_c])
    stacked = nest.pack_sequence_as(y_structure[0], op.outputs[n_c:n_c + len(ys)])
    return final, stacked


def scan(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
         swap_memory=False, infer_shape=True, reverse=False, name=None):
    """``fn(acc, x) -> acc`` over the first axis of ``elems``; returns all accumulators stacked.
    Without ``initializer`` the first element starts the accumulation (and is returned first)."""
    if initializer is None:
        from tensorweave.ops import array_ops
        first = nest.map_structure(lambda e: convert_to_tensor(e)[-1 if reverse else 0], elems)
        rest = nest.map_structure(
            lambda e: convert_to_tensor(e)[:-1] if reverse else convert_to_tensor(e)[1:], elems)
        _, ys = _scan_op(lambda c, x: _twice(fn(c, x)), first, rest, reverse, name)
        return nest.map_structure(
            lambda f0, y: array_ops.concat([y, array_ops.expand_dims(f0, 0)], 0) if reverse
            else array_ops.concat([array_ops.expand_dims(f0, 0), y], 0), first, ys)
    _, ys = _scan_op(lambda c, x: _twice(fn(c, x)), initializer, elems, reverse, name)
    return ys


def _twice(v):
    return v, v


def map_fn(fn, elems, dtype=None, parallel_iterations=None, back_prop=True, swap_memory=False,
           infer_shape=True, name=None):
    """Applies ``fn`` to each element along the first axis and stacks the results."""
    _, ys = _scan_op(lambda c, x: ((), fn(x)), (), elems, False, name or "map")
    return ys


def foldl(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
          swap_memory=False, name=None):
    """Folds ``fn(acc, x)`` over ``elems`` from the left; returns the final accumulator."""
    return _fold(fn, elems, initializer, False, name or "foldl")


def foldr(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
          swap_memory=False, name=None):
    return _fold(fn, elems, initializer, True, name or "foldr")


def _fold(fn, elems, initializer, reverse, name):
    if initializer is None:
        first = nest.map_structure(lambda e: convert_to_tensor(e)[-1 if reverse else 0], elems)
        elems = nest.map_structure(
            lambda e: convert_to_tensor(e)[:-1] if reverse else convert_to_tensor(e)[1:], elems)
        initializer = first
    final, _ = _scan_op(lambda c, x: (fn(c, x), ()), initializer, elems, reverse, name)
    return final


__all__ += ["cond", "while_loop", "scan", "map_fn", "foldl", "foldr"]

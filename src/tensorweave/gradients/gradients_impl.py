"""``tw.gradients``: the backward walk. Gradient rules live beside their ops' families
(``<family>_grad.py``) and build ordinary graph ops, so gradients of gradients come free."""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.ops import IndexedSlices, Tensor, convert_to_tensor


def _as_tensor(x):
    if hasattr(x, "_variable"):  # a Variable: differentiate through every read of it
        return x._variable
    return convert_to_tensor(x)


def _between_ops(ys, xs, stop):
    """Ops on a path from some x to some y, in topological order (inputs first)."""
    x_ops = {x.op for x in xs}
    # forward reachability from xs
    reach, stack = set(), list(x_ops)
    while stack:
        op = stack.pop()
        if op in reach:
            continue
        reach.add(op)
        for t in op.outputs:
            stack.extend(c for c in t._consumers if c not in reach)
    # backward from ys, keeping reachable ops; post-order gives a topological order
    order, seen = [], set()
    for y in ys:
        stack = [(y.op, False)]
        while stack:
            op, done = stack.pop()
            if done:
                order.append(op)
                continue
            if op in seen or op not in reach:
                continue
            seen.add(op)
            stack.append((op, True))
            for t in op._inputs:
                if t not in stop and t.op in reach and t.op not in seen:
                    stack.append((t.op, False))
    return order


def aggregate(grads):
    """Sums a list of gradient contributions (dense tensors and/or IndexedSlices)."""
    grads = [g for g in grads if g is not None]
    if not grads:
        return None
    if len(grads) == 1:
        return grads[0]
    from tensorweave.ops import array_ops, math_ops
    if all(isinstance(g, IndexedSlices) for g in grads):
        return IndexedSlices(array_ops.concat([g.values for g in grads], 0),
                             array_ops.concat([g.indices for g in grads], 0),
                             grads[0].dense_shape)
    dense = [math_ops.indexed_slices_to_dense(g) if isinstance(g, IndexedSlices) else g
             for g in grads]
    return math_ops.add_n(dense)


def gradients(ys, xs, grad_ys=None, name="gradients", colocate_gradients_with_ops=False,
              gate_gradients=False, aggregation_method=None, stop_gradients=None):
    """Symbolic partial derivatives of ``sum(ys)`` with respect to each of ``xs``.

    Returns a list aligned with ``xs``; an entry is None when ``ys`` do not depend on that x.
    Gradients of ``gather``/``embedding_lookup`` come back as :class:`tw.IndexedSlices`.

    Example::

        x = tw.placeholder(tw.float32)
        dy_dx, = tw.gradients(x * x, [x])     # 2 * x
    """
    from tensorweave.ops import array_ops

    ys = [_as_tensor(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
    xs_list = xs if isinstance(xs, (list, tuple)) else [xs]
    xs = [_as_tensor(x) for x in xs_list]
    stop = {_as_tensor(s) for s in (stop_gradients or [])}
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    elif not isinstance(grad_ys, (list, tuple)):
        grad_ys = [grad_ys]
    g = ys[0].graph
    with g.as_default(), ops.name_scope(name):
        grads: dict[Tensor, list] = {}
        for y, gy in zip(ys, grad_ys):
            if gy is None:
                if not (y.dtype.is_floating or y.dtype.is_complex):
                    raise TypeError(f"Gradients of {y.dtype.name} tensors are not defined: "
                                    f"{y.name} must be float to be differentiated")
                gy = array_ops.ones_like(y, name=f"grad_ys_{ys.index(y)}")
            else:
                gy = convert_to_tensor(gy, dtype=y.dtype)
            grads.setdefault(y, []).append(gy)
        for op in reversed(_between_ops(ys, xs, stop)):
            out_grads = [aggregate(grads.get(t, [])) for t in op.outputs]
            for t, og in zip(op.outputs, out_grads):
                if og is not None:
                    grads[t] = [og]
            if all(og is None for og in out_grads):
                continue
            if not op._inputs:
                continue
            d = op._op_def
            if not d.has_gradient:
                raise LookupError(f"No gradient defined for operation {op.describe()}. "
                                  "Register one with @tw.RegisterGradient, or wrap the input "
                                  "in tw.stop_gradient if it should not be differentiated.")
            if d.gradient is None:
                continue
            if len(op.outputs) > 1:
                out_grads = [og if og is not None or not t.dtype.is_floating
                             else array_ops.zeros_like(t)
                             for t, og in zip(op.outputs, out_grads)]
            with ops.name_scope(op.name + "_grad"):
                in_grads = d.gradient(op, *out_grads)
            if not isinstance(in_grads, (list, tuple)):
                in_grads = [in_grads]
            if len(in_grads) != len(op._inputs):
                raise ValueError(f"Gradient function for {op.type} returned {len(in_grads)} "
                                 f"gradients, expected {len(op._inputs)} (one per input)")
            for t, ig in zip(op._inputs, in_grads):
                if ig is None or t in stop:
                    continue
                if not (t.dtype.is_floating or t.dtype.is_complex):
                    continue
                grads.setdefault(t, []).append(ig)
        return [aggregate(grads.get(x, [])) for x in xs]


def hessians(ys, xs, name="hessians"):
    """Second derivatives for scalar ``ys`` and vector ``xs`` (loops over x's elements)."""
    from tensorweave.ops import array_ops
    xs = xs if isinstance(xs, (list, tuple)) else [xs]
    out = []
    for x in xs:
        (g,) = gradients(ys, [x], name=name)
        n = x.shape.num_elements()
        if n is None:
            raise ValueError("hessians needs fully defined shapes")
        flat = array_ops.reshape(g, [-1])
        rows = [gradients(flat[i], [x])[0] for i in range(n)]
        rows = [r if r is not None else array_ops.zeros_like(x) for r in rows]
        out.append(array_ops.reshape(array_ops.stack(rows), x.shape.as_list() * 2))
    return out

"""Kernels of If, While and Scan: each runs compiled sub-plans of its FuncGraphs, sharing the
session's context (variables, RNGs) with the enclosing plan."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.registry import register_kernel
from tensorweave.runtime.config import GraphOptions


def subplan(fg, ctx, extra_inputs=()):
    from tensorweave.runtime.plan import compile_plan
    return compile_plan(list(fg.outputs), [], list(fg.inputs) + list(extra_inputs), ctx,
                        options=GraphOptions(fusion=False))


def _shape_result(values, n):
    if n == 0:
        return None
    if n == 1:
        return values[0]
    return tuple(values)


def records_history(op) -> bool:
    return bool(op.outputs[-1]._consumers)


@register_kernel("If")
def _if(op, ctx):
    then_p = subplan(op.attrs["then_branch"], ctx)
    else_p = subplan(op.attrs["else_branch"], ctx)
    n = len(op.outputs)

    def run(pred, *caps):
        return _shape_result((then_p if pred else else_p).run(caps), n)

    return run


@register_kernel("While")
def _while(op, ctx):
    cond_p = subplan(op.attrs["cond"], ctx)
    body_p = subplan(op.attrs["body"], ctx)
    n = op.attrs["n"]
    record = records_history(op)

    def run(*vals):
        lv, caps = tuple(vals[:n]), tuple(vals[n:])
        history = [] if record else None
        while cond_p.run(lv + caps)[0]:
            if record:
                history.append(lv)
            lv = tuple(body_p.run(lv + caps))
        return (*lv, history)

    return run


@register_kernel("Scan")
def _scan(op, ctx):
    body_p = subplan(op.attrs["body"], ctx)
    nc, ne, ny = op.attrs["n_carry"], op.attrs["n_elems"], op.attrs["n_ys"]
    reverse = op.attrs["reverse"]
    record = records_history(op)
    y_specs = [(t.dtype.as_numpy_dtype, t.shape.as_tuple()) for t in op.outputs[nc:nc + ny]]

    def run(*vals):
        carry = tuple(vals[:nc])
        elems = vals[nc:nc + ne]
        caps = tuple(vals[nc + ne:])
        T = len(elems[0])
        ys = [[None] * T for _ in range(ny)]
        history = [None] * T if record else None
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            if record:
                history[t] = carry
            out = body_p.run(carry + tuple(e[t] for e in elems) + caps)
            carry = tuple(out[:nc])
            for j in range(ny):
                ys[j][t] = out[nc + j]
        stacked = [np.stack(y) if T else _empty(spec) for y, spec in zip(ys, y_specs)]
        return (*carry, *stacked, history)

    return run


def _empty(spec):
    npd, shape = spec
    return np.zeros((0,) + tuple(d or 0 for d in (shape or (0,))[1:]), dtype=npd)


@register_kernel("WhileGrad")
def _while_grad(op, ctx):
    gb = op.attrs["grad_body"]
    plan = subplan(gb, ctx)
    k, nd = op.attrs["n_caps"], op.attrs["n_diff"]
    cap_diff = op.attrs["cap_diff"]

    def run(history, *rest):
        caps = tuple(rest[:k])
        g = tuple(rest[k:k + nd])
        extra = tuple(rest[k + nd:])
        gcaps = [np.zeros_like(caps[j]) for j in cap_diff]
        for lv in reversed(history):
            out = plan.run(tuple(lv) + caps + g + extra)
            g = tuple(out[:nd])
            for j in range(len(cap_diff)):
                gcaps[j] = gcaps[j] + out[nd + j]
        return _shape_result(list(g) + gcaps, nd + len(cap_diff))

    return run


@register_kernel("ScanGrad")
def _scan_grad(op, ctx):
    a = op.attrs
    plan = subplan(a["grad_body"], ctx)
    ne, k = a["n_elems"], a["n_caps"]
    c_diff, e_diff, y_diff, cap_diff = a["carry_diff"], a["elem_diff"], a["y_diff"], \
        a["cap_diff"]
    reverse = a["reverse"]

    def run(history, *rest):
        elems = rest[:ne]
        caps = tuple(rest[ne:ne + k])
        g_c = tuple(rest[ne + k:ne + k + len(c_diff)])
        g_ys = rest[ne + k + len(c_diff):ne + k + len(c_diff) + len(y_diff)]
        extra = tuple(rest[ne + k + len(c_diff) + len(y_diff):])
        T = len(history)
        g_elems = [np.zeros_like(elems[j]) for j in e_diff]
        g_caps = [np.zeros_like(caps[j]) for j in cap_diff]
        for t in (range(T) if reverse else range(T - 1, -1, -1)):
            out = plan.run(tuple(history[t]) + tuple(e[t] for e in elems) + caps + g_c +
                           tuple(gy[t] for gy in g_ys) + extra)
            g_c = tuple(out[:len(c_diff)])
            off = len(c_diff)
            for j in range(len(e_diff)):
                g_elems[j][t] = out[off + j]
            off += len(e_diff)
            for j in range(len(cap_diff)):
                g_caps[j] = g_caps[j] + out[off + j]
        return _shape_result(list(g_c) + g_elems + g_caps,
                             len(c_diff) + len(e_diff) + len(cap_diff))

    return run

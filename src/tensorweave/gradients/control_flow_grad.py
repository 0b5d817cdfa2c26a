"""Gradients of If, While and Scan. Each builds a gradient FuncGraph from a copy of the body
(recomputing the forward values of one iteration from its recorded inputs) and an op that runs
it: If for If, WhileGrad/ScanGrad walking the recorded iterations backwards."""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.func_graph import FuncGraph, copy_into
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import array_ops
from tensorweave.ops.control_flow_ops import _bind_captures


def _floating(t):
    return t.dtype.is_floating


def _grad_graph(body: FuncGraph, n_in_ph: int, diff_out, diff_in, name):
    """A FuncGraph with inputs [body inputs..., grads of the diff outputs] computing the
    gradients of ``body``'s outputs ``diff_out`` w.r.t. its inputs ``diff_in`` (indices)."""
    from tensorweave.gradients.gradients_impl import gradients
    outer = ops.get_default_graph()
    G = FuncGraph(name, outer)
    with G.as_default():
        phs = [G.create_op("Placeholder", [], {"dtype": t.dtype, "shape": t.shape},
                           name="x").outputs[0] for t in body.inputs]
        gys = [G.create_op("Placeholder", [], {"dtype": body.outputs[i].dtype,
                                               "shape": body.outputs[i].shape},
                           name="dy").outputs[0] for i in diff_out]
        tmap = copy_into(body, G, dict(zip(body.inputs, phs)))
        outs = [tmap[body.outputs[i]] for i in diff_out]
        xs = [phs[i] for i in diff_in]
        if outs and xs:
            dx = gradients(outs, xs, grad_ys=gys)
        else:
            dx = [None] * len(xs)
        dx = [ops.convert_to_tensor(d) if d is not None else array_ops.zeros_like(x)
              for d, x in zip(dx, xs)]
    G.inputs = phs + gys
    G.outputs = dx
    del n_in_ph
    return G


@RegisterGradient("If")
def _if_grad(op, *grads):
    pred, caps = op.inputs[0], list(op.inputs[1:])
    then_b, else_b = op.attrs["then_branch"], op.attrs["else_branch"]
    diff_out = [i for i, t in enumerate(op.outputs) if _floating(t)]
    diff_in = [j for j, t in enumerate(caps) if _floating(t)]
    if not diff_in:
        return [None] * len(op.inputs)
    gs = [grads[i] if grads[i] is not None else array_ops.zeros_like(op.outputs[i])
          for i in diff_out]
    tg = _grad_graph(then_b, 0, diff_out, diff_in, "cond_true_grad")
    fg = _grad_graph(else_b, 0, diff_out, diff_in, "cond_false_grad")
    extra = _bind_captures([tg, fg])
    g = ops.get_default_graph()
    grad_op = g.create_op("If", [pred] + caps + gs + extra, {
        "then_branch": tg, "else_branch": fg, "Tout": [caps[j].dtype for j in diff_in],
        "output_shapes": [caps[j].shape for j in diff_in]}, name="If_grad")
    out = [None] * len(op.inputs)
    for k, j in enumerate(diff_in):
        out[1 + j] = grad_op.outputs[k]
    return out


NotDifferentiable("WhileGrad")
NotDifferentiable("ScanGrad")


@RegisterGradient("While")
def _while_grad(op, *grads):
    n = op.attrs["n"]
    body = op.attrs["body"]
    lv, caps = list(op.inputs[:n]), list(op.inputs[n:])
    diff = [i for i in range(n) if _floating(lv[i])]
    cap_diff = [j for j, t in enumerate(caps) if _floating(t)]
    if not diff:
        return [None] * len(op.inputs)
    G = _grad_graph(body, n + len(caps), diff, diff + [n + j for j in cap_diff], "while_grad")
    # G's inputs: all loop vars, all caps, then grads for the diff loop vars
    extra = _bind_captures([G])
    gs = [grads[i] if grads[i] is not None else array_ops.zeros_like(op.outputs[i])
          for i in diff]
    g = ops.get_default_graph()
    gop = g.create_op("WhileGrad", [op.outputs[n]] + caps + gs + extra, {
        "grad_body": G, "n_caps": len(caps), "n_diff": len(diff), "cap_diff": cap_diff,
        "Tout": [lv[i].dtype for i in diff] + [caps[j].dtype for j in cap_diff],
        "output_shapes": [lv[i].shape for i in diff] + [caps[j].shape for j in cap_diff]},
        name="While_grad")
    out = [None] * len(op.inputs)
    for k, i in enumerate(diff):
        out[i] = gop.outputs[k]
    for k, j in enumerate(cap_diff):
        out[n + j] = gop.outputs[len(diff) + k]
    return out


@RegisterGradient("Scan")
def _scan_grad(op, *grads):
    a = op.attrs
    nc, ne, ny = a["n_carry"], a["n_elems"], a["n_ys"]
    body = a["body"]
    carry, elems, caps = (list(op.inputs[:nc]), list(op.inputs[nc:nc + ne]),
                          list(op.inputs[nc + ne:]))
    c_diff = [i for i in range(nc) if _floating(carry[i])]
    y_diff = [j for j in range(ny) if _floating(op.outputs[nc + j])]
    e_diff = [i for i in range(ne) if _floating(elems[i])]
    cap_diff = [j for j, t in enumerate(caps) if _floating(t)]
    body_ins = c_diff + [nc + i for i in e_diff] + [nc + ne + j for j in cap_diff]
    if not body_ins or not (c_diff or y_diff):
        return [None] * len(op.inputs)
    G = _grad_graph(body, 0, c_diff + [nc + j for j in y_diff], body_ins, "scan_grad")
    extra = _bind_captures([G])
    g_c = [grads[i] if grads[i] is not None else array_ops.zeros_like(op.outputs[i])
           for i in c_diff]
    g_y = [grads[nc + j] if grads[nc + j] is not None
           else array_ops.zeros_like(op.outputs[nc + j]) for j in y_diff]
    g = ops.get_default_graph()
    gop = g.create_op("ScanGrad", [op.outputs[-1]] + elems + caps + g_c + g_y + extra, {
        "grad_body": G, "n_elems": ne, "n_caps": len(caps), "carry_diff": c_diff,
        "elem_diff": e_diff, "y_diff": y_diff, "cap_diff": cap_diff, "reverse": a["reverse"],
        "Tout": [carry[i].dtype for i in c_diff] + [elems[i].dtype for i in e_diff] +
        [caps[j].dtype for j in cap_diff],
        "output_shapes": [carry[i].shape for i in c_diff] + [elems[i].shape for i in e_diff] +
        [caps[j].shape for j in cap_diff]}, name="Scan_grad")
    out = [None] * len(op.inputs)
    k = 0
    for i in c_diff:
        out[i] = gop.outputs[k]
        k += 1
    for i in e_diff:
        out[nc + i] = gop.outputs[k]
        k += 1
    for j in cap_diff:
        out[nc + ne + j] = gop.outputs[k]
        k += 1
    return out


TensorShape = TensorShape

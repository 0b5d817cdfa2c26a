"""One harness for every op table (STYLE.md: tests are tables).

Each family's test file declares ``CASES = [OpCase(...), ...]`` and parameterizes
``check_case`` over them. The harness builds the op on float64 placeholders, compares the
forward result with a NumPy float64 reference, checks the gradient of ``sum(out * cotangent)``
against central finite differences, and (when ``second_order``) the gradient of a
gradient-vector product against finite differences of the first gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import tensorweave as tw


@dataclass
class OpCase:
    name: str
    build: Callable  # (*tensors) -> Tensor
    ref: Callable  # (*float64 arrays) -> ndarray
    shapes: list  # input shapes
    grad: bool = True  # check first-order gradients for float inputs
    second_order: bool = False
    make_inputs: Callable | None = None  # rng -> list of arrays, for restricted domains
    grad_inputs: list | None = None  # indices of inputs to differentiate (default: float ones)
    rtol: float = 1e-6
    atol: float = 1e-8
    grad_tol: float = 1e-5
    eps: float = 1e-6
    static_shapes: bool = True  # False: placeholders of unknown shape (checks dynamic paths)
    extra: dict = field(default_factory=dict)

    def __str__(self):
        return self.name


def _inputs(case, rng):
    if case.make_inputs is not None:
        return [np.asarray(a) for a in case.make_inputs(rng)]
    return [rng.standard_normal(s) for s in case.shapes]


def _build(case, arrays):
    g = tw.Graph()
    with g.as_default():
        phs = [tw.placeholder(tw.as_dtype(a.dtype), a.shape if case.static_shapes else None)
               for a in arrays]
        out = case.build(*phs)
    return g, phs, out


def check_forward(case: OpCase, seed=0):
    arrays = _inputs(case, np.random.default_rng(seed))
    g, phs, out = _build(case, arrays)
    with tw.Session(graph=g) as sess:
        got = sess.run(out, dict(zip(phs, arrays)))
    want = case.ref(*arrays)
    np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol,
                               err_msg=f"forward of {case.name}")
    if case.static_shapes and out.shape.ndims is not None:
        assert out.shape.is_compatible_with(np.shape(got)), \
            f"{case.name}: static shape {out.shape} vs result {np.shape(got)}"


def _diff_indices(case, arrays):
    if case.grad_inputs is not None:
        return case.grad_inputs
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]


def check_gradient(case: OpCase, seed=0):
    rng = np.random.default_rng(seed)
    arrays = _inputs(case, rng)
    g, phs, out = _build(case, arrays)
    idx = _diff_indices(case, arrays)
    with tw.Session(graph=g) as sess:
        feed = dict(zip(phs, arrays))
        y0 = np.asarray(sess.run(out, feed))
        cot = rng.standard_normal(y0.shape)
        with g.as_default():
            loss = tw.reduce_sum(out * tw.constant(cot))
            grads = tw.gradients(loss, [phs[i] for i in idx])
        for i, gt in zip(idx, grads):
            assert gt is not None, f"{case.name}: no gradient for input {i}"
            got = sess.run(tw.convert_to_tensor(gt), feed)
            num = _numeric_grad(sess, loss, phs, arrays, i)
            np.testing.assert_allclose(got, num, rtol=case.grad_tol, atol=case.grad_tol,
                                       err_msg=f"gradient of {case.name} w.r.t. input {i}")


def _numeric_grad(sess, loss, phs, arrays, i, eps=1e-6):
    x = arrays[i].astype(np.float64)
    num = np.zeros_like(x)
    flat = num.reshape(-1)
    for k in range(x.size):
        for sign in (1, -1):
            xp = x.copy().reshape(-1)
            xp[k] += sign * eps
            feed = dict(zip(phs, arrays))
            feed[phs[i]] = xp.reshape(x.shape)
            flat[k] += sign * float(sess.run(loss, feed))
    return num / (2 * eps)


def check_second_order(case: OpCase, seed=0):
    """d/dx <grad_x(loss), v> against finite differences of grad_x(loss)."""
    rng = np.random.default_rng(seed)
    arrays = _inputs(case, rng)
    g, phs, out = _build(case, arrays)
    idx = _diff_indices(case, arrays)
    with tw.Session(graph=g) as sess:
        feed = dict(zip(phs, arrays))
        y0 = np.asarray(sess.run(out, feed))
        cot = rng.standard_normal(y0.shape)
        with g.as_default():
            loss = tw.reduce_sum(out * tw.constant(cot))
            first = tw.gradients(loss, [phs[i] for i in idx])
            vs = [rng.standard_normal(arrays[i].shape) for i in idx]
            gv = tw.add_n([tw.reduce_sum(tw.convert_to_tensor(f) * tw.constant(v))
                           for f, v in zip(first, vs)])
            second = tw.gradients(gv, [phs[i] for i in idx])
        for i, s in zip(idx, second):
            if s is None:  # linear in this input: the second derivative is zero
                got = np.zeros_like(arrays[i])
            else:
                got = sess.run(tw.convert_to_tensor(s), feed)
            num = _numeric_grad(sess, gv, phs, arrays, i)
            np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-4,
                                       err_msg=f"second order of {case.name} w.r.t. input {i}")


def check_case(case: OpCase):
    check_forward(case)
    if case.grad:
        check_gradient(case)
    if case.second_order:
        check_second_order(case)

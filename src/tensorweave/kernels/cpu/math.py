"""NumPy kernels for ops/math_ops.py.

Elementwise ops are NumPy ufuncs registered as they are, so the planner can run them in place
(``out=``); the rest are small factories that read attrs once and return the per-step callable.
"""

from __future__ import annotations

import math

import numpy as np

from tensorweave.framework.registry import register_kernel, register_simple_kernel
from tensorweave.kernels.cpu import blas

# --- elementwise: one ufunc each ---------------------------------------------------------------
for _t, _f in {
        "AddV2": np.add, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
        "RealDiv": np.true_divide, "Pow": np.power, "Maximum": np.maximum,
        "Minimum": np.minimum, "FloorDiv": np.floor_divide, "FloorMod": np.mod,
        "TruncateMod": np.fmod, "Atan2": np.arctan2,
        "Neg": np.negative, "Abs": np.abs, "Square": np.square, "Sign": np.sign,
        "Sqrt": np.sqrt, "Exp": np.exp, "Expm1": np.expm1, "Log": np.log, "Log1p": np.log1p,
        "Tanh": np.tanh, "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Asin": np.arcsin,
        "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh, "Cosh": np.cosh,
        "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh, "Floor": np.floor,
        "Ceil": np.ceil, "Rint": np.rint, "IsNan": np.isnan, "IsInf": np.isinf,
        "IsFinite": np.isfinite,
        "Equal": np.equal, "NotEqual": np.not_equal, "Less": np.less,
        "LessEqual": np.less_equal, "Greater": np.greater, "GreaterEqual": np.greater_equal,
        "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
        "LogicalNot": np.logical_not}.items():
    register_simple_kernel(_t, _f)

register_simple_kernel("SelectV2", np.where)


def _owned(a):
    """True when ``a`` is an array this kernel just allocated (so later steps may use out=)."""
    return isinstance(a, np.ndarray)


@register_kernel("Round")
def _round(op, ctx):
    # banker's rounding like TF; integers are already round (np.rint would make them floats)
    return np.rint if op.inputs[0].dtype.is_floating else np.positive


@register_kernel("Reciprocal")
def _reciprocal(op, ctx):
    one = np.array(1, dtype=op.inputs[0].dtype.as_numpy_dtype)
    if op.inputs[0].dtype.is_integer:
        # integer 1/x truncates toward zero as in TF (0 for |x| > 1); x == 0 is an error there
        return lambda x: np.trunc(np.divide(one, x)).astype(x.dtype)
    return lambda x: np.divide(one, x)


@register_kernel("Rsqrt")
def _rsqrt(op, ctx):
    def run(x):
        r = np.sqrt(x)
        return np.divide(1, r, out=r) if _owned(r) else 1 / r

    return run


@register_kernel("Sigmoid")
def _sigmoid(op, ctx):
    def run(x):
        # 0.5 * (1 + tanh(x/2)): no overflow for large |x|, one transcendental call
        y = np.multiply(x, 0.5)
        if _owned(y):
            np.tanh(y, out=y)
            np.add(y, 1, out=y)
            return np.multiply(y, 0.5, out=y)
        return 0.5 * (1 + np.tanh(y))

    return run


@register_kernel("Erf")
def _erf(op, ctx):
    try:
        from scipy.special import erf
    except ImportError:  # scipy is optional: fall back to math.erf per element
        from math import erf as scalar_erf
        erf = np.vectorize(scalar_erf, otypes=[op.inputs[0].dtype.as_numpy_dtype])
    return lambda x: np.asarray(erf(x)).astype(x.dtype, copy=False)


@register_kernel("SquaredDifference")
def _squared_difference(op, ctx):
    def run(x, y):
        d = np.subtract(x, y)
        return np.multiply(d, d, out=d) if _owned(d) else d * d

    return run


@register_kernel("TruncateDiv")
def _truncate_div(op, ctx):
    if op.inputs[0].dtype.is_integer:
        def run(x, y):
            q = np.floor_divide(x, y)
            # floor and truncation differ where the signs differ and the division is inexact
            return q + ((np.mod(x, y) != 0) & ((x < 0) != (y < 0))).astype(q.dtype)

        return run
    return lambda x, y: np.trunc(np.true_divide(x, y))


@register_kernel("DivNoNan")
def _div_no_nan(op, ctx):
    zero = np.zeros((), op.outputs[0].dtype.as_numpy_dtype)

    def run(x, y):
        is_zero = np.equal(y, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.true_divide(x, y)
        return np.where(is_zero, zero, q)

    return run


# --- gradient helpers: (y, dy) -> dy * f'(x), in one pass reusing one temporary ----------------
def _same_shape(t, dy):
    return _owned(t) and t.shape == np.shape(dy)


def _tanh_grad(y, dy):
    t = np.multiply(y, y)
    if _same_shape(t, dy):
        np.subtract(1, t, out=t)
        return np.multiply(dy, t, out=t)
    return dy * (1 - t)


def _sigmoid_grad(y, dy):
    t = np.subtract(1, y)
    if _same_shape(t, dy):
        np.multiply(t, y, out=t)
        return np.multiply(t, dy, out=t)
    return dy * y * t


def _sqrt_grad(y, dy):
    t = np.divide(dy, y)
    return np.multiply(t, 0.5, out=t) if _owned(t) else t * 0.5


def _rsqrt_grad(y, dy):
    t = np.multiply(y, y)
    if _same_shape(t, dy):
        np.multiply(t, y, out=t)
        np.multiply(t, dy, out=t)
        return np.multiply(t, -0.5, out=t)
    return -0.5 * dy * t * y


def _reciprocal_grad(y, dy):
    t = np.multiply(y, y)
    if _same_shape(t, dy):
        np.multiply(t, dy, out=t)
        return np.negative(t, out=t)
    return -dy * t


for _t, _f in {"TanhGrad": _tanh_grad, "SigmoidGrad": _sigmoid_grad, "SqrtGrad": _sqrt_grad,
               "RsqrtGrad": _rsqrt_grad, "ReciprocalGrad": _reciprocal_grad}.items():
    register_simple_kernel(_t, _f)


# --- AddN, Cast, MatMul -----------------------------------------------------------------------
@register_kernel("AddN")
def _add_n(op, ctx):
    def run(*xs):
        out = np.array(np.add(xs[0], xs[1]))  # 0-d sums come back as scalars: make them arrays
        for x in xs[2:]:
            np.add(out, x, out=out)
        return out

    return run


@register_kernel("Cast")
def _cast(op, ctx):
    npd = op.attrs["DstT"].as_numpy_dtype
    return lambda x: np.asarray(x).astype(npd)


def swap_for_few_rows(m: int, k: int) -> bool:
    """Whether ``a @ b.T`` with ``a`` of shape (m, k) runs faster as ``(b @ a.T).T``: on NumPy's
    bundled OpenBLAS, measured (one thread, float32): 0.43-0.9x the time for 2 <= m <= 32
    (an RNN's batch: 32x1024 @ (384x1024).T 0.46 -> 0.27 ms), 0.64-0.82x for m <= 64 with
    k >= 1024, and up to 2x slower for larger m. Another BLAS keeps the plain call."""
    return (1 < m <= 32 or (m <= 64 and k >= 1024)) and blas.available()


@register_kernel("MatMul")
def _matmul(op, ctx):
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        return np.matmul
    if tb and not ta:
        def run_nt(a, b):
            if a.dtype == np.float32 and a.ndim == 2 and swap_for_few_rows(*a.shape):
                return np.ascontiguousarray(np.matmul(b, a.T).T)
            return np.matmul(a, b.T)

        run_nt.fresh_output = True
        return run_nt

    def run(a, b):
        return np.matmul(a.T if ta else a, b.T if tb else b)

    run.fresh_output = True  # a new array: the planner may let a later step write into it
    return run


@register_kernel("BatchMatMulV2")
def _batch_matmul(op, ctx):
    ax, ay = op.attrs["adj_x"], op.attrs["adj_y"]
    if not ax and not ay:
        return np.matmul

    def run(a, b):
        return np.matmul(np.swapaxes(a, -1, -2) if ax else a, np.swapaxes(b, -1, -2) if ay else b)

    return run


# --- reductions -------------------------------------------------------------------------------
def _axes(axes) -> tuple:
    a = axes.tolist() if hasattr(axes, "tolist") else axes
    return tuple(a) if isinstance(a, (list, tuple)) else (a,)


def _reduction(fn):
    """``fn`` is a ufunc's ``reduce`` (what ``np.sum``/``np.max``/``np.prod`` call, with the
    same dtype rules, minus ~2 us of Python wrapper per call) or a NumPy function."""
    def factory(op, ctx):
        keep = op.attrs["keep_dims"]

        def run(x, axes):
            r = fn(x, axis=_axes(axes), keepdims=keep)
            return np.asarray(r).astype(x.dtype, copy=False)

        return run

    return factory


def _mean(x, axis, keepdims):
    """``np.mean`` for float32/float64 without its Python wrapper: the same float-typed
    ``add.reduce`` and the same division by the count, so the same bits (tested); other
    dtypes and empty reductions go through ``np.mean`` (float16's wider accumulator, the
    integer rules, the empty-slice warning)."""
    if x.dtype.char not in "fd" or not x.size:
        return np.mean(x, axis=axis, keepdims=keepdims)
    s = np.add.reduce(x, axis=axis, keepdims=keepdims)
    count = x.size // max(np.size(s), 1)
    if isinstance(s, np.ndarray):
        return np.true_divide(s, count, out=s)
    return s.dtype.type(s / count)


def _sum(x, axis, keepdims):
    """``add.reduce``, or :func:`blas.column_sums` when the axes are the leading ones of a
    C-ordered float array (the gradient of a broadcast bias: ``BroadcastGradientArgs`` gives
    the batch axes)."""
    k = len(axis)
    if 0 < k < x.ndim and x.size and x.dtype.char in "fd" and x.flags.c_contiguous and \
            sorted(a % x.ndim for a in axis) == list(range(k)):
        s = blas.column_sums(x.reshape(-1, math.prod(x.shape[k:])))
        if s is not None:
            return s.reshape(((1,) * k if keepdims else ()) + x.shape[k:])
    return np.add.reduce(x, axis=axis, keepdims=keepdims)


for _t, _f in {"Sum": _sum, "Mean": _mean, "Max": np.maximum.reduce,
               "Min": np.minimum.reduce, "Prod": np.multiply.reduce, "All": np.all,
               "Any": np.any}.items():
    register_kernel(_t)(_reduction(_f))


def _argminmax(fn):
    def factory(op, ctx):
        npd = op.attrs["output_type"].as_numpy_dtype
        return lambda x, axis: np.asarray(fn(x, axis=int(axis))).astype(npd)

    return factory


register_kernel("ArgMax")(_argminmax(np.argmax))
register_kernel("ArgMin")(_argminmax(np.argmin))


# --- scans ------------------------------------------------------------------------------------
def _scan(fn, identity):
    def factory(op, ctx):
        exclusive, reverse = op.attrs["exclusive"], op.attrs["reverse"]

        def run(x, axis):
            axis = int(axis)
            y = np.flip(x, axis) if reverse else x
            out = fn(y, axis=axis, dtype=x.dtype)
            if exclusive and out.shape[axis]:
                # shift by one along axis, the identity entering first
                first = np.full_like(np.take(out, [0], axis), identity)
                out = np.concatenate([first, np.take(out, range(out.shape[axis] - 1), axis)],
                                     axis)
            return np.flip(out, axis).copy() if reverse else out

        return run

    return factory


register_kernel("Cumsum")(_scan(np.cumsum, 0))
register_kernel("Cumprod")(_scan(np.cumprod, 1))


@register_kernel("Einsum")
def _einsum(op, ctx):
    eq = op.attrs["equation"]
    return lambda *xs: np.asarray(np.einsum(eq, *xs))

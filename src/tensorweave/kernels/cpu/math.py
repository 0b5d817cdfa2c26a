"""NumPy kernels for ops/math_ops.py."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.registry import register_kernel, register_simple_kernel

register_simple_kernel("AddV2", np.add)
register_simple_kernel("Sub", np.subtract)
register_simple_kernel("Mul", np.multiply)
register_simple_kernel("RealDiv", np.true_divide)
register_simple_kernel("Neg", np.negative)
register_simple_kernel("Tanh", np.tanh)


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


@register_kernel("MatMul")
def _matmul(op, ctx):
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        return np.matmul
    return lambda a, b: np.matmul(a.T if ta else a, b.T if tb else b)


def _reduction(fn):
    def factory(op, ctx):
        keep = op.attrs["keep_dims"]

        def run(x, axes):
            r = fn(x, axis=tuple(np.atleast_1d(axes).tolist()), keepdims=keep)
            return np.asarray(r).astype(x.dtype, copy=False)

        return run

    return factory


register_kernel("Sum")(_reduction(np.sum))
register_kernel("Mean")(_reduction(np.mean))
register_kernel("Max")(_reduction(np.max))
register_kernel("Min")(_reduction(np.min))
register_kernel("Prod")(_reduction(np.prod))

register_simple_kernel("Pow", np.power)
register_simple_kernel("Maximum", np.maximum)
register_simple_kernel("Minimum", np.minimum)
register_simple_kernel("FloorDiv", np.floor_divide)
register_simple_kernel("FloorMod", np.mod)


@register_kernel("SquaredDifference")
def _squared_difference(op, ctx):
    def run(x, y):
        d = np.subtract(x, y)
        return np.multiply(d, d, out=d) if isinstance(d, np.ndarray) else d * d

    return run


for _t, _f in {"Abs": np.abs, "Square": np.square, "Sqrt": np.sqrt, "Exp": np.exp,
               "Log": np.log, "Log1p": np.log1p, "Sin": np.sin, "Cos": np.cos, "Tan": np.tan,
               "Sign": np.sign, "Floor": np.floor, "Ceil": np.ceil, "Round": np.rint,
               "Expm1": np.expm1}.items():
    register_simple_kernel(_t, _f)


@register_kernel("Rsqrt")
def _rsqrt(op, ctx):
    def run(x):
        r = np.sqrt(x)
        return np.divide(1, r, out=r) if isinstance(r, np.ndarray) else 1 / r

    return run


@register_kernel("Reciprocal")
def _reciprocal(op, ctx):
    one = np.array(1, dtype=op.inputs[0].dtype.as_numpy_dtype)
    return lambda x: np.divide(one, x)


@register_kernel("Sigmoid")
def _sigmoid(op, ctx):
    def run(x):
        # 0.5 * (1 + tanh(x/2)): stable for large |x| and one transcendental call
        y = np.multiply(x, 0.5)
        if isinstance(y, np.ndarray):
            np.tanh(y, out=y)
            np.add(y, 1, out=y)
            return np.multiply(y, 0.5, out=y)
        return 0.5 * (1 + np.tanh(y))

    return run


@register_kernel("Erf")
def _erf(op, ctx):
    from math import erf
    verf = np.vectorize(erf, otypes=[op.inputs[0].dtype.as_numpy_dtype])
    try:
        from scipy.special import erf as serf
        return lambda x: serf(x).astype(x.dtype, copy=False)
    except ImportError:
        return verf


for _t, _f in {"Equal": np.equal, "NotEqual": np.not_equal, "Less": np.less,
               "LessEqual": np.less_equal, "Greater": np.greater,
               "GreaterEqual": np.greater_equal, "LogicalAnd": np.logical_and,
               "LogicalOr": np.logical_or, "LogicalNot": np.logical_not}.items():
    register_simple_kernel(_t, _f)

register_simple_kernel("SelectV2", np.where)


@register_kernel("BatchMatMulV2")
def _batch_matmul(op, ctx):
    ax, ay = op.attrs["adj_x"], op.attrs["adj_y"]
    if not ax and not ay:
        return np.matmul

    def run(a, b):
        return np.matmul(np.swapaxes(a, -1, -2) if ax else a, np.swapaxes(b, -1, -2) if ay else b)

    return run


register_kernel("All")(_reduction(np.all))
register_kernel("Any")(_reduction(np.any))


def _argminmax(fn):
    def factory(op, ctx):
        npd = op.attrs["output_type"].as_numpy_dtype
        return lambda x, axis: fn(x, axis=int(axis)).astype(npd)

    return factory


register_kernel("ArgMax")(_argminmax(np.argmax))
register_kernel("ArgMin")(_argminmax(np.argmin))


@register_kernel("Cumsum")
def _cumsum(op, ctx):
    exclusive, reverse = op.attrs["exclusive"], op.attrs["reverse"]

    def run(x, axis):
        axis = int(axis)
        y = np.flip(x, axis) if reverse else x
        out = np.cumsum(y, axis=axis, dtype=x.dtype)
        if exclusive:
            out = np.concatenate([np.zeros_like(np.take(out, [0], axis)),
                                  np.take(out, range(out.shape[axis] - 1), axis)], axis)
        return np.flip(out, axis).copy() if reverse else out

    return run

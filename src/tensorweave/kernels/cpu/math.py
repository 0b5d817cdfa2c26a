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
        out = np.add(xs[0], xs[1])
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

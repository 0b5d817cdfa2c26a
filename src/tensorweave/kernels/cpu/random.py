"""NumPy kernels for ops/random_ops.py.

Every kernel draws from ``ctx.rng(op)``: the op's own Generator in this session, seeded from
its (seed, seed2) attrs and persistent across runs. Float32 and float64 samples are drawn in
their own dtype (NumPy supports both directly); half types are drawn in float32 and cast.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel


def _draw_dtype(op):
    npd = np.dtype(op.attrs["dtype"].as_numpy_dtype)
    return npd, (npd if npd in (np.float32, np.float64) else np.dtype(np.float32))


def _shape(op, s):
    s = np.asarray(s).reshape(-1)
    if np.any(s < 0):
        raise errors.InvalidArgumentError(
            None, op, f"{op.type}: shape {s.tolist()} has negative dimensions ({op.describe()})")
    return tuple(int(d) for d in s)


@register_kernel("RandomStandardNormal")
def _standard_normal(op, ctx):
    rng = ctx.rng(op)
    out, draw = _draw_dtype(op)
    return lambda s: rng.standard_normal(_shape(op, s), dtype=draw).astype(out, copy=False)


@register_kernel("RandomUniform")
def _uniform(op, ctx):
    rng = ctx.rng(op)
    out, draw = _draw_dtype(op)
    return lambda s: rng.random(_shape(op, s), dtype=draw).astype(out, copy=False)


@register_kernel("TruncatedNormal")
def _truncated_normal(op, ctx):
    rng = ctx.rng(op)
    out, draw = _draw_dtype(op)

    def run(s):
        x = rng.standard_normal(_shape(op, s), dtype=draw)
        bad = np.abs(x) > 2
        while np.any(bad):  # about 4.6% of draws, so this ends within a few rounds
            x[bad] = rng.standard_normal(int(bad.sum()), dtype=draw)
            bad = np.abs(x) > 2
        return x.astype(out, copy=False)

    return run


@register_kernel("RandomUniformInt")
def _uniform_int(op, ctx):
    rng = ctx.rng(op)
    npd = op.attrs["Tout"].as_numpy_dtype

    def run(s, lo, hi):
        if not lo < hi:
            raise errors.InvalidArgumentError(
                None, op, f"Need minval < maxval, got {lo} >= {hi} ({op.describe()})")
        return rng.integers(lo, hi, _shape(op, s), dtype=npd)

    return run


@register_kernel("RandomShuffle")
def _shuffle(op, ctx):
    rng = ctx.rng(op)
    # permutation returns a new array: the input is never touched
    return lambda x: rng.permutation(x) if np.ndim(x) > 0 else np.array(x, copy=True)


@register_kernel("Multinomial")
def _multinomial(op, ctx):
    rng = ctx.rng(op)
    npd = op.attrs["output_dtype"].as_numpy_dtype

    def run(logits, num_samples):
        b, c = logits.shape
        n = int(num_samples)
        if n < 0 or (c == 0 and n > 0 and b > 0):
            raise errors.InvalidArgumentError(
                None, op, f"Multinomial: need num_samples >= 0 and at least one class, got "
                          f"num_samples={n} with logits shape {list(logits.shape)}")
        x = logits.astype(np.float64)
        p = np.exp(x - np.max(x, axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        u = rng.random((b, n)) * cdf[:, -1:]
        # one searchsorted per row: the first class whose cumulative weight exceeds u
        out = np.empty((b, n), dtype=npd)
        for i in range(b):
            out[i] = np.minimum(np.searchsorted(cdf[i], u[i], side="right"), c - 1)
        return out

    return run

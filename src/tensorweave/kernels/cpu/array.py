"""NumPy kernels for ops/array_ops.py."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel, register_simple_kernel


@register_kernel("Placeholder")
def _placeholder(op, ctx):
    def run():
        raise errors.InvalidArgumentError(
            None, op, f"You must feed a value for placeholder tensor '{op.name}' with dtype "
            f"{op.attrs['dtype'].name} and shape {op.attrs['shape']} (created at "
            f"{op.location}): pass feed_dict={{{op.name}: value}} to Session.run.")

    return run


def _identity(x):
    return x


register_simple_kernel("PlaceholderWithDefault", _identity)
register_simple_kernel("Identity", _identity)
register_simple_kernel("StopGradient", _identity)


@register_kernel("Shape")
def _shape(op, ctx):
    npd = op.attrs["out_type"].as_numpy_dtype
    return lambda x: np.array(np.shape(x), dtype=npd)


@register_kernel("Reshape")
def _reshape(op, ctx):
    return lambda x, s: np.reshape(x, s)


register_simple_kernel("Fill", lambda dims, value: np.full(dims, value))
register_simple_kernel("ZerosLike", np.zeros_like)
register_simple_kernel("OnesLike", np.ones_like)


@register_kernel("UnsortedSegmentSum")
def _unsorted_segment_sum(op, ctx):
    def run(data, ids, num):
        out = np.zeros((int(num),) + data.shape[ids.ndim:], dtype=data.dtype)
        np.add.at(out, ids, data)
        return out

    return run


@register_kernel("BroadcastTo")
def _broadcast_to(op, ctx):
    return lambda x, s: np.broadcast_to(x, tuple(s))


@register_kernel("Size")
def _size(op, ctx):
    npd = op.attrs["out_type"].as_numpy_dtype
    return lambda x: np.array(np.size(x), dtype=npd)


register_simple_kernel("Rank", lambda x: np.array(np.ndim(x), dtype=np.int32))

"""Helpers the GPU kernel modules share."""

from __future__ import annotations

import numpy as np


def one_or_tuple(parts):
    """Multi-output kernels return a tuple, but a single output is returned bare."""
    parts = tuple(parts)
    return parts[0] if len(parts) == 1 else parts


def int_list(be, a) -> list:
    """A small integer input (shape, axes, sizes) as a list of Python ints, read on the host."""
    return [int(v) for v in np.ravel(be.host(a)).tolist()]


def to_int(be, a) -> int:
    return int(np.asarray(be.host(a)).reshape(()))


def simple(fn):
    """A factory for an attr-free kernel (``register_simple_kernel``'s counterpart)."""
    return lambda op, ctx: fn

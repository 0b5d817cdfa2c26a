"""Gradient clipping: ``global_norm``, ``clip_by_global_norm``, ``clip_by_norm``.

Built from existing ops (no new op types). ``IndexedSlices`` (sparse gradients) are scaled
through their values and stay sparse.
"""

from __future__ import annotations

from tensorweave.framework.ops import IndexedSlices, convert_to_tensor, name_scope
from tensorweave.ops import math_ops


def _values(t):
    return t.values if isinstance(t, IndexedSlices) else convert_to_tensor(t)


def global_norm(t_list, name=None):
    """``sqrt(sum_i ||t_i||^2)`` over the tensors (or IndexedSlices) of ``t_list``; ``None``
    entries are ignored."""
    if not isinstance(t_list, (list, tuple)):
        raise TypeError(f"global_norm: t_list must be a list or tuple, got "
                        f"{type(t_list).__name__}")
    vals = [_values(t) for t in t_list if t is not None]
    with name_scope(name or "global_norm"):
        if not vals:
            return convert_to_tensor(0.0)
        sq = [math_ops.reduce_sum(math_ops.square(v)) for v in vals]
        dt = sq[0].dtype
        sq = [s if s.dtype == dt else math_ops.cast(s, dt) for s in sq]
        return math_ops.sqrt(math_ops.add_n(sq) if len(sq) > 1 else sq[0])


def _scale(t, factor):
    if t is None:
        return None
    if isinstance(t, IndexedSlices):
        v = t.values
        return IndexedSlices(v * math_ops.cast(factor, v.dtype), t.indices, t.dense_shape)
    t = convert_to_tensor(t)
    return t * math_ops.cast(factor, t.dtype)


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """Scales every tensor by ``clip_norm / max(global_norm, clip_norm)``; returns
    ``(clipped list, global_norm)``. ``use_norm`` replaces the computed norm.

    Example::

        grads, norm = tw.clip_by_global_norm(tw.gradients(loss, params), 5.0)
    """
    if not isinstance(t_list, (list, tuple)):
        raise TypeError(f"clip_by_global_norm: t_list must be a list or tuple, got "
                        f"{type(t_list).__name__}")
    with name_scope(name or "clip_by_global_norm"):
        norm = global_norm(t_list) if use_norm is None else convert_to_tensor(use_norm)
        clip = math_ops.cast(convert_to_tensor(clip_norm), norm.dtype)
        factor = clip / math_ops.maximum(norm, clip)
        return [_scale(t, factor) for t in t_list], norm


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """Scales ``t`` so its L2 norm (over ``axes``, default all) is at most ``clip_norm``."""
    with name_scope(name or "clip_by_norm"):
        sparse = isinstance(t, IndexedSlices)
        v = _values(t)
        l2 = math_ops.sqrt(math_ops.reduce_sum(math_ops.square(v), axis=axes, keepdims=True))
        clip = math_ops.cast(convert_to_tensor(clip_norm), v.dtype)
        out = v * clip / math_ops.maximum(l2, clip)
        return IndexedSlices(out, t.indices, t.dense_shape) if sparse else out


__all__ = ["global_norm", "clip_by_global_norm", "clip_by_norm"]

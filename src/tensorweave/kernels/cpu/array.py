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
        if ids.size and ids.max() >= int(num):
            raise errors.InvalidArgumentError(
                None, op, f"segment_ids contains {int(ids.max())}, which is not in "
                f"[0, {int(num)}) (op {op.describe()})")
        keep = ids >= 0  # negative ids are dropped, as in TF
        if keep.all():
            np.add.at(out, ids, data)
        else:
            np.add.at(out, ids[keep], data[keep])
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


def _one_or_tuple(parts):
    """Multi-output kernels return a tuple, but a single output is returned bare."""
    parts = tuple(parts)
    return parts[0] if len(parts) == 1 else parts


def _bad_index(op, msg):
    return errors.InvalidArgumentError(None, op, f"{msg} (op {op.describe()})")


@register_kernel("Transpose")
def _transpose(op, ctx):
    return lambda x, perm: np.transpose(x, perm)


register_simple_kernel("InvertPermutation",
                       lambda p: np.argsort(p, kind="stable").astype(p.dtype, copy=False))


@register_kernel("ConcatV2")
def _concat(op, ctx):
    return lambda *args: np.concatenate(args[:-1], axis=int(args[-1]))


def _slices(x, axis, bounds):
    """Views of ``x`` between consecutive ``bounds`` along ``axis``: basic slicing, ~4x
    cheaper than ``np.split``'s Python path (an LSTM step splits its gates every time step)."""
    key = [slice(None)] * x.ndim
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        key[axis] = slice(lo, hi)
        out.append(x[tuple(key)])
    return _one_or_tuple(out)


@register_kernel("Split")
def _split(op, ctx):
    n = op.attrs["num_split"]

    def run(axis, x):
        axis = int(axis)
        if not -x.ndim <= axis < x.ndim:
            raise _bad_index(op, f"Split axis {axis} is out of range for shape {list(x.shape)}")
        axis %= x.ndim
        d = x.shape[axis]
        if d % n:
            raise _bad_index(op, f"Number of ways to split should evenly divide the split "
                             f"dimension, but got split_dim {axis} (size = {d}) and "
                             f"num_split {n}")
        k = d // n
        return _slices(x, axis, [i * k for i in range(n + 1)])

    return run


@register_kernel("SplitV")
def _splitv(op, ctx):
    def run(x, sizes, axis):
        axis = int(axis)
        sizes = [int(s) for s in sizes]
        if -1 in sizes:
            sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
        if sum(sizes) != x.shape[axis] or min(sizes, default=0) < 0:
            raise _bad_index(op, f"size_splits {sizes} do not sum to dimension {axis} of "
                             f"shape {list(x.shape)}")
        bounds = [0]
        for s in sizes:
            bounds.append(bounds[-1] + s)
        return _slices(x, axis % x.ndim, bounds)

    return run


@register_kernel("Pack")
def _pack(op, ctx):
    axis = op.attrs["axis"]
    return lambda *xs: np.stack(xs, axis=axis)


@register_kernel("Unpack")
def _unpack(op, ctx):
    axis = op.attrs["axis"]
    return lambda x: _one_or_tuple(np.moveaxis(x, axis, 0))


@register_kernel("Slice")
def _slice(op, ctx):
    def run(x, begin, size):
        key = []
        for i, (b, s) in enumerate(zip(begin.tolist(), size.tolist())):
            d = x.shape[i]
            e = d if s == -1 else b + s
            if not 0 <= b <= e <= d:
                raise _bad_index(op, f"Slice begin {begin.tolist()} and size {size.tolist()} "
                                 f"are out of range for shape {list(x.shape)}")
            key.append(slice(b, e))
        return x[tuple(key)]

    return run


@register_kernel("StridedSlice")
def _strided_slice(op, ctx):
    from tensorweave.ops.array_ops import strided_slice_key

    def run(x, begin, end, strides):
        try:
            return x[strided_slice_key(begin.tolist(), end.tolist(), strides.tolist(), op.attrs)]
        except IndexError as e:
            raise _bad_index(op, f"slice {e} for shape {list(x.shape)}") from None

    return run


@register_kernel("StridedSliceGrad")
def _strided_slice_grad(op, ctx):
    from tensorweave.ops.array_ops import strided_slice_key

    def run(shape, begin, end, strides, dy):
        out = np.zeros(tuple(shape), dtype=dy.dtype)
        out[strided_slice_key(begin.tolist(), end.tolist(), strides.tolist(), op.attrs)] = dy
        return out

    return run


def _check_range(op, indices, n):
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        bad = indices[(indices < 0) | (indices >= n)].reshape(-1)[0]
        raise _bad_index(op, f"indices contains {bad}, which is not in [0, {n})")


@register_kernel("GatherV2")
def _gather(op, ctx):
    def run(params, indices, axis):
        axis = int(axis)
        _check_range(op, indices, params.shape[axis])
        return np.take(params, indices, axis=axis)

    return run


@register_kernel("GatherNd")
def _gather_nd(op, ctx):
    def run(params, indices):
        k = indices.shape[-1]
        for j in range(k):
            _check_range(op, indices[..., j], params.shape[j])
        return params[tuple(np.moveaxis(indices, -1, 0))] if k else \
            np.broadcast_to(params, indices.shape[:-1] + params.shape).copy()

    return run


@register_kernel("ScatterNd")
def _scatter_nd(op, ctx):
    def run(indices, updates, shape):
        out = np.zeros(tuple(shape), dtype=updates.dtype)
        k = indices.shape[-1]
        for j in range(k):
            _check_range(op, indices[..., j], out.shape[j])
        np.add.at(out, tuple(np.moveaxis(indices, -1, 0)), updates)
        return out

    return run


register_simple_kernel("Where", lambda c: np.argwhere(c).astype(np.int64))


@register_kernel("DynamicStitch")
def _dynamic_stitch(op, ctx):
    n = op.attrs["N"]

    def run(*args):
        idx, data = args[:n], args[n:]
        rows = max([int(i.max()) + 1 for i in idx if i.size] or [0])
        tail = data[0].shape[idx[0].ndim:]
        out = np.zeros((rows,) + tail, dtype=data[0].dtype)
        for i, d in zip(idx, data):
            out[i.reshape(-1)] = d.reshape((-1,) + tail)
        return out

    return run


@register_kernel("Pad")
def _pad(op, ctx):
    return lambda x, p: np.pad(x, p)


@register_kernel("PadV2")
def _padv2(op, ctx):
    return lambda x, p, c: np.pad(x, p, constant_values=c)


@register_kernel("MirrorPad")
def _mirror_pad(op, ctx):
    mode = op.attrs["mode"].lower()
    return lambda x, p: np.pad(x, p, mode=mode)


@register_kernel("MirrorPadGrad")
def _mirror_pad_grad(op, ctx):
    # folds each padded border back onto the entries it mirrored
    shift = 1 if op.attrs["mode"] == "REFLECT" else 0

    def run(g, paddings):
        out = g
        for axis, (lo, hi) in enumerate(paddings.tolist()):
            if not lo and not hi:
                continue
            t = np.moveaxis(out, axis, 0)
            n = t.shape[0] - lo - hi
            r = t[lo:lo + n].copy()
            if lo:
                r[shift:shift + lo] += t[:lo][::-1]
            if hi:
                r[n - shift - hi:n - shift] += t[lo + n:][::-1]
            out = np.moveaxis(r, 0, axis)
        return out if out is not g else g.copy()

    return run


register_simple_kernel("Tile", lambda x, m: np.tile(x, m))
register_simple_kernel("ExpandDims", lambda x, a: np.expand_dims(x, int(a)))


@register_kernel("Squeeze")
def _squeeze(op, ctx):
    axes = tuple(op.attrs["squeeze_dims"])
    return (lambda x: np.squeeze(x, axis=axes)) if axes else np.squeeze


register_simple_kernel("ReverseV2", lambda x, a: np.flip(x, tuple(np.ravel(a).tolist())))


@register_kernel("Range")
def _range(op, ctx):
    npd = op.attrs.get("Tidx", op.inputs[0].dtype).as_numpy_dtype
    return lambda start, limit, delta: np.arange(start, limit, delta, dtype=npd)


@register_kernel("OneHot")
def _one_hot(op, ctx):
    axis = op.attrs["axis"]

    def run(indices, depth, on, off):
        hot = np.expand_dims(indices, -1) == np.arange(int(depth))
        out = np.where(hot, on, off).astype(np.result_type(on), copy=False)
        return out if axis == -1 else np.moveaxis(out, -1, axis)

    return run


@register_kernel("ShapeN")
def _shape_n(op, ctx):
    npd = op.attrs["out_type"].as_numpy_dtype
    return lambda *xs: _one_or_tuple(np.array(np.shape(x), dtype=npd) for x in xs)


@register_kernel("BroadcastGradientArgs")
def _broadcast_gradient_args(op, ctx):
    npd = op.attrs["T"].as_numpy_dtype

    def run(s0, s1):
        n = max(len(s0), len(s1))
        a = [1] * (n - len(s0)) + s0.tolist()
        b = [1] * (n - len(s1)) + s1.tolist()
        r0 = [i for i in range(n) if i < n - len(s0) or (a[i] == 1 and b[i] != 1)]
        r1 = [i for i in range(n) if i < n - len(s1) or (b[i] == 1 and a[i] != 1)]
        return np.array(r0, dtype=npd), np.array(r1, dtype=npd)

    return run


def _unique(op, ctx):
    npd = op.attrs["out_idx"].as_numpy_dtype
    counts = op.type == "UniqueWithCounts"

    def run(x):
        # np.unique sorts; TensorFlow keeps the order of first appearance
        u, first, inv, cnt = np.unique(x, return_index=True, return_inverse=True,
                                       return_counts=True, equal_nan=False)  # NaNs distinct
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        out = (u[order], rank[inv.reshape(-1)].astype(npd))
        return out + (cnt[order].astype(npd),) if counts else out

    return run


register_kernel("Unique")(_unique)
register_kernel("UniqueWithCounts")(_unique)


@register_kernel("LinSpace")
def _linspace(op, ctx):
    def run(start, stop, num):
        n = int(num)
        if n <= 0:
            raise errors.InvalidArgumentError(
                None, op, f"linspace: num must be positive, got {n} ({op.describe()})")
        return np.linspace(start, stop, n, dtype=np.asarray(start).dtype)

    return run

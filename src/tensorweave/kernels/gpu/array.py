"""GPU kernels for array ops: shapes, reshape/transpose, concat/split/stack, slicing, gather and
scatter, padding, tiling, one-hot. Index arithmetic (shapes, axes, begin/size, paddings) is done
on the host, from ``be.host``; the data never leaves the device.

Unlike the CPU kernels, gathers do not check their indices (that would wait for the device each
step): out-of-range indices wrap, as CuPy's ``take`` does, and TensorFlow's GPU kernels do not
raise either. Segment sums drop out-of-range ids."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import get_kernel_factory
from tensorweave.kernels.gpu.common import int_list, one_or_tuple, simple, to_int


def _identity(x):
    return x


def _bad_index(op, msg):
    return errors.InvalidArgumentError(None, op, f"{msg} (op {op.describe()})")


def kernels(be):
    xp = be.xp

    def host_result(npd_attr="out_type"):
        """Shape-like results are computed on the host and copied once per distinct value."""
        def factory_for(fn):
            def factory(op, ctx):
                npd = op.attrs[npd_attr].as_numpy_dtype if npd_attr else np.int32
                return lambda *xs: fn(npd, *xs)

            return factory

        return factory_for

    @host_result()
    def shape(npd, x):
        return be.small(x.shape, npd)

    @host_result()
    def size(npd, x):
        return be.small(x.size, npd)

    @host_result(None)
    def rank(npd, x):
        return be.small(x.ndim, np.int32)

    def shape_n(op, ctx):
        npd = op.attrs["out_type"].as_numpy_dtype
        return lambda *xs: one_or_tuple(be.small(x.shape, npd) for x in xs)

    def reshape(op, ctx):
        return lambda x, s: x.reshape(tuple(int_list(be, s)))

    def fill(op, ctx):
        return lambda dims, value: xp.broadcast_to(value, tuple(int_list(be, dims))).copy()

    def unsorted_segment_sum(op, ctx):
        def run(data, ids, num):
            n = to_int(be, num)
            tail = data.shape[ids.ndim:]
            out = xp.zeros((n,) + tail, dtype=data.dtype)
            keep = (ids >= 0) & (ids < n)  # TF's GPU kernel drops what the CPU one rejects
            safe = xp.where(keep, ids, xp.zeros((), ids.dtype))
            vals = xp.where(keep.reshape(keep.shape + (1,) * len(tail)), data,
                            xp.zeros((), data.dtype))
            xp.add.at(out, safe, vals)
            return out

        return run

    def broadcast_to(op, ctx):
        return lambda x, s: xp.broadcast_to(x, tuple(int_list(be, s)))

    def transpose(op, ctx):
        return lambda x, perm: xp.transpose(x, tuple(int_list(be, perm)))

    def invert_permutation(op, ctx):
        def run(p):
            hp = be.host(p)
            return be.small(np.argsort(hp, kind="stable").astype(hp.dtype, copy=False))

        return run

    def concat(op, ctx):
        return lambda *args: xp.concatenate(args[:-1], axis=to_int(be, args[-1]))

    def split(op, ctx):
        n = op.attrs["num_split"]
        return lambda axis, x: one_or_tuple(xp.split(x, n, axis=to_int(be, axis)))

    def splitv(op, ctx):
        def run(x, sizes, axis):
            axis = to_int(be, axis)
            sizes = int_list(be, sizes)
            if -1 in sizes:
                sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
            if sum(sizes) != x.shape[axis] or min(sizes, default=0) < 0:
                raise _bad_index(op, f"size_splits {sizes} do not sum to dimension {axis} of "
                                 f"shape {list(x.shape)}")
            return one_or_tuple(xp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis))

        return run

    def pack(op, ctx):
        axis = op.attrs["axis"]
        return lambda *xs: xp.stack(xs, axis=axis)

    def unpack(op, ctx):
        axis = op.attrs["axis"]

        def run(x):
            m = xp.moveaxis(x, axis, 0)
            return one_or_tuple(m[i] for i in range(m.shape[0]))

        return run

    def slice_(op, ctx):
        def run(x, begin, size):
            b_, s_ = int_list(be, begin), int_list(be, size)
            key = []
            for i, (b, s) in enumerate(zip(b_, s_)):
                d = x.shape[i]
                e = d if s == -1 else b + s
                if not 0 <= b <= e <= d:
                    raise _bad_index(op, f"Slice begin {b_} and size {s_} are out of range "
                                     f"for shape {list(x.shape)}")
                key.append(slice(b, e))
            return x[tuple(key)]

        return run

    def strided_slice(op, ctx):
        from tensorweave.ops.array_ops import strided_slice_key

        def run(x, begin, end, strides):
            key = strided_slice_key(int_list(be, begin), int_list(be, end),
                                    int_list(be, strides), op.attrs)
            try:
                return x[key]
            except IndexError as e:
                raise _bad_index(op, f"slice {e} for shape {list(x.shape)}") from None

        return run

    def strided_slice_grad(op, ctx):
        from tensorweave.ops.array_ops import strided_slice_key

        def run(shape, begin, end, strides, dy):
            out = xp.zeros(tuple(int_list(be, shape)), dtype=dy.dtype)
            out[strided_slice_key(int_list(be, begin), int_list(be, end),
                                  int_list(be, strides), op.attrs)] = dy
            return out

        return run

    def gather(op, ctx):
        return lambda params, indices, axis: xp.take(params, indices, axis=to_int(be, axis))

    def gather_nd(op, ctx):
        def run(params, indices):
            k = indices.shape[-1]
            if not k:
                return xp.broadcast_to(params, indices.shape[:-1] + params.shape).copy()
            return params[tuple(indices[..., j] for j in range(k))]

        return run

    def scatter_nd(op, ctx):
        def run(indices, updates, shape):
            out = xp.zeros(tuple(int_list(be, shape)), dtype=updates.dtype)
            k = indices.shape[-1]
            xp.add.at(out, tuple(indices[..., j] for j in range(k)), updates)
            return out

        return run

    def where(op, ctx):
        return lambda c: xp.argwhere(c).astype(xp.int64)

    def dynamic_stitch(op, ctx):
        n = op.attrs["N"]

        def run(*args):
            idx, data = args[:n], args[n:]
            rows = max([to_int(be, i.max()) + 1 for i in idx if i.size] or [0])
            tail = data[0].shape[idx[0].ndim:]
            out = xp.zeros((rows,) + tail, dtype=data[0].dtype)
            for i, d in zip(idx, data):
                out[i.reshape(-1)] = d.reshape((-1,) + tail)
            return out

        return run

    def pads(be_p):
        return tuple((a, b) for a, b in np.asarray(be.host(be_p)).reshape(-1, 2).tolist())

    def pad(op, ctx):
        return lambda x, p: xp.pad(x, pads(p))

    def padv2(op, ctx):
        return lambda x, p, c: xp.pad(x, pads(p), constant_values=be.host(c).item())

    def mirror_pad(op, ctx):
        mode = op.attrs["mode"].lower()
        return lambda x, p: xp.pad(x, pads(p), mode=mode)

    def mirror_pad_grad(op, ctx):
        # folds each padded border back onto the entries it mirrored
        shift = 1 if op.attrs["mode"] == "REFLECT" else 0

        def run(g, paddings):
            out = g
            for axis, (lo, hi) in enumerate(pads(paddings)):
                if not lo and not hi:
                    continue
                t = xp.moveaxis(out, axis, 0)
                n = t.shape[0] - lo - hi
                r = t[lo:lo + n].copy()
                if lo:
                    r[shift:shift + lo] += t[:lo][::-1]
                if hi:
                    r[n - shift - hi:n - shift] += t[lo + n:][::-1]
                out = xp.moveaxis(r, 0, axis)
            return out if out is not g else g.copy()

        return run

    def squeeze(op, ctx):
        axes = tuple(op.attrs["squeeze_dims"])
        return (lambda x: xp.squeeze(x, axis=axes)) if axes else xp.squeeze

    def range_(op, ctx):
        npd = op.attrs.get("Tidx", op.inputs[0].dtype).as_numpy_dtype

        def run(start, limit, delta):
            s, lim, d = (be.host(v).item() for v in (start, limit, delta))
            return xp.arange(s, lim, d, dtype=npd)

        return run

    def one_hot(op, ctx):
        axis = op.attrs["axis"]

        def run(indices, depth, on, off):
            hot = xp.expand_dims(indices, -1) == xp.arange(to_int(be, depth))
            out = xp.where(hot, on, off).astype(on.dtype, copy=False)
            return out if axis == -1 else xp.moveaxis(out, -1, axis)

        return run

    def broadcast_gradient_args(op, ctx):
        npd = op.attrs["T"].as_numpy_dtype

        def run(s0, s1):
            a0, a1 = int_list(be, s0), int_list(be, s1)
            n = max(len(a0), len(a1))
            a = [1] * (n - len(a0)) + a0
            b = [1] * (n - len(a1)) + a1
            r0 = [i for i in range(n) if i < n - len(a0) or (a[i] == 1 and b[i] != 1)]
            r1 = [i for i in range(n) if i < n - len(a1) or (b[i] == 1 and a[i] != 1)]
            return be.small(np.array(r0, dtype=npd)), be.small(np.array(r1, dtype=npd))

        return run

    return {
        # the CPU kernel only raises (an unfed placeholder): it is device-free
        "Placeholder": get_kernel_factory("Placeholder", "CPU"),
        "PlaceholderWithDefault": simple(_identity), "Identity": simple(_identity),
        "StopGradient": simple(_identity), "Shape": shape, "Size": size, "Rank": rank,
        "ShapeN": shape_n, "Reshape": reshape, "Fill": fill,
        "ZerosLike": simple(xp.zeros_like), "OnesLike": simple(xp.ones_like),
        "UnsortedSegmentSum": unsorted_segment_sum, "BroadcastTo": broadcast_to,
        "Transpose": transpose, "InvertPermutation": invert_permutation, "ConcatV2": concat,
        "Split": split, "SplitV": splitv, "Pack": pack, "Unpack": unpack, "Slice": slice_,
        "StridedSlice": strided_slice, "StridedSliceGrad": strided_slice_grad,
        "GatherV2": gather, "GatherNd": gather_nd, "ScatterNd": scatter_nd, "Where": where,
        "DynamicStitch": dynamic_stitch, "Pad": pad, "PadV2": padv2, "MirrorPad": mirror_pad,
        "MirrorPadGrad": mirror_pad_grad,
        "Tile": simple(lambda x, m: xp.tile(x, tuple(int_list(be, m)))),
        "ExpandDims": simple(lambda x, a: xp.expand_dims(x, to_int(be, a))),
        "Squeeze": squeeze,
        "ReverseV2": simple(lambda x, a: xp.flip(x, tuple(int_list(be, a)))),
        "Range": range_, "OneHot": one_hot, "BroadcastGradientArgs": broadcast_gradient_args,
    }

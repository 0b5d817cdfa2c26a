"""Gradients of ops/array_ops.py."""

from __future__ import annotations

import numpy as np

from tensorweave.framework.constant_op import constant
from tensorweave.framework.dtypes import int32 as tw_int32
from tensorweave.framework.ops import IndexedSlices
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient
from tensorweave.ops import array_ops


@RegisterGradient("Identity")
def _identity_grad(op, grad):
    return [grad]


@RegisterGradient("PlaceholderWithDefault")
def _pwd_grad(op, grad):
    return [grad]


@RegisterGradient("Reshape")
def _reshape_grad(op, grad):
    x = op.inputs[0]
    if x.shape.is_fully_defined():
        return [array_ops.reshape(grad, x.shape.as_list()), None]
    return [array_ops.reshape(grad, array_ops.shape(x)), None]


@RegisterGradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(op, grad):
    return [_gather_drop_negatives(grad, op.inputs[1]), None, None]


def _gather_drop_negatives(params, ids):
    """``params[ids]`` with zero rows where ``ids`` is negative (those rows were dropped)."""
    from tensorweave.framework.constant_op import constant_value
    from tensorweave.ops import math_ops
    v = constant_value(ids)
    if v is not None and (np.asarray(v) >= 0).all():
        return array_ops.gather(params, ids)
    if not (hasattr(math_ops, "maximum") and hasattr(math_ops, "greater_equal")):
        return array_ops.gather(params, ids)  # negative ids then fail with a clear error
    zero = array_ops.zeros_like(ids, optimize=False)
    rows = array_ops.gather(params, math_ops.maximum(ids, zero))
    keep = math_ops.cast(math_ops.greater_equal(ids, zero), rows.dtype)
    extra = array_ops.ones([array_ops.rank(rows) - array_ops.rank(ids)], dtype=tw_int32)
    keep = array_ops.reshape(keep, array_ops.concat([array_ops.shape(ids), extra], 0))
    return rows * keep


for _t in ("StopGradient", "Shape", "ZerosLike", "OnesLike", "Placeholder", "Const",
           "VariableV2", "IsVariableInitialized"):
    NotDifferentiable(_t)


@RegisterGradient("Fill")
def _fill_grad(op, grad):
    from tensorweave.ops import math_ops
    return [None, math_ops.reduce_sum(grad)]


@RegisterGradient("BroadcastTo")
def _broadcast_to_grad(op, grad):
    from tensorweave.gradients.math_grad import sum_to_shape
    return [sum_to_shape(grad, op.inputs[0]), None]


NotDifferentiable("Size")
NotDifferentiable("Rank")


# --- layout ---------------------------------------------------------------------------------
def _const_or(t):
    from tensorweave.framework.constant_op import constant_value
    return constant_value(t)


@RegisterGradient("Transpose")
def _transpose_grad(op, grad):
    p = _const_or(op.inputs[1])
    if p is not None:
        inv = constant(np.argsort(np.ravel(p)).astype(np.int32))
    else:
        inv = array_ops.invert_permutation(op.inputs[1])
    return [array_ops.transpose(grad, inv), None]


@RegisterGradient("ExpandDims")
def _expand_dims_grad(op, grad):
    return [array_ops._reshape_like(grad, op.inputs[0]), None]


@RegisterGradient("Squeeze")
def _squeeze_grad(op, grad):
    return [array_ops._reshape_like(grad, op.inputs[0])]


@RegisterGradient("ReverseV2")
def _reverse_grad(op, grad):
    return [array_ops.reverse(grad, op.inputs[1]), None]


# --- joining and splitting -------------------------------------------------------------------
def _canonical_axis(axis, like):
    """``axis`` as a non-negative int when known at build time, else a non-negative tensor."""
    a = _const_or(axis)
    rank = like.shape.ndims
    if a is not None and (int(a) >= 0 or rank is not None):
        return int(a) % rank if rank else int(a)
    from tensorweave.ops import math_ops
    r = array_ops.rank(like)
    pos = array_ops.range(0, r, 1)
    return array_ops.gather(array_ops.concat([pos, pos], 0),
                            math_ops.add(math_ops.cast(axis, r.dtype), r))


@RegisterGradient("ConcatV2")
def _concat_grad(op, grad):
    values, axis = op.inputs[:-1], op.inputs[-1]
    a = _canonical_axis(axis, values[0])
    if isinstance(a, int):
        dims = [v.shape[a].value if v.shape.ndims is not None else None for v in values]
        if None not in dims:
            return array_ops.split(grad, dims, axis=a) + [None]
    sizes = array_ops.stack([array_ops.gather(array_ops.shape(v), a) for v in values])
    return array_ops.split(grad, sizes, axis=a, num=len(values)) + [None]


@RegisterGradient("Split")
def _split_grad(op, *grads):
    return [None, array_ops.concat(list(grads), op.inputs[0])]


@RegisterGradient("SplitV")
def _splitv_grad(op, *grads):
    return [array_ops.concat(list(grads), op.inputs[2]), None, None]


@RegisterGradient("Pack")
def _pack_grad(op, grad):
    return array_ops.unstack(grad, num=op.attrs["N"], axis=op.attrs["axis"])


@RegisterGradient("Unpack")
def _unpack_grad(op, *grads):
    return [array_ops.stack(list(grads), axis=op.attrs["axis"])]


# --- slicing -------------------------------------------------------------------------------
@RegisterGradient("Slice")
def _slice_grad(op, grad):
    x, begin, _ = op.inputs
    y = op.outputs[0]
    b = _const_or(begin)
    if b is not None and x.shape.is_fully_defined() and y.shape.is_fully_defined():
        b = np.ravel(b).astype(np.int64)
        after = np.array(x.shape.as_list()) - np.array(y.shape.as_list()) - b
        paddings = constant(np.stack([b, after], 1).astype(np.int32))
    else:
        from tensorweave.ops import math_ops
        after = math_ops.subtract(
            math_ops.subtract(array_ops.shape(x, out_type=begin.dtype),
                              array_ops.shape(y, out_type=begin.dtype)), begin)
        paddings = array_ops.stack([begin, after], axis=1)
    return [array_ops.pad(grad, paddings), None, None]


def _masks(op):
    return {m: op.attrs[m] for m in array_ops._MASKS}


@RegisterGradient("StridedSlice")
def _strided_slice_grad(op, grad):
    x, begin, end, strides = op.inputs
    return [array_ops.strided_slice_grad(array_ops._shape_as(x, begin.dtype), begin, end,
                                         strides, grad, **_masks(op)), None, None, None]


@RegisterGradient("StridedSliceGrad")
def _strided_slice_grad_grad(op, grad):
    _, begin, end, strides, _ = op.inputs
    return [None, None, None, None,
            array_ops.strided_slice(grad, begin, end, strides, **_masks(op))]


# --- gather / scatter ------------------------------------------------------------------------
@RegisterGradient("GatherV2")
def _gather_grad(op, grad):
    params, indices, axis = op.inputs
    a = _const_or(axis)
    if a is not None and params.shape.ndims is not None:
        a = int(a) % params.shape.ndims
    if a == 0:
        # sparse, as TensorFlow: rows of the gradient and the rows they belong to
        tail = params.shape[1:]
        if indices.shape.ndims == 1:
            values = grad
        elif tail.is_fully_defined():
            values = array_ops.reshape(grad, [-1] + tail.as_list())
        else:
            values = array_ops.reshape(grad, array_ops.concat(
                [[-1], array_ops.shape(params)[1:]], 0))
        return [IndexedSlices(values, array_ops.reshape(indices, [-1]), array_ops.shape(params)),
                None, None]
    return [_gather_dense_grad(params, indices, a, grad), None, None]


def _gather_dense_grad(params, indices, a, grad):
    pr, ir = params.shape.ndims, indices.shape.ndims
    if a is None or pr is None or ir is None:
        raise NotImplementedError("The gradient of gather with axis != 0 needs a constant axis "
                                  "and params and indices of known rank")
    # move the gathered axes to the front, sum rows per index, move the result back
    perm = list(range(a, a + ir)) + list(range(a)) + list(range(a + ir, pr - 1 + ir))
    g = array_ops.transpose(grad, perm)
    pshape = array_ops.shape(params)
    rest = array_ops.concat([pshape[:a], pshape[a + 1:]], 0)
    g = array_ops.reshape(g, array_ops.concat([[-1], rest], 0))
    summed = array_ops.unsorted_segment_sum(g, array_ops.reshape(indices, [-1]), pshape[a])
    back = list(range(1, a + 1)) + [0] + list(range(a + 1, pr))
    return array_ops.transpose(summed, back)


@RegisterGradient("GatherNd")
def _gather_nd_grad(op, grad):
    params, indices = op.inputs
    return [array_ops.scatter_nd(indices, grad, array_ops._shape_as(params, indices.dtype)),
            None]


@RegisterGradient("ScatterNd")
def _scatter_nd_grad(op, grad):
    return [None, array_ops.gather_nd(grad, op.inputs[0]), None]


@RegisterGradient("DynamicStitch")
def _dynamic_stitch_grad(op, grad):
    n = op.attrs["N"]
    return [None] * n + [array_ops.gather(grad, i) for i in op.inputs[:n]]


# --- padding and tiling ----------------------------------------------------------------------
@RegisterGradient("Pad")
def _pad_grad(op, grad):
    x, paddings = op.inputs[:2]
    p = _const_or(paddings)
    if p is not None:
        begin = constant(np.asarray(p)[:, 0].astype(np.int32))
        size = array_ops._shape_as(x)
    else:
        begin = array_ops.reshape(array_ops.slice(paddings, [0, 0], [-1, 1]), [-1])
        size = array_ops._shape_as(x, paddings.dtype)
    return [array_ops.slice(grad, begin, size), None] + [None] * (len(op.inputs) - 2)


RegisterGradient("PadV2")(_pad_grad)


@RegisterGradient("MirrorPad")
def _mirror_pad_grad(op, grad):
    return [array_ops._mirror_pad_grad(grad, op.inputs[1], op.attrs["mode"]), None]


@RegisterGradient("MirrorPadGrad")
def _mirror_pad_grad_grad(op, grad):
    return [array_ops.pad(grad, op.inputs[1], mode=op.attrs["mode"]), None]


@RegisterGradient("Tile")
def _tile_grad(op, grad):
    from tensorweave.ops import math_ops
    x, multiples = op.inputs
    rank = x.shape.ndims
    m = _const_or(multiples)
    if rank == 0:
        return [grad, None]
    if m is not None and x.shape.is_fully_defined():
        # view each tiled axis as (multiple, size) and sum the multiples away
        split = [int(v) for pair in zip(np.ravel(m), x.shape.as_list()) for v in pair]
        g = math_ops.reduce_sum(array_ops.reshape(grad, split), list(range(0, 2 * rank, 2)))
        return [array_ops.reshape(g, x.shape.as_list()), None]
    xs = array_ops.shape(x, out_type=multiples.dtype)
    split = array_ops.reshape(array_ops.transpose(array_ops.stack([multiples, xs])), [-1])
    axes = array_ops.range(0, array_ops.size(split), 2)
    g = math_ops.reduce_sum(array_ops.reshape(grad, split), axes)
    return [array_ops._reshape_like(g, x), None]


for _t in ("InvertPermutation", "Range", "OneHot", "Where", "ShapeN", "BroadcastGradientArgs"):
    NotDifferentiable(_t)


NotDifferentiable("Unique")  # as in TensorFlow: integer positions and a data-dependent size
NotDifferentiable("UniqueWithCounts")
NotDifferentiable("LinSpace")

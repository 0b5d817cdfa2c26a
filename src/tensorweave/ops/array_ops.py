"""Array ops: placeholders, identity, shapes, reshaping, filling, slicing, joining, gathering.

Each op type is declared here (inference); its CPU kernel is in kernels/cpu/array.py and its
gradient in gradients/array_grad.py.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.common_shapes import unchanged
from tensorweave.framework.constant_op import constant, constant_value, constant_value_as_shape
from tensorweave.framework.ops import convert_to_tensor, get_default_graph
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape, as_shape
from tensorweave.ops.op_util import make

# --- placeholders -------------------------------------------------------------------------


@register_op("Placeholder")
def _placeholder_infer(op):
    return [(op.attrs["dtype"], op.attrs["shape"])]


def placeholder(dtype, shape=None, name=None):
    """A tensor whose value must be fed: ``x = tw.placeholder(tw.float32, [None, 784])``."""
    return get_default_graph().create_op(
        "Placeholder", [], {"dtype": dtypes.as_dtype(dtype), "shape": as_shape(shape)},
        name=name or "Placeholder").outputs[0]


@register_op("PlaceholderWithDefault", view_of=0)
def _placeholder_default_infer(op):
    return [(op.inputs[0].dtype, op.attrs["shape"])]


def placeholder_with_default(input, shape, name=None):  # noqa: A002  (TF's argument name)
    """A placeholder that yields ``input`` when not fed."""
    x = convert_to_tensor(input)
    shape = as_shape(shape)
    if not shape.is_compatible_with(x.shape):
        raise ValueError(f"Default value of shape {x.shape} is not compatible with the "
                         f"placeholder's shape {shape}")
    return make("PlaceholderWithDefault", [x], {"shape": shape, "dtype": x.dtype},
                name=name or "PlaceholderWithDefault")


# --- identity ---------------------------------------------------------------------------------
register_op("Identity", view_of=0)(unchanged)
register_op("StopGradient", view_of=0)(unchanged)


def identity(input, name=None):  # noqa: A002
    """Returns a tensor with the same value as ``input``."""
    if hasattr(input, "_snapshot"):
        input = input._snapshot
    return make("Identity", [convert_to_tensor(input)], {}, name=name or "Identity")


def stop_gradient(input, name=None):  # noqa: A002
    """The value of ``input``; gradients do not flow through it."""
    return make("StopGradient", [convert_to_tensor(input)], {}, name=name or "StopGradient")


# --- shapes -------------------------------------------------------------------------------------
@register_op("Shape")
def _shape_infer(op):
    x = op.inputs[0]
    return [(op.attrs["out_type"], TensorShape([x.shape.ndims]))]


def shape(input, name=None, out_type=dtypes.int32):  # noqa: A002
    """The dynamic shape of ``input`` as a 1-D int tensor."""
    return make("Shape", [convert_to_tensor(input)], {"out_type": dtypes.as_dtype(out_type)},
                name=name or "Shape")


@register_op("Reshape", view_of=0)
def _reshape_infer(op):
    x, s = op.inputs
    target = constant_value_as_shape(s)
    dims = target.as_tuple()
    n_in = x.shape.num_elements()
    if dims is not None and n_in is not None:
        known = [d for d in dims if d is not None]
        prod = int(np.prod(known)) if known else 1
        unknown = [i for i, d in enumerate(dims) if d is None]
        if not unknown and prod != n_in:
            raise ValueError(f"Cannot reshape a tensor with {n_in} elements to shape "
                             f"{list(dims)} ({prod} elements)")
        if len(unknown) == 1 and (prod == 0 or n_in % prod):
            raise ValueError(f"Cannot reshape a tensor of shape {x.shape} ({n_in} elements) to "
                             f"shape {[-1 if d is None else d for d in dims]}")
        if len(unknown) == 1:
            dims = tuple(n_in // prod if d is None else d for d in dims)
    return [(x.dtype, TensorShape(dims))]


def reshape(tensor, shape, name=None):
    """``tw.reshape(x, [-1, 784])``: one dimension may be -1 (inferred)."""
    x = convert_to_tensor(tensor)
    return make("Reshape", [x, convert_to_tensor(shape, dtype=dtypes.int32)], {},
                name=name or "Reshape")


@register_op("Fill")
def _fill_infer(op):
    dims, value = op.inputs
    if value.shape.ndims not in (None, 0):
        raise ValueError(f"Fill's value must be a scalar, got shape {value.shape}")
    return [(value.dtype, constant_value_as_shape(dims))]


def fill(dims, value, name=None):
    return make("Fill", [convert_to_tensor(dims, dtype=dtypes.int32), convert_to_tensor(value)],
                {}, name=name or "Fill")


def zeros(shape, dtype=dtypes.float32, name=None):
    """A tensor of zeros: ``tw.zeros([3, 4])``."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(shape, (list, tuple, int, np.ndarray, TensorShape)) and \
            not any(hasattr(d, "op") for d in np.atleast_1d(np.asarray(shape, dtype=object))):
        return constant(np.zeros(tuple(as_shape(shape).as_list()), dtype.as_numpy_dtype),
                        name=name or "zeros")
    return fill(shape, constant(0, dtype=dtype), name=name or "zeros")


def ones(shape, dtype=dtypes.float32, name=None):
    dtype = dtypes.as_dtype(dtype)
    if isinstance(shape, (list, tuple, int, np.ndarray, TensorShape)) and \
            not any(hasattr(d, "op") for d in np.atleast_1d(np.asarray(shape, dtype=object))):
        return constant(np.ones(tuple(as_shape(shape).as_list()), dtype.as_numpy_dtype),
                        name=name or "ones")
    return fill(shape, constant(1, dtype=dtype), name=name or "ones")


@register_op("ZerosLike")
def _zeros_like_infer(op):
    return [(op.inputs[0].dtype, op.inputs[0].shape)]


register_op("OnesLike")(_zeros_like_infer)


def zeros_like(tensor, dtype=None, name=None, optimize=True):
    x = convert_to_tensor(tensor)
    if dtype is not None and dtypes.as_dtype(dtype) != x.dtype:
        return zeros(shape(x), dtype=dtype, name=name)
    if optimize and x.shape.is_fully_defined():
        return constant(np.zeros(x.shape.as_list(), x.dtype.as_numpy_dtype),
                        name=name or "zeros_like")
    return make("ZerosLike", [x], {}, name=name or "zeros_like")


def ones_like(tensor, dtype=None, name=None, optimize=True):
    x = convert_to_tensor(tensor)
    if dtype is not None and dtypes.as_dtype(dtype) != x.dtype:
        return ones(shape(x), dtype=dtype, name=name)
    if optimize and x.shape.is_fully_defined():
        return constant(np.ones(x.shape.as_list(), x.dtype.as_numpy_dtype),
                        name=name or "ones_like")
    return make("OnesLike", [x], {}, name=name or "ones_like")


def slice_helper(tensor, key):
    """``x[1:, ::2, tw.newaxis, ..., 0]``: replaced by the StridedSlice builder below."""
    raise NotImplementedError("Tensor slicing is implemented by the array-ops family")


__all__ = ["placeholder", "placeholder_with_default", "identity", "stop_gradient", "shape",
           "reshape", "fill", "zeros", "ones", "zeros_like", "ones_like", "constant",
           "constant_value"]


@register_op("UnsortedSegmentSum")
def _unsorted_segment_sum_infer(op):
    data, ids, num = op.inputs
    n = constant_value(num)
    ids_rank = ids.shape.ndims
    if data.shape.ndims is None or ids_rank is None:
        return [(data.dtype, TensorShape(None))]
    return [(data.dtype, TensorShape([None if n is None else int(n)])
             .concatenate(data.shape[ids_rank:]))]


def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """``out[segment_ids[i]] += data[i]`` over ``num_segments`` rows."""
    return make("UnsortedSegmentSum",
                [convert_to_tensor(data), convert_to_tensor(segment_ids),
                 convert_to_tensor(num_segments, dtype=dtypes.int32)], {},
                name=name or "UnsortedSegmentSum")


__all__ += ["unsorted_segment_sum"]


@register_op("BroadcastTo")
def _broadcast_to_infer(op):
    from tensorweave.framework.tensor_shape import broadcast_shape
    x, s = op.inputs
    target = constant_value_as_shape(s)
    out = broadcast_shape(x.shape, target)
    if target.ndims is not None and out.ndims is not None and out.ndims != target.ndims:
        raise ValueError(f"Cannot broadcast shape {x.shape} to {target}")
    return [(x.dtype, target.merge_with(out) if target.ndims is not None else out)]


def broadcast_to(input, shape, name=None):  # noqa: A002
    """Broadcasts ``input`` to ``shape`` (NumPy rules)."""
    return make("BroadcastTo", [convert_to_tensor(input),
                                convert_to_tensor(shape, dtype=dtypes.int32)], {},
                name=name or "BroadcastTo")


@register_op("Size")
def _size_infer(op):
    return [(op.attrs["out_type"], TensorShape([]))]


def size(input, name=None, out_type=dtypes.int32):  # noqa: A002
    return make("Size", [convert_to_tensor(input)], {"out_type": dtypes.as_dtype(out_type)},
                name=name or "Size")


@register_op("Rank")
def _rank_infer(op):
    return [(dtypes.int32, TensorShape([]))]


def rank(input, name=None):  # noqa: A002
    return make("Rank", [convert_to_tensor(input)], {}, name=name or "Rank")


__all__ += ["broadcast_to", "size", "rank"]

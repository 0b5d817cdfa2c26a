"""Array ops: placeholders, identity, shapes, reshaping, filling, slicing, joining, gathering.

Each op type is declared here (inference); its CPU kernel is in kernels/cpu/array.py and its
gradient in gradients/array_grad.py.
"""

from __future__ import annotations

import builtins

import numpy as np

from tensorweave.framework import dtypes, ops
from tensorweave.framework.common_shapes import unchanged
from tensorweave.framework.constant_op import constant, constant_value, constant_value_as_shape
from tensorweave.framework.ops import Tensor, convert_to_tensor, get_default_graph, name_scope
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape, as_shape
from tensorweave.ops.op_util import make, make_op

# this module defines TF's ``range`` and ``slice``; the builtins stay reachable under these names
builtins_range = builtins.range
builtins_slice = builtins.slice

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
    entries = _reshape_entries(s, x)
    if entries is None:
        return [(x.dtype, constant_value_as_shape(s))]
    xd = x.shape.as_tuple()
    out = [xd[e[1]] if isinstance(e, tuple) else (None if e == -1 else e) for e in entries]
    if xd is None or entries.count(-1) > 1:
        return [(x.dtype, TensorShape(out))]
    # x's unknown dims that reappear in the target (``tw.shape(x)[0]``) cancel out
    unknown_in = [i for i, d in enumerate(xd) if d is None]
    prod_in = int(np.prod([d for d in xd if d is not None]))
    prod_out, open_out = 1, False
    for e in entries:
        if isinstance(e, tuple) and xd[e[1]] is None and e[1] in unknown_in:
            unknown_in.remove(e[1])
        elif isinstance(e, tuple) and xd[e[1]] is not None:
            prod_out *= xd[e[1]]
        elif e is None or isinstance(e, tuple):
            open_out = True
        elif e != -1:
            prod_out *= e
    if unknown_in or open_out:
        return [(x.dtype, TensorShape(out))]
    target = [-1 if d is None else d for d in out]
    if -1 not in entries:
        if prod_in != prod_out:
            raise ValueError(f"Cannot reshape a tensor of shape {x.shape} ({prod_in} elements) "
                             f"to shape {target} ({prod_out} elements)")
        return [(x.dtype, TensorShape(out))]
    if prod_out == 0 or prod_in % prod_out:
        if prod_in == 0:  # zero elements: -1 is ambiguous
            return [(x.dtype, TensorShape(out))]
        raise ValueError(f"Cannot reshape a tensor of shape {x.shape} ({prod_in} elements) to "
                         f"shape {target}: {prod_in} is not divisible by {prod_out}")
    out[entries.index(-1)] = prod_in // prod_out
    return [(x.dtype, TensorShape(out))]


def _reshape_entries(s, x):
    """Reshape's target as a list of ints (-1 kept), None for unknown entries and ``("ref", i)``
    for ``tw.shape(x)[i]`` of the reshaped tensor itself; None when its length is unknown."""
    v = constant_value(s)
    if v is not None:
        return [int(a) for a in np.asarray(v).reshape(-1)]
    if s.op.type == "Pack" and s.op.attrs.get("axis", 0) == 0 and s.shape.ndims == 1:
        out = []
        for t in s.op.inputs:
            ref = _shape_ref(t)
            if ref is not None and ref[0] is x:
                out.append(("ref", ref[1]))
            else:
                out.append(_static_scalar(t))
        return out
    dims = constant_value_as_shape(s).as_tuple()
    return None if dims is None else list(dims)


def reshape(tensor, shape, name=None):
    """``tw.reshape(x, [-1, 784])``: one dimension may be -1 (inferred)."""
    x = convert_to_tensor(tensor)
    return make("Reshape", [x, _shape_arg(shape, "shape")], {}, name=name or "Reshape")


@register_op("Fill")
def _fill_infer(op):
    dims, value = op.inputs
    if value.shape.ndims not in (None, 0):
        raise ValueError(f"Fill's value must be a scalar, got shape {value.shape}")
    return [(value.dtype, _target_shape(dims))]


def fill(dims, value, name=None):
    """A tensor of shape ``dims`` filled with the scalar ``value``."""
    return make("Fill", [_shape_arg(dims, "dims"), convert_to_tensor(value)], {},
                name=name or "Fill")


def zeros(shape, dtype=dtypes.float32, name=None):
    """A tensor of zeros: ``tw.zeros([3, 4])``."""
    dtype = dtypes.as_dtype(dtype)
    if isinstance(shape, (list, tuple, int, np.ndarray, TensorShape)) and \
            not any(hasattr(d, "op") for d in np.atleast_1d(np.asarray(shape, dtype=object))):
        return constant(np.zeros(tuple(as_shape(shape).as_list()), dtype.as_numpy_dtype),
                        name=name or "zeros")
    return fill(shape, constant(0, dtype=dtype), name=name or "zeros")


def ones(shape, dtype=dtypes.float32, name=None):
    """A tensor of ones: ``tw.ones([3, 4])``."""
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
    """Zeros with the shape (and by default the dtype) of ``tensor``."""
    x = convert_to_tensor(tensor)
    if dtype is not None and dtypes.as_dtype(dtype) != x.dtype:
        return zeros(shape(x), dtype=dtype, name=name)
    if optimize and x.shape.is_fully_defined():
        return constant(np.zeros(x.shape.as_list(), x.dtype.as_numpy_dtype),
                        name=name or "zeros_like")
    return make("ZerosLike", [x], {}, name=name or "zeros_like")


def ones_like(tensor, dtype=None, name=None, optimize=True):
    """Ones with the shape (and by default the dtype) of ``tensor``."""
    x = convert_to_tensor(tensor)
    if dtype is not None and dtypes.as_dtype(dtype) != x.dtype:
        return ones(shape(x), dtype=dtype, name=name)
    if optimize and x.shape.is_fully_defined():
        return constant(np.ones(x.shape.as_list(), x.dtype.as_numpy_dtype),
                        name=name or "ones_like")
    return make("OnesLike", [x], {}, name=name or "ones_like")


@register_op("UnsortedSegmentSum")
def _unsorted_segment_sum_infer(op):
    data, ids, num = op.inputs
    n = _static_scalar(num)
    ids_rank = ids.shape.ndims
    if data.shape.ndims is None or ids_rank is None:
        return [(data.dtype, TensorShape(None))]
    return [(data.dtype, TensorShape([n])
             .concatenate(data.shape[ids_rank:]))]


def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """``out[segment_ids[i]] += data[i]`` over ``num_segments`` rows."""
    return make("UnsortedSegmentSum",
                [convert_to_tensor(data), convert_to_tensor(segment_ids),
                 convert_to_tensor(num_segments, dtype=dtypes.int32)], {},
                name=name or "UnsortedSegmentSum")


@register_op("BroadcastTo", view_of=0)
def _broadcast_to_infer(op):
    from tensorweave.framework.tensor_shape import broadcast_shape
    x, s = op.inputs
    target = _target_shape(s)
    out = broadcast_shape(x.shape, target)
    if target.ndims is not None and out.ndims is not None and out.ndims != target.ndims:
        raise ValueError(f"Cannot broadcast shape {x.shape} to {target}")
    return [(x.dtype, target.merge_with(out) if target.ndims is not None else out)]


def broadcast_to(input, shape, name=None):  # noqa: A002
    """Broadcasts ``input`` to ``shape`` (NumPy rules)."""
    return make("BroadcastTo", [convert_to_tensor(input),
                                _shape_arg(shape, "shape")], {},
                name=name or "BroadcastTo")


@register_op("Size")
def _size_infer(op):
    return [(op.attrs["out_type"], TensorShape([]))]


def size(input, name=None, out_type=dtypes.int32):  # noqa: A002
    """The number of elements of ``input`` as a scalar int tensor."""
    return make("Size", [convert_to_tensor(input)], {"out_type": dtypes.as_dtype(out_type)},
                name=name or "Size")


@register_op("Rank")
def _rank_infer(op):
    return [(dtypes.int32, TensorShape([]))]


def rank(input, name=None):  # noqa: A002
    """The number of dimensions of ``input`` as a scalar int32 tensor."""
    return make("Rank", [convert_to_tensor(input)], {}, name=name or "Rank")


# --- helpers shared by the builders below -----------------------------------------------------
def _is_tensorlike(v):
    return isinstance(v, Tensor) or hasattr(v, "_snapshot") or hasattr(v, "_as_graph_element")


def _shape_arg(value, arg_name, dtype=None):
    """Converts a 1-D int argument; a list holding tensors is packed (``[tw.shape(x)[0], -1]``)."""
    if isinstance(value, TensorShape):
        value = value.as_list()
    if isinstance(value, (list, tuple)) and any(_is_tensorlike(v) for v in value):
        parts = [convert_to_tensor(v) if _is_tensorlike(v) else v for v in value]
        if dtype is None:
            dtype = dtypes.int64 if any(isinstance(p, Tensor) and p.dtype == dtypes.int64
                                        for p in parts) else dtypes.int32
        return stack([_cast_int(p, dtype) for p in parts], name=arg_name)
    if _is_tensorlike(value):
        return _cast_int(_index_arg(value, arg_name), dtype)
    t = convert_to_tensor(value, dtype=dtype, preferred_dtype=dtypes.int32)
    if not t.dtype.is_integer:
        raise TypeError(f"Argument '{arg_name}' must be an int32 or int64 tensor, got "
                        f"{t.dtype.name} ({t.name})")
    return t


def _first_tensor(value):
    if _is_tensorlike(value):
        return convert_to_tensor(value)
    if isinstance(value, (list, tuple)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _autopacked(value, dtype=None):
    """``convert_to_tensor`` that packs (nested) lists holding tensors, as TF does."""
    if isinstance(value, (list, tuple)) and not _is_tensorlike(value):
        first = _first_tensor(value)
        if first is not None:
            dtype = dtype or first.dtype
            return stack([_autopacked(v, dtype) for v in value])
    return convert_to_tensor(value, dtype=dtype)


def _cast_int(v, dtype):
    if not isinstance(v, Tensor):
        return convert_to_tensor(v, dtype=dtype)
    if dtype is None or v.dtype == dtype:
        return v
    from tensorweave.ops import math_ops
    return math_ops.cast(v, dtype)


def _index_arg(value, arg_name):
    t = convert_to_tensor(value, preferred_dtype=dtypes.int32)
    if not t.dtype.is_integer:
        raise TypeError(f"Argument '{arg_name}' must be an int32 or int64 tensor, got "
                        f"{t.dtype.name} ({t.name})")
    return t


def _partial_ints(t):
    """A 1-D int tensor's entries known at build time (None where unknown), or None."""
    v = constant_value(t)
    if v is not None:
        return [int(a) for a in np.asarray(v).reshape(-1)]
    if t.op.type == "Pack" and t.op.attrs.get("axis", 0) == 0 and t.shape.ndims == 1:
        return [_static_scalar(s) for s in t.op.inputs]
    n = t.shape[0].value if t.shape.ndims == 1 else None
    return None if n is None else [None] * n


def _shape_ref(t):
    """``(x, i)`` when ``t`` is ``tw.shape(x)[i]`` (x of known rank), else None."""
    op = t.op
    if op.type != "StridedSlice" or op.attrs["shrink_axis_mask"] != 1 or \
            op.attrs["ellipsis_mask"] or op.attrs["new_axis_mask"] or \
            op.inputs[0].op.type != "Shape":
        return None
    x = op.inputs[0].op.inputs[0]
    b = constant_value(op.inputs[1])
    rank = x.shape.ndims
    if b is None or np.size(b) != 1 or rank is None or not -rank <= int(np.ravel(b)[0]) < rank:
        return None
    return x, int(np.ravel(b)[0]) % rank


def _static_scalar(t):
    """An int scalar tensor's value when known at build time (constants, ``tw.shape(x)[i]``)."""
    v = constant_value(t)
    if v is not None:
        return int(v) if np.ndim(v) == 0 else None
    ref = _shape_ref(t)
    return None if ref is None else ref[0].shape[ref[1]].value


_const_int = _static_scalar


def _target_shape(s):
    """The static shape named by a 1-D shape tensor, seeing through packed ``tw.shape(x)[i]``."""
    if s.op.type == "Pack" and s.op.attrs.get("axis", 0) == 0 and s.shape.ndims == 1:
        return TensorShape([None if d is None or d < 0 else d for d in _partial_ints(s)])
    return constant_value_as_shape(s)


def _canon_axis(axis, rank, what="axis", extra=0):
    """``axis`` in [-(rank+extra), rank+extra) made non-negative; None if rank is unknown."""
    if rank is None:
        return axis if axis >= 0 else None
    n = rank + extra
    if not -n <= axis < n:
        raise ValueError(f"{what} {axis} is out of range for a tensor of rank {rank} "
                         f"(expected {-n} <= {what} < {n})")
    return axis % n


def _dims(t):
    return t.shape.as_tuple()


def _shape_as(x, like_dtype=dtypes.int32):
    """``x``'s shape: a constant when fully defined, else a Shape op."""
    if x.shape.is_fully_defined():
        return constant(np.array(x.shape.as_list(), like_dtype.as_numpy_dtype))
    return shape(x, out_type=like_dtype)


def _reshape_like(grad, x):
    if x.shape.is_fully_defined():
        return reshape(grad, x.shape.as_list())
    return reshape(grad, shape(x))


# --- transpose ------------------------------------------------------------------------------
@register_op("Transpose", view_of=0)
def _transpose_infer(op):
    x, perm = op.inputs
    rank = x.shape.ndims
    p = constant_value(perm)
    if p is None:
        n = perm.shape[0].value if perm.shape.ndims == 1 else rank
        return [(x.dtype, TensorShape(None if n is None else [None] * n))]
    p = [int(a) for a in np.asarray(p).reshape(-1)]
    if rank is not None and (len(p) != rank or sorted(a % rank for a in p) != list(builtins_range(rank))):
        raise ValueError(f"perm {p} is not a permutation of the {rank} dimensions of shape "
                         f"{x.shape}")
    if rank is None:
        return [(x.dtype, TensorShape([None] * len(p)))]
    d = _dims(x)
    return [(x.dtype, TensorShape([d[a] for a in p]))]


def transpose(a, perm=None, name="transpose", conjugate=False):
    """Permutes dimensions: ``tw.transpose(x, [1, 0])``; ``perm=None`` reverses them."""
    x = convert_to_tensor(a)
    if conjugate and x.dtype.is_complex:
        raise NotImplementedError("transpose(conjugate=True) of complex tensors is not supported")
    if perm is None:
        ndims = x.shape.ndims
        if ndims is not None:
            perm = constant(np.arange(ndims - 1, -1, -1, dtype=np.int32))
        else:
            from tensorweave.ops import math_ops
            r = rank(x)
            perm = math_ops.subtract(math_ops.subtract(r, 1), range(0, r, 1))
    return make("Transpose", [x, _shape_arg(perm, "perm")], {}, name=name or "transpose")


@register_op("InvertPermutation")
def _invert_permutation_infer(op):
    return [(op.inputs[0].dtype, op.inputs[0].shape.merge_with(TensorShape([None])))]


def invert_permutation(x, name=None):
    """The inverse permutation: ``y[x[i]] = i``."""
    return make("InvertPermutation", [_index_arg(x, "x")], {}, name=name or "InvertPermutation")


# --- concat / split / stack / unstack --------------------------------------------------------
@register_op("ConcatV2")
def _concat_infer(op):
    *values, axis = op.inputs
    dtype = values[0].dtype
    for v in values[1:]:
        if v.dtype != dtype:
            raise TypeError(f"ConcatV2 inputs must share a dtype: {values[0].name} is "
                            f"{dtype.name} but {v.name} is {v.dtype.name}")
    known = [v for v in values if v.shape.ndims is not None]
    if not known:
        return [(dtype, TensorShape(None))]
    rank = known[0].shape.ndims
    for v in known[1:]:
        if v.shape.ndims != rank:
            raise ValueError(f"ConcatV2 inputs must have the same rank: shapes "
                             f"{known[0].shape} and {v.shape}")
    if rank == 0:
        raise ValueError("Can't concatenate scalars (use tw.stack instead)")
    a = _const_int(axis)
    if a is None:
        return [(dtype, TensorShape([None] * rank))]
    a = _canon_axis(a, rank, "concat axis")
    out = list(_dims(known[0]))
    total = 0
    for v in known:
        d = _dims(v)
        for i in builtins_range(rank):
            if i == a:
                continue
            if out[i] is not None and d[i] is not None and out[i] != d[i]:
                raise ValueError(f"ConcatV2 inputs must match in every dimension except axis "
                                 f"{a}: shapes {known[0].shape} and {v.shape} differ in "
                                 f"dimension {i} ({out[i]} vs {d[i]})")
            out[i] = d[i] if out[i] is None else out[i]
    for v in values:
        d = v.shape.as_tuple()
        if d is None or d[a] is None or total is None:
            total = None
        else:
            total += d[a]
    out[a] = total
    return [(dtype, TensorShape(out))]


def concat(values, axis, name="concat"):
    """Joins tensors along ``axis``: ``tw.concat([a, b], 1)``."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    values = [_autopacked(v) for v in values]
    if not values:
        raise ValueError("concat needs at least one tensor in 'values'")
    if len(values) == 1:
        return identity(values[0], name=name)
    return make("ConcatV2", values + [_index_arg(axis, "axis")],
                {"N": len(values), "Tidx": dtypes.int32}, name=name or "concat")


@register_op("Split", view_of=1)
def _split_infer(op):
    axis, value = op.inputs
    n = op.attrs["num_split"]
    rank = value.shape.ndims
    a = _const_int(axis)
    if rank is None:
        return [(value.dtype, TensorShape(None))] * n
    if a is None:
        return [(value.dtype, TensorShape([None] * rank))] * n
    a = _canon_axis(a, rank, "split axis")
    d = list(_dims(value))
    if d[a] is not None:
        if d[a] % n:
            raise ValueError(f"Dimension {a} of shape {value.shape} ({d[a]}) is not evenly "
                             f"divisible by num_split={n}")
        d[a] //= n
    return [(value.dtype, TensorShape(d))] * n


@register_op("SplitV", view_of=0)
def _splitv_infer(op):
    value, sizes, axis = op.inputs
    n = op.attrs["num_split"]
    rank = value.shape.ndims
    a = _const_int(axis)
    if rank is None:
        return [(value.dtype, TensorShape(None))] * n
    if a is None:
        return [(value.dtype, TensorShape([None] * rank))] * n
    a = _canon_axis(a, rank, "split axis")
    s = _partial_ints(sizes) or [None] * n
    if len(s) != n:
        raise ValueError(f"size_splits has {len(s)} entries but num_split is {n}")
    total = _dims(value)[a]
    if s.count(-1) > 1:
        raise ValueError(f"size_splits {s} may contain at most one -1")
    if -1 in s and total is not None and None not in s:
        rest = total - sum(v for v in s if v != -1)
        if rest < 0:
            raise ValueError(f"size_splits {s} exceed dimension {a} of shape {value.shape}")
        s[s.index(-1)] = rest
    elif total is not None and None not in s and -1 not in s and sum(s) != total:
        raise ValueError(f"size_splits {s} must sum to dimension {a} of shape {value.shape} "
                         f"({total})")
    outs = []
    for k in s:
        d = list(_dims(value))
        d[a] = None if k is None or k < 0 else k
        outs.append((value.dtype, TensorShape(d)))
    return outs


def split(value, num_or_size_splits, axis=0, num=None, name="split"):
    """Splits ``value`` along ``axis`` into ``num_or_size_splits`` equal pieces, or pieces of
    the given sizes (one may be -1): ``a, b = tw.split(x, [2, -1], axis=1)``."""
    value = convert_to_tensor(value)
    axis_t = _index_arg(axis, "axis")
    if isinstance(num_or_size_splits, (int, np.integer)) and not isinstance(
            num_or_size_splits, bool):
        n = int(num_or_size_splits)
        if n < 1:
            raise ValueError(f"num_or_size_splits must be >= 1, got {n}")
        op = make_op("Split", [axis_t, value], {"num_split": n}, name=name or "split")
        return list(op.outputs)
    sizes = _shape_arg(num_or_size_splits, "num_or_size_splits")
    if num is None:
        num = sizes.shape[0].value if sizes.shape.ndims == 1 else None
        if num is None:
            raise ValueError(f"Cannot infer the number of splits from size_splits {sizes.name}; "
                             "pass num=")
    op = make_op("SplitV", [value, sizes, axis_t], {"num_split": int(num), "Tlen": sizes.dtype},
                 name=name or "split")
    return list(op.outputs)


@register_op("Pack")
def _pack_infer(op):
    values = op.inputs
    dtype = values[0].dtype
    s = TensorShape(None)
    for v in values:
        if v.dtype != dtype:
            raise TypeError(f"Pack inputs must share a dtype: {values[0].name} is {dtype.name} "
                            f"but {v.name} is {v.dtype.name}")
        if not s.is_compatible_with(v.shape):
            raise ValueError(f"Shapes of all inputs must match: {values[0].shape} vs "
                             f"{v.shape} ({v.name})")
        s = s.merge_with(v.shape)
    if s.ndims is None:
        return [(dtype, TensorShape(None))]
    a = _canon_axis(op.attrs["axis"], s.ndims, "stack axis", extra=1)
    d = list(s.as_tuple())
    d.insert(a, len(values))
    return [(dtype, TensorShape(d))]


def stack(values, axis=0, name="stack"):
    """Stacks rank-R tensors into one rank-(R+1) tensor: ``tw.stack([x, y], axis=1)``."""
    values = [_autopacked(v) for v in values]
    if not values:
        raise ValueError("stack needs at least one tensor in 'values'")
    return make("Pack", values, {"N": len(values), "axis": int(axis)}, name=name or "stack")


@register_op("Unpack", view_of=0)
def _unpack_infer(op):
    x = op.inputs[0]
    n = op.attrs["num"]
    rank = x.shape.ndims
    if rank is None:
        return [(x.dtype, TensorShape(None))] * n
    a = _canon_axis(op.attrs["axis"], rank, "unstack axis")
    d = list(_dims(x))
    if d[a] is not None and d[a] != n:
        raise ValueError(f"Cannot unstack {n} tensors from dimension {a} of shape {x.shape}")
    del d[a]
    return [(x.dtype, TensorShape(d))] * n


def unstack(value, num=None, axis=0, name="unstack"):
    """Splits ``value`` along ``axis`` into a list of rank-(R-1) tensors."""
    x = convert_to_tensor(value)
    if num is None:
        rank = x.shape.ndims
        if rank is None:
            raise ValueError(f"Cannot infer num from shape {x.shape}; pass num=")
        num = x.shape[_canon_axis(axis, rank, "unstack axis")].value
        if num is None:
            raise ValueError(f"Cannot infer num from shape {x.shape}; pass num=")
    op = make_op("Unpack", [x], {"num": int(num), "axis": int(axis)}, name=name or "unstack")
    return list(op.outputs)


# --- slicing --------------------------------------------------------------------------------
@register_op("Slice", view_of=0)
def _slice_infer(op):
    x, begin, size_t = op.inputs
    rank = x.shape.ndims
    b, s = _partial_ints(begin), _partial_ints(size_t)
    n = rank if rank is not None else (len(b) if b is not None else
                                       (len(s) if s is not None else None))
    if n is None:
        return [(x.dtype, TensorShape(None))]
    b, s = b or [None] * n, s or [None] * n
    if len(b) != n or len(s) != n:
        raise ValueError(f"Slice: begin and size must have one entry per dimension of shape "
                         f"{x.shape}, got {len(b)} and {len(s)}")
    d = _dims(x) or (None,) * n
    out = []
    for i in builtins_range(n):
        bi, si, di = b[i], s[i], d[i]
        if bi is not None and di is not None and not 0 <= bi <= di:
            raise ValueError(f"Slice: begin[{i}]={bi} is out of range for shape {x.shape}")
        if si is not None and si >= 0 and bi is not None and di is not None and bi + si > di:
            raise ValueError(f"Slice: begin[{i}] + size[{i}] = {bi + si} exceeds dimension "
                             f"{i} of shape {x.shape}")
        if si == -1:
            out.append(None if bi is None or di is None else di - bi)
        else:
            out.append(si)
    return [(x.dtype, TensorShape(out))]


def slice(input_, begin, size, name=None):  # noqa: A001  (TF's name)
    """``size[i]`` elements from ``begin[i]`` in each dimension (-1: to the end)."""
    b = _shape_arg(begin, "begin")
    return make("Slice", [convert_to_tensor(input_), b, _shape_arg(size, "size", b.dtype)],
                {"Index": b.dtype}, name=name or "Slice")


_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def strided_slice_key(begin, end, strides, attrs):
    """The NumPy index for StridedSlice's encoded spec (shared with the kernels)."""
    bm, em, elm, nm, sm = (attrs[m] for m in _MASKS)
    key = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if elm & bit:
            key.append(Ellipsis)
        elif nm & bit:
            key.append(None)
        elif sm & bit:
            key.append(int(b))
        else:
            if s == 0:
                raise ValueError("strided_slice strides must be non-zero")
            key.append(builtins_slice(None if bm & bit else int(b), None if em & bit else int(e),
                                      int(s)))
    return tuple(key)


def _strided_slice_shape(x_shape, b, e, s, attrs):
    """Static output shape; b/e/s are lists with None for unknown entries, or None."""
    bm, em, elm, nm, sm = (attrs[m] for m in _MASKS)
    if b is None:
        return TensorShape(None)
    n = len(b)
    e = e or [None] * n
    s = s or [None] * n
    if len(e) != n or len(s) != n:
        raise ValueError(f"strided_slice: begin, end and strides must have the same length, "
                         f"got {len(b)}, {len(e)} and {len(s)}")
    if bin(elm).count("1") > 1:
        raise ValueError("Multiple ellipses in slice spec not allowed")
    real = [i for i in builtins_range(n) if not (elm | nm) & (1 << i)]
    dims = x_shape.as_tuple()
    if dims is None:
        return TensorShape(None)
    rank = len(dims)
    if len(real) > rank:
        raise ValueError(f"Index out of range: the slice spec indexes {len(real)} dimensions "
                         f"of a tensor of shape {x_shape}")
    out, k = [], 0
    for i in builtins_range(n):
        bit = 1 << i
        if elm & bit:
            span = rank - len(real)
            out.extend(dims[k:k + span])
            k += span
        elif nm & bit:
            out.append(1)
        else:
            d = dims[k]
            k += 1
            if sm & bit:
                if b[i] is not None and d is not None and not -d <= b[i] < d:
                    raise ValueError(f"slice index {b[i]} of dimension {k - 1} out of bounds "
                                     f"for shape {x_shape}")
                continue
            if s[i] == 0:
                raise ValueError("strided_slice strides must be non-zero")
            bi = None if bm & bit else b[i]
            ei = None if em & bit else e[i]
            known_b = bm & bit or b[i] is not None
            known_e = em & bit or e[i] is not None
            if d is None or s[i] is None or not known_b or not known_e:
                out.append(None)
            else:
                out.append(len(builtins_range(*builtins_slice(bi, ei, s[i]).indices(d))))
    out.extend(dims[k:])
    return TensorShape(out)


@register_op("StridedSlice", view_of=0)
def _strided_slice_infer(op):
    x, begin, end, strides = op.inputs
    out = _strided_slice_shape(x.shape, _partial_ints(begin), _partial_ints(end),
                               _partial_ints(strides), op.attrs)
    return [(x.dtype, out)]


def strided_slice(input_, begin, end, strides=None, begin_mask=0, end_mask=0, ellipsis_mask=0,
                  new_axis_mask=0, shrink_axis_mask=0, var=None, name=None):
    """NumPy-style strided slicing with TF's bit masks (``x[b:e:s]`` builds one of these)."""
    b = _shape_arg(begin, "begin")
    e = _shape_arg(end, "end", b.dtype)
    s = _shape_arg(strides if strides is not None else [1] * _len_of(b), "strides", b.dtype)
    attrs = dict(zip(_MASKS, (int(begin_mask), int(end_mask), int(ellipsis_mask),
                              int(new_axis_mask), int(shrink_axis_mask))))
    attrs["Index"] = b.dtype
    return make("StridedSlice", [convert_to_tensor(input_), b, e, s], attrs,
                name=name or "strided_slice")


def _len_of(t):
    n = t.shape[0].value if t.shape.ndims == 1 else None
    if n is None:
        raise ValueError(f"strides are needed when begin ({t.name}) has an unknown length")
    return n


@register_op("StridedSliceGrad")
def _strided_slice_grad_infer(op):
    shp, _, _, _, dy = op.inputs
    return [(dy.dtype, _target_shape(shp))]


def strided_slice_grad(shape, begin, end, strides, dy, begin_mask=0, end_mask=0,  # noqa: A002
                       ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0, name=None):
    """Scatters ``dy`` into zeros of ``shape`` where StridedSlice read it."""
    attrs = dict(zip(_MASKS, (int(begin_mask), int(end_mask), int(ellipsis_mask),
                              int(new_axis_mask), int(shrink_axis_mask))))
    b = _shape_arg(begin, "begin")
    attrs["Index"] = b.dtype
    return make("StridedSliceGrad",
                [_shape_arg(shape, "shape", b.dtype), b, _shape_arg(end, "end", b.dtype),
                 _shape_arg(strides, "strides", b.dtype), convert_to_tensor(dy)], attrs,
                name=name or "StridedSliceGrad")


def slice_helper(tensor, key):
    """``x[1:, ::2, tw.newaxis, ..., 0]`` and ``x[i]`` with a scalar int tensor ``i``."""
    if not isinstance(key, tuple):
        key = (key,)
    begin, end, strides = [], [], []
    masks = dict.fromkeys(_MASKS, 0)
    for i, k in enumerate(key):
        bit = 1 << i
        if isinstance(k, builtins_slice):
            for part, lst, m in ((k.start, begin, "begin_mask"), (k.stop, end, "end_mask")):
                if part is None:
                    lst.append(0)
                    masks[m] |= bit
                else:
                    lst.append(_check_index(part))
            strides.append(1 if k.step is None else _check_index(k.step))
        elif k is Ellipsis:
            begin.append(0), end.append(0), strides.append(1)
            masks["ellipsis_mask"] |= bit
        elif k is None:
            begin.append(0), end.append(0), strides.append(1)
            masks["new_axis_mask"] |= bit
        else:
            k = _check_index(k)
            begin.append(k)
            if isinstance(k, Tensor):
                from tensorweave.ops import math_ops
                end.append(math_ops.add(k, 1))
            else:
                end.append(k + 1)
            strides.append(1)
            masks["shrink_axis_mask"] |= bit
    with name_scope(None, "strided_slice", [tensor]) as scope:
        return strided_slice(tensor, _pack_index(begin), _pack_index(end), _pack_index(strides),
                             name=scope, **masks)


def _check_index(k):
    if isinstance(k, (bool, np.bool_)):
        raise TypeError(f"Boolean index {k!r} is not supported; use tw.boolean_mask")
    if isinstance(k, (int, np.integer)):
        return int(k)
    if _is_tensorlike(k):
        t = convert_to_tensor(k)
        if t.dtype not in (dtypes.int32, dtypes.int64) or t.shape.ndims not in (None, 0):
            raise TypeError(f"Tensor index {t.name} must be a scalar int32 or int64 tensor, "
                            f"got {t.dtype.name} of shape {t.shape}")
        return t
    raise TypeError(f"Only integers, slices (`:`), ellipsis (`...`), tw.newaxis (`None`) and "
                    f"scalar int32/int64 tensors are valid indices, got {k!r}")


def _pack_index(parts):
    tensors = [p for p in parts if isinstance(p, Tensor)]
    if not tensors:
        return constant(np.array(parts, dtype=np.int32))
    dtype = dtypes.int64 if any(t.dtype == dtypes.int64 for t in tensors) else dtypes.int32
    from tensorweave.ops import math_ops
    return stack([math_ops.cast(p, dtype) if isinstance(p, Tensor) else
                  constant(p, dtype=dtype) for p in parts])


# --- gather / scatter -------------------------------------------------------------------------
@register_op("GatherV2")
def _gather_infer(op):
    params, indices, axis = op.inputs
    a = _const_int(axis)
    pr, ir = params.shape.ndims, indices.shape.ndims
    if a is None or pr is None or ir is None:
        return [(params.dtype, TensorShape(None))]
    a = _canon_axis(a, pr, "gather axis")
    p = _dims(params)
    return [(params.dtype, TensorShape(p[:a] + _dims(indices) + p[a + 1:]))]


def gather(params, indices, validate_indices=None, name=None, axis=None, batch_dims=0):
    """Rows of ``params`` at ``indices`` along ``axis``: ``tw.gather(embeddings, ids)``."""
    if batch_dims:
        raise NotImplementedError("gather(batch_dims != 0) is not supported")
    p = convert_to_tensor(params)
    return make("GatherV2", [p, _index_arg(indices, "indices"),
                             _index_arg(0 if axis is None else axis, "axis")],
                {"batch_dims": 0}, name=name or "GatherV2")


@register_op("GatherNd")
def _gather_nd_infer(op):
    params, indices = op.inputs
    idx = indices.shape.as_tuple()
    if idx is None or params.shape.ndims is None or idx[-1] is None:
        return [(params.dtype, TensorShape(None))]
    k = idx[-1]
    if k > params.shape.ndims:
        raise ValueError(f"gather_nd: index depth {k} (indices shape {indices.shape}) exceeds "
                         f"the rank of params shape {params.shape}")
    return [(params.dtype, TensorShape(idx[:-1] + _dims(params)[k:]))]


def gather_nd(params, indices, name=None, batch_dims=0):
    """``out[i...] = params[indices[i...]]`` where the last axis of ``indices`` indexes."""
    if batch_dims:
        raise NotImplementedError("gather_nd(batch_dims != 0) is not supported")
    return make("GatherNd", [convert_to_tensor(params), _index_arg(indices, "indices")], {},
                name=name or "GatherNd")


@register_op("ScatterNd")
def _scatter_nd_infer(op):
    _, updates, shp = op.inputs
    return [(updates.dtype, _target_shape(shp))]


def scatter_nd(indices, updates, shape, name=None):  # noqa: A002
    """Zeros of ``shape`` with ``updates`` added at ``indices`` (the inverse of gather_nd)."""
    idx = _index_arg(indices, "indices")
    return make("ScatterNd", [idx, convert_to_tensor(updates),
                              _shape_arg(shape, "shape", idx.dtype)], {"Tindices": idx.dtype},
                name=name or "ScatterNd")


@register_op("Where")
def _where_infer(op):
    x = op.inputs[0]
    return [(dtypes.int64, TensorShape([None, x.shape.ndims]))]


def _where_indices(condition, name=None):
    """Coordinates of the true entries of ``condition`` (one-argument ``tf.where``)."""
    c = convert_to_tensor(condition)
    if not c.dtype.is_bool:
        raise TypeError(f"condition must be a bool tensor, got {c.dtype.name} ({c.name})")
    return make("Where", [c], {}, name=name or "Where")


@register_op("DynamicStitch")
def _dynamic_stitch_infer(op):
    n = op.attrs["N"]
    idx, data = op.inputs[:n], op.inputs[n:]
    first = None
    for i, d in zip(idx, data):
        if i.shape.ndims is not None and d.shape.ndims is not None:
            tail = d.shape[i.shape.ndims:]
            first = tail if first is None else first.merge_with(tail)
    vals = [constant_value(i) for i in idx]
    rows = None
    if all(v is not None for v in vals):
        rows = max([int(np.max(v)) + 1 for v in vals if np.size(v)] or [0])
    return [(data[0].dtype, TensorShape([rows]).concatenate(first if first is not None
                                                              else TensorShape(None)))]


def dynamic_stitch(indices, data, name=None):
    """Interleaves ``data`` so that ``out[indices[m][i]] = data[m][i]``."""
    idx = [convert_to_tensor(i, dtype=dtypes.int32) for i in indices]
    data = [convert_to_tensor(d) for d in data]
    if len(idx) != len(data) or not idx:
        raise ValueError(f"dynamic_stitch needs as many data tensors as index tensors (>= 1), "
                         f"got {len(idx)} and {len(data)}")
    return make("DynamicStitch", idx + data, {"N": len(idx)}, name=name or "DynamicStitch")


def boolean_mask(tensor, mask, name="boolean_mask", axis=None):
    """The entries of ``tensor`` where ``mask`` is true: ``tw.boolean_mask(x, x > 0)``."""
    with name_scope(name, "boolean_mask", [tensor, mask]):
        t = convert_to_tensor(tensor)
        m = convert_to_tensor(mask)
        k = m.shape.ndims
        if k is None:
            raise ValueError(f"boolean_mask needs a mask of known rank, got shape {m.shape}")
        if k == 0:
            raise ValueError("boolean_mask: mask cannot be a scalar")
        a = 0 if axis is None else _canon_axis(int(axis), t.shape.ndims, "axis")
        if a is None:
            raise ValueError("boolean_mask with an axis needs a tensor of known rank")
        if t.shape.ndims is not None:
            lead = t.shape[a:a + k]
            if not lead.is_compatible_with(m.shape):
                raise ValueError(f"boolean_mask: shape {t.shape} (from axis {a}) is not "
                                 f"compatible with the mask's shape {m.shape}")
        ts = shape(t)
        pre, post = ts[:a], ts[a + k:]
        flat = reshape(t, concat([pre, [-1], post], 0))
        if t.shape.ndims is not None:
            d = list(t.shape.as_tuple())
            n = m.shape.num_elements() if m.shape.is_fully_defined() else None
            if n is None and None not in d[a:a + k]:
                n = int(np.prod(d[a:a + k]))
            flat.set_shape(d[:a] + [n] + d[a + k:])
        ids = reshape(_where_indices(reshape(m, [-1])), [-1])
        return gather(flat, ids, axis=a)


# --- padding, tiling, dims ----------------------------------------------------------------------
def _pad_infer(op):
    x, paddings = op.inputs[:2]
    p = constant_value(paddings)
    rank = x.shape.ndims
    if p is None:
        if rank is None and paddings.shape.ndims == 2:
            rank = paddings.shape[0].value
        return [(x.dtype, TensorShape(None if rank is None else [None] * rank))]
    p = np.asarray(p)
    if p.ndim != 2 or p.shape[1] != 2 or (rank is not None and p.shape[0] != rank):
        raise ValueError(f"paddings must have shape [{rank if rank is not None else 'rank'}, 2] "
                         f"for a tensor of shape {x.shape}, got {list(p.shape)}")
    if (p < 0).any():
        raise ValueError(f"paddings must be non-negative, got {p.tolist()}")
    d = _dims(x) or (None,) * p.shape[0]
    if op.type == "MirrorPad":
        lim = 0 if op.attrs["mode"] == "REFLECT" else 1
        for i, (di, (lo, hi)) in enumerate(zip(d, p.tolist())):
            if di is not None and max(lo, hi) > di - 1 + lim:
                raise ValueError(f"MirrorPad {op.attrs['mode']}: paddings {[lo, hi]} too large "
                                 f"for dimension {i} of shape {x.shape}")
    return [(x.dtype, TensorShape([None if di is None else di + int(lo) + int(hi)
                                   for di, (lo, hi) in zip(d, p)]))]


for _t in ("Pad", "PadV2", "MirrorPad"):
    register_op(_t)(_pad_infer)


@register_op("MirrorPadGrad")
def _mirror_pad_grad_infer(op):
    x, paddings = op.inputs
    p = constant_value(paddings)
    if p is None or x.shape.ndims is None:
        return [(x.dtype, TensorShape(None if x.shape.ndims is None else [None] * x.shape.ndims))]
    return [(x.dtype, TensorShape([None if d is None else d - int(lo) - int(hi)
                                   for d, (lo, hi) in zip(_dims(x), np.asarray(p))]))]


def pad(tensor, paddings, mode="CONSTANT", name=None, constant_values=0):
    """Pads with ``paddings[i] = [before, after]`` per dimension; mode CONSTANT, REFLECT or
    SYMMETRIC."""
    x = convert_to_tensor(tensor)
    p = _shape_arg(paddings, "paddings")
    mode = mode.upper()
    if mode == "CONSTANT":
        if not _is_tensorlike(constant_values) and np.all(np.asarray(constant_values) == 0):
            return make("Pad", [x, p], {"Tpaddings": p.dtype}, name=name or "Pad")
        c = convert_to_tensor(constant_values, dtype=x.dtype)
        return make("PadV2", [x, p, c], {"Tpaddings": p.dtype}, name=name or "PadV2")
    if mode in ("REFLECT", "SYMMETRIC"):
        return make("MirrorPad", [x, p], {"mode": mode, "Tpaddings": p.dtype},
                    name=name or "MirrorPad")
    raise ValueError(f"pad: mode must be 'CONSTANT', 'REFLECT' or 'SYMMETRIC', got {mode!r}")


def _mirror_pad_grad(grad, paddings, mode, name=None):
    return make("MirrorPadGrad", [convert_to_tensor(grad), paddings],
                {"mode": mode, "Tpaddings": paddings.dtype}, name=name or "MirrorPadGrad")


@register_op("Tile")
def _tile_infer(op):
    x, multiples = op.inputs
    m = _partial_ints(multiples)
    rank = x.shape.ndims
    if m is None:
        return [(x.dtype, TensorShape(None if rank is None else [None] * rank))]
    if rank is not None and len(m) != rank:
        raise ValueError(f"multiples has {len(m)} entries but the input has shape {x.shape} "
                         f"(rank {rank})")
    d = _dims(x) or (None,) * len(m)
    return [(x.dtype, TensorShape([None if a is None or b is None else a * b
                                   for a, b in zip(d, m)]))]


def tile(input, multiples, name=None):  # noqa: A002
    """Repeats ``input`` ``multiples[i]`` times along dimension i."""
    m = _shape_arg(multiples, "multiples")
    return make("Tile", [convert_to_tensor(input), m], {"Tmultiples": m.dtype},
                name=name or "Tile")


@register_op("ExpandDims", view_of=0)
def _expand_dims_infer(op):
    x, dim = op.inputs
    rank = x.shape.ndims
    a = _const_int(dim)
    if rank is None:
        return [(x.dtype, TensorShape(None))]
    if a is None:
        return [(x.dtype, TensorShape([None] * (rank + 1)))]
    a = _canon_axis(a, rank, "expand_dims axis", extra=1)
    d = list(_dims(x))
    d.insert(a, 1)
    return [(x.dtype, TensorShape(d))]


def expand_dims(input, axis=None, name=None, dim=None):  # noqa: A002
    """Inserts a dimension of size 1 at ``axis``."""
    if axis is None:
        axis = dim
    elif dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'")
    if axis is None:
        raise ValueError("expand_dims needs 'axis'")
    return make("ExpandDims", [convert_to_tensor(input), _index_arg(axis, "axis")], {},
                name=name or "ExpandDims")


@register_op("Squeeze", view_of=0)
def _squeeze_infer(op):
    x = op.inputs[0]
    sq = op.attrs["squeeze_dims"]
    d = _dims(x)
    if d is None:
        return [(x.dtype, TensorShape(None))]
    if not sq:
        if None in d:
            return [(x.dtype, TensorShape(None))]
        return [(x.dtype, TensorShape([a for a in d if a != 1]))]
    axes = {_canon_axis(a, len(d), "squeeze axis") for a in sq}
    for a in axes:
        if d[a] is not None and d[a] != 1:
            raise ValueError(f"Can not squeeze dim[{a}], expected a dimension of 1, got {d[a]} "
                             f"(shape {x.shape})")
    return [(x.dtype, TensorShape([v for i, v in enumerate(d) if i not in axes]))]


def squeeze(input, axis=None, name=None, squeeze_dims=None):  # noqa: A002
    """Removes dimensions of size 1 (all of them, or those in ``axis``)."""
    if squeeze_dims is not None:
        if axis is not None:
            raise ValueError("Cannot specify both 'axis' and 'squeeze_dims'")
        axis = squeeze_dims
    if axis is None:
        axis = []
    elif isinstance(axis, (int, np.integer)):
        axis = [axis]
    return make("Squeeze", [convert_to_tensor(input)],
                {"squeeze_dims": [int(a) for a in axis]}, name=name or "Squeeze")


@register_op("ReverseV2", view_of=0)
def _reverse_infer(op):
    x, axis = op.inputs
    a = constant_value(axis)
    if a is not None and x.shape.ndims is not None:
        canon = [_canon_axis(int(v), x.shape.ndims, "reverse axis") for v in np.ravel(a)]
        if len(set(canon)) != len(canon):
            raise ValueError(f"reverse: axis {np.ravel(a).tolist()} names a dimension twice")
    return [(x.dtype, x.shape)]


def reverse(tensor, axis, name=None):
    """Reverses ``tensor`` along each dimension in ``axis``."""
    return make("ReverseV2", [convert_to_tensor(tensor), _shape_arg(
        [axis] if isinstance(axis, (int, np.integer)) else axis, "axis")], {},
        name=name or "ReverseV2")


reverse_v2 = reverse


# --- generators -----------------------------------------------------------------------------------
@register_op("Range")
def _range_infer(op):
    start, limit, delta = op.inputs
    dtype = op.attrs.get("Tidx", start.dtype)
    vals = [constant_value(t) for t in op.inputs]
    for t in op.inputs:
        if t.shape.ndims not in (None, 0):
            raise ValueError(f"Range arguments must be scalars, got shape {t.shape} ({t.name})")
    if any(v is None for v in vals):
        return [(dtype, TensorShape([None]))]
    s, lim, d = (v.item() for v in vals)
    if d == 0:
        raise ValueError("Range: delta must not be zero")
    n = max(0, int(np.ceil((lim - s) / d)))
    return [(dtype, TensorShape([n]))]


_RANGE_ORDER = [dtypes.int32, dtypes.int64, dtypes.float32, dtypes.float64]


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001
    """``tw.range(5)``, ``tw.range(1, 10, 2)``: like Python's range, as a 1-D tensor."""
    if limit is None:
        start, limit = 0, start
    with name_scope(name, "Range", [start, limit, delta]) as scope:
        ts = [convert_to_tensor(v, dtype=dtype if not _is_tensorlike(v) else None)
              for v in (start, limit, delta)]
        if dtype is None:
            order = [_RANGE_ORDER.index(t.dtype) if t.dtype in _RANGE_ORDER else 0 for t in ts]
            dtype = _RANGE_ORDER[max(order)]
        dtype = dtypes.as_dtype(dtype)
        if any(t.dtype != dtype for t in ts):
            from tensorweave.ops import math_ops
            ts = [math_ops.cast(t, dtype) for t in ts]
        return make("Range", ts, {"Tidx": dtype}, name=scope)


@register_op("OneHot")
def _one_hot_infer(op):
    indices, depth, on, off = op.inputs
    if on.dtype != off.dtype:
        raise TypeError(f"one_hot: on_value ({on.dtype.name}) and off_value ({off.dtype.name}) "
                        "must share a dtype")
    dep = _const_int(depth)
    d = _dims(indices)
    if d is None:
        return [(on.dtype, TensorShape(None))]
    a = op.attrs["axis"]
    a = len(d) if a == -1 else _canon_axis(a, len(d), "one_hot axis", extra=1)
    d = list(d)
    d.insert(a, dep)
    return [(on.dtype, TensorShape(d))]


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, name=None):
    """``out[..., j] = on_value if indices[...] == j else off_value`` (float32 by default)."""
    idx = _index_arg(indices, "indices")
    if dtype is None:
        for v in (on_value, off_value):
            if _is_tensorlike(v):
                dtype = convert_to_tensor(v).dtype
                break
        else:
            dtype = dtypes.float32 if on_value is None and off_value is None else (
                convert_to_tensor(on_value if on_value is not None else off_value).dtype)
    dtype = dtypes.as_dtype(dtype)
    on = convert_to_tensor(1 if on_value is None else on_value, dtype=dtype)
    off = convert_to_tensor(0 if off_value is None else off_value, dtype=dtype)
    return make("OneHot", [idx, convert_to_tensor(depth, dtype=dtypes.int32), on, off],
                {"axis": -1 if axis is None else int(axis), "TI": idx.dtype},
                name=name or "one_hot")


def sequence_mask(lengths, maxlen=None, dtype=dtypes.bool_, name=None):
    """``mask[i, j] = j < lengths[i]``, of shape ``lengths.shape + [maxlen]``."""
    from tensorweave.ops import math_ops
    with name_scope(name, "SequenceMask", [lengths, maxlen]):
        lengths = _index_arg(lengths, "lengths")
        if maxlen is None:
            maxlen = make("Max", [lengths, range(0, rank(lengths), 1)], {"keep_dims": False},
                          name="Max")
        maxlen = convert_to_tensor(maxlen, dtype=lengths.dtype)
        if maxlen.shape.ndims not in (None, 0):
            raise ValueError(f"maxlen must be a scalar, got shape {maxlen.shape}")
        row = range(0, maxlen, 1, dtype=lengths.dtype)
        mask = math_ops.less(row, expand_dims(lengths, -1))
        dtype = dtypes.as_dtype(dtype)
        return mask if dtype.is_bool else math_ops.cast(mask, dtype)


# --- unique, linspace, eye ------------------------------------------------------------------------
def _unique_infer(op):
    x = op.inputs[0]
    if x.shape.ndims not in (None, 1):
        raise ValueError(f"unique: x must be 1-D, got shape {x.shape} ({x.name})")
    n = x.shape.as_list() if x.shape.ndims == 1 else [None]
    outs = [(x.dtype, TensorShape([None])), (op.attrs["out_idx"], TensorShape(n))]
    if op.type == "UniqueWithCounts":
        outs.append((op.attrs["out_idx"], TensorShape([None])))
    return outs


register_op("Unique")(_unique_infer)
register_op("UniqueWithCounts")(_unique_infer)


def unique(x, out_idx=dtypes.int32, name=None):
    """``(y, idx)``: the distinct values of the 1-D ``x`` in order of first appearance, and
    for each element of ``x`` the position of its value in ``y`` (``x == gather(y, idx)``)."""
    op = make_op("Unique", [convert_to_tensor(x)], {"out_idx": dtypes.as_dtype(out_idx)},
                 name=name or "Unique")
    return op.outputs[0], op.outputs[1]


def unique_with_counts(x, out_idx=dtypes.int32, name=None):
    """``(y, idx, count)``: :func:`unique` plus how often each value of ``y`` occurs."""
    op = make_op("UniqueWithCounts", [convert_to_tensor(x)],
                 {"out_idx": dtypes.as_dtype(out_idx)}, name=name or "UniqueWithCounts")
    return tuple(op.outputs)


@register_op("LinSpace")
def _linspace_infer(op):
    start, stop, num = op.inputs
    if start.dtype != stop.dtype or not start.dtype.is_floating:
        raise TypeError(f"linspace: start and stop must share a float dtype, got "
                        f"{start.dtype.name} and {stop.dtype.name}")
    for t in (start, stop, num):
        if t.shape.ndims not in (None, 0):
            raise ValueError(f"linspace arguments must be scalars, got shape {t.shape} "
                             f"({t.name})")
    n = constant_value(num)
    return [(start.dtype, TensorShape([None if n is None else int(n)]))]


def linspace(start, stop, num, name=None):
    """``num`` evenly spaced values from ``start`` to ``stop``, both included."""
    start = convert_to_tensor(start)
    if not start.dtype.is_floating:
        start = convert_to_tensor(start, dtype=dtypes.float32) if not _is_tensorlike(start) \
            else start
    stop = convert_to_tensor(stop, dtype=start.dtype if not _is_tensorlike(stop) else None)
    num = convert_to_tensor(num, dtype=dtypes.int32 if not _is_tensorlike(num) else None)
    return make("LinSpace", [start, stop, num], {"Tidx": num.dtype}, name=name or "LinSpace")


lin_space = linspace


def eye(num_rows, num_columns=None, batch_shape=None, dtype=dtypes.float32, name=None):
    """The identity matrix (``num_rows`` x ``num_columns``, ones on the diagonal), repeated
    over ``batch_shape`` (a list) when given."""
    from tensorweave.ops import math_ops
    dtype = dtypes.as_dtype(dtype)
    with name_scope(name, "eye"):
        cols = num_rows if num_columns is None else num_columns
        if isinstance(num_rows, (int, np.integer)) and isinstance(cols, (int, np.integer)):
            m = constant(np.eye(int(num_rows), int(cols), dtype=dtype.as_numpy_dtype))
        else:
            r = range(0, num_rows, 1, dtype=dtypes.int32)
            c = range(0, cols, 1, dtype=dtypes.int32)
            m = math_ops.cast(math_ops.equal(expand_dims(r, 1), expand_dims(c, 0)), dtype)
        if batch_shape:
            m = broadcast_to(m, concat([list(batch_shape), shape(m)], 0))
        return m


# --- matrices, grids, sequences (compositions: their gradients come from the parts) -------------
def _last_two(x, what):
    d = x.shape.as_list() if x.shape.ndims is not None else None
    if d is None or len(d) < 2:
        raise ValueError(f"{what} needs a tensor of known rank >= 2, got shape {x.shape}")
    return d[-2], d[-1]


def _diagonal_mask(x, rows, cols):
    """A bool [rows, cols] identity, static where the sizes are: entries are picked with
    ``where`` (a product with an identity matrix would turn an Inf into NaN off the
    diagonal)."""
    if isinstance(rows, int) and isinstance(cols, int):
        return constant(np.eye(rows, cols, dtype=bool))
    s = shape(x)
    return eye(s[-2] if rows is None else rows, s[-1] if cols is None else cols,
               dtype=dtypes.bool_)


def matrix_band_part(input, num_lower, num_upper, name=None):  # noqa: A002
    """Keeps, in each innermost matrix, the ``num_lower`` diagonals below the main one and
    ``num_upper`` above it (negative: all of them), zeroing the rest; ``(-1, 0)`` is the lower
    triangle, e.g. a causal attention mask."""
    from tensorweave.ops import math_ops
    with name_scope(name, "MatrixBandPart"):
        x = convert_to_tensor(input)
        _last_two(x, "matrix_band_part")
        s = shape(x)
        r = expand_dims(range(0, s[-2], 1), 1)
        c = expand_dims(range(0, s[-1], 1), 0)
        lo = convert_to_tensor(num_lower, dtype=dtypes.int32)
        up = convert_to_tensor(num_upper, dtype=dtypes.int32)
        keep = math_ops.logical_and(
            math_ops.logical_or(lo < 0, r - c <= lo), math_ops.logical_or(up < 0, c - r <= up))
        return math_ops.where(broadcast_to(keep, s), x, zeros_like(x))


def matrix_diag(diagonal, name=None):
    """[..., n] -> [..., n, n] matrices with ``diagonal`` on their main diagonal."""
    with name_scope(name, "MatrixDiag"):
        d = convert_to_tensor(diagonal)
        if d.shape.ndims is None or d.shape.ndims < 1:
            raise ValueError(f"matrix_diag needs a tensor of known rank >= 1, got {d.shape}")
        from tensorweave.ops import math_ops
        n = d.shape.as_list()[-1]
        e = constant(np.eye(n, dtype=bool)) if n is not None else \
            eye(shape(d)[-1], dtype=dtypes.bool_)
        col = expand_dims(d, -1)
        return math_ops.where_v2(e, col, zeros_like(col))


def matrix_diag_part(input, name=None):  # noqa: A002
    """[..., m, n] -> [..., min(m, n)]: the main diagonal of each innermost matrix."""
    from tensorweave.ops import math_ops
    with name_scope(name, "MatrixDiagPart"):
        x = convert_to_tensor(input)
        m, n = _last_two(x, "matrix_diag_part")
        full = math_ops.reduce_sum(math_ops.where_v2(_diagonal_mask(x, m, n), x,
                                                     zeros_like(x)), -1)
        if m is not None and n is not None and n < m:
            return full[..., :n]
        return full


def matrix_set_diag(input, diagonal, name=None):  # noqa: A002
    """``input`` with the main diagonal of each innermost (square) matrix replaced."""
    with name_scope(name, "MatrixSetDiag"):
        x = convert_to_tensor(input)
        from tensorweave.ops import math_ops
        m, n = _last_two(x, "matrix_set_diag")
        d = expand_dims(convert_to_tensor(diagonal, dtype=x.dtype), -1)
        return math_ops.where_v2(_diagonal_mask(x, m, n), d, x)


def diag(diagonal, name=None):
    """A vector's square diagonal matrix (TF1's ``tf.diag`` for rank 1)."""
    d = convert_to_tensor(diagonal)
    if d.shape.ndims != 1:
        raise ValueError(f"diag: only vectors (rank 1) are supported here, got shape {d.shape}")
    return matrix_diag(d, name=name or "Diag")


def diag_part(input, name=None):  # noqa: A002
    """The diagonal of a square matrix (TF1's ``tf.diag_part`` for rank 2)."""
    x = convert_to_tensor(input)
    if x.shape.ndims != 2:
        raise ValueError(f"diag_part: only matrices (rank 2) are supported here, got shape "
                         f"{x.shape}")
    return matrix_diag_part(x, name=name or "DiagPart")


def meshgrid(*args, **kwargs):
    """Coordinate grids from 1-D tensors: ``indexing="xy"`` (default: the first two outputs
    are [len(y), len(x)]) or ``"ij"`` (matrix indexing)."""
    indexing = kwargs.pop("indexing", "xy")
    name = kwargs.pop("name", "meshgrid")
    if kwargs:
        raise TypeError(f"meshgrid: unknown arguments {sorted(kwargs)}")
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    with name_scope(name, "meshgrid"):
        xs = [reshape(convert_to_tensor(a), [-1]) for a in args]
        n = len(xs)
        if n < 2:
            return xs
        shapes = []
        for i in builtins_range(n):
            s = [1] * n
            s[i] = -1
            shapes.append(s)
        if indexing == "xy":
            shapes[0][0], shapes[0][1] = 1, -1
            shapes[1][0], shapes[1][1] = -1, 1
        grids = [reshape(x, s) for x, s in zip(xs, shapes)]
        full = [size(x) for x in xs]
        if indexing == "xy":
            full[0], full[1] = full[1], full[0]
        target = stack(full)
        return [broadcast_to(g, target) for g in grids]


def reverse_sequence(input, seq_lengths, seq_axis=None, batch_axis=None, name=None,  # noqa: A002
                     seq_dim=None, batch_dim=None):
    """Reverses the first ``seq_lengths[b]`` entries along ``seq_axis`` of each batch
    element ``b`` (along ``batch_axis``); the rest stay in place. The building block of
    bidirectional RNNs over padded batches."""
    seq_axis = seq_dim if seq_axis is None else seq_axis
    batch_axis = 0 if batch_axis is None and batch_dim is None else (
        batch_dim if batch_axis is None else batch_axis)
    if seq_axis is None:
        raise ValueError("reverse_sequence: seq_axis is required")
    from tensorweave.ops import math_ops
    with name_scope(name, "ReverseSequence"):
        x = convert_to_tensor(input)
        rank = x.shape.ndims
        if rank is None or rank < 2:
            raise ValueError(f"reverse_sequence needs a tensor of known rank >= 2, got "
                             f"{x.shape}")
        sa, ba = seq_axis % rank, batch_axis % rank
        if sa == ba:
            raise ValueError("reverse_sequence: seq_axis and batch_axis must differ")
        perm = [ba, sa] + [i for i in builtins_range(rank) if i not in (ba, sa)]
        xt = transpose(x, perm)
        s = shape(xt)
        lengths = math_ops.cast(convert_to_tensor(seq_lengths), dtypes.int32)
        from tensorweave.ops import script_ops
        check = script_ops.assert_less_equal(
            lengths, s[1], message="reverse_sequence: seq_lengths must not exceed the sequence "
            "axis's size")
        with ops.control_dependencies([check]):
            lengths = identity(lengths)
        t = expand_dims(range(0, s[1], 1), 0)  # [1, T]
        n = expand_dims(lengths, 1)  # [B, 1]
        src = math_ops.where(t < n, n - 1 - t, t + 0 * n)  # [B, T]
        b = expand_dims(range(0, s[0], 1), 1) + 0 * src
        out = gather_nd(xt, stack([b, src], axis=-1))
        inv = [perm.index(i) for i in builtins_range(rank)]
        return transpose(out, inv)


# --- shape helpers for gradients ----------------------------------------------------------------
@register_op("ShapeN")
def _shape_n_infer(op):
    return [(op.attrs["out_type"], TensorShape([x.shape.ndims])) for x in op.inputs]


def shape_n(input, out_type=dtypes.int32, name=None):  # noqa: A002
    """The shapes of a list of tensors, as one op."""
    xs = [convert_to_tensor(x) for x in input]
    op = make_op("ShapeN", xs, {"N": len(xs), "out_type": dtypes.as_dtype(out_type)},
                 name=name or "ShapeN")
    return list(op.outputs)


@register_op("BroadcastGradientArgs")
def _bga_infer(op):
    s0, s1 = op.inputs
    return [(s0.dtype, TensorShape([None])), (s0.dtype, TensorShape([None]))]


def broadcast_gradient_args(s0, s1, name=None):
    """Reduction axes for the gradients of two operands broadcast against each other."""
    s0 = _shape_arg(s0, "s0")
    op = make_op("BroadcastGradientArgs", [s0, _shape_arg(s1, "s1", s0.dtype)],
                 {"T": s0.dtype}, name=name or "BroadcastGradientArgs")
    return op.outputs[0], op.outputs[1]


def reduced_shape(input_shape, axes):
    """``input_shape`` with the entries at ``axes`` set to 1 (axes may be negative)."""
    from tensorweave.ops import math_ops
    input_shape = _shape_arg(input_shape, "input_shape", dtypes.int32)
    axes = reshape(math_ops.cast(_index_arg(axes, "axes"), dtypes.int32), [-1])
    r = size(input_shape)
    positions = range(0, r, 1)
    # negative axes: index a table holding the positions twice, so axis + rank lands right
    axes = gather(concat([positions, positions], 0), math_ops.add(axes, r))
    return dynamic_stitch([positions, axes], [input_shape, ones_like(axes, optimize=False)])


__all__ = [
    "placeholder", "placeholder_with_default", "identity", "stop_gradient", "shape", "shape_n",
    "size", "rank", "reshape", "fill", "zeros", "ones", "zeros_like", "ones_like", "constant",
    "constant_value", "broadcast_to", "unsorted_segment_sum", "transpose", "invert_permutation",
    "concat", "split", "stack", "unstack", "slice", "strided_slice", "gather", "gather_nd",
    "scatter_nd", "dynamic_stitch", "boolean_mask", "pad", "tile", "expand_dims", "squeeze",
    "reverse", "reverse_v2", "range", "one_hot", "sequence_mask", "broadcast_gradient_args",
    "unique", "unique_with_counts", "linspace", "lin_space", "eye", "matrix_band_part",
    "matrix_diag", "matrix_diag_part", "matrix_set_diag", "diag", "diag_part", "meshgrid",
    "reverse_sequence",
]

"""``tw.TensorArray``: TF1's array of tensors written one element at a time (typically one per
iteration of a ``tw.while_loop``) and read back, stacked or gathered.

Here a TensorArray is a value, not a resource: it holds one dense buffer tensor of shape
``[size] + element_shape``, and ``write`` returns a new TensorArray whose buffer has element
``i`` replaced (``where`` with a one-hot row mask: O(size x element) per write, exact, and
differentiable like any other op, so gradients flow through loops that write and read it).
``tw.while_loop`` carries a TensorArray loop variable as its buffer. When the element shape is
not known before the loop (no ``element_shape``, no write or unstack yet), the buffer enters
the loop empty and takes its shape at the first write.

Example::

    ta = tw.TensorArray(tw.float32, size=n)
    def body(t, h, ta):
        h = tw.tanh(tw.matmul(h, w) + xs[t])
        return t + 1, h, ta.write(t, h)
    _, _, ta = tw.while_loop(lambda t, h, ta: t < n, body, [0, h0, ta])
    hs = ta.stack()                                   # [n, batch, hidden]

With ``dynamic_size=True`` the buffer grows (zero rows appended) to the largest index written
+ 1, which is the size ``stack`` returns. Not supported: ``split``.
"""

from __future__ import annotations

from tensorweave.framework import dtypes, nest, ops
from tensorweave.framework.ops import Tensor, convert_to_tensor
from tensorweave.framework.tensor_shape import TensorShape

__all__ = ["TensorArray"]


def _tw():
    import tensorweave as tw
    return tw


class TensorArray:
    """An array of ``size`` tensors of one dtype and shape (TF1's ``tf.TensorArray``)."""

    def __init__(self, dtype, size=None, dynamic_size=None, clear_after_read=None,
                 tensor_array_name=None, handle=None, flow=None, infer_shape=True,
                 element_shape=None, colocate_with_first_write_call=True, name=None):
        if handle is not None or flow is not None:
            raise NotImplementedError("TensorArray(handle=..., flow=...) is not supported")
        self._dtype = dtypes.as_dtype(dtype)
        self._name = name or tensor_array_name or "TensorArray"
        self._dynamic = bool(dynamic_size)
        if size is None and not self._dynamic:
            raise ValueError("TensorArray needs size= (the number of elements), or "
                             "dynamic_size=True")
        size = 0 if size is None else size
        self._size = size if isinstance(size, Tensor) else convert_to_tensor(
            size, dtype=dtypes.int32, name="size")
        self._element_shape = TensorShape(element_shape) if element_shape is not None \
            else TensorShape(None)
        self._buffer = None
        if self._element_shape.is_fully_defined():
            self._buffer = self._zeros(self._element_shape.as_list())

    # --- construction helpers --------------------------------------------------------------
    def _zeros(self, elem):
        tw = _tw()
        with ops.name_scope(self._name):
            shape = tw.concat([tw.reshape(tw.cast(self._size, dtypes.int32), [1]),
                               tw.constant(list(elem), dtype=dtypes.int32)], 0) \
                if elem else tw.reshape(tw.cast(self._size, dtypes.int32), [1])
            return tw.zeros(shape, dtype=self._dtype)

    def _with(self, buffer, element_shape=None):
        ta = object.__new__(TensorArray)
        ta._dtype, ta._name, ta._size = self._dtype, self._name, self._size
        ta._dynamic = self._dynamic
        ta._element_shape = self._element_shape if element_shape is None else element_shape
        ta._buffer = buffer
        return ta

    def _full_buffer(self, elem_shape):
        """The buffer, created (or, inside a loop that started it empty, grown) for elements
        of ``elem_shape``."""
        tw = _tw()
        if self._buffer is None:
            return self._zeros(elem_shape)
        if self._buffer.shape.ndims is None:  # entered a loop empty: first write fills it
            buf = self._buffer
            return tw.cond(tw.equal(tw.size(buf), 0), lambda: self._zeros(elem_shape),
                           lambda: tw.identity(buf))
        return self._buffer

    def _checked(self, value, what):
        value = convert_to_tensor(value, dtype=self._dtype, name="value")
        if value.dtype != self._dtype:
            raise TypeError(f"TensorArray {what}: dtype {value.dtype.name} does not match the "
                            f"array's {self._dtype.name}")
        return value

    def _count(self, buf):
        """How many elements the array holds: its size, or (``dynamic_size``) the buffer's
        rows, which grow to the largest index written + 1."""
        tw = _tw()
        return tw.shape(buf)[0] if self._dynamic else tw.cast(self._size, dtypes.int32)

    def _checked_index(self, index, what, buf):
        """``index`` as int32, with an Assert that it lies in [0, size) (TF1 fails there too;
        a one-hot mask would silently read zeros or drop the write)."""
        tw = _tw()
        idx = tw.cast(convert_to_tensor(index), dtypes.int32)
        size = self._count(buf)
        ok = tw.logical_and(tw.reduce_all(idx >= 0), tw.reduce_all(idx < size))
        check = tw.Assert(ok, [f"TensorArray {what}: index out of range [0, size): index =",
                               idx, "size =", size])
        with ops.control_dependencies([check]):
            return tw.identity(idx)

    def _row_mask(self, index, what, buf):
        """Bool [size] (or [len(index), size]) one-hot rows for ``index``."""
        tw = _tw()
        return tw.one_hot(self._checked_index(index, what, buf), self._count(buf),
                          on_value=True, off_value=False, dtype=dtypes.bool_)

    def _grown(self, buf, index, elem):
        """``dynamic_size``: the buffer with zero rows appended up to ``index``."""
        tw = _tw()
        i = tw.cast(convert_to_tensor(index), dtypes.int32)
        rows = tw.shape(buf)[0]

        def grow():
            extra = tw.concat([tw.reshape(i + 1 - rows, [1]),
                               tw.constant(list(elem), dtype=dtypes.int32)], 0)
            return tw.concat([buf, tw.zeros(extra, dtype=self._dtype)], 0)

        out = tw.cond(i >= rows, grow, lambda: tw.identity(buf))
        out.set_shape(TensorShape([None]).concatenate(elem))
        return out

    def _select_rows(self, mask, values, rank):
        """``sum_r where(mask[..., r], values[r], 0)``: picks rows exactly (a product with a
        one-hot vector would turn an Inf elsewhere into NaN) with a dense gradient."""
        tw = _tw()
        m = tw.reshape(mask, tw.concat([tw.shape(mask), [1] * rank], 0)) if rank else mask
        picked = tw.where_v2(m, values, tw.zeros_like(values))
        return tw.reduce_sum(picked, mask.shape.ndims - 1)

    # --- the TF1 API -----------------------------------------------------------------------
    @property
    def dtype(self):
        return self._dtype

    @property
    def element_shape(self):
        return self._element_shape

    @property
    def flow(self):
        """The buffer (TF1's flow tensor orders the array's ops; here the data itself)."""
        return self._buffer

    @property
    def handle(self):
        return None

    def size(self, name=None):
        if self._dynamic and self._buffer is not None:
            return _tw().identity(self._count(self._buffer), name=name or "TensorArraySize")
        return _tw().identity(tw_int32(self._size), name=name or "TensorArraySize")

    def identity(self):
        return self

    def close(self, name=None):
        return _tw().no_op(name=name or "TensorArrayClose")

    def write(self, index, value, name=None):
        """A new TensorArray with element ``index`` set to ``value``."""
        tw = _tw()
        with ops.name_scope(name, "TensorArrayWrite"):
            value = self._checked(value, "write")
            if not self._element_shape.is_compatible_with(value.shape):
                raise ValueError(f"TensorArray write: element shape {value.shape} is not "
                                 f"compatible with the array's {self._element_shape}")
            elem = self._element_shape.merge_with(value.shape)
            if not elem.is_fully_defined():
                raise ValueError(f"TensorArray write: the element's shape must be known, got "
                                 f"{value.shape}; give element_shape= to the TensorArray")
            buf = self._full_buffer(elem.as_list())
            if self._dynamic:
                buf = self._grown(buf, index, elem.as_list())
            rank = len(elem.as_list())
            mask = tw.reshape(self._row_mask(index, "write", buf), [-1] + [1] * rank)
            new = tw.where_v2(mask, tw.expand_dims(value, 0), buf)
            if buf.shape.ndims is not None:
                new.set_shape(buf.shape)
            return self._with(new, elem)

    def _rows(self):
        if self._buffer is None or self._buffer.shape.ndims is None and \
                not self._element_shape.is_fully_defined():
            raise ValueError("TensorArray: nothing was written yet, so the element shape is "
                             "unknown; write or unstack first, or give element_shape=")
        return self._buffer

    def read(self, index, name=None):
        """Element ``index`` (a gradient flows back into the array as a dense one-hot row)."""
        with ops.name_scope(name, "TensorArrayRead"):
            buf = self._rows()
            out = self._select_rows(self._row_mask(index, "read", buf), buf,
                                    max(buf.shape.ndims - 1, 0) if buf.shape.ndims else 0) \
                if buf.shape.ndims is not None else self._read_unknown_rank(index, buf)
            if self._element_shape.ndims is not None:
                out.set_shape(self._element_shape)
            return out

    def _read_unknown_rank(self, index, buf):
        return _tw().gather(buf, self._checked_index(index, "read", buf))

    def gather(self, indices, name=None):
        """The elements at ``indices``, stacked."""
        tw = _tw()
        with ops.name_scope(name, "TensorArrayGather"):
            buf = self._rows()
            if buf.shape.ndims is None:
                return tw.gather(buf, self._checked_index(indices, "gather", buf))
            mask = self._row_mask(indices, "gather", buf)  # [k, size]
            return self._select_rows(mask, tw.expand_dims(buf, 0), buf.shape.ndims - 1)

    def stack(self, name=None):
        """All elements, stacked: ``[size] + element_shape``."""
        tw = _tw()
        out = tw.identity(self._rows(), name=name or "TensorArrayStack")
        if self._element_shape.ndims is not None:
            n = None if self._dynamic else tw.constant_value(self._size)
            out.set_shape(TensorShape([None if n is None else int(n)]).concatenate(
                self._element_shape))
        return out

    def concat(self, name=None):
        """All elements joined along their first axis."""
        tw = _tw()
        buf = self.stack()
        rest = self._element_shape.as_list()[1:] if self._element_shape.ndims else None
        if rest is None or None in rest:
            return tw.reshape(buf, tw.concat([[-1], tw.shape(buf)[2:]], 0),
                              name=name or "TensorArrayConcat")
        return tw.reshape(buf, [-1] + rest, name=name or "TensorArrayConcat")

    def unstack(self, value, name=None):
        """A new TensorArray holding the rows of ``value`` (its first axis must be ``size``)."""
        tw = _tw()
        with ops.name_scope(name, "TensorArrayUnstack"):
            value = self._checked(value, "unstack")
            if value.shape.ndims == 0:
                raise ValueError("TensorArray unstack needs a value of rank >= 1")
            elem = value.shape[1:] if value.shape.ndims is not None else TensorShape(None)
            n = None if self._dynamic else tw.constant_value(self._size)
            if n is not None and value.shape.ndims is not None and \
                    value.shape[0].value not in (None, int(n)):
                raise ValueError(f"TensorArray unstack: the value has {value.shape[0]} rows "
                                 f"but the array has size {int(n)}")
            return self._with(tw.identity(value), self._element_shape.merge_with(elem))

    def scatter(self, indices, value, name=None):
        """A new TensorArray with the rows of ``value`` written at ``indices``."""
        tw = _tw()
        with ops.name_scope(name, "TensorArrayScatter"):
            value = self._checked(value, "scatter")
            elem = self._element_shape.merge_with(value.shape[1:])
            buf = self._full_buffer(elem.as_list())
            if self._dynamic:
                buf = self._grown(buf, tw.reduce_max(tw.cast(convert_to_tensor(indices),
                                                             dtypes.int32)), elem.as_list())
            rank = len(elem.as_list())
            mask = self._row_mask(indices, "scatter", buf)  # [k, size]
            # row r of the result: the value whose index is r (an exact pick, as in read)
            placed = self._select_rows(tw.transpose(mask), tw.expand_dims(value, 0), rank)
            hit = tw.reshape(tw.reduce_any(mask, 0), [-1] + [1] * rank)
            return self._with(tw.where_v2(hit, placed, buf), elem)

    def split(self, value, lengths, name=None):
        raise NotImplementedError("TensorArray.split is not supported; use unstack on "
                                  "equal-length pieces")


def tw_int32(t):
    return _tw().cast(t, dtypes.int32)


# --- carrying TensorArrays through tw.while_loop --------------------------------------------------
def has_tensor_arrays(structure) -> bool:
    return any(isinstance(x, TensorArray) for x in nest.flatten(structure))


def while_loop(plain_while_loop, cond, body, loop_vars, shape_invariants, kwargs):
    """``tw.while_loop`` over loop variables some of which are TensorArrays: each travels as
    its buffer (an empty one, of unknown shape, when the element shape is not known yet)."""
    tw = _tw()
    single = not isinstance(loop_vars, (list, tuple, dict))
    structure = [loop_vars] if single else loop_vars
    leaves = nest.flatten(structure)
    templates = [x if isinstance(x, TensorArray) else None for x in leaves]
    tensors, invariants = [], []
    inv_leaves = nest.flatten([shape_invariants] if single else shape_invariants) \
        if shape_invariants is not None else [None] * len(leaves)
    for x, inv in zip(leaves, inv_leaves):
        if isinstance(x, TensorArray):
            if x._buffer is None:  # the first write in the loop gives the shape
                tensors.append(tw.zeros([0], dtype=x.dtype))
                invariants.append(TensorShape(None))
            else:
                tensors.append(x._buffer)
                shape = x._buffer.shape
                if x._dynamic and shape.ndims is not None:  # the rows grow in the loop
                    shape = TensorShape([None]).concatenate(shape[1:])
                invariants.append(shape)
        else:
            t = convert_to_tensor(x)
            tensors.append(t)
            invariants.append(t.shape if inv is None else TensorShape(inv))
    seen_shapes = {}

    def rewrap(vs):
        out = []
        for k, (tmpl, v) in enumerate(zip(templates, vs)):
            if tmpl is None:
                out.append(v)
            else:
                out.append(tmpl._with(v, seen_shapes.get(k, tmpl._element_shape)))
        return nest.pack_sequence_as(structure, out)

    def args(vs):
        packed = rewrap(vs)
        return (packed[0],) if single else tuple(packed) if isinstance(packed, (list, tuple)) \
            else (packed,)

    def c(*vs):
        return cond(*args(vs))

    def b(*vs):
        out = body(*args(vs))
        flat = nest.flatten([out] if single else out)
        if len(flat) != len(templates):
            raise ValueError(f"while_loop body returned {len(flat)} values, expected "
                             f"{len(templates)} (the loop variables' structure)")
        res = []
        for k, (tmpl, v) in enumerate(zip(templates, flat)):
            if tmpl is not None:
                if not isinstance(v, TensorArray):
                    raise TypeError("while_loop body must return a TensorArray where the "
                                    f"loop variable {k} was one, got {type(v).__name__}")
                seen_shapes[k] = v._element_shape
                res.append(v._buffer if v._buffer is not None else tensors[k])
            else:
                res.append(v)
        return res

    outs = plain_while_loop(c, b, tensors, shape_invariants=invariants,
                            return_same_structure=True, **kwargs)
    result = rewrap(list(outs))
    return result[0] if single else result

"""Attention over encoder outputs: additive (Bahdanau et al. 2015) and multiplicative (Luong et
al. 2015), with source-length masking, and ``AttentionWrapper``, a cell that attends after every
step (Luong-style: the attention vector is fed to the next step's input).

A mechanism is built once over the encoder ``memory`` ([batch, time, depth]); calling it with a
decoder ``query`` ([batch, depth_q]) returns ``(context [batch, depth], alignments [batch, time])``.
Padded source positions (``t >= memory_sequence_length[b]``) get zero weight.

Example::

    enc_out, enc_state = tw.nn.dynamic_rnn(enc_cell, src, sequence_length=src_len, dtype=tw.float32)
    mech = tw.nn.LuongAttention(128, enc_out, memory_sequence_length=src_len)
    cell = tw.nn.AttentionWrapper(tw.nn.rnn_cell.LSTMCell(128), mech, attention_layer_size=128)
    state = cell.zero_state(batch, tw.float32).clone(cell_state=enc_state)
    outputs, _ = tw.nn.dynamic_rnn(cell, tgt_in, sequence_length=tgt_len, initial_state=state)
"""

from __future__ import annotations

import collections
import copy

from tensorweave.framework import dtypes
from tensorweave.framework.func_graph import outermost
from tensorweave.framework.ops import convert_to_tensor, get_default_graph, name_scope
from tensorweave.nn import rnn_cell as _cells
from tensorweave.ops import array_ops, init_ops, math_ops, nn_ops
from tensorweave.ops import variable_scope as vs

_NEG = -1e9  # a masked score: exp underflows to 0 in float32 and float64


def _dense3(x, kernel):
    """[batch, time, d] @ [d, u] -> [batch, time, u] as one 2-D matmul."""
    d, u = kernel.shape.as_list()
    shape = array_ops.shape(x)
    flat = math_ops.matmul(array_ops.reshape(x, [-1, d]), kernel)
    out = array_ops.reshape(flat, array_ops.stack([shape[0], shape[1], u]))
    return out


def mask_scores(scores, memory_sequence_length):
    """``scores`` [batch, time] with positions past each length set to a large negative."""
    if memory_sequence_length is None:
        return scores
    mask = array_ops.sequence_mask(memory_sequence_length, array_ops.shape(scores)[1])
    return math_ops.where(mask, scores, array_ops.fill(array_ops.shape(scores),
                                                       convert_to_tensor(_NEG, scores.dtype)))


def attention_context(alignments, values):
    """``sum_t alignments[b, t] * values[b, t, :]`` -> [batch, depth]."""
    ctx = math_ops.matmul(array_ops.expand_dims(alignments, 1), values)
    return array_ops.squeeze(ctx, [1])


class _Mechanism:
    """Shared parts: the memory, its mask, the projected keys and lazily built query variables."""

    def __init__(self, num_units, memory, memory_sequence_length, dtype, name):
        memory = convert_to_tensor(memory)
        if memory.shape.ndims != 3 or memory.shape[2].value is None:
            raise ValueError(f"{type(self).__name__}: memory must be [batch, time, depth] with a "
                             f"known depth, got shape {memory.shape}")
        self._num_units = num_units
        self._dtype = dtypes.as_dtype(dtype) if dtype is not None else memory.dtype
        self.memory_sequence_length = None if memory_sequence_length is None else \
            math_ops.cast(convert_to_tensor(memory_sequence_length), dtypes.int32)
        with vs.variable_scope(None, default_name=name) as sc:
            self._vscope = sc
            self._build_memory(memory)
        self._shared = {}  # query variables, shared with tiled copies

    @property
    def values(self):
        return self._values

    @property
    def keys(self):
        return self._keys

    @property
    def alignments_size(self):
        return self._values.shape[1].value

    def _build_memory(self, memory):
        # masked memory: padded encoder steps are zero (dynamic_rnn already gives zeros there)
        self._values = memory
        depth = memory.shape[2].value
        w = vs.get_variable("memory_layer/kernel", [depth, self._num_units], dtype=self._dtype)
        self._keys = _dense3(memory, w)

    def initial_alignments(self, batch_size, dtype):
        return array_ops.zeros(array_ops.stack([batch_size, array_ops.shape(self._values)[1]]),
                               dtype=dtype)

    def _query_variables(self, query_depth):
        g = outermost(get_default_graph())
        if self._shared.get("graph") is not g:
            with vs.variable_scope(self._vscope):
                self._shared["vars"] = self._build_query(query_depth)
            self._shared["graph"] = g
        return self._shared["vars"]

    def tile_batch(self, multiplier):
        """The same mechanism (same variables) over memory with each batch entry repeated
        ``multiplier`` times, for beam search (see ``tw.nn.tile_batch``)."""
        from tensorweave.nn.decoding import tile_batch
        out = copy.copy(self)
        out._values, out._keys = tile_batch((self._values, self._keys), multiplier)
        if self.memory_sequence_length is not None:
            out.memory_sequence_length = tile_batch(self.memory_sequence_length, multiplier)
        return out

    def __call__(self, query, state=None):
        """Returns ``(context, alignments)`` for ``query`` [batch, depth_q]."""
        query = convert_to_tensor(query)
        depth = query.shape[-1].value
        if depth is None:
            raise ValueError(f"{type(self).__name__}: the query's last dimension must be known, "
                             f"got {query.shape}")
        qv = self._query_variables(depth)
        with name_scope(self._vscope.name.split("/")[-1]):
            scores = mask_scores(self._score(query, *qv), self.memory_sequence_length)
            alignments = nn_ops.softmax(scores)
            return attention_context(alignments, self._values), alignments


class BahdanauAttention(_Mechanism):
    """Additive attention: ``score = v . tanh(W_k memory + W_q query)`` (``normalize`` adds
    weight normalization of ``v`` with a gain and a bias, as in TF's ``normalize=True``)."""

    def __init__(self, num_units, memory, memory_sequence_length=None, normalize=False,
                 dtype=None, name="BahdanauAttention"):
        self._normalize = normalize
        super().__init__(num_units, memory, memory_sequence_length, dtype, name)

    def _build_query(self, query_depth):
        u = self._num_units
        wq = vs.get_variable("query_layer/kernel", [query_depth, u], dtype=self._dtype)
        v = vs.get_variable("attention_v", [u], dtype=self._dtype)
        if not self._normalize:
            return wq, v, None, None
        g = vs.get_variable("attention_g", [], dtype=self._dtype,
                            initializer=init_ops.constant_initializer((1.0 / u) ** 0.5))
        b = vs.get_variable("attention_b", [u], dtype=self._dtype,
                            initializer=init_ops.zeros_initializer())
        return wq, v, g, b

    def _score(self, query, wq, v, g, b):
        q = array_ops.expand_dims(math_ops.matmul(query, wq), 1)  # [batch, 1, units]
        if g is not None:
            v = g * v * math_ops.rsqrt(math_ops.reduce_sum(math_ops.square(v)))
            return math_ops.reduce_sum(v * math_ops.tanh(self._keys + q + b), [2])
        return math_ops.reduce_sum(v * math_ops.tanh(self._keys + q), [2])


class LuongAttention(_Mechanism):
    """Multiplicative attention: ``score = query . (W_k memory)`` (the query's depth must be
    ``num_units``); ``scale`` multiplies the scores by a learned scalar ``attention_g``."""

    def __init__(self, num_units, memory, memory_sequence_length=None, scale=False, dtype=None,
                 name="LuongAttention"):
        self._scale = scale
        super().__init__(num_units, memory, memory_sequence_length, dtype, name)

    def _build_query(self, query_depth):
        if query_depth != self._num_units:
            raise ValueError(f"LuongAttention: the query depth ({query_depth}) must equal "
                             f"num_units ({self._num_units})")
        if self._scale:
            return (vs.get_variable("attention_g", [], dtype=self._dtype,
                                    initializer=init_ops.ones_initializer()),)
        return (None,)

    def _score(self, query, g):
        s = array_ops.squeeze(math_ops.matmul(array_ops.expand_dims(query, 1), self._keys,
                                              transpose_b=True), [1])
        return s * g if g is not None else s


class AttentionWrapperState(collections.namedtuple(
        "AttentionWrapperState", ("cell_state", "attention", "alignments"))):
    """The wrapped cell's state, the last attention vector and the last alignments."""

    __slots__ = ()

    def clone(self, **kwargs):
        """A copy with some fields replaced: ``state.clone(cell_state=encoder_state)``."""
        return self._replace(**kwargs)


class AttentionWrapper(_cells.RNNCell):
    """A cell that attends over memory after each step of ``cell``.

    Step: ``h, s = cell(concat([x, prev_attention]), s)`` (input feeding, when
    ``input_feeding``); ``context, a = mechanism(h)``; ``attention = tanh(W [h, context])`` with
    ``W`` of ``attention_layer_size`` columns (or ``attention = context`` when it is None).
    The output is ``attention`` (``output_attention=True``) or ``h``.
    """

    _default_name = "attention_wrapper"

    def __init__(self, cell, attention_mechanism, attention_layer_size=None,
                 output_attention=True, input_feeding=True, initial_cell_state=None,
                 name=None):
        super().__init__(name=name)
        self._cell = cell
        self._mech = attention_mechanism
        self._layer_size = attention_layer_size
        self._output_attention = output_attention
        self._input_feeding = input_feeding
        self._initial_cell_state = initial_cell_state

    @property
    def _attention_size(self):
        return self._layer_size or self._mech.values.shape[2].value

    @property
    def state_size(self):
        return AttentionWrapperState(self._cell.state_size, self._attention_size,
                                     self._mech.alignments_size)

    @property
    def output_size(self):
        return self._attention_size if self._output_attention else self._cell.output_size

    @property
    def variables(self):
        return self._cell.variables + list(self._variables)

    def tile_batch(self, multiplier):
        """This cell (same variables) attending over memory tiled ``multiplier`` times: the
        cell to use inside ``beam_search``'s ``step_fn``."""
        out = copy.copy(self)
        out._mech = self._mech.tile_batch(multiplier)
        return out

    def zero_state(self, batch_size, dtype):
        """Zero attention and alignments; the cell's zero state (or ``initial_cell_state``)."""
        with name_scope("AttentionWrapperZeroState"):
            cs = self._initial_cell_state if self._initial_cell_state is not None else \
                self._cell.zero_state(batch_size, dtype)
            att = array_ops.zeros([batch_size, self._attention_size], dtype=dtype)
            return AttentionWrapperState(cs, att, self._mech.initial_alignments(batch_size,
                                                                                dtype))

    def build(self, input_depth):
        if self._layer_size is not None:
            depth = self._cell.output_size + self._mech.values.shape[2].value
            self._attn_kernel = self.add_variable("attention_layer/kernel",
                                                  [depth, self._layer_size])

    def call(self, inputs, state):
        if not isinstance(state, AttentionWrapperState):
            raise TypeError(f"AttentionWrapper expects an AttentionWrapperState, got "
                            f"{type(state).__name__}")
        x = array_ops.concat([inputs, state.attention], 1) if self._input_feeding else inputs
        with vs.variable_scope(self._vscope):
            h, cell_state = self._cell(x, state.cell_state)
        context, alignments = self._mech(h)
        if self._layer_size is not None:
            attention = math_ops.tanh(math_ops.matmul(array_ops.concat([h, context], 1),
                                                      self._attn_kernel))
        else:
            attention = context
        out = attention if self._output_attention else h
        return out, AttentionWrapperState(cell_state, attention, alignments)


__all__ = ["BahdanauAttention", "LuongAttention", "AttentionWrapper", "AttentionWrapperState",
           "mask_scores", "attention_context"]

"""Recurrent cells (``tw.nn.rnn_cell``): LSTM, GRU, basic RNN, stacking and dropout wrappers.

A cell maps ``(inputs, state) -> (output, new_state)`` for one time step. Its variables are
created with ``tw.get_variable`` on the first call, under the current variable scope plus the
cell's name (``rnn/lstm_cell/kernel``, ``rnn/lstm_cell/bias``, as in TF1), and reused by every
later call of the same cell object (unrolled steps, loop bodies, a decoder sharing the cell).

Example::

    cell = tw.nn.rnn_cell.LSTMCell(128)
    outputs, state = tw.nn.dynamic_rnn(cell, inputs, sequence_length=lengths, dtype=tw.float32)
"""

from __future__ import annotations

import collections
import threading

from tensorweave.framework import dtypes, nest
from tensorweave.framework.func_graph import outermost
from tensorweave.framework.ops import convert_to_tensor, get_default_graph, name_scope
from tensorweave.ops import array_ops, init_ops, math_ops, nn_ops
from tensorweave.ops import variable_scope as vs

_LSTMStateTupleBase = collections.namedtuple("LSTMStateTuple", ("c", "h"))


class LSTMStateTuple(_LSTMStateTupleBase):
    """``(c, h)``: an LSTM's memory cell and hidden output."""

    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


def _concat_sizes(prefix, suffix):
    """[batch]-leading static shape list for a state size (an int or a TensorShape-like)."""
    if isinstance(suffix, int):
        return [prefix, suffix]
    return [prefix] + list(suffix)


class RNNCell:
    """Base class. Subclasses define ``state_size``, ``output_size``, ``build(input_depth)``
    (creating variables with ``self.add_variable``) and ``call(inputs, state)``."""

    _default_name = "rnn_cell"

    def __init__(self, name=None, reuse=None, dtype=None):
        self._name = name
        self._reuse = reuse
        self._dtype = dtypes.as_dtype(dtype) if dtype is not None else None
        self._built_graph = None
        self._variables: list = []

    @property
    def state_size(self):
        raise NotImplementedError

    @property
    def output_size(self):
        raise NotImplementedError

    @property
    def variables(self):
        return list(self._variables)

    trainable_variables = trainable_weights = weights = variables

    def zero_state(self, batch_size, dtype):
        """A nest of zeros of shape ``[batch_size, size]`` matching ``state_size``."""
        with name_scope(f"{type(self).__name__}ZeroState"):
            return nest.map_structure(
                lambda s: array_ops.zeros(_concat_sizes(batch_size, s), dtype=dtype),
                self.state_size)

    def add_variable(self, name, shape, dtype=None, initializer=None):
        v = vs.get_variable(name, shape, dtype=dtype or self._dtype or dtypes.float32,
                            initializer=initializer)
        self._variables.append(v)
        return v

    def build(self, input_depth):
        del input_depth

    def call(self, inputs, state):
        raise NotImplementedError

    def _scope_name(self):
        if self._name is not None:
            return self._name
        scope = vs.get_variable_scope()
        if scope.reuse is True or scope.reuse is vs.AUTO_REUSE or self._reuse:
            return self._default_name
        # a second cell built under the same scope gets its own variables (lstm_cell_1), as
        # TF1's unique layer names do
        prefix = scope.name + "/" if scope.name else ""
        taken = set()
        for v in get_default_graph().get_collection("variables"):
            parts = v.op.name.split("/")
            taken.update("/".join(parts[:k]) for k in range(1, len(parts)))
        name, i = self._default_name, 0
        while prefix + name in taken:
            i += 1
            name = f"{self._default_name}_{i}"
        return name

    def __call__(self, inputs, state, scope=None):
        inputs = convert_to_tensor(inputs)
        if self._dtype is None:
            self._dtype = inputs.dtype
        g = outermost(get_default_graph())
        if self._built_graph is not g:  # first call (in this graph): create the variables
            depth = inputs.shape[-1].value if inputs.shape.ndims else None
            if depth is None:
                raise ValueError(f"{type(self).__name__}: the last dimension of the inputs must "
                                 f"be known, got shape {inputs.shape}")
            self._variables = []
            with vs.variable_scope(scope or self._scope_name(),
                                   reuse=True if self._reuse is True else None) as sc:
                self._scope, self._vscope = sc.name, sc
                self.build(depth)
            self._built_graph = g
        with name_scope(self._scope.rsplit("/", 1)[-1]):
            return self.call(inputs, state)


def _linear_concat(inputs, h, kernel, bias):
    """One matmul on ``concat([inputs, h])`` and a fused bias add."""
    x = array_ops.concat([inputs, h], 1)
    return nn_ops.bias_add(math_ops.matmul(x, kernel), bias)


class BasicRNNCell(RNNCell):
    """``h' = activation(W [x, h] + b)``; the output is ``h'``."""

    _default_name = "basic_rnn_cell"

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None):
        super().__init__(name, reuse, dtype)
        self._num_units = num_units
        self._activation = activation or math_ops.tanh

    state_size = property(lambda self: self._num_units)
    output_size = property(lambda self: self._num_units)

    def build(self, input_depth):
        self._kernel = self.add_variable("kernel", [input_depth + self._num_units,
                                                    self._num_units])
        self._bias = self.add_variable("bias", [self._num_units],
                                       initializer=init_ops.zeros_initializer())

    def call(self, inputs, state):
        out = self._activation(_linear_concat(inputs, state, self._kernel, self._bias))
        return out, out


class GRUCell(RNNCell):
    """Gated recurrent unit (Cho et al. 2014), TF1's variable layout: ``gates/kernel``,
    ``gates/bias`` (initialized to 1), ``candidate/kernel``, ``candidate/bias``."""

    _default_name = "gru_cell"

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None):
        super().__init__(name, reuse, dtype)
        self._num_units = num_units
        self._activation = activation or math_ops.tanh
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer

    state_size = property(lambda self: self._num_units)
    output_size = property(lambda self: self._num_units)

    def build(self, input_depth):
        n = self._num_units
        with vs.variable_scope("gates"):
            self._gate_kernel = self.add_variable("kernel", [input_depth + n, 2 * n],
                                                  initializer=self._kernel_initializer)
            self._gate_bias = self.add_variable(
                "bias", [2 * n], initializer=self._bias_initializer or
                init_ops.constant_initializer(1.0))
        with vs.variable_scope("candidate"):
            self._cand_kernel = self.add_variable("kernel", [input_depth + n, n],
                                                  initializer=self._kernel_initializer)
            self._cand_bias = self.add_variable(
                "bias", [n], initializer=self._bias_initializer or init_ops.zeros_initializer())

    def call(self, inputs, state):
        value = math_ops.sigmoid(_linear_concat(inputs, state, self._gate_kernel,
                                                self._gate_bias))
        r, u = array_ops.split(value, 2, axis=1)
        c = self._activation(_linear_concat(inputs, r * state, self._cand_kernel,
                                            self._cand_bias))
        new_h = u * state + (1.0 - u) * c
        return new_h, new_h


class LSTMCell(RNNCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997) with optional peepholes, cell
    clipping and an output projection. Gates come from one matmul on ``concat([x, h])``
    (``kernel`` of shape ``[depth + h, 4 * num_units]``, gate order i, j, f, o) plus ``bias``;
    ``forget_bias`` is added to the forget gate."""

    _default_name = "lstm_cell"

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None,
                 num_proj=None, proj_clip=None, num_unit_shards=None, num_proj_shards=None,
                 forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None, name=None,
                 dtype=None):
        super().__init__(name, reuse, dtype)
        self._num_units = num_units
        self._use_peepholes = use_peepholes
        self._cell_clip = cell_clip
        self._initializer = initializer
        self._num_proj = num_proj
        self._proj_clip = proj_clip
        self._forget_bias = forget_bias
        self._state_is_tuple = state_is_tuple
        self._activation = activation or math_ops.tanh
        del num_unit_shards, num_proj_shards

    @property
    def state_size(self):
        h = self._num_proj or self._num_units
        if self._state_is_tuple:
            return LSTMStateTuple(self._num_units, h)
        return self._num_units + h

    @property
    def output_size(self):
        return self._num_proj or self._num_units

    def build(self, input_depth):
        n, h = self._num_units, self._num_proj or self._num_units
        self._kernel = self.add_variable("kernel", [input_depth + h, 4 * n],
                                         initializer=self._initializer)
        self._bias = self.add_variable("bias", [4 * n], initializer=init_ops.zeros_initializer())
        if self._use_peepholes:
            self._w_f = self.add_variable("w_f_diag", [n], initializer=self._initializer)
            self._w_i = self.add_variable("w_i_diag", [n], initializer=self._initializer)
            self._w_o = self.add_variable("w_o_diag", [n], initializer=self._initializer)
        if self._num_proj is not None:
            with vs.variable_scope("projection"):
                self._proj = self.add_variable("kernel", [n, self._num_proj],
                                               initializer=self._initializer)

    def call(self, inputs, state):
        if self._state_is_tuple:
            c_prev, h_prev = state
        else:
            c_prev, h_prev = array_ops.split(
                state, [self._num_units, self.output_size], axis=1)
        gates = _linear_concat(inputs, h_prev, self._kernel, self._bias)
        i, j, f, o = array_ops.split(gates, 4, axis=1)
        if self._forget_bias:
            f = f + self._forget_bias
        if self._use_peepholes:
            c = (math_ops.sigmoid(f + self._w_f * c_prev) * c_prev +
                 math_ops.sigmoid(i + self._w_i * c_prev) * self._activation(j))
        else:
            c = math_ops.sigmoid(f) * c_prev + math_ops.sigmoid(i) * self._activation(j)
        if self._cell_clip is not None:
            c = math_ops.clip_by_value(c, -self._cell_clip, self._cell_clip)
        if self._use_peepholes:
            m = math_ops.sigmoid(o + self._w_o * c) * self._activation(c)
        else:
            m = math_ops.sigmoid(o) * self._activation(c)
        if self._num_proj is not None:
            m = math_ops.matmul(m, self._proj)
            if self._proj_clip is not None:
                m = math_ops.clip_by_value(m, -self._proj_clip, self._proj_clip)
        new_state = LSTMStateTuple(c, m) if self._state_is_tuple else \
            array_ops.concat([c, m], 1)
        return m, new_state


class BasicLSTMCell(LSTMCell):
    """An LSTM without peepholes, clipping or projection (variables ``basic_lstm_cell/...``)."""

    _default_name = "basic_lstm_cell"

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 reuse=None, name=None, dtype=None):
        super().__init__(num_units, forget_bias=forget_bias, state_is_tuple=state_is_tuple,
                         activation=activation, reuse=reuse, name=name, dtype=dtype)


class MultiRNNCell(RNNCell):
    """Stacks cells: layer k reads layer k-1's output; the state is a tuple of the layers'
    states (variables under ``multi_rnn_cell/cell_k/``)."""

    _default_name = "multi_rnn_cell"

    def __init__(self, cells, state_is_tuple=True):
        super().__init__()
        if not cells:
            raise ValueError("MultiRNNCell needs at least one cell")
        if not state_is_tuple:
            raise NotImplementedError("MultiRNNCell(state_is_tuple=False) is not supported")
        self._cells = list(cells)

    state_size = property(lambda self: tuple(c.state_size for c in self._cells))
    output_size = property(lambda self: self._cells[-1].output_size)

    @property
    def variables(self):
        return [v for c in self._cells for v in c.variables]

    def zero_state(self, batch_size, dtype):
        return tuple(c.zero_state(batch_size, dtype) for c in self._cells)

    def __call__(self, inputs, state, scope=None):
        g = outermost(get_default_graph())
        if self._built_graph is not g:
            with vs.variable_scope(scope or self._scope_name()) as sc:
                self._vscope = sc
            self._built_graph = g
        x, new_states = inputs, []
        with vs.variable_scope(self._vscope):
            for k, (cell, s) in enumerate(zip(self._cells, state)):
                with vs.variable_scope(f"cell_{k}"):
                    x, ns = cell(x, s)
                new_states.append(ns)
        return x, tuple(new_states)


# --- dropout ------------------------------------------------------------------------------------
# Inside dynamic_rnn's loop, a random op would be re-run (with fresh numbers) when the
# gradient recomputes a step, so the masks there are drawn once for all steps outside the loop
# (per-step slices of a [time, batch, ...] mask). ``_NOISE`` holds the loop's noise source.

_NOISE = threading.local()


class _StepNoise:
    """Draws ``[time, batch, depth]`` keep-masks in the enclosing graph and hands out the slice
    of the current step inside the loop body."""

    def __init__(self, outer_graph, num_steps, batch_size, step_index, seed):
        self.outer_graph, self.num_steps, self.batch_size = outer_graph, num_steps, batch_size
        self.step_index, self.seed = step_index, seed

    def keep_mask(self, depth, keep_prob, seed):
        from tensorweave.ops import random_ops
        with self.outer_graph.as_default():
            shape = array_ops.stack([self.num_steps, self.batch_size, depth])
            u = random_ops.random_uniform(shape, dtype=dtypes.float32, seed=seed)
            mask = math_ops.less(u, math_ops.cast(keep_prob, dtypes.float32))
        return array_ops.gather(mask, self.step_index)


def _current_noise():
    return getattr(_NOISE, "source", None)


def _dropout(x, keep_prob, seed):
    if isinstance(keep_prob, (int, float)) and keep_prob == 1.0:
        return x
    src = _current_noise()
    if src is None:
        return nn_ops.dropout(x, keep_prob=keep_prob, seed=seed)
    depth = x.shape[-1].value
    if depth is None or x.shape.ndims != 2:
        raise ValueError(f"DropoutWrapper inside dynamic_rnn needs [batch, depth] tensors with "
                         f"a known depth, got {x.shape}")
    keep = src.keep_mask(depth, keep_prob, seed)
    kp = math_ops.cast(keep_prob, x.dtype)
    return x * math_ops.cast(keep, x.dtype) / kp


class DropoutWrapper(RNNCell):
    """Dropout on a cell's inputs, outputs and (for LSTM states, on ``h`` only) new state.
    Keep probabilities may be tensors (e.g. ``tw.placeholder_with_default(1.0, [])``)."""

    def __init__(self, cell, input_keep_prob=1.0, output_keep_prob=1.0, state_keep_prob=1.0,
                 variational_recurrent=False, input_size=None, dtype=None, seed=None,
                 dropout_state_filter_visitor=None):
        super().__init__()
        if variational_recurrent:
            raise NotImplementedError("DropoutWrapper(variational_recurrent=True) is not "
                                      "supported")
        for name, p in (("input_keep_prob", input_keep_prob),
                        ("output_keep_prob", output_keep_prob),
                        ("state_keep_prob", state_keep_prob)):
            if isinstance(p, (int, float)) and not 0.0 < p <= 1.0:
                raise ValueError(f"DropoutWrapper: {name} must be in (0, 1], got {p}")
        self._cell = cell
        self._in, self._out, self._st = input_keep_prob, output_keep_prob, state_keep_prob
        self._seed = seed
        del input_size, dtype, dropout_state_filter_visitor

    state_size = property(lambda self: self._cell.state_size)
    output_size = property(lambda self: self._cell.output_size)
    variables = property(lambda self: self._cell.variables)
    wrapped_cell = property(lambda self: self._cell)

    def zero_state(self, batch_size, dtype):
        return self._cell.zero_state(batch_size, dtype)

    def __call__(self, inputs, state, scope=None):
        inputs = _dropout(convert_to_tensor(inputs), self._in, self._seed)
        output, new_state = self._cell(inputs, state, scope=scope)
        if not (isinstance(self._st, (int, float)) and self._st == 1.0):
            new_state = _drop_state(new_state, self._st, self._seed)
        output = _dropout(output, self._out, self._seed)
        return output, new_state


def _drop_state(state, keep_prob, seed):
    if isinstance(state, LSTMStateTuple):  # the memory cell is left alone, as in TF1
        return LSTMStateTuple(state.c, _dropout(state.h, keep_prob, seed))
    if isinstance(state, tuple):
        return tuple(_drop_state(s, keep_prob, seed) for s in state)
    return _dropout(state, keep_prob, seed)


class ResidualWrapper(RNNCell):
    """``output = cell_output + inputs`` (the depths must match)."""

    def __init__(self, cell, residual_fn=None):
        super().__init__()
        self._cell = cell
        self._fn = residual_fn or (lambda i, o: i + o)

    state_size = property(lambda self: self._cell.state_size)
    output_size = property(lambda self: self._cell.output_size)
    variables = property(lambda self: self._cell.variables)

    def zero_state(self, batch_size, dtype):
        return self._cell.zero_state(batch_size, dtype)

    def __call__(self, inputs, state, scope=None):
        output, new_state = self._cell(inputs, state, scope=scope)
        return self._fn(convert_to_tensor(inputs), output), new_state


__all__ = ["RNNCell", "LSTMStateTuple", "BasicRNNCell", "GRUCell", "LSTMCell", "BasicLSTMCell",
           "MultiRNNCell", "DropoutWrapper", "ResidualWrapper"]

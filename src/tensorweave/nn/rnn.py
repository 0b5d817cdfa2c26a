"""Running cells over sequences: ``dynamic_rnn`` (a Scan op over time), ``static_rnn``
(a Python loop, one set of ops per step) and ``bidirectional_dynamic_rnn``.

Padded steps (``t >= sequence_length[b]``) give zero outputs and carry the state unchanged, so
the final state is each sequence's state at its own length.
"""

from __future__ import annotations

from tensorweave.framework import dtypes, nest
from tensorweave.framework.ops import convert_to_tensor, get_default_graph, name_scope
from tensorweave.nn import rnn_cell as _cells
from tensorweave.ops import array_ops, math_ops
from tensorweave.ops import variable_scope as vs
from tensorweave.ops.control_flow_ops import _scan_op


def _transpose_batch_time(x):
    x = convert_to_tensor(x)
    if x.shape.ndims is not None and x.shape.ndims < 2:
        raise ValueError(f"RNN inputs must have rank >= 2 ([batch, time, ...]), got {x.shape}")
    rank = x.shape.ndims
    return array_ops.transpose(x, [1, 0] + list(range(2, rank)))


def _batch_size(flat_time_major):
    x = flat_time_major[0]
    b = x.shape[1].value if x.shape.ndims else None
    return b if b is not None else array_ops.shape(x)[1]


def _initial_state(cell, initial_state, batch_size, dtype, name):
    if initial_state is not None:
        return initial_state
    if dtype is None:
        raise ValueError(f"{name}: if no initial_state is given, dtype must be (the state's "
                         "dtype, e.g. tw.float32)")
    return cell.zero_state(batch_size, dtypes.as_dtype(dtype))


def _scan_over_time(cell, inputs_tm, state, sequence_length, reverse, name):
    """Scan ``cell`` over time-major ``inputs_tm`` (a nest); returns (outputs_tm, state)."""
    flat = nest.flatten(inputs_tm)
    steps = flat[0].shape[0].value if flat[0].shape.ndims else None
    if steps is None:
        steps = array_ops.shape(flat[0])[0]
    batch = _batch_size(flat)
    elems = {"x": inputs_tm, "t": math_ops.cast(array_ops.range(steps), dtypes.int32)}
    if sequence_length is not None:
        seq = math_ops.cast(convert_to_tensor(sequence_length), dtypes.int32)
        mask = array_ops.sequence_mask(seq, steps)  # [batch, time]
        elems["valid"] = array_ops.expand_dims(array_ops.transpose(mask, [1, 0]), 2)
    outer = get_default_graph()

    def step(carry, e):
        saved = _cells._current_noise()
        _cells._NOISE.source = _cells._StepNoise(outer, steps, batch, e["t"], None)
        try:
            out, new_state = cell(e["x"], carry)
        finally:
            _cells._NOISE.source = saved
        if "valid" in e:
            out = nest.map_structure(
                lambda o: o * math_ops.cast(e["valid"], o.dtype), out)
            new_state = nest.map_structure(
                lambda n, o: math_ops.where(e["valid"], n, o),
                new_state, carry)
        return new_state, out

    final, outputs = _scan_op(step, state, elems, reverse, name)
    return outputs, final


def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None,
                parallel_iterations=None, swap_memory=False, time_major=False, scope=None):
    """Runs ``cell`` over ``inputs`` ([batch, time, depth], or [time, batch, depth] with
    ``time_major``) inside the graph; returns ``(outputs, final_state)``.

    With ``sequence_length`` ([batch] ints), outputs past each length are zero and the state is
    carried unchanged, so ``final_state`` is the state at each sequence's length.

    Example::

        cell = tw.nn.rnn_cell.LSTMCell(64)
        outputs, state = tw.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tw.float32)
    """
    del parallel_iterations, swap_memory
    with vs.variable_scope(scope or "rnn"):
        inputs_tm = inputs if time_major else nest.map_structure(_transpose_batch_time, inputs)
        inputs_tm = nest.map_structure(convert_to_tensor, inputs_tm)
        batch = _batch_size(nest.flatten(inputs_tm))
        state = _initial_state(cell, initial_state, batch, dtype, "dynamic_rnn")
        outputs, final = _scan_over_time(cell, inputs_tm, state, sequence_length, False,
                                         "rnn_scan")
        if not time_major:
            outputs = nest.map_structure(_transpose_batch_time, outputs)
    return outputs, final


def bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, sequence_length=None,
                              initial_state_fw=None, initial_state_bw=None, dtype=None,
                              parallel_iterations=None, swap_memory=False, time_major=False,
                              scope=None):
    """A forward and a backward ``dynamic_rnn`` over the same inputs (the backward one reads
    each sequence from its own last step); returns ``((out_fw, out_bw), (state_fw, state_bw))``
    with both outputs in the original time order."""
    del parallel_iterations, swap_memory
    with vs.variable_scope(scope or "bidirectional_rnn"):
        inputs_tm = inputs if time_major else nest.map_structure(_transpose_batch_time, inputs)
        inputs_tm = nest.map_structure(convert_to_tensor, inputs_tm)
        batch = _batch_size(nest.flatten(inputs_tm))
        results = []
        for name, cell, init, reverse in (("fw", cell_fw, initial_state_fw, False),
                                          ("bw", cell_bw, initial_state_bw, True)):
            with vs.variable_scope(name):
                state = _initial_state(cell, init, batch, dtype, "bidirectional_dynamic_rnn")
                # a reversed scan with masking equals reversing each sequence within its length:
                # the padded tail is visited first and leaves the initial state untouched
                outputs, final = _scan_over_time(cell, inputs_tm, state, sequence_length,
                                                 reverse, f"{name}_scan")
            if not time_major:
                outputs = nest.map_structure(_transpose_batch_time, outputs)
            results.append((outputs, final))
    return (results[0][0], results[1][0]), (results[0][1], results[1][1])


def static_rnn(cell, inputs, initial_state=None, dtype=None, sequence_length=None, scope=None):
    """Unrolls ``cell`` over the Python list ``inputs`` (each [batch, depth]): one set of ops per
    step. Returns ``(outputs list, final_state)``; masking as in :func:`dynamic_rnn`."""
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError("static_rnn: inputs must be a non-empty list of [batch, depth] tensors")
    with vs.variable_scope(scope or "rnn"):
        first = convert_to_tensor(nest.flatten(inputs[0])[0])
        b = first.shape[0].value if first.shape.ndims else None
        batch = b if b is not None else array_ops.shape(first)[0]
        state = _initial_state(cell, initial_state, batch, dtype, "static_rnn")
        seq = None
        if sequence_length is not None:
            seq = math_ops.cast(convert_to_tensor(sequence_length), dtypes.int32)
        outputs = []
        for t, x in enumerate(inputs):
            with name_scope(f"step_{t}" if t else None):
                out, new_state = cell(x, state)
                if seq is not None:
                    valid = array_ops.expand_dims(math_ops.less(t, seq), 1)
                    out = out * math_ops.cast(valid, out.dtype)
                    new_state = nest.map_structure(
                        lambda n, o, v=valid: math_ops.where(v, n, o),
                        new_state, state)
            outputs.append(out)
            state = new_state
    return outputs, state


__all__ = ["dynamic_rnn", "bidirectional_dynamic_rnn", "static_rnn"]

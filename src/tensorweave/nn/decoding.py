"""Greedy decoding and beam search inside the graph (``tw.while_loop``), stopping when every
sequence has produced ``end_token`` or after ``max_length`` steps.

Both take a ``step_fn(tokens, state) -> (logits, new_state)``: ``tokens`` is [n] int32 (the
previous token of each hypothesis), ``state`` any nest of [n, ...] tensors (an LSTMStateTuple,
an AttentionWrapperState...), ``logits`` [n, vocab]. It is traced once inside the loop body.

Example::

    def step(tokens, state):
        out, state = cell(tw.nn.embedding_lookup(embedding, tokens), state)
        return tw.matmul(out, w_out) + b_out, state

    ids, lengths, scores = tw.nn.greedy_decode(step, enc_state, start, eos, max_length=50)
    # beam search: state (and attention memory) tiled with tile_batch first
    beams = tw.nn.beam_search(step, enc_state, start, eos, beam_width=4, max_length=50)
    best = beams.ids[:, 0]
"""

from __future__ import annotations

import collections

from tensorweave.framework import dtypes, nest
from tensorweave.framework.ops import convert_to_tensor, name_scope
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import array_ops, control_flow_ops, math_ops, nn_ops

_NEG = -1e9  # "impossible" log-probability without inf - inf = NaN

DecodeResult = collections.namedtuple("DecodeResult", ("ids", "lengths", "scores"))
DecodeResult.__doc__ = """``ids`` [batch, time] (or [batch, beam, time], best beam first),
``lengths`` (tokens up to and including the first ``end_token``), ``scores`` (greedy: the sum of
log-probabilities; beam search: the length-normalized score)."""


def tile_batch(t, multiplier, name=None):
    """Repeats each batch entry ``multiplier`` times: [b0, b0, b1, b1] for 2 (a nest is tiled
    leaf by leaf). Use it on the decoder state and attention memory before beam search."""
    with name_scope(name or "tile_batch"):
        def tile(x):
            x = convert_to_tensor(x)
            b = array_ops.shape(x)[0]
            rows = array_ops.reshape(array_ops.tile(array_ops.expand_dims(
                array_ops.range(b), 1), [1, multiplier]), [-1])
            return array_ops.gather(x, rows)
        return nest.map_structure(tile, t)


def _invariant(t):
    """Loop-variable shape that lets the batch (and any unknown) dimension vary."""
    shape = convert_to_tensor(t).shape
    if shape.ndims is None:
        return TensorShape(None)
    return TensorShape([None] + shape.as_list()[1:])


def _logits_of(step_fn, tokens, state):
    logits, new_state = step_fn(tokens, state)
    logits = convert_to_tensor(logits)
    if logits.shape.ndims not in (None, 2):
        raise ValueError(f"step_fn must return logits of shape [n, vocab], got {logits.shape}")
    return logits, new_state


def greedy_decode(step_fn, initial_state, start_tokens, end_token, max_length, name=None):
    """Feeds back the most likely token each step; finished sequences are padded with
    ``end_token``. Returns a :class:`DecodeResult` (ids [batch, time], time <= max_length)."""
    with name_scope(name or "greedy_decode"):
        start = math_ops.cast(convert_to_tensor(start_tokens), dtypes.int32)
        end = math_ops.cast(convert_to_tensor(end_token), dtypes.int32)
        n = array_ops.shape(start)[0]
        ids0 = array_ops.zeros(array_ops.stack([n, 0]), dtype=dtypes.int32)
        fin0 = math_ops.equal(array_ops.zeros_like(start), 1)
        len0 = array_ops.zeros_like(start)
        score0 = array_ops.zeros(array_ops.stack([n]), dtype=dtypes.float32)
        state0 = nest.map_structure(convert_to_tensor, initial_state)

        def cond(tokens, state, finished, lengths, score, ids):
            return math_ops.logical_not(math_ops.reduce_all(finished))

        def body(tokens, state, finished, lengths, score, ids):
            logits, new_state = _logits_of(step_fn, tokens, state)
            logp = nn_ops.log_softmax(logits)
            tok = math_ops.cast(math_ops.argmax(logits, axis=1), dtypes.int32)
            tok = math_ops.where(finished, array_ops.fill(array_ops.shape(tok), end), tok)
            best = math_ops.reduce_max(logp, axis=1)
            alive = math_ops.logical_not(finished)
            score = score + math_ops.cast(best * math_ops.cast(alive, best.dtype),
                                          dtypes.float32)
            lengths = lengths + math_ops.cast(alive, dtypes.int32)
            finished = math_ops.logical_or(finished, math_ops.equal(tok, end))
            ids = array_ops.concat([ids, array_ops.expand_dims(tok, 1)], 1)
            return tok, new_state, finished, lengths, score, ids

        loop = (start, state0, fin0, len0, score0, ids0)
        inv = (TensorShape([None]), nest.map_structure(_invariant, state0),
               TensorShape([None]), TensorShape([None]), TensorShape([None]),
               TensorShape([None, None]))
        out = control_flow_ops.while_loop(cond, body, loop, shape_invariants=inv,
                                          maximum_iterations=max_length)
        return DecodeResult(out[5], out[3], out[4])


def length_penalty_factor(lengths, alpha, dtype=dtypes.float32):
    """GNMT's ``((5 + length) / 6) ** alpha`` (1 for alpha = 0)."""
    lengths = math_ops.cast(lengths, dtype)
    if isinstance(alpha, (int, float)) and alpha == 0:
        return array_ops.ones_like(lengths)
    return math_ops.pow((5.0 + lengths) / 6.0, math_ops.cast(alpha, dtype))


def beam_search(step_fn, initial_state, start_tokens, end_token, beam_width, max_length,
                length_penalty=0.6, name=None):
    """Beam search with GNMT length normalization: hypotheses are ranked by
    ``log P(y) / ((5 + |y|) / 6) ** length_penalty`` (``length_penalty=0`` ranks by raw
    log-probability; ``beam_width=1`` is greedy decoding).

    ``initial_state`` and ``start_tokens`` are per batch entry ([batch, ...]); the state is tiled
    to ``batch * beam_width`` rows here, so ``step_fn`` sees [batch * beam_width, ...] rows
    (beam-major within each batch entry). Tensors that ``step_fn`` captures (attention memory)
    must be tiled by the caller with :func:`tile_batch`. A finished hypothesis only extends with
    ``end_token`` at no cost. Returns a :class:`DecodeResult` with ids [batch, beam, time] sorted
    best first.
    """
    K = int(beam_width)
    if K < 1:
        raise ValueError(f"beam_search: beam_width must be >= 1, got {beam_width}")
    with name_scope(name or "beam_search"):
        start = math_ops.cast(convert_to_tensor(start_tokens), dtypes.int32)
        end = math_ops.cast(convert_to_tensor(end_token), dtypes.int32)
        B = array_ops.shape(start)[0]
        state0 = tile_batch(initial_state, K)
        tokens0 = tile_batch(start, K)
        first = array_ops.one_hot(array_ops.zeros_like(start), K, on_value=0.0, off_value=_NEG)
        logp0 = first  # [B, K]: only beam 0 is live at the start, so no duplicates
        fin0 = math_ops.equal(array_ops.zeros_like(first, dtype=dtypes.int32), 1)
        len0 = array_ops.zeros_like(first, dtype=dtypes.int32)
        ids0 = array_ops.zeros(array_ops.stack([B, K, 0]), dtype=dtypes.int32)
        base = array_ops.expand_dims(array_ops.range(B) * K, 1)  # [B, 1] row offsets

        def cond(tokens, state, log_probs, finished, lengths, ids):
            return math_ops.logical_not(math_ops.reduce_all(finished))

        def body(tokens, state, log_probs, finished, lengths, ids):
            logits, new_state = _logits_of(step_fn, tokens, state)
            logp = nn_ops.log_softmax(math_ops.cast(logits, dtypes.float32))
            V = array_ops.shape(logp)[1]
            logp = array_ops.reshape(logp, array_ops.stack([B, K, V]))
            # a finished beam continues only with end_token, at no cost and no length
            eos_row = array_ops.one_hot(array_ops.fill(array_ops.stack([B, K]), end), V,
                                        on_value=0.0, off_value=_NEG)
            logp = math_ops.where(array_ops.expand_dims(finished, 2), eos_row, logp)
            total = array_ops.expand_dims(log_probs, 2) + logp  # [B, K, V]
            new_len = lengths + math_ops.cast(math_ops.logical_not(finished), dtypes.int32)
            norm = total / array_ops.expand_dims(length_penalty_factor(new_len,
                                                                       length_penalty), 2)
            flat_norm = array_ops.reshape(norm, array_ops.stack([B, K * V]))
            _, idx = nn_ops.top_k(flat_norm, k=K)  # [B, K]
            idx = math_ops.cast(idx, dtypes.int32)
            beam = math_ops.floordiv(idx, V)
            tok = math_ops.floormod(idx, V)
            rows = array_ops.reshape(base + beam, [-1])  # [B*K] rows of the previous beams
            flat_total = array_ops.reshape(total, [-1])
            pick = array_ops.reshape(base * V + idx, [-1])
            log_probs = array_ops.reshape(array_ops.gather(flat_total, pick),
                                          array_ops.stack([B, K]))
            lengths = array_ops.reshape(array_ops.gather(array_ops.reshape(new_len, [-1]),
                                                         rows), array_ops.stack([B, K]))
            was_fin = array_ops.reshape(array_ops.gather(array_ops.reshape(finished, [-1]),
                                                         rows), array_ops.stack([B, K]))
            finished = math_ops.logical_or(was_fin, math_ops.equal(tok, end))
            prev = array_ops.gather(array_ops.reshape(ids, array_ops.stack([B * K, -1])), rows)
            ids = array_ops.concat([array_ops.reshape(prev, array_ops.stack([B, K, -1])),
                                    array_ops.expand_dims(tok, 2)], 2)
            new_state = nest.map_structure(lambda s: array_ops.gather(s, rows), new_state)
            return array_ops.reshape(tok, [-1]), new_state, log_probs, finished, lengths, ids

        loop = (tokens0, state0, logp0, fin0, len0, ids0)
        inv = (TensorShape([None]), nest.map_structure(_invariant, state0),
               TensorShape([None, K]), TensorShape([None, K]), TensorShape([None, K]),
               TensorShape([None, K, None]))
        _, _, log_probs, _, lengths, ids = control_flow_ops.while_loop(
            cond, body, loop, shape_invariants=inv, maximum_iterations=max_length)
        scores = log_probs / length_penalty_factor(lengths, length_penalty)
        scores, order = nn_ops.top_k(scores, k=K)  # best first
        order = math_ops.cast(order, dtypes.int32)
        rows = array_ops.reshape(base + order, [-1])
        T = array_ops.shape(ids)[2]
        ids = array_ops.reshape(array_ops.gather(
            array_ops.reshape(ids, array_ops.stack([B * K, T])), rows),
            array_ops.stack([B, K, T]))
        lengths = array_ops.reshape(array_ops.gather(array_ops.reshape(lengths, [-1]), rows),
                                    array_ops.stack([B, K]))
        return DecodeResult(ids, lengths, scores)


__all__ = ["greedy_decode", "beam_search", "tile_batch", "length_penalty_factor",
           "DecodeResult"]

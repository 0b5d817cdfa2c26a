"""Bahdanau and Luong attention (masking, values against NumPy, gradients) and AttentionWrapper."""

from __future__ import annotations

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case

LENGTHS = [3, 1]


def _softmax_masked(s, lengths):
    s = s.copy()
    for b, L in enumerate(lengths):
        s[b, L:] = -np.inf
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_bahdanau(memory, query, wk, wq, v):
    keys = memory @ wk
    s = np.sum(v * np.tanh(keys + (query @ wq)[:, None]), 2)
    a = _softmax_masked(s, LENGTHS)
    return np.einsum("bt,btd->bd", a, memory), a


def _np_luong(memory, query, wk):
    s = np.einsum("bu,btu->bt", query, memory @ wk)
    a = _softmax_masked(s, LENGTHS)
    return np.einsum("bt,btd->bd", a, memory), a


def _with_params(fn):
    """Build for the harness: the mechanism's variables come from the extra placeholders."""
    def build(memory, query, *params):
        it = iter(params)
        with tw.variable_scope("p", custom_getter=lambda g, name, *a, **k: next(it)):
            return fn(memory, query)
    return build


def _ctx_and_align(mech_cls):
    def fn(memory, query):
        ctx, align = mech_cls(3, memory, memory_sequence_length=LENGTHS)(query)
        return tw.concat([ctx, align], 1)  # one output checks both
    return fn


CASES = [
    OpCase("bahdanau", _with_params(_ctx_and_align(tw.nn.BahdanauAttention)),
           lambda m, q, wk, wq, v: np.concatenate(_np_bahdanau(m, q, wk, wq, v), 1),
           [(2, 4, 2), (2, 5), (2, 3), (5, 3), (3,)]),
    OpCase("luong", _with_params(_ctx_and_align(tw.nn.LuongAttention)),
           lambda m, q, wk: np.concatenate(_np_luong(m, q, wk), 1),
           [(2, 4, 2), (2, 3), (2, 3)]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_attention_table(case):
    check_case(case)


def test_padded_positions_get_zero_weight_even_with_huge_memory_values():
    mem = np.random.default_rng(0).standard_normal((2, 4, 3))
    mem[1, 2:] = 1e6  # garbage in the padding must not leak into the context
    with tw.Graph().as_default():
        m = tw.constant(mem)
        for mech in (tw.nn.BahdanauAttention(3, m, memory_sequence_length=[4, 2]),
                     tw.nn.LuongAttention(3, m, memory_sequence_length=[4, 2], scale=True)):
            ctx, a = mech(tw.constant(np.ones((2, 3))))
            with tw.Session() as sess:
                sess.run(tw.global_variables_initializer())
                c, al = sess.run([ctx, a])
            np.testing.assert_allclose(al.sum(1), 1.0)
            assert np.all(al[1, 2:] == 0) and np.all(al[0] > 0)
            assert np.all(np.abs(c) < 10)


def test_luong_query_depth_must_equal_num_units():
    with tw.Graph().as_default():
        mech = tw.nn.LuongAttention(4, tw.zeros([2, 3, 5]))
        with pytest.raises(ValueError, match="num_units"):
            mech(tw.zeros([2, 3]))
        with pytest.raises(ValueError, match="memory"):
            tw.nn.BahdanauAttention(4, tw.zeros([2, 3]))


def test_attention_wrapper_in_dynamic_rnn_and_tiled_copy_shares_variables():
    rng = np.random.default_rng(1)
    with tw.Graph().as_default():
        mem = tw.placeholder(tw.float32, [None, None, 6])
        mlen = tw.placeholder(tw.int32, [None])
        x = tw.placeholder(tw.float32, [None, 3, 2])
        mech = tw.nn.LuongAttention(5, mem, memory_sequence_length=mlen)
        cell = tw.nn.AttentionWrapper(tw.nn.rnn_cell.LSTMCell(5), mech, attention_layer_size=4)
        assert cell.output_size == 4
        init = cell.zero_state(tw.shape(x)[0], tw.float32)
        out, st = tw.nn.dynamic_rnn(cell, x, initial_state=init, scope="dec")
        n_vars = len(tw.global_variables())
        names = sorted(v.op.name for v in tw.global_variables())
        tiled = cell.tile_batch(2)
        o2, s2 = tiled(tw.nn.tile_batch(x[:, 0], 2), tw.nn.tile_batch(init, 2))
        assert len(tw.global_variables()) == n_vars
        feed = {mem: rng.standard_normal((2, 4, 6)), mlen: [4, 3],
                x: rng.standard_normal((2, 3, 2))}
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            o, s, a, b = sess.run([out, st, o2, s2.alignments], feed)
    assert names == ["LuongAttention/memory_layer/kernel", "dec/attention_wrapper/attention_layer/"
                     "kernel", "dec/attention_wrapper/lstm_cell/bias",
                     "dec/attention_wrapper/lstm_cell/kernel"]
    assert o.shape == (2, 3, 4) and s.alignments.shape == (2, 4)
    np.testing.assert_allclose(s.alignments[1, 3], 0.0)
    np.testing.assert_allclose(a[0], a[1], rtol=1e-6)  # tiled rows repeat batch entry 0
    np.testing.assert_allclose(a[0], o[0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b[2, 3], 0.0)

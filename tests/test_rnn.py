"""Recurrent cells, dynamic/static/bidirectional RNNs, masking, gradients and clipping."""

from __future__ import annotations

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case

rnn_cell = tw.nn.rnn_cell


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- forward of one step against NumPy ------------------------------------------------------


def test_lstm_step_matches_numpy_gate_order_and_forget_bias():
    rng = np.random.default_rng(0)
    x, c, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    with tw.Graph().as_default():
        cell = rnn_cell.LSTMCell(4, forget_bias=0.7)
        out, st = cell(tw.constant(x), rnn_cell.LSTMStateTuple(tw.constant(c), tw.constant(h)))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            k, b = sess.run([cell.variables[0], cell.variables[1]])
            b = rng.standard_normal(b.shape)
            cell.variables[1].load(b, sess)
            got_out, got_st = sess.run([out, st])
    z = np.concatenate([x, h], 1) @ k + b
    i, j, f, o = np.split(z, 4, axis=1)
    c2 = _sig(f + 0.7) * c + _sig(i) * np.tanh(j)
    h2 = _sig(o) * np.tanh(c2)
    np.testing.assert_allclose(got_st.c, c2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_st.h, h2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_out, h2, rtol=1e-5, atol=1e-6)


def test_gru_step_matches_numpy():
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    with tw.Graph().as_default():
        cell = rnn_cell.GRUCell(4)
        out, st = cell(tw.constant(x), tw.constant(h))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            gk, gb, ck, cb = sess.run(cell.variables)
            got = sess.run(out)
    r, u = np.split(_sig(np.concatenate([x, h], 1) @ gk + gb), 2, axis=1)
    cand = np.tanh(np.concatenate([x, r * h], 1) @ ck + cb)
    np.testing.assert_allclose(got, u * h + (1 - u) * cand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, np.ones(8))  # TF1 initializes the gate bias to 1


# --- variable names -------------------------------------------------------------------------


def test_variable_names_follow_tf1():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [None, 4, 3])
        tw.nn.dynamic_rnn(rnn_cell.LSTMCell(5), x, dtype=tw.float32)
        tw.nn.dynamic_rnn(rnn_cell.MultiRNNCell([rnn_cell.GRUCell(5), rnn_cell.LSTMCell(6)]),
                          x, dtype=tw.float32, scope="stack")
        tw.nn.bidirectional_dynamic_rnn(rnn_cell.BasicLSTMCell(2), rnn_cell.BasicRNNCell(2),
                                        x, dtype=tw.float32)
        tw.nn.dynamic_rnn(rnn_cell.LSTMCell(5, use_peepholes=True, num_proj=3), x,
                          dtype=tw.float32, scope="proj")
        names = sorted(v.op.name for v in tw.global_variables())
    assert names == sorted([
        "rnn/lstm_cell/kernel", "rnn/lstm_cell/bias",
        "stack/multi_rnn_cell/cell_0/gru_cell/gates/kernel",
        "stack/multi_rnn_cell/cell_0/gru_cell/gates/bias",
        "stack/multi_rnn_cell/cell_0/gru_cell/candidate/kernel",
        "stack/multi_rnn_cell/cell_0/gru_cell/candidate/bias",
        "stack/multi_rnn_cell/cell_1/lstm_cell/kernel",
        "stack/multi_rnn_cell/cell_1/lstm_cell/bias",
        "bidirectional_rnn/fw/basic_lstm_cell/kernel", "bidirectional_rnn/fw/basic_lstm_cell/bias",
        "bidirectional_rnn/bw/basic_rnn_cell/kernel", "bidirectional_rnn/bw/basic_rnn_cell/bias",
        "proj/lstm_cell/kernel", "proj/lstm_cell/bias", "proj/lstm_cell/w_f_diag",
        "proj/lstm_cell/w_i_diag", "proj/lstm_cell/w_o_diag",
        "proj/lstm_cell/projection/kernel"])


def test_two_cells_in_one_scope_get_distinct_variables_and_reuse_shares():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [2, 3])
        a, b = rnn_cell.BasicRNNCell(4), rnn_cell.BasicRNNCell(4)
        s = a.zero_state(2, tw.float32)
        a(x, s)
        b(x, s)
        a(x, s)  # a second call reuses a's variables
        assert [v.op.name for v in tw.global_variables()] == [
            "basic_rnn_cell/kernel", "basic_rnn_cell/bias", "basic_rnn_cell_1/kernel",
            "basic_rnn_cell_1/bias"]
        with tw.variable_scope("", reuse=True):
            c = rnn_cell.BasicRNNCell(4)
            c(x, s)
        assert c.variables[0] is a.variables[0]


def test_zero_state_shapes_and_sizes():
    with tw.Graph().as_default():
        cell = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(3, num_proj=2), rnn_cell.GRUCell(5)])
        assert cell.state_size == (rnn_cell.LSTMStateTuple(3, 2), 5)
        assert cell.output_size == 5
        b = tw.placeholder(tw.int32, [])
        z = cell.zero_state(b, tw.float32)
        assert z[0].c.shape.as_list() == [None, 3] and z[1].shape.as_list() == [None, 5]
        flat = rnn_cell.LSTMCell(3, state_is_tuple=False)
        assert flat.state_size == 6
        with tw.Session() as sess:
            assert sess.run(z[0].h, {b: 4}).shape == (4, 2)


def test_missing_dtype_and_bad_inputs_raise():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [None, 4, 3])
        with pytest.raises(ValueError, match="dtype"):
            tw.nn.dynamic_rnn(rnn_cell.GRUCell(2), x)
        with pytest.raises(ValueError, match="last dimension"):
            tw.nn.dynamic_rnn(rnn_cell.GRUCell(2), tw.placeholder(tw.float32, [None, 4, None]),
                              dtype=tw.float32)
        with pytest.raises(ValueError, match="keep_prob"):
            rnn_cell.DropoutWrapper(rnn_cell.GRUCell(2), output_keep_prob=0.0)


# --- masking: dynamic_rnn against a statically unrolled reference ---------------------------


@pytest.mark.parametrize("make_cell", [
    lambda: rnn_cell.LSTMCell(4),
    lambda: rnn_cell.GRUCell(4),
    lambda: rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(3, use_peepholes=True, num_proj=2),
                                   rnn_cell.BasicRNNCell(4)]),
], ids=["lstm", "gru", "multi"])
@pytest.mark.parametrize("time_major", [False, True])
def test_dynamic_rnn_masking_equals_static_unroll(make_cell, time_major):
    rng = np.random.default_rng(2)
    B, T, D = 3, 5, 2
    xs = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = np.array([5, 2, 0], np.int32)
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [B, T, D])
        cell = make_cell()
        dyn_in = tw.transpose(x, [1, 0, 2]) if time_major else x
        out, state = tw.nn.dynamic_rnn(cell, dyn_in, sequence_length=lengths,
                                       dtype=tw.float32, time_major=time_major)
        if time_major:
            out = tw.transpose(out, [1, 0, 2])
        # the same cell object (same variables), unrolled without masking
        s_out, _ = tw.nn.static_rnn(cell, tw.unstack(x, axis=1), dtype=tw.float32)
        states, st = [], cell.zero_state(B, tw.float32)
        for t in range(T):
            _, st = cell(x[:, t], st)
            states.append(st)
        zero = cell.zero_state(B, tw.float32)
        assert len(tw.trainable_variables()) == len(cell.variables)
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            got, got_state, ref, ref_states, z = sess.run([out, state, s_out, states, zero],
                                                          {x: xs})
    from tensorweave.framework import nest
    flat_state = nest.flatten(got_state)
    for b in range(B):
        L = lengths[b]
        for t in range(T):
            want = ref[t][b] if t < L else np.zeros_like(ref[t][b])
            np.testing.assert_allclose(got[b, t], want, rtol=1e-5, atol=1e-6)
        want_state = nest.flatten(ref_states[L - 1]) if L else nest.flatten(z)
        for g_s, w_s in zip(flat_state, want_state):
            np.testing.assert_allclose(g_s[b], w_s[b], rtol=1e-5, atol=1e-6)


def test_bidirectional_backward_reads_each_sequence_from_its_end():
    rng = np.random.default_rng(3)
    B, T, D = 2, 4, 3
    xs = rng.standard_normal((B, T, D))
    lengths = [4, 2]
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float64, [B, T, D])
        fw, bw = rnn_cell.GRUCell(3), rnn_cell.GRUCell(3)
        (o_fw, o_bw), (s_fw, s_bw) = tw.nn.bidirectional_dynamic_rnn(
            fw, bw, x, sequence_length=lengths, dtype=tw.float64)
        # reference: the backward cell over each reversed prefix, one sequence at a time
        refs = []
        for b in range(B):
            L = lengths[b]
            rev = tw.reverse(x[b:b + 1, :L], [1])
            o, s = tw.nn.dynamic_rnn(bw, rev, dtype=tw.float64, scope="ref")
            refs.append((tw.reverse(o, [1]), s))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            got_o, got_s, r = sess.run([o_bw, s_bw, refs], {x: xs})
            f_o = sess.run(o_fw, {x: xs})
    for b in range(B):
        L = lengths[b]
        np.testing.assert_allclose(got_o[b, :L], r[b][0][0], rtol=1e-10)
        np.testing.assert_allclose(got_o[b, L:], 0.0)
        np.testing.assert_allclose(got_s[b], r[b][1][0], rtol=1e-10)
    assert np.all(f_o[1, 2:] == 0) and np.all(f_o[1, :2] != 0)


# --- gradients against finite differences (float64, tiny sizes) -----------------------------


def _params_as_inputs(n_params, cell_fn):
    """A build function for the harness: the cell's variables come from placeholders (via a
    custom getter), so the harness differentiates w.r.t. them too."""
    def build(x, *params):
        it = iter(params)

        def getter(_getter, name, *a, **kw):
            return next(it)

        with tw.variable_scope("p", custom_getter=getter):
            return cell_fn(x)
    return build


def _np_rnn(step, n_units, lengths):
    def ref(x, *params):
        B, T, _ = x.shape
        outs = np.zeros((B, T, n_units))
        for b in range(B):
            state = None
            for t in range(lengths[b]):
                o, state = step(x[b:b + 1, t], state, *params)
                outs[b, t] = o[0]
        return outs
    return ref


def _np_lstm(x, state, k, bias):
    c, h = state if state is not None else (np.zeros((1, k.shape[1] // 4)),) * 2
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ k + bias, 4, axis=1)
    c = _sig(f + 1.0) * c + _sig(i) * np.tanh(j)
    h = _sig(o) * np.tanh(c)
    return h, (c, h)


def _np_gru(x, h, gk, gb, ck, cb):
    h = h if h is not None else np.zeros((1, ck.shape[1]))
    r, u = np.split(_sig(np.concatenate([x, h], 1) @ gk + gb), 2, axis=1)
    c = np.tanh(np.concatenate([x, r * h], 1) @ ck + cb)
    h = u * h + (1 - u) * c
    return h, h


LENGTHS = [3, 1]
GRAD_CASES = [
    OpCase("dynamic_lstm_masked", _params_as_inputs(2, lambda x: tw.nn.dynamic_rnn(
        rnn_cell.LSTMCell(2), x, sequence_length=LENGTHS, dtype=tw.float64)[0]),
        _np_rnn(_np_lstm, 2, LENGTHS), [(2, 3, 2), (4, 8), (8,)], grad_tol=1e-6),
    OpCase("dynamic_gru_masked", _params_as_inputs(4, lambda x: tw.nn.dynamic_rnn(
        rnn_cell.GRUCell(2), x, sequence_length=LENGTHS, dtype=tw.float64)[0]),
        _np_rnn(lambda x, h, *p: _np_gru(x, h, *p), 2, LENGTHS),
        [(2, 3, 2), (4, 4), (4,), (4, 2), (2,)], grad_tol=1e-6),
    OpCase("static_lstm", _params_as_inputs(2, lambda x: tw.stack(tw.nn.static_rnn(
        rnn_cell.LSTMCell(2), tw.unstack(x, axis=1), sequence_length=LENGTHS,
        dtype=tw.float64)[0], axis=1)),
        _np_rnn(_np_lstm, 2, LENGTHS), [(2, 3, 2), (4, 8), (8,)], grad_tol=1e-6),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_rnn_gradients_table(case):
    check_case(case)


def test_final_state_gradient_of_bidirectional_lstm():
    """The gradient of a loss on both final states (through the reversed scan)."""
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((2, 3, 2))
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float64, [2, 3, 2])
        _, (sf, sb) = tw.nn.bidirectional_dynamic_rnn(
            rnn_cell.LSTMCell(2), rnn_cell.LSTMCell(2), x, sequence_length=[2, 3],
            dtype=tw.float64)
        loss = tw.reduce_sum(sf.h * sb.c) + tw.reduce_sum(tw.square(sb.h))
        gx = tw.gradients(loss, x)[0]
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            got = sess.run(gx, {x: xs})
            num = np.zeros_like(xs)
            for idx in np.ndindex(xs.shape):
                for sgn in (1, -1):
                    xp = xs.copy()
                    xp[idx] += sgn * 1e-6
                    num[idx] += sgn * sess.run(loss, {x: xp}) / 2e-6
    np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-7)
    assert np.all(got[0, 2] == 0)  # the padded step of sequence 0 does not matter


def test_dropout_in_dynamic_rnn_uses_one_mask_for_forward_and_gradient():
    """With a graph seed every new session draws the same masks; the gradient must be the
    derivative of the forward pass that used them (a mask redrawn when the loop's gradient
    recomputes a step would break this)."""
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((3, 4, 2))
    v = rng.standard_normal(xs.shape)
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(7)
        x = tw.placeholder(tw.float64, [3, 4, 2])
        cell = rnn_cell.DropoutWrapper(rnn_cell.GRUCell(3), input_keep_prob=0.5,
                                       output_keep_prob=0.6, state_keep_prob=0.7)
        out, _ = tw.nn.dynamic_rnn(cell, x, dtype=tw.float64)
        loss = tw.reduce_sum(tw.square(out))
        gx = tw.gradients(loss, x)[0]
        init = tw.global_variables_initializer()

    def run(fetch, feed_x):
        with tw.Session(graph=g) as sess:
            sess.run(init)
            return sess.run(fetch, {x: feed_x})

    grad = run(gx, xs)
    eps = 1e-6
    num = (run(loss, xs + eps * v) - run(loss, xs - eps * v)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad * v), num, rtol=1e-5)
    assert np.any(grad == 0) and np.any(run(out, xs) == 0)  # dropout did drop something


# --- clipping -------------------------------------------------------------------------------


def test_clip_by_global_norm_dense_and_sparse():
    a = np.array([3.0, 4.0])
    b = np.array([[12.0]])
    with tw.Graph().as_default():
        params = tw.Variable(np.ones((5, 2)))
        ids = tw.constant([1, 3])
        sparse = tw.gradients(tw.reduce_sum(tw.gather(params, ids)), params)[0]
        assert isinstance(sparse, tw.IndexedSlices)
        clipped, norm = tw.clip_by_global_norm([tw.constant(a), None, tw.constant(b)], 6.5)
        assert clipped[1] is None
        c_sp, n_sp = tw.clip_by_global_norm([sparse], 1.0)
        assert isinstance(c_sp[0], tw.IndexedSlices)
        unclipped, _ = tw.clip_by_global_norm([tw.constant(a)], 100.0)
        forced, _ = tw.clip_by_global_norm([tw.constant(a)], 1.0, use_norm=tw.constant(2.0))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            ca, cb, n, sv, sn, un, fo = sess.run([clipped[0], clipped[2], norm, c_sp[0].values,
                                                  n_sp, unclipped[0], forced[0]])
            assert np.isclose(sess.run(tw.global_norm([tw.constant(a), tw.constant(b)])), 13.0)
    assert np.isclose(n, 13.0)
    np.testing.assert_allclose(ca, a * 0.5)
    np.testing.assert_allclose(cb, b * 0.5)
    assert np.isclose(sn, 2.0)
    np.testing.assert_allclose(sv, np.full((2, 2), 0.5))
    np.testing.assert_allclose(un, a)
    np.testing.assert_allclose(fo, a / 2.0)


def test_clip_by_norm():
    with tw.Graph().as_default():
        t = tw.constant([[3.0, 4.0], [0.3, 0.4]])
        with tw.Session() as sess:
            np.testing.assert_allclose(sess.run(tw.clip_by_norm(t, 1.0, axes=[1])),
                                       [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
            np.testing.assert_allclose(sess.run(tw.clip_by_norm(t, 1.0)),
                                       np.array([[3.0, 4.0], [0.3, 0.4]]) /
                                       np.sqrt(25.25), rtol=1e-6)

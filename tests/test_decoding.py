"""Greedy decoding and beam search inside the graph."""

from __future__ import annotations

import numpy as np
import pytest

import tensorweave as tw

EOS, GO = 0, 1


def _table_model(P):
    """step_fn of a first-order Markov model: the state is unused, logits = log P[prev]."""
    logP = tw.constant(np.log(P).astype(np.float32))

    def step(tokens, state):
        return tw.gather(logP, tokens), state
    return step


def test_beam_search_beats_greedy_on_a_constructed_case():
    # from GO: A (0.55) or B (0.45); after A nothing is likely; after B, EOS is certain
    P = np.full((4, 4), 1e-4)
    P[GO, 2], P[GO, 3] = 0.55, 0.45
    P[2, EOS], P[2, 2], P[2, 3] = 0.35, 0.33, 0.32
    P[3, EOS] = 1.0
    P[EOS, EOS] = 1.0
    P /= P.sum(1, keepdims=True)
    with tw.Graph().as_default():
        step = _table_model(P)
        state = tw.zeros([1, 1])
        g = tw.nn.greedy_decode(step, state, [GO], EOS, max_length=6)
        b = tw.nn.beam_search(step, state, [GO], EOS, beam_width=2, max_length=6,
                              length_penalty=0.0)
        with tw.Session() as sess:
            g, b = sess.run([g, b])
    assert g.ids.tolist() == [[2, EOS]] and g.lengths.tolist() == [2]
    assert b.ids[0, 0].tolist() == [3, EOS] and b.lengths[0, 0] == 2
    np.testing.assert_allclose(g.scores[0], np.log(P[GO, 2] * P[2, EOS]), rtol=1e-5)
    np.testing.assert_allclose(b.scores[0, 0], np.log(P[GO, 3] * P[3, EOS]), rtol=1e-5)
    assert b.scores[0, 0] > g.scores[0] and b.scores[0, 0] >= b.scores[0, 1]


def _rnn_model(rng, V=7, H=5):
    emb = tw.constant(rng.standard_normal((V, H)).astype(np.float32))
    wo = tw.constant(2.0 * rng.standard_normal((H, V)).astype(np.float32))
    cell = tw.nn.rnn_cell.LSTMCell(H, initializer=tw.random_normal_initializer(seed=3))

    def step(tokens, state):
        out, state = cell(tw.nn.embedding_lookup(emb, tokens), state)
        return tw.matmul(out, wo), state
    return step, cell, (emb, wo)


def test_beam_one_equals_greedy_with_lstm_state():
    rng = np.random.default_rng(0)
    with tw.Graph().as_default():
        step, cell, _ = _rnn_model(rng)
        init = cell.zero_state(5, tw.float32)
        init = tw.nn.rnn_cell.LSTMStateTuple(init.c + tw.constant(
            rng.standard_normal((5, 5)).astype(np.float32)), init.h)
        start = tw.constant([GO] * 5)
        g = tw.nn.greedy_decode(step, init, start, EOS, max_length=8)
        b = tw.nn.beam_search(step, init, start, EOS, beam_width=1, max_length=8)
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            g, b = sess.run([g, b])
    assert b.ids.shape[:2] == (5, 1)
    np.testing.assert_array_equal(b.ids[:, 0], g.ids)
    np.testing.assert_array_equal(b.lengths[:, 0], g.lengths)
    assert g.ids.shape[1] <= 8
    for row, L in zip(g.ids, g.lengths):  # EOS ends a sequence; after it only EOS
        assert (row[L - 1] == EOS) or L == 8
        assert np.all(row[L:] == EOS)


def test_beam_search_scores_match_a_replay_of_each_hypothesis():
    """The per-beam state is gathered correctly: every returned hypothesis' score equals its
    log-probability recomputed step by step (a wrong gather would mix states across beams)."""
    rng = np.random.default_rng(1)
    B, K, V, H, alpha = 3, 3, 7, 5, 0.8
    with tw.Graph().as_default():
        step, cell, (emb, wo) = _rnn_model(rng, V, H)
        init = cell.zero_state(B, tw.float32)
        res = tw.nn.beam_search(step, init, tw.constant([GO] * B), EOS, beam_width=K,
                                max_length=6, length_penalty=alpha)
        tok = tw.placeholder(tw.int32, [None])
        c = tw.placeholder(tw.float32, [None, H])
        h = tw.placeholder(tw.float32, [None, H])
        one_logits, one_state = step(tok, tw.nn.rnn_cell.LSTMStateTuple(c, h))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            r = sess.run(res)

            def logp_seq(ids, L):
                st = (np.zeros((1, H)), np.zeros((1, H)))
                prev, total = GO, 0.0
                for t in range(L):
                    lg, (cc, hh) = sess.run([one_logits, one_state],
                                            {tok: [prev], c: st[0], h: st[1]})
                    lg = lg[0].astype(np.float64)
                    total += lg[ids[t]] - np.log(np.exp(lg - lg.max()).sum()) - lg.max()
                    st, prev = (cc, hh), ids[t]
                return total

            for b in range(B):
                for k in range(K):
                    L = r.lengths[b, k]
                    want = logp_seq(r.ids[b, k], L) / ((5.0 + L) / 6.0) ** alpha
                    np.testing.assert_allclose(r.scores[b, k], want, rtol=1e-4, atol=1e-5)
                assert np.all(np.diff(r.scores[b]) <= 1e-6)  # best first
                assert len({tuple(r.ids[b, k, :r.lengths[b, k]]) for k in range(K)}) == K


def test_length_penalty_factor_and_bad_beam_width():
    with tw.Graph().as_default():
        f = tw.nn.length_penalty_factor(tw.constant([1, 7]), 0.6)
        with tw.Session() as sess:
            np.testing.assert_allclose(sess.run(f), [1.0, 2.0 ** 0.6], rtol=1e-6)
        with pytest.raises(ValueError, match="beam_width"):
            tw.nn.beam_search(lambda t, s: (t, s), tw.zeros([1, 1]), [GO], EOS, 0, 5)


def test_max_length_stops_decoding_and_tile_batch_repeats_rows():
    P = np.full((3, 3), 0.1)
    P[:, 2] = 0.8  # never EOS first
    P /= P.sum(1, keepdims=True)
    with tw.Graph().as_default():
        g = tw.nn.greedy_decode(_table_model(P), tw.zeros([2, 1]), [GO, GO], EOS, max_length=4)
        t = tw.nn.tile_batch((tw.constant([[1, 2], [3, 4]]), tw.constant([5, 6])), 2)
        with tw.Session() as sess:
            g, t = sess.run([g, t])
    assert g.ids.tolist() == [[2, 2, 2, 2]] * 2 and g.lengths.tolist() == [4, 4]
    assert t[0].tolist() == [[1, 2], [1, 2], [3, 4], [3, 4]] and t[1].tolist() == [5, 5, 6, 6]

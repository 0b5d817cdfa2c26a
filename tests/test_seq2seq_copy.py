"""A tiny attention seq2seq learns to copy its input within seconds (greedy and beam decoding)."""

from __future__ import annotations

import time

import numpy as np

import tensorweave as tw

EOS, GO, V, T, E, H, BATCH = 0, 1, 8, 5, 16, 32, 32


def _batch(rng, n):
    lengths = rng.integers(3, T + 1, size=n)
    src = np.zeros((n, T), np.int32)
    for i, L in enumerate(lengths):
        src[i, :L] = rng.integers(2, V, size=L)
    tgt_out = np.zeros((n, T + 1), np.int32)  # y then EOS, EOS-padded
    tgt_out[:, :T] = src
    tgt_in = np.concatenate([np.full((n, 1), GO, np.int32), src], 1)  # GO then y
    return src, lengths.astype(np.int32), tgt_in, tgt_out, lengths + 1


def test_copy_task_trains_to_near_perfect_greedy_accuracy():
    rng = np.random.default_rng(0)
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(0)
        src = tw.placeholder(tw.int32, [None, None])
        src_len = tw.placeholder(tw.int32, [None])
        tgt_in = tw.placeholder(tw.int32, [None, None])
        tgt_out = tw.placeholder(tw.int32, [None, None])
        tgt_len = tw.placeholder(tw.int32, [None])
        emb = tw.get_variable("embedding", [V, E])
        w_out = tw.get_variable("w_out", [H, V])
        b_out = tw.get_variable("b_out", [V], initializer=tw.zeros_initializer())
        enc_out, enc_state = tw.nn.dynamic_rnn(
            tw.nn.rnn_cell.LSTMCell(H), tw.nn.embedding_lookup(emb, src),
            sequence_length=src_len, dtype=tw.float32, scope="encoder")
        mech = tw.nn.LuongAttention(H, enc_out, memory_sequence_length=src_len)
        cell = tw.nn.AttentionWrapper(tw.nn.rnn_cell.LSTMCell(H), mech, attention_layer_size=H)
        batch = tw.shape(src)[0]
        init = cell.zero_state(batch, tw.float32).clone(cell_state=enc_state)
        dec_out, _ = tw.nn.dynamic_rnn(cell, tw.nn.embedding_lookup(emb, tgt_in),
                                       sequence_length=tgt_len, initial_state=init,
                                       scope="decoder")
        logits = tw.reshape(tw.matmul(tw.reshape(dec_out, [-1, H]), w_out) + b_out,
                            tw.stack([batch, -1, V]))
        xent = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tgt_out, logits=logits)
        mask = tw.sequence_mask(tgt_len, tw.shape(tgt_out)[1], dtype=tw.float32)
        loss = tw.reduce_sum(xent * mask) / tw.reduce_sum(mask)
        params = tw.trainable_variables()
        grads, _ = tw.clip_by_global_norm(tw.gradients(loss, params), 5.0)
        train = tw.train.AdamOptimizer(0.01).apply_gradients(list(zip(grads, params)))

        def step(tokens, state, cell=cell):
            out, state = cell(tw.nn.embedding_lookup(emb, tokens), state)
            return tw.matmul(out, w_out) + b_out, state

        greedy = tw.nn.greedy_decode(step, init, tw.fill([batch], GO), EOS, max_length=T + 2)
        beam_cell = cell.tile_batch(3)
        beam = tw.nn.beam_search(lambda t, s: step(t, s, beam_cell), init, tw.fill([batch], GO),
                                 EOS, beam_width=3, max_length=T + 2)
        assert len(tw.trainable_variables()) == len(params)  # decoding shares the variables

    with tw.Session(graph=g) as sess:
        sess.run(tw.variables_initializer(g.get_collection("variables")))
        t0 = time.perf_counter()
        for _ in range(100):
            s, sl, ti, to, tl = _batch(rng, BATCH)
            loss_v, _ = sess.run([loss, train], {src: s, src_len: sl, tgt_in: ti, tgt_out: to,
                                                 tgt_len: tl})
        elapsed = time.perf_counter() - t0
        s, sl, ti, to, tl = _batch(np.random.default_rng(99), 200)
        gr, bm = sess.run([greedy, beam], {src: s, src_len: sl})
    assert loss_v < 0.2, loss_v

    def accuracy(ids):
        ok = total = 0
        for i in range(len(s)):
            want = list(to[i, :tl[i]])  # the tokens and EOS
            got = list(ids[i, :len(want)]) + [None] * max(0, len(want) - ids.shape[1])
            ok += sum(a == b for a, b in zip(got, want))
            total += len(want)
        return ok / total

    acc_greedy, acc_beam = accuracy(gr.ids), accuracy(bm.ids[:, 0])
    assert acc_greedy >= 0.95, (acc_greedy, elapsed)
    assert acc_beam >= 0.95, acc_beam

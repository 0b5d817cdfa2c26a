"""The benchmark suite builds and runs (one step per tensorweave workload, no timing asserts),
and the runtime/kernel changes made for the benchmarks leave results unchanged."""

import os
import sys

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.runtime import plan as plan_lib
from tensorweave.runtime.config import GraphOptions

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import run as bench_run  # noqa: E402
from bench import workloads as W  # noqa: E402

OFF = GraphOptions(fusion=False)


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()
    yield


# --- the bench itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("workload", W.WORKLOADS)
def test_each_tensorweave_workload_builds_and_runs_one_step(workload):
    case = W.build("tensorweave", workload)
    try:
        loss = case.step()
        if workload in bench_run.MODEL_WORKLOADS:
            assert np.isfinite(loss) and loss > 0
        else:
            assert loss is None
    finally:
        case.close()


def test_first_mlp_loss_is_the_numpy_cross_entropy_of_the_shared_weights():
    p = W.init_params("mlp")
    h = p["x"]
    for i in range(3):
        h = h.astype(np.float64) @ p[f"w{i}"] + p[f"b{i}"]
        if i < 2:
            h = np.maximum(h, 0)
    logp = h - h.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    want = -logp[np.arange(128), p["y"]].mean()
    case = W.build("tensorweave", "mlp")
    try:
        assert case.step() == pytest.approx(want, rel=1e-5)
    finally:
        case.close()


def test_table_reports_ratios_and_misses():
    res = {"session_run": {"tensorweave": {"median_s": 4e-6}, "tensorflow": {"median_s": 1e-4}},
           "per_op": {"tensorweave": {"median_s": 4e-6 + 200e-6},
                      "tensorflow": {"median_s": 1e-4 + 40e-6}},
           "mlp": {"tensorweave": {"median_s": 3e-3}, "tensorflow": {"median_s": 2e-3}}}
    der = bench_run.derived(res)
    assert der["tensorweave"]["per_op"] == pytest.approx(1e-6)
    text, verdicts = bench_run.table(res, der, ["tensorweave", "tensorflow"], {}, None)
    assert verdicts == {"session_run": True, "per_op": True, "mlp": False}
    assert "1.50x" in text and "| NO |" in text


def test_missed_targets_are_explained_with_the_profile():
    der = {"tensorweave": {"mlp": 3e-3, "cnn": 1e-3},
           "tensorflow": {"mlp": 2e-3, "cnn": 2e-3}}
    prof = {"mlp": {"by_op_type": [["MatMul", 2.5, 8], ["ApplyGradientDescent", 0.3, 6]]}}
    lines = bench_run.missed_md(der, {"mlp": False, "cnn": True}, prof, {}, None)
    assert len(lines) == 1
    assert "1.50x tensorflow (+1.0 ms)" in lines[0] and "MatMul 2.5 ms (8 ops)" in lines[0]


def test_memory_reader_parses_proc_status():
    from bench import memory
    assert memory._status_kb("VmRSS") > 0


# --- runtime changes: results equal with the rewrites on and off -------------------------------------
def _run_both(fetches, feed, graph, init=None):
    outs, plans = [], []
    for opts in (GraphOptions(), OFF):
        with tw.Session(graph=graph, config=tw.ConfigProto(graph_options=opts)) as sess:
            if init is not None:
                sess.run(init)
            outs.append(sess.run(fetches, feed))
            plans.append(list(sess._plans.values())[-1])
    return outs, plans


@pytest.mark.parametrize("ta,tb", [(True, False), (False, False), (False, True), (True, True)])
def test_sum_of_matmuls_fuses_into_one_matmul_with_equal_result(ta, tb):
    rng = np.random.default_rng(0)
    g = tw.Graph()
    with g.as_default():
        # small K (the batch, for a weight gradient): operands smaller than the partials
        a_shape, b_shape = ((3, 16) if ta else (16, 3)), ((16, 3) if tb else (3, 16))
        a = [tw.placeholder(tw.float32, a_shape) for _ in range(4)]
        b = [tw.placeholder(tw.float32, b_shape) for _ in range(4)]
        big = tw.placeholder(tw.float32, [16, 16])
        total = tw.add_n([tw.matmul(x, y, transpose_a=ta, transpose_b=tb) for x, y in zip(a, b)]
                         + [big])
    feed = {t: rng.standard_normal(t.shape.as_list()).astype(np.float32) for t in a + b + [big]}
    (on, off), (plan_on, plan_off) = _run_both(total, feed, g)
    np.testing.assert_allclose(on, off, rtol=1e-5, atol=1e-5)
    want = sum((feed[x].T if ta else feed[x]) @ (feed[y].T if tb else feed[y])
               for x, y in zip(a, b)) + feed[big]
    np.testing.assert_allclose(on, want, rtol=1e-5, atol=1e-5)
    assert plan_on.rewrite_stats["matmul_sums_fused"] == 1
    assert plan_off.rewrite_stats["matmul_sums_fused"] == 0
    assert sum(st.op.type == "MatMul" for st in plan_on.steps) == 0


def test_fetched_partial_is_not_fused_away():
    rng = np.random.default_rng(1)
    g = tw.Graph()
    with g.as_default():
        xs = [tw.placeholder(tw.float32, [8, 2]) for _ in range(3)]
        w = tw.constant(rng.standard_normal((2, 8)).astype(np.float32))
        parts = [tw.matmul(x, w) for x in xs]
        total = tw.add_n(parts)
    feed = {x: rng.standard_normal((8, 2)).astype(np.float32) for x in xs}
    (on, off), (plan_on, _) = _run_both([total, parts[0]], feed, g)
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(on[1], off[1])
    # parts[0] is fetched: only the other two partials are fused, and at most one sum
    assert sum(st.op.type == "MatMul" for st in plan_on.steps) == 1


def test_rnn_weight_gradient_is_fused_and_training_matches():
    rng = np.random.default_rng(2)
    g = tw.Graph()
    with g.as_default():
        xs = tw.placeholder(tw.float32, [6, 2, 3])
        w = tw.Variable(rng.standard_normal((3 + 16, 16)).astype(np.float32) * 0.3)
        h = tw.zeros([2, 16])
        for x_t in tw.unstack(xs):
            h = tw.tanh(tw.matmul(tw.concat([x_t, h], 1), w))
        loss = tw.reduce_sum(h * h)
        train = tw.train.AdamOptimizer(0.05).minimize(loss)
        init = tw.global_variables_initializer()
    feed = {xs: rng.standard_normal((6, 2, 3)).astype(np.float32)}
    results = []
    for opts in (GraphOptions(), OFF):
        with tw.Session(graph=g, config=tw.ConfigProto(graph_options=opts)) as sess:
            sess.run(init)
            losses = [sess.run([loss, train], feed)[0] for _ in range(5)]
            results.append((losses, sess.run(w),
                            list(sess._plans.values())[-2].rewrite_stats["matmul_sums_fused"]))
    (l_on, w_on, fused_on), (l_off, w_off, fused_off) = results
    np.testing.assert_allclose(l_on, l_off, rtol=1e-5)
    np.testing.assert_allclose(w_on, w_off, rtol=1e-5, atol=1e-6)
    assert fused_on >= 1 and fused_off == 0


@pytest.mark.parametrize("batch", [32, 1])
def test_sgd_update_of_a_matmul_gradient_is_one_gemm_with_equal_training(batch):
    """ApplyGradientDescent(W, lr, x.T @ dy) runs as one BLAS GEMM into W (beta = 1): the
    same training (to float32 rounding) as the unfused matmul and update; a gradient that is
    also fetched is not fused."""

    def train(opts, fetch_grad=False):
        rng = np.random.default_rng(5)
        g = tw.Graph()
        with g.as_default():
            x = tw.placeholder(tw.float32, [None, 20])
            y = tw.placeholder(tw.int64, [None])
            w1 = tw.Variable(rng.standard_normal((20, 30)).astype(np.float32) * 0.3)
            w2 = tw.Variable(rng.standard_normal((30, 5)).astype(np.float32) * 0.3)
            logits = tw.matmul(tw.nn.relu(tw.matmul(x, w1)), w2)
            loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            opt = tw.train.GradientDescentOptimizer(0.5)
            gv = opt.compute_gradients(loss)
            step = opt.apply_gradients(gv)
            fetches = [loss, step] + ([gv[0][0]] if fetch_grad else [])
            init = tw.global_variables_initializer()
        xv = np.random.default_rng(1).standard_normal((batch, 20)).astype(np.float32)
        yv = np.arange(batch) % 5
        with tw.Session(graph=g, config=tw.ConfigProto(graph_options=opts)) as sess:
            sess.run(init)
            losses = [sess.run(fetches, {x: xv, y: yv})[0] for _ in range(10)]
            stats = list(sess._plans.values())[-1].rewrite_stats
            return losses, sess.run([w1, w2]), stats["matmul_sgd_fused"]

    (l_on, w_on, n_on), (l_off, w_off, n_off) = train(GraphOptions()), train(OFF)
    np.testing.assert_allclose(l_on, l_off, rtol=1e-5)
    for a, b in zip(w_on, w_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert n_off == 0 and n_on == 2  # without the BLAS the fused step runs NumPy
    assert l_on[-1] < l_on[0]
    assert train(GraphOptions(), fetch_grad=True)[2] == 1  # w1's gradient is fetched


def test_gemm_update_handles_transposed_views_and_refuses_what_it_cannot():
    from tensorweave.kernels.cpu import blas

    if not blas.available():
        pytest.skip("NumPy's bundled OpenBLAS was not found: the plain path is used")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    c = rng.standard_normal((5, 3)).astype(np.float32)
    want = c - 0.25 * (a.T @ b)
    assert blas.gemm_update(c, a.T, b, -0.25)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-6)
    before = c.copy()
    assert not blas.gemm_update(c, a.T.astype(np.float64), b, 1.0)  # dtype
    c3 = np.zeros((3, 3), np.float32)
    assert not blas.gemm_update(c3, a[:, ::2].T, b, 1.0)  # strided columns: no BLAS layout
    assert not c3.any()
    every_other = c - 0.5 * (a[::2].T @ b[::2])  # every other row: a leading dimension of 10
    assert blas.gemm_update(c, a[::2].T, b[::2], -0.5)
    np.testing.assert_allclose(c, every_other, rtol=1e-5, atol=1e-6)
    before = c.copy()
    assert not blas.gemm_update(c[:, :2], a.T, b[:, :2], 1.0)  # a view of the output
    np.testing.assert_array_equal(c, before)


@pytest.mark.parametrize("m,k,n", [(8, 40, 24), (32, 300, 384), (48, 1030, 5), (64, 1024, 70),
                                   (65, 1024, 7), (128, 64, 32), (1, 16, 9)])
def test_matmul_transpose_b_with_few_rows_equals_numpy(m, k, n):
    # below 33 rows (or 65 with k >= 1024) the kernel runs b @ a.T and transposes the result
    rng = np.random.default_rng(m)
    av = rng.standard_normal((m, k)).astype(np.float32)
    bv = rng.standard_normal((2 * n, k)).astype(np.float32)[::2]  # a strided operand as well
    g = tw.Graph()
    with g.as_default():
        a, b = tw.placeholder(tw.float32, [None, k]), tw.placeholder(tw.float32, [n, k])
        c = tw.matmul(a, b, transpose_b=True)
        d = c * 2.0  # a consumer that may write in place into the kernel's result
    with tw.Session(graph=g) as sess:
        cv, dv = sess.run([c, d], {a: av, b: bv})
    ref = av.astype(np.float64) @ bv.T.astype(np.float64)
    np.testing.assert_allclose(cv, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    np.testing.assert_allclose(dv, 2 * ref, rtol=1e-4, atol=2e-4 * np.sqrt(k))
    assert cv.shape == (m, n) and cv.flags.c_contiguous
    from tensorweave.kernels.cpu import blas
    from tensorweave.kernels.cpu.math import swap_for_few_rows
    assert swap_for_few_rows(m, k) == (blas.available() and (1 < m <= 32 or
                                                             (m <= 64 and k >= 1024)))


def test_bias_add_and_relu_grad_write_in_place_with_equal_results():
    rng = np.random.default_rng(3)
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 64])
        w1 = tw.Variable(rng.standard_normal((64, 128)).astype(np.float32) * 0.1)
        w2 = tw.Variable(rng.standard_normal((128, 32)).astype(np.float32) * 0.1)
        b = tw.Variable(np.linspace(-1, 1, 128).astype(np.float32))
        h = tw.nn.relu(tw.nn.bias_add(tw.matmul(x, w1), b))
        loss = tw.reduce_sum(tw.matmul(h, w2) ** 2)
        grads = tw.gradients(loss, [w1, b])
        init = tw.global_variables_initializer()
    xv = rng.standard_normal((40, 64)).astype(np.float32)
    keep = xv.copy()
    (on, off), (plan_on, plan_off) = _run_both(grads, {x: xv}, g, init)
    for a, c in zip(on, off):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(xv, keep)  # the feed is never written
    inplace = {st.op.type for st in plan_on.steps if st.inplace is not None}
    assert {"BiasAdd", "ReluGrad"} <= inplace
    assert all(st.inplace is None for st in plan_off.steps)


def test_softmax_xent_gradient_scales_its_backprop_in_place_with_equal_results():
    # the loss op's second output (softmax - one-hot) is a fresh array only the gradient's
    # Mul reads: the Mul may write into it, but never when that output is also fetched
    rng = np.random.default_rng(5)
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [64, 32])
        y = tw.placeholder(tw.int32, [64])
        w = tw.Variable(rng.standard_normal((32, 100)).astype(np.float32) * 0.1)
        xent = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tw.matmul(x, w))
        loss = tw.reduce_mean(xent)
        grads = tw.gradients(loss, [w])
        init = tw.global_variables_initializer()
    feed = {x: rng.standard_normal((64, 32)).astype(np.float32),
            y: rng.integers(0, 100, 64).astype(np.int32)}
    backprop = xent.op.outputs[1]
    for fetches, expect_inplace in (([loss] + grads, True), ([loss, backprop] + grads, False)):
        (on, off), (plan_on, _) = _run_both(fetches, feed, g, init)
        for a, c in zip(on, off):
            np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)
        scaled = [st for st in plan_on.steps
                  if st.op.type == "Mul" and "SparseSoftmax" in st.op.name]
        assert scaled, [st.op.name for st in plan_on.steps]
        assert (scaled[0].inplace is not None) == expect_inplace
    np.testing.assert_allclose(on[1], off[1])  # the fetched backprop is the unscaled one


def test_inplace_never_trusts_an_unknown_dimension_that_may_broadcast():
    rng = np.random.default_rng(4)
    g = tw.Graph()
    with g.as_default():
        p1 = tw.placeholder(tw.float32, [None, 64])
        p2 = tw.placeholder(tw.float32, [None, 64])
        w = tw.constant(rng.standard_normal((64, 64)).astype(np.float32))
        y = tw.matmul(p1, w) + tw.matmul(p2, w)  # both [None, 64]: may broadcast at run time
    feed = {p1: rng.standard_normal((1, 64)).astype(np.float32),
            p2: rng.standard_normal((8, 64)).astype(np.float32)}
    (on, off), (plan_on, _) = _run_both(y, feed, g)
    assert on.shape == (8, 64)
    np.testing.assert_allclose(on, off, rtol=1e-6)
    assert all(st.inplace is None for st in plan_on.steps if st.op.type == "AddV2")


def test_relu_grad_kernel_matches_the_masked_gradient():
    from tensorweave.framework.registry import get_kernel_factory
    k = get_kernel_factory("ReluGrad", "CPU")(None, None)
    rng = np.random.default_rng(5)
    gv, xv = rng.standard_normal((2, 7, 9)).astype(np.float32)
    xv[0, :3] = 0.0
    np.testing.assert_array_equal(k(gv, xv), np.where(xv > 0, gv, 0).astype(np.float32))
    buf = gv.copy()
    assert k(buf, xv, out=buf) is buf
    np.testing.assert_array_equal(buf, np.where(xv > 0, gv, 0))


def test_allocator_tuning_is_idempotent_and_can_be_disabled():
    first = plan_lib.tune_allocator()
    assert first in (True, False)
    assert plan_lib.tune_allocator() is first  # applied once per process
    if sys.platform.startswith("linux") and os.environ.get("TENSORWEAVE_MALLOC_TUNING") != "0":
        assert first is True
    import subprocess
    code = ("import tensorweave.runtime.plan as p; print(p.tune_allocator())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "TENSORWEAVE_MALLOC_TUNING": "0"})
    assert r.stdout.strip() == "False"

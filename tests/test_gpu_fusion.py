"""Generated elementwise kernels and elementwise fusion for device plans (``runtime/fusion.py``,
``kernels/gpu/elementwise.py``). Everything runs the GPU kernel code on the strict NumPy
emulation of CuPy (device type EMU): fused plans must give what unfused plans and the CPU give,
with fewer kernel launches. Where CuPy and NVRTC are importable (no GPU needed), the CUDA text of
every generated kernel is compiled too; tests marked ``gpu`` run fused plans on a real GPU."""

import types

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.framework import registry
from tensorweave.kernels import gpu
from tensorweave.kernels.gpu import elementwise, emulate
from tensorweave.kernels.gpu.backend import emulated_backend
from tensorweave.runtime import fusion
from tensorweave.runtime import session as session_lib

EMU = "/device:EMU:0"


@pytest.fixture(scope="module", autouse=True)
def emulated_device():
    be = emulated_backend()
    registered, _ = gpu.register_all(be, "EMU")
    gpu.install_transfers(be, "EMU")
    session_lib.register_device("EMU", lambda: True)
    yield be
    for t in registered:
        registry.get_op_def(t).kernels.pop("EMU", None)


def run_graph(build, feeds, device=EMU, fuse=True, steps=1, order=None):
    """(fetched values of the last step, the plan, launches in the last step) of ``build()``
    (returning (fetches, {placeholder name: value}) built under ``device``)."""
    g = tw.Graph()
    with g.as_default(), g.device(device) if device else _null():
        fetches, init = build()
    cfg = tw.ConfigProto(allow_soft_placement=True,
                         graph_options=tw.GraphOptions(fusion=fuse))
    with tw.Session(graph=g, config=cfg) as s:
        if init is not None:
            s.run(init)
        feed = {g.get_tensor_by_name(k): v for k, v in feeds.items()}
        for _ in range(steps):
            emulate.reset_counts()
            out = s.run(fetches, feed)
        launches = emulate.COUNTS["launch"]
        plan = list(s._plans.values())[-1]
    return out, plan, launches


def _null():
    import contextlib
    return contextlib.nullcontext()


def lstm_cell_graph(n_steps=3, batch=4, hidden=5, train=True, dtype=np.float64):
    """A small unrolled LSTM language-model step (the benchmark's cell) with its gradients."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((2 * hidden, 4 * hidden)).astype(dtype) * 0.3

    def build():
        xs = tw.placeholder(dtype, [n_steps, batch, hidden], name="xs")
        w = tw.Variable(w0, name="w")
        b = tw.Variable(np.zeros(4 * hidden, dtype), name="b")
        h = c = tw.zeros([batch, hidden], dtype)
        outs = []
        for x_t in tw.unstack(xs):
            z = tw.matmul(tw.concat([x_t, h], 1), w) + b
            i, f, g, o = tw.split(z, 4, axis=1)
            c = tw.sigmoid(f + 1.0) * c + tw.sigmoid(i) * tw.tanh(g)
            h = tw.sigmoid(o) * tw.tanh(c)
            outs.append(h)
        loss = tw.reduce_sum(tw.square(tw.stack(outs) - 0.5))
        if not train:
            return [loss, h, c], tw.global_variables_initializer()
        step = tw.train.AdamOptimizer(0.1).minimize(loss)
        return [loss, h, c, step], tw.global_variables_initializer()

    feeds = {"xs:0": rng.standard_normal((n_steps, batch, hidden)).astype(dtype)}
    return build, feeds


def assert_same(got, want, rtol=1e-12):
    for a, b in zip(got, want):
        if b is None:
            assert a is None
            continue
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


# --- fused plans equal unfused plans and the CPU ----------------------------------------------
def test_lstm_training_steps_fused_equal_unfused_and_cpu_with_fewer_launches():
    build, feeds = lstm_cell_graph()
    fused, plan, n_fused = run_graph(build, feeds, steps=3)
    plain, plain_plan, n_plain = run_graph(build, feeds, fuse=False, steps=3)
    cpu, _, _ = run_graph(build, feeds, device=None, steps=3)
    assert_same(fused, plain)
    assert_same(fused, cpu, rtol=1e-9)
    stats = plan.rewrite_stats
    assert stats["elementwise_kernels"] >= 6 and stats["elementwise_fused_ops"] >= 40, stats
    assert len(plan.steps) < len(plain_plan.steps) - 30
    assert n_fused < 0.6 * n_plain, (n_fused, n_plain)
    # the forward cell of each time step is one kernel with several outputs (the activations
    # its gradient reads), not one kernel per op
    multi = [st for st in plan.steps if isinstance(st.fn, fusion.FusedKernel)
             and len(st.out_slots) > 1]
    assert multi


def test_fusion_off_fuses_nothing_and_cpu_plans_are_untouched():
    build, feeds = lstm_cell_graph(train=False)
    _, plan, _ = run_graph(build, feeds, fuse=False)
    assert not any(isinstance(st.fn, fusion.FusedKernel) for st in plan.steps)
    _, cpu_plan, _ = run_graph(build, feeds, device=None)
    assert "elementwise_kernels" not in cpu_plan.rewrite_stats
    assert not any(isinstance(st.fn, fusion.FusedKernel) for st in cpu_plan.steps)


def test_fused_kernel_program_text_is_shared_by_identical_cells():
    build, feeds = lstm_cell_graph(n_steps=4, train=False)
    _, plan, _ = run_graph(build, feeds)
    texts = [st.fn.program.cuda_source() for st in plan.steps
             if isinstance(st.fn, fusion.FusedKernel)]
    assert len(texts) >= 4
    assert len(set(texts)) < len(texts)  # same structure -> same text -> compiled once


CHAINS = [
    ("relu_bias_chain", lambda x, y: tw.nn.relu(tw.nn.bias_add(x * 2.0 - y, y[0])) + 1.0),
    ("grads_of_activations", lambda x, y: tw.gradients(
        tw.reduce_sum(tw.tanh(x) * tw.sigmoid(y) + tw.nn.elu(x - y) * tw.nn.softsign(y)),
        [x, y])),
    ("relu6_leaky", lambda x, y: tw.nn.relu6(x * 4.0) + tw.nn.leaky_relu(y, 0.3) * x),
    ("rsqrt_square_diff", lambda x, y: tw.squared_difference(
        tw.rsqrt(tw.abs(x) + 1.0), y) / (tw.exp(y) + 2.0)),
    ("addn_max_min", lambda x, y: tw.add_n([x, y, x * y, tw.maximum(x, y)]) - tw.minimum(x, 0.0)),
]


@pytest.mark.parametrize("name,fn", CHAINS, ids=[c[0] for c in CHAINS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_chains_fused_equal_unfused_and_cpu(name, fn, dtype):
    rng = np.random.default_rng(1)
    vals = {"x:0": rng.standard_normal((6, 5)).astype(dtype),
            "y:0": rng.standard_normal((6, 5)).astype(dtype)}

    def build():
        x = tw.placeholder(dtype, [6, 5], name="x")
        y = tw.placeholder(dtype, [6, 5], name="y")
        out = fn(x, y)
        return (list(out) if isinstance(out, list) else [out]), None

    fused, plan, n_fused = run_graph(build, vals)
    plain, _, n_plain = run_graph(build, vals, fuse=False)
    cpu, _, _ = run_graph(build, vals, device=None)
    assert_same(fused, plain)
    assert_same(fused, cpu, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert plan.rewrite_stats["elementwise_kernels"] >= 1
    assert n_fused < n_plain
    assert all(np.asarray(v).dtype == dtype for v in fused)


def test_integer_ops_are_not_fused():
    def build():
        a = tw.placeholder(tw.int32, [3], name="a")
        return [(a + 1) * a - 2], None

    out, plan, _ = run_graph(build, {"a:0": np.array([1, 2, 3], np.int32)})
    np.testing.assert_array_equal(out[0], [0, 4, 10])
    assert plan.rewrite_stats["elementwise_kernels"] == 0


def test_unknown_dims_that_broadcast_at_run_time_fall_back_to_unfused_kernels():
    # u and v share the static shape (?, 3) but u is (1, 3) and v (4, 3) at run time: a fused
    # kernel would return u at v's shape, so the step runs the members' own kernels instead
    def build():
        x = tw.placeholder(tw.float64, [None, 3], name="x")
        y = tw.placeholder(tw.float64, [None, 3], name="y")
        u = tw.tanh(x)
        return [u, u * y + 1.0], None

    x, y = np.linspace(-1, 1, 3).reshape(1, 3), np.arange(12.0).reshape(4, 3)
    out, plan, _ = run_graph(build, {"x:0": x, "y:0": y})
    assert plan.rewrite_stats["elementwise_kernels"] == 1
    assert out[0].shape == (1, 3) and out[1].shape == (4, 3)
    np.testing.assert_allclose(out[0], np.tanh(x))
    np.testing.assert_allclose(out[1], np.tanh(x) * y + 1.0)
    same, _, _ = run_graph(build, {"x:0": np.ones((4, 3)), "y:0": y})
    np.testing.assert_allclose(same[1], np.tanh(1.0) * y + 1.0)


def test_no_fusion_across_a_step_that_updates_a_variable_in_place():
    # run in the order a = w * 2, w += 1, b = a + 1: fusing a into b would compute a after the
    # update
    def build():
        w = tw.Variable(np.ones(3), name="w")
        a = tw.multiply(w, 2.0, name="a")
        upd = tw.assign_add(w, np.ones(3), name="upd")
        b = tw.add(a, 1.0, name="b")
        return [b, upd], tw.global_variables_initializer()

    g = tw.Graph()
    with g.as_default(), g.device(EMU):
        fetches, init = build()
    with tw.Session(graph=g) as s:
        s.run(init)
        from tensorweave.runtime import plan as plan_lib
        plan = plan_lib.compile_plan(  # the graph's creation order: a, upd, b
            fetches, [], [], s._ctx, options=tw.GraphOptions(), placer=s._place,
            order_key={op.name: k for k, op in enumerate(g.get_operations())})
        types = [st.op.type for st in plan.steps if st.const is None and not st.transfer]
        assert types.index("AssignAdd") > types.index("Mul")
        assert plan.rewrite_stats["elementwise_kernels"] == 0
        b, _ = plan.run(())
    np.testing.assert_allclose(b, [3.0, 3.0, 3.0])


def test_error_in_a_fused_step_names_an_op():
    def build():
        x = tw.placeholder(tw.float64, [None], name="x")
        y = tw.placeholder(tw.float64, [None], name="y")
        return [tw.tanh(x) * y + 1.0], None

    with pytest.raises(tw.errors.InvalidArgumentError, match="node"):
        run_graph(build, {"x:0": np.ones(3), "y:0": np.ones(4)})


def test_generated_kernel_that_never_ran_falls_back_to_unfused_kernels(monkeypatch):
    calls = []

    def broken(*args):
        calls.append(args)
        raise TypeError("Type is mismatched")  # what CuPy raises for bad argument types

    fuser = fusion.FUSERS["EMU"]
    monkeypatch.setattr(fuser, "compile", lambda prog: elementwise._Guarded(
        broken, prog.cuda_source()))
    build, feeds = lstm_cell_graph(train=False)
    got, plan, _ = run_graph(build, feeds, steps=2)
    want, _, _ = run_graph(build, feeds, fuse=False)
    assert plan.rewrite_stats["elementwise_kernels"] >= 3
    assert_same(got, want)
    n_fused = plan.rewrite_stats["elementwise_kernels"]
    assert len(calls) == n_fused  # each tried once, then never again
    assert elementwise.FAILURES and "Type is mismatched" in elementwise.FAILURES[-1][1]


def test_guarded_kernel_errors_after_a_first_success_propagate():
    state = {"fail": False}

    def kernel(x):
        if state["fail"]:
            raise RuntimeError("device fault")
        return (x,)

    k = elementwise._Guarded(kernel, "o0 = a0;")
    assert k(1) == (1,)
    state["fail"] = True
    with pytest.raises(RuntimeError, match="device fault"):
        k(1)


# --- one kernel per op and per optimizer update ----------------------------------------------------
FORMS = {
    "Sigmoid": lambda x: tw.sigmoid(x), "Relu": lambda x: tw.nn.relu(x),
    "SigmoidGrad": lambda x: tw.gradients(tw.reduce_sum(tw.sigmoid(x) * x), x)[0],
    "AddN": lambda x: tw.add_n([x, x * 2.0, tw.tanh(x), x * x]),
}


@pytest.mark.parametrize("op_type", sorted(FORMS))
def test_composite_ops_are_one_launch(op_type):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(4, 3)

    def build():
        return [FORMS[op_type](tw.placeholder(tw.float32, [4, 3], name="x"))], None

    got, plan, _ = run_graph(build, {"x:0": x}, fuse=False)
    want, _, _ = run_graph(build, {"x:0": x}, device=None)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    st = next(st for st in plan.steps if st.op.type == op_type and not st.transfer)
    args = [emulate.to_device(np.full(t.shape.as_list(), 0.5, np.float32))
            for t in st.op.inputs]
    emulate.reset_counts()
    st.fn(*args)
    assert emulate.COUNTS["launch"] == 1


@pytest.mark.parametrize("make_opt", [
    lambda: tw.train.AdamOptimizer(0.1), lambda: tw.train.GradientDescentOptimizer(0.1),
    lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
    lambda: tw.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    lambda: tw.train.AdagradOptimizer(0.1)], ids=["adam", "sgd", "rms_centered", "nesterov",
                                                 "adagrad"])
def test_dense_update_is_one_launch(make_opt):
    w0 = np.linspace(-1, 1, 12).reshape(4, 3)

    def build():
        w = tw.Variable(w0, name="w")
        g = tw.placeholder(tw.float64, [4, 3], name="g")
        opt = make_opt()
        return [opt.apply_gradients([(g, w)])], tw.global_variables_initializer()

    g = np.cos(np.arange(12.0)).reshape(4, 3)
    _, plan, _ = run_graph(build, {"g:0": g})
    updates = [st for st in plan.steps if st.op.type.startswith("Apply") and not st.transfer
               and st.const is None]
    assert len(updates) == 1
    # run the update step alone: one launch for the whole formula
    store = {}

    def values(device):
        gr = tw.Graph()
        with gr.as_default(), gr.device(device) if device else _null():
            fetches, init = build()
        with tw.Session(graph=gr, config=tw.ConfigProto(allow_soft_placement=True)) as s:
            s.run(init)
            ph = gr.get_tensor_by_name("g:0")
            for _ in range(2):
                emulate.reset_counts()
                s.run(fetches, {ph: g})
            store[device] = emulate.COUNTS["launch"]
            return s.run(tw.global_variables())

    for a, b in zip(values(EMU), values(None)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # the update; Adam also updates its two beta powers (a Mul and an Assign each)
    assert store[EMU] <= 5, store


# --- convolution, pooling and cross-entropy kernels with few launches ------------------------------
def _device_vs_cpu(build, feeds, max_launches):
    got, _, launches = run_graph(build, feeds, fuse=False)
    want, _, _ = run_graph(build, feeds, device=None)
    assert_same(got, want, rtol=1e-5)
    assert launches <= max_launches, launches
    return got


def test_max_pool_grad_sends_ties_to_the_first_tap_in_few_launches():
    x = np.array([[1., 3., 3., 0.], [3., 2., 5., 5.], [0., 0., 7., 1.], [0., 0., 1., 7.]],
                 np.float32).reshape(1, 4, 4, 1)

    def build():
        ph = tw.placeholder(tw.float32, [1, 4, 4, 1], name="x")
        y = tw.nn.max_pool(ph, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        return [tw.gradients(tw.reduce_sum(y * tw.constant(
            np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 2, 2, 1))), ph)[0]], None

    (dx,) = _device_vs_cpu(build, {"x:0": x}, max_launches=12)
    assert dx[0, 0, 1, 0] == 1.0 and dx[0, 1, 0, 0] == 0.0  # 3 at (0,1) before 3 at (1,0)
    assert dx[0, 1, 2, 0] == 2.0 and dx[0, 1, 3, 0] == 0.0


@pytest.mark.parametrize("padding", ["SAME", "VALID", [[0, 0], [3, 1], [0, 2], [0, 0]]],
                         ids=["same", "valid", "explicit_wide"])
def test_conv2d_input_gradient_at_stride_1(padding):
    rng = np.random.default_rng(2)
    x, f = rng.standard_normal((2, 7, 6, 3)), rng.standard_normal((3, 2, 3, 4))

    def build():
        ph = tw.placeholder(tw.float64, x.shape, name="x")
        y = tw.nn.conv2d(ph, tw.constant(f), [1, 1, 1, 1], padding)
        return [tw.gradients(tw.reduce_sum(tw.sin(y)), ph)[0]], None

    _device_vs_cpu(build, {"x:0": x}, max_launches=40)


def test_sparse_xent_in_few_launches_and_nan_for_a_bad_label():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 7)).astype(np.float32)
    labels = np.array([0, 6, 3, 3, 1], np.int32)

    def build():
        lg = tw.placeholder(tw.float32, [5, 7], name="logits")
        lb = tw.placeholder(tw.int32, [5], name="labels")
        loss = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=lb, logits=lg)
        return [loss, tw.gradients(tw.reduce_sum(loss), lg)[0]], None

    feeds = {"logits:0": logits, "labels:0": labels}
    _device_vs_cpu(build, feeds, max_launches=10)
    bad = dict(feeds, **{"labels:0": np.array([0, 7, 3, -1, 1], np.int32)})
    (loss, grad), _, _ = run_graph(build, bad)
    good, _, _ = run_graph(build, feeds)
    assert np.isnan(loss[[1, 3]]).all() and np.isnan(grad[[1, 3]]).all()
    np.testing.assert_array_equal(loss[[0, 2, 4]], good[0][[0, 2, 4]])


# --- the CUDA text compiles (CuPy + NVRTC, no GPU needed) ------------------------------------------
def _nvrtc():
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception as e:  # noqa: BLE001  (no CuPy, or no NVRTC library)
        pytest.skip(f"NVRTC not available: {type(e).__name__}: {e}")


def cuda_test_source(prog, ctype, itype="long long"):
    """A CUDA translation unit running ``prog``'s body per element the way
    ``cupy.ElementwiseKernel`` does (inputs as values, outputs as references)."""
    kinds = [prog.input_type(k) for k in range(len(prog.inputs))]
    params = [f"const {t}* _{n}" for t, n in zip(kinds, prog.inputs)] + \
        [f"T* _{n}" for n in prog.outputs + prog.inout]
    loads = [f"const {t} {n} = _{n}[i];" for t, n in zip(kinds, prog.inputs)] + \
        [f"T &{n} = _{n}[i];" for n in prog.outputs + prog.inout]
    return (f"#include <cupy/carray.cuh>\ntypedef {ctype} T;\ntypedef {itype} I;\n"
            f"{elementwise.PREAMBLE}\n"
            f'extern "C" __global__ void k({", ".join(params)}, int n) {{\n'
            "  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; "
            "i += blockDim.x * gridDim.x) {\n"
            f"    {' '.join(loads)}\n{prog.cuda_source()}\n  }}\n}}\n")


def test_every_generated_kernel_compiles_with_nvrtc():
    nvrtc = _nvrtc()
    import os

    import cupy
    include = os.path.join(os.path.dirname(cupy.__file__), "_core", "include")
    # make sure the fused LSTM, the chains and every update and formula were generated
    build, feeds = lstm_cell_graph(n_steps=2)
    run_graph(build, feeds)
    for op_type in elementwise.EXPRESSIONS:
        n = 3 if op_type == "AddN" else (2 if op_type in ("LeakyReluGrad",) or op_type.endswith(
            "Grad") or op_type in ("AddV2", "Add", "Sub", "Mul", "RealDiv", "Maximum",
                                   "Minimum", "SquaredDifference", "BiasAdd") else 1)
        names = tuple(f"a{i}" for i in range(n))
        expr = elementwise.EXPRESSIONS[op_type](_FakeOp(op_type), *names)
        elementwise.SOURCES[f"o0 = {expr};"] = elementwise.Program(names, ("o0",),
                                                                   (("o0", "=", expr),))
    from tensorweave.kernels.gpu.state import _UPDATES
    for op_type, (names, refs, statements) in _UPDATES.items():
        for nesterov in (False, True):
            prog = elementwise.Program(names, (), tuple(statements(_FakeOp(
                op_type, use_nesterov=nesterov))), inout=refs)
            elementwise.SOURCES[prog.cuda_source()] = prog
    failures = []
    for prog in list(elementwise.SOURCES.values()):
        for ctype, itype in (("float", "int"), ("double", "long long")):
            p = nvrtc.createProgram(cuda_test_source(prog, ctype, itype), "k.cu", [], [])
            try:
                nvrtc.compileProgram(p, ["-arch=compute_90", f"-I{include}", "--std=c++17"])
            except Exception as e:  # noqa: BLE001
                failures.append(f"{ctype}: {prog.cuda_source()}\n{e}\n"
                                f"{nvrtc.getProgramLog(p)[:800]}")
    assert not failures, "\n\n".join(failures[:3])


class _FakeOp:
    """Just enough of an op for a formula with attrs."""

    def __init__(self, op_type, **attrs):
        self.type = op_type
        self.attrs = {"alpha": 0.2, **attrs}
        self.outputs = [types.SimpleNamespace(dtype=tw.float32)]


# --- on a real GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_fused_lstm_matches_cpu():
    assert gpu.load(), gpu.unavailable_reason()
    build, feeds = lstm_cell_graph(dtype=np.float32)
    got, plan, _ = run_graph(build, feeds, device="/gpu:0", steps=3)
    want, _, _ = run_graph(build, feeds, device=None, steps=3)
    assert plan.rewrite_stats["elementwise_kernels"] >= 6
    assert_same(got, want, rtol=1e-4)

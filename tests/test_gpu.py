"""GPU kernels (``kernels/gpu``). Tests marked ``gpu`` need CuPy and a CUDA device (conftest
skips them otherwise). The rest run the very same kernel code on the strict NumPy emulation of
CuPy (``kernels/gpu/emulate.py``), registered as device type EMU, against the CPU kernels: every
op table of the family test files, the optimizers, variables, soft placement."""

import subprocess
import sys

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.framework import registry
from tensorweave.kernels import gpu
from tensorweave.kernels.gpu import crosscheck, emulate
from tensorweave.kernels.gpu.backend import Backend, emulated_backend
from tensorweave.runtime import session as session_lib

EMU = "/device:EMU:0"
TABLE_MODULES = ["test_core_smoke", "test_array_ops", "test_conv_ops", "test_nn_ops",
                 "test_math_ops"]
CASES = crosscheck.collect_op_cases(TABLE_MODULES)


@pytest.fixture(scope="module", autouse=True)
def emulated_device():
    be = emulated_backend()
    registered, _ = gpu.register_all(be, "EMU")
    gpu.install_transfers(be, "EMU")
    session_lib.register_device("EMU", lambda: True)
    yield be
    for t in registered:
        registry.get_op_def(t).kernels.pop("EMU", None)


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()


def _gpu_device_ready():
    return gpu.load()


# --- loading --------------------------------------------------------------------------------
def test_import_tensorweave_does_not_import_cupy():
    code = "import sys, tensorweave; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_load_without_a_gpu_returns_false_and_registers_nothing(gpu_available):
    if gpu_available:
        pytest.skip("a GPU is present here")
    assert gpu.load() is False
    assert gpu.unavailable_reason()
    assert not any("GPU" in d.kernels for d in registry.registered_ops().values())


def test_every_table_entry_is_a_declared_op_or_reported_missing(emulated_device):
    done, missing = gpu.register_all(emulated_device, "EMU_PROBE")
    declared = registry.registered_ops()
    assert done and all(t in declared for t in done)
    assert all(t not in declared for t in missing)
    for t in done:
        declared[t].kernels.pop("EMU_PROBE")


def test_elementwise_tables_name_the_cpu_kernels_ufunc():
    """Where the CPU kernel is a bare NumPy ufunc, the GPU table names the same one."""
    from tensorweave.kernels.gpu.math import BINARY_UFUNCS, UNARY_UFUNCS
    checked = 0
    for op_type, name in {**UNARY_UFUNCS, **BINARY_UFUNCS}.items():
        factory = registry.get_kernel_factory(op_type, "CPU") \
            if op_type in registry.registered_ops() else None
        if factory is None:
            continue
        try:
            fn = factory(None, None)
        except Exception:  # noqa: BLE001  (a factory that needs its op: not a bare ufunc)
            continue
        if isinstance(fn, np.ufunc):
            assert getattr(np, name) is fn or fn.__name__ == getattr(np, name).__name__, op_type
            checked += 1
    assert checked >= 5


# --- the emulation is as strict as CuPy ---------------------------------------------------------
def test_emulated_device_arrays_refuse_host_arrays():
    d = emulate.to_device(np.ones(3))
    with pytest.raises(emulate.HostDeviceMixError):
        d + np.ones(3)
    with pytest.raises(emulate.HostDeviceMixError):
        emulate.xp.concatenate([d, np.ones(3)])
    with pytest.raises(emulate.HostDeviceMixError):
        np.sum(d)
    assert type(d.sum()) is emulate.DeviceArray and d.sum().shape == ()


def test_constants_are_copied_once_and_read_back_without_the_device():
    gets = []
    be = Backend("count", emulate.xp, emulate.to_device, lambda a: gets.append(a) or
                 emulate.to_host(a), emulate.as_strided, lambda: None)
    const = np.array([0, 1], dtype=np.int32)
    const.setflags(write=False)
    d1, d2 = be.to_device(const), be.to_device(const)
    assert d1 is d2
    np.testing.assert_array_equal(be.host(d1), [0, 1])
    fed = np.array([2, 3], dtype=np.int32)  # writeable: copied every time, read back for real
    assert be.to_device(fed) is not be.to_device(fed)
    assert not gets
    np.testing.assert_array_equal(be.host(be.to_device(fed)), [2, 3])
    assert len(gets) == 1
    assert be.small((4, 5), np.int32) is be.small([4, 5], np.int32)


# --- op tables on the emulated device ------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=str)
def test_op_table_on_emulated_device(case):
    res = crosscheck.compare_case(case, EMU, tol=1e-9, dtype=np.float64)
    if res.message.startswith(("build failed", "reference failed")):
        pytest.skip(res.message)  # the case's ops (or their CPU kernels) are not all there yet
    assert res.ok, f"{case.name}: {res.message}"
    if not res.device_ops:
        pytest.skip(f"no device kernel for {sorted(res.cpu_ops)}")


# --- variables, optimizers, placement -------------------------------------------------------------
OPTIMIZERS = {
    "sgd": lambda: tw.train.GradientDescentOptimizer(0.1),
    "momentum": lambda: tw.train.MomentumOptimizer(0.1, 0.9),
    "nesterov": lambda: tw.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    "adagrad": lambda: tw.train.AdagradOptimizer(0.1),
    "rmsprop": lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5),
    "rmsprop_centered": lambda: tw.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
    "adam": lambda: tw.train.AdamOptimizer(0.01),
}


def train_steps(device, make_opt, sparse, steps=3, dtype=np.float64):
    """Variables and slots after ``steps`` of ``make_opt()`` on a small least-squares problem;
    ``sparse``: the weights are read through a gather (IndexedSlices gradients with a repeat)."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(dtype)
    x = rng.standard_normal((4, 3)).astype(dtype)
    g = tw.Graph()
    with g.as_default(), g.device(device) if device else crosscheck._null():
        w = tw.Variable(w0, name="w")
        rows = tw.gather(w, tw.constant([0, 2, 2, 4])) if sparse else w[:4]
        r = rows * tw.constant(x) - 1.0
        loss = tw.reduce_sum(r * r)
        opt = make_opt()
        train = opt.minimize(loss)
        init = tw.global_variables_initializer()
    cfg = tw.ConfigProto(allow_soft_placement=True)
    with tw.Session(graph=g, config=cfg) as sess:
        sess.run(init)
        for _ in range(steps):
            sess.run(train)
        values = sess.run(g.get_collection(tw.GraphKeys.GLOBAL_VARIABLES))
        placed = crosscheck._placed(sess)
        stored = dict(sess._ctx.variables)
    return values, placed, stored


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_on_emulated_device_matches_cpu(name, sparse):
    want, _, _ = train_steps(None, OPTIMIZERS[name], sparse)
    got, (on_dev, _), stored = train_steps(EMU, OPTIMIZERS[name], sparse)
    assert any(t.startswith(("Apply", "SparseApply", "Scatter")) for t in on_dev), on_dev
    assert any(type(v) is emulate.DeviceArray for v in stored.values())
    for a, b in zip(got, want):
        assert isinstance(a, (np.ndarray, np.generic))  # host values, as TF1: scalars as np scalars
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_assign_and_scatter_on_emulated_device():
    def run(device):
        g = tw.Graph()
        with g.as_default(), g.device(device) if device else crosscheck._null():
            v = tw.Variable(np.arange(6.0).reshape(3, 2))
            ops = [tw.assign_add(v, np.ones((3, 2))), tw.assign_sub(v, np.full((3, 2), 0.5)),
                   tw.scatter_add(v, [0, 0], np.ones((2, 2))), tw.scatter_sub(v, [2], [[1., 1.]]),
                   tw.scatter_update(v, [1], [[7., 8.]])]
            init = tw.global_variables_initializer()
        with tw.Session(graph=g) as s:
            s.run(init)
            return [s.run(o) for o in ops] + [s.run(v)]

    for a, b in zip(run(EMU), run(None)):
        np.testing.assert_array_equal(a, b)


def test_op_without_device_kernel_soft_places_or_fails_clearly():
    x = tw.placeholder(tw.float32, [4])
    with tw.device(EMU):
        y = tw.nn.top_k(x, 2)[0] * 2.0
    feed = {x: [1.0, 4.0, 2.0, 3.0]}
    with tw.Session() as s:
        with pytest.raises(tw.errors.InvalidArgumentError, match="allow_soft_placement"):
            s.run(y, feed)
    with tw.Session(config=tw.ConfigProto(allow_soft_placement=True)) as s:
        np.testing.assert_array_equal(s.run(y, feed), [8.0, 6.0])
        on_dev, on_cpu = crosscheck._placed(s)
    assert "TopKV2" in on_cpu and "Mul" in on_dev


def mlp_losses(device, steps=3, dtype=np.float32):
    """Losses of ``steps`` SGD steps of a 784-64-10 relu MLP with fixed weights and batch."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((32, 784)).astype(dtype)
    ys = rng.integers(0, 10, 32).astype(np.int32)
    g = tw.Graph()
    with g.as_default(), g.device(device) if device else crosscheck._null():
        x = tw.placeholder(dtype, [None, 784])
        y = tw.placeholder(tw.int32, [None])
        h = x
        for i, (n_in, n_out) in enumerate([(784, 64), (64, 10)]):
            w = tw.Variable((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype))
            b = tw.Variable(np.zeros(n_out, dtype))
            h = tw.matmul(h, w) + b
            if i == 0:
                h = tw.nn.relu(h)
        loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
        train = tw.train.GradientDescentOptimizer(0.5).minimize(loss)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as s:
        s.run(init)
        losses = [s.run([loss, train], {x: xs, y: ys})[0] for _ in range(steps)]
        placed = crosscheck._placed(s)
    return np.array(losses), placed


def test_mlp_steps_on_emulated_device_match_cpu():
    want, _ = mlp_losses(None)
    got, (on_dev, on_cpu) = mlp_losses(EMU)
    assert {"MatMul", "ApplyGradientDescent", "SparseSoftmaxCrossEntropyWithLogits"} <= on_dev
    assert not on_cpu, f"ops left on the CPU: {on_cpu}"
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert want[-1] < want[0]


# --- on a real GPU ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_matmul_runs_on_the_device():
    assert _gpu_device_ready(), gpu.unavailable_reason()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 32), np.float32), rng.standard_normal((32, 16), np.float32)
    pa, pb = tw.placeholder(tw.float32, a.shape), tw.placeholder(tw.float32, b.shape)
    with tw.device("/gpu:0"):  # placeholders: a product of two constants is folded on the host
        c = tw.matmul(pa, pb, transpose_b=False)
    with tw.Session() as s:
        got = s.run(c, {pa: a, pb: b})
        on_dev, _ = crosscheck._placed(s)
    assert type(got) is np.ndarray and "MatMul" in on_dev
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_gpu_mlp_steps_match_cpu():
    assert _gpu_device_ready(), gpu.unavailable_reason()
    want, _ = mlp_losses(None)
    got, (on_dev, on_cpu) = mlp_losses("/gpu:0")
    assert "ApplyGradientDescent" in on_dev and not on_cpu, (on_dev, on_cpu)
    assert crosscheck.rel_err(got, want) <= 1e-4, (got, want)


@pytest.mark.gpu
def test_gpu_soft_placement_falls_back_to_cpu_kernels():
    assert _gpu_device_ready(), gpu.unavailable_reason()
    x = tw.placeholder(tw.float32, [4])
    with tw.device("/gpu:0"):
        y = tw.nn.top_k(x, 2)[0] * 2.0
    feed = {x: [1.0, 4.0, 2.0, 3.0]}
    with tw.Session() as s:
        with pytest.raises(tw.errors.InvalidArgumentError, match="allow_soft_placement"):
            s.run(y, feed)
    with tw.Session(config=tw.ConfigProto(allow_soft_placement=True)) as s:
        np.testing.assert_array_equal(s.run(y, feed), [8.0, 6.0])


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gpu_op_table_float32(case):
    assert _gpu_device_ready(), gpu.unavailable_reason()
    res = crosscheck.compare_case(case, "/gpu:0", tol=1e-4, dtype=np.float32)
    if res.message.startswith(("build failed", "reference failed")):
        pytest.skip(res.message)
    assert res.ok, f"{case.name}: {res.message}"


@pytest.mark.gpu
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_gpu_optimizer_matches_cpu(name, sparse):
    assert _gpu_device_ready(), gpu.unavailable_reason()
    want, _, _ = train_steps(None, OPTIMIZERS[name], sparse)
    got, (on_dev, _), _ = train_steps("/gpu:0", OPTIMIZERS[name], sparse)
    assert any(t.startswith(("Apply", "SparseApply", "Scatter")) for t in on_dev), on_dev
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)

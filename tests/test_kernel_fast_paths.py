"""The CPU kernels' fast paths give what the plain NumPy formulas give: ``Mean`` without
``np.mean``'s wrapper (bit for bit), ``Sum`` over leading axes and ``BiasAddGrad`` as one BLAS
matrix-vector product (to float rounding, closer to the exact sum than NumPy's row-by-row
reduction), sparse cross-entropy's reductions along the transposed view."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.kernels.cpu import blas
from tensorweave.kernels.cpu.math import _mean, _sum


def _data(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 10 + 3).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", [((128,), (0,)), ((32, 1024), (0,)), ((7, 5, 3), (0, 2)),
                                         ((7, 5, 3), (-1,)), ((3, 4), (0, 1)), ((4,), ())])
@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_is_np_mean_bit_for_bit(dtype, shape, axis, keepdims):
    x = _data(shape, dtype)
    want = np.mean(x, axis=axis, keepdims=keepdims)
    got = _mean(x, axis, keepdims)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    assert np.shape(got) == np.shape(want)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_mean_of_other_dtypes_and_empty_slices_is_np_mean(dtype):
    x = _data((6, 5), np.float32).astype(dtype)
    assert np.array_equal(_mean(x, (0,), False), np.mean(x, axis=(0,)))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(_mean(np.zeros((0, 3), np.float32), (0,), False)).all()


@pytest.mark.parametrize("shape, axis", [((50176, 32), (0,)), ((640, 2000), (0,)),
                                         ((64, 14, 14, 8), (0, 1, 2)), ((9, 4, 3), (1, 0)),
                                         ((9, 4), (-2,))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_over_leading_axes_by_blas(shape, axis, keepdims):
    x = _data(shape, np.float32)
    exact = np.sum(x.astype(np.float64), axis=axis, keepdims=keepdims)
    got = _sum(x, axis, keepdims)
    assert got.dtype == np.float32 and got.shape == exact.shape
    numpy_err = np.abs(np.add.reduce(x, axis=axis, keepdims=keepdims) - exact).max()
    blas_err = np.abs(got - exact).max()
    assert blas_err <= max(numpy_err, 1e-6 * np.abs(exact).max())


def test_sum_elsewhere_is_add_reduce():
    x = _data((6, 5, 4), np.float32)
    for axis in [(1,), (2,), (0, 2), (-1,)]:
        assert np.array_equal(_sum(x, axis, False), np.add.reduce(x, axis=axis))
    xt = x.transpose(2, 1, 0)  # not C-contiguous: no BLAS
    assert np.array_equal(_sum(xt, (0,), True), np.add.reduce(xt, axis=(0,), keepdims=True))
    xi = x.astype(np.int32)
    assert _sum(xi, (0,), False).dtype == np.add.reduce(xi, axis=0).dtype
    assert _sum(np.zeros((0, 3), np.float32), (0,), False).tolist() == [0.0, 0.0, 0.0]
    assert _sum(np.zeros((3, 0), np.float32), (0,), False).shape == (0,)


def test_column_sums_refuses_what_blas_cannot_take():
    assert blas.column_sums(np.ones((3, 4), np.int32)) is None
    assert blas.column_sums(np.ones((4, 3), np.float32).T) is None
    assert blas.column_sums(np.ones(4, np.float32)) is None
    assert blas.column_sums(np.ones((4, 3), np.float64)).tolist() == [4.0, 4.0, 4.0]


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_bias_add_gradient_sums_every_axis_but_the_channels(data_format):
    shape = (8, 6, 5, 3) if data_format == "NHWC" else (8, 3, 6, 5)
    x = tw.constant(_data(shape, np.float32))
    b = tw.constant(np.zeros(3, np.float32))
    dy = _data(shape, np.float32, seed=1)
    y = tw.nn.bias_add(x, b, data_format=data_format)
    (db,) = tw.gradients(y, [b], grad_ys=[tw.constant(dy)])
    with tw.Session() as s:
        got = s.run(db)
    axes = (0, 1, 2) if data_format == "NHWC" else (0, 2, 3)
    np.testing.assert_allclose(got, dy.astype(np.float64).sum(axes), rtol=1e-5)


@pytest.mark.parametrize("classes", [3, 10, 200])
def test_sparse_xent_matches_the_float64_formula(classes):
    z = _data((50, classes), np.float32) / 5
    y = np.random.default_rng(2).integers(0, classes, 50).astype(np.int32)
    logits = tw.constant(z)
    loss = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=tw.constant(y), logits=logits)
    (g,) = tw.gradients(tw.reduce_sum(loss), [logits])
    with tw.Session() as s:
        lv, gv = s.run([loss, g])
    z64 = z.astype(np.float64)
    p = np.exp(z64 - z64.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(lv, -np.log(p[np.arange(50), y]), rtol=1e-5)
    p[np.arange(50), y] -= 1
    np.testing.assert_allclose(gv, p, atol=1e-6)


def test_sparse_xent_negative_label_is_named():
    x = tw.constant(np.zeros((3, 4), np.float32))
    labels = tw.placeholder(tw.int32, [3])
    loss = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
    with tw.Session() as s:
        with pytest.raises(tw.errors.InvalidArgumentError, match=r"label value of -1 .*\[0, 4\)"):
            s.run(loss, {labels: [0, -1, 3]})
        assert s.run(loss, {labels: [0, 1, 3]}).shape == (3,)


def test_split_kernels_slice_views_and_check_sizes():
    x = tw.placeholder(tw.float32, None)
    a, b, c = tw.split(x, 3, axis=-1)
    p, q = tw.split(x, [1, -1], axis=0)
    v = np.arange(12, dtype=np.float32).reshape(2, 6)
    with tw.Session() as s:
        got = s.run([a, b, c, p, q], {x: v})
        with pytest.raises(tw.errors.InvalidArgumentError, match="evenly divide"):
            s.run(a, {x: np.zeros((2, 5), np.float32)})
        with pytest.raises(tw.errors.InvalidArgumentError, match="do not sum"):
            s.run(p, {x: np.zeros((0, 2), np.float32)})
    for g, w in zip(got, np.split(v, 3, axis=-1) + np.split(v, [1], axis=0)):
        np.testing.assert_array_equal(g, w)


def _adam_run(shape, sparse, steps=4, seed=0, make_opt=None):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape).astype(np.float32)
    g = tw.Graph()
    with g.as_default():
        w = tw.Variable(w0)
        x = tw.constant(rng.standard_normal(shape).astype(np.float32))
        rows = tw.gather(w, tw.constant([0, 3, 3, shape[0] - 1])) if sparse else w
        target = tw.gather(x, tw.constant([0, 3, 3, shape[0] - 1])) if sparse else x
        loss = tw.reduce_sum(tw.square(rows - target))
        opt = make_opt() if make_opt else tw.train.AdamOptimizer(0.01, beta1=0.8, beta2=0.99,
                                                                 epsilon=1e-6)
        train = opt.minimize(loss)
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(steps):
            sess.run(train)
        return sess.run(w)


@pytest.mark.parametrize("sparse", [False, True])
def test_adam_by_blas_equals_the_numpy_update(monkeypatch, sparse):
    """Large float32 variables take Adam's BLAS path (kernels/cpu/training._adam_blas,
    saxpby per block, blocks of 32K with a partial last one): the same training as the
    NumPy formula to float32 rounding."""
    from tensorweave.kernels.cpu import blas, training

    if blas.axpby() is None:
        pytest.skip("NumPy's bundled OpenBLAS was not found: the NumPy path is used")
    shape = (70, 1000)  # 70,000 elements: two full blocks and a partial one
    calls = []
    real = training._adam_blas
    monkeypatch.setattr(training, "_adam_blas",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = _adam_run(shape, sparse)
    assert len(calls) == 4
    monkeypatch.setattr(training, "_adam_blas", lambda *a, **k: False)
    plain = _adam_run(shape, sparse)
    np.testing.assert_allclose(fast, plain, rtol=2e-6, atol=2e-7)
    assert not np.array_equal(fast, _adam_run(shape, sparse, steps=0))


def test_adam_blas_path_refuses_what_it_cannot_take():
    from tensorweave.kernels.cpu import training

    v = np.ones(8192, np.float32)
    assert not training._adam_blas(v, v, np.ones(8192, np.float32), 0.1, 1e-8)  # aliasing
    f64 = np.ones(8192)
    assert not training._adam_blas(f64, f64.copy(), f64.copy(), 0.1, 1e-8)  # float64
    m = np.ones((64, 128), np.float32)
    assert not training._adam_blas(m[:, ::2].copy().T, np.ones((64, 64), np.float32).T,
                                   np.ones((64, 64), np.float32), 0.1, 1e-8)  # layouts


def test_momentum_by_blas_equals_the_numpy_update(monkeypatch):
    from tensorweave.kernels.cpu import blas, training

    if blas.axpby() is None:
        pytest.skip("NumPy's bundled OpenBLAS was not found: the NumPy path is used")
    calls = []
    real = training._momentum_whole
    monkeypatch.setattr(training._momentum, "whole",
                        lambda *a: calls.append(1) or real(*a))

    def run():
        return _adam_run((70, 1000), False, make_opt=lambda: tw.train.MomentumOptimizer(
            0.05, 0.9))

    fast = run()
    assert len(calls) == 4
    monkeypatch.setattr(training._momentum, "whole", lambda *a: False)
    np.testing.assert_allclose(fast, run(), rtol=2e-6, atol=1e-6)  # weights ~N(0, 1)


@pytest.mark.parametrize("make_opt", [
    lambda: tw.train.MomentumOptimizer(0.1, momentum=0.0),
    lambda: tw.train.MomentumOptimizer(0.0, momentum=0.9),
    lambda: tw.train.AdamOptimizer(0.0)], ids=["momentum=0", "momentum-lr=0", "adam-lr=0"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_blas_updates_keep_nan_where_a_coefficient_is_zero(make_opt):
    """OpenBLAS skips a term whose coefficient is 0 (saxpby drops a * x for a = 0, b * y
    for b = 0), and with it 0 * Inf = NaN: such updates run NumPy, which gives
    TensorFlow's NaN, at every size (4096 elements and up took the BLAS path)."""
    for n in (4095, 4096):
        g = tw.Graph()
        with g.as_default():
            w = tw.Variable(np.ones(n, np.float32))
            grad = tw.constant(np.r_[np.inf, np.ones(n - 1)].astype(np.float32))
            train = make_opt().apply_gradients([(grad, w)])
            init = tw.global_variables_initializer()
        with tw.Session(graph=g) as sess:
            sess.run(init)
            sess.run(train)
            sess.run(train)
            assert np.isnan(sess.run(w)[0]), n


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_adam_on_blas_meets_inf_as_tensorflow_does():
    """A finite gradient of 3e38 overflows g^2: v becomes Inf. At the next such gradient
    TensorFlow's ``v += (g^2 - v) * (1 - b2)`` gives Inf - Inf = NaN and the weight turns NaN;
    a ``(1-b2)*g^2 + b2*v`` form kept v Inf and left the weight unchanged (m / sqrt(Inf) = 0).
    The BLAS path uses TensorFlow's form: NaN at every size (checked against TF 2.21)."""
    for n in (100, 8192):
        g = tw.Graph()
        with g.as_default():
            w = tw.Variable(np.ones(n, np.float32))
            grad = tw.placeholder(tw.float32, [n])
            train = tw.train.AdamOptimizer(0.01).apply_gradients([(grad, w)])
            init = tw.global_variables_initializer()
        with tw.Session(graph=g) as sess:
            sess.run(init)
            for big in (3e38, -3e38):
                sess.run(train, {grad: np.r_[big, np.zeros(n - 1)].astype(np.float32)})
            assert np.isnan(sess.run(w)[0]), n

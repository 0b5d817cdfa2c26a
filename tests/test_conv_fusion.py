"""CPU plan fusions of the conv-layer chains (runtime/plan.py): ``Relu(BiasAdd(Conv2D))`` as one
step, ``ReluGrad(MaxPoolGrad)`` as one step. Each is switched off by ``GraphOptions(fusion=False)``
and gives bit-identical training; each is refused where fusing would change what runs."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.kernels.cpu import conv
from tensorweave.ops import nn_ops
from tensorweave.runtime.config import GraphOptions


def _plan_stats(sess):
    return list(sess._plans.values())[-1].rewrite_stats


def _cnn(channels, pool_window, relu=True, seed=0):
    """conv(5x5, SAME) -> bias -> [relu] -> max_pool -> conv -> bias -> relu -> dense; Adam."""
    rng = np.random.default_rng(seed)
    x = tw.placeholder(tw.float32, [None, 12, 12, channels], name="x")
    y = tw.placeholder(tw.int32, [None], name="y")
    f1 = tw.Variable(rng.standard_normal((5, 5, channels, 16)).astype(np.float32) * 0.2)
    b1 = tw.Variable(rng.standard_normal(16).astype(np.float32) * 0.1)
    f2 = tw.Variable(rng.standard_normal((3, 3, 16, 24)).astype(np.float32) * 0.1)
    b2 = tw.Variable(rng.standard_normal(24).astype(np.float32) * 0.1)
    h = tw.nn.bias_add(tw.nn.conv2d(x, f1, [1, 1, 1, 1], "SAME"), b1)
    if relu:
        h = tw.nn.relu(h)
    k, s = pool_window
    h = tw.nn.max_pool(h, [1, k, k, 1], [1, s, s, 1], "SAME")
    h = tw.nn.relu(tw.nn.bias_add(tw.nn.conv2d(h, f2, [1, 1, 1, 1], "SAME"), b2))
    h = tw.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = tw.reshape(h, [-1, int(np.prod(h.shape.as_list()[1:]))])
    w = tw.Variable(rng.standard_normal((flat.shape.as_list()[1], 5)).astype(np.float32) * 0.1)
    loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=tw.matmul(flat, w)))
    train = tw.train.AdamOptimizer(0.01).minimize(loss)
    feed = {x: rng.standard_normal((6, 12, 12, channels)).astype(np.float32),
            y: rng.integers(0, 5, 6).astype(np.int32)}
    return loss, train, feed


def _train(build, fusion, steps=4, inter_op=0):
    g = tw.Graph()
    with g.as_default():
        loss, train, feed = build()
        init = tw.global_variables_initializer()
        variables = tw.global_variables()
    with tw.Session(graph=g, config=tw.ConfigProto(
            graph_options=GraphOptions(fusion=fusion),
            inter_op_parallelism_threads=inter_op)) as sess:
        sess.run(init)
        losses = [sess.run([loss, train], feed)[0] for _ in range(steps)]
        stats = dict(_plan_stats(sess))
        return losses, sess.run(variables), stats


def _fused_equals_unfused(build, inter_op=0):
    """Trains with fusion on (optionally on the inter-op pool) and off; asserts the same losses
    and variables, bit for bit; returns (losses, fused plan's stats)."""
    l_on, v_on, s_on = _train(build, True, inter_op=inter_op)
    l_off, v_off, s_off = _train(build, False)
    assert l_on == l_off
    for a, b in zip(v_on, v_off):
        np.testing.assert_array_equal(a, b)
    assert s_off["conv_bias_relu_fused"] == 0 and s_off["pool_relu_grad_fused"] == 0
    return l_on, s_on


@pytest.mark.parametrize("channels", [1, 2, 3, 16])  # tap-major columns, im2col, kernel rows
@pytest.mark.parametrize("pool_window", [(2, 2), (3, 2)])  # disjoint tiles / overlapping
def test_fused_conv_layers_train_bit_identically(channels, pool_window):
    losses, stats = _fused_equals_unfused(lambda: _cnn(channels, pool_window))
    assert stats["conv_bias_relu_fused"] == 2 and stats["pool_relu_grad_fused"] == 2
    assert losses[-1] < losses[0]


def test_fused_steps_run_on_the_inter_op_pool_with_equal_results():
    _, stats = _fused_equals_unfused(lambda: _cnn(16, (2, 2)), inter_op=2)
    assert stats["conv_bias_relu_fused"] == 2 and stats["pool_relu_grad_fused"] == 2


def test_conv_bias_without_relu_fuses_the_bias_only():
    _, stats = _fused_equals_unfused(lambda: _cnn(3, (2, 2), relu=False))
    # the first layer has no Relu: its conv+bias fuses, its pool gradient has no ReluGrad
    assert stats["conv_bias_relu_fused"] == 2 and stats["pool_relu_grad_fused"] == 1


def test_a_fetched_intermediate_is_not_fused_away():
    rng = np.random.default_rng(1)
    x = tw.placeholder(tw.float32, [2, 8, 8, 3])
    f = tw.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    b = tw.constant(rng.standard_normal(4).astype(np.float32))
    pre = tw.nn.bias_add(tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME"), b)
    out = tw.nn.relu(pre)
    feed = {x: rng.standard_normal((2, 8, 8, 3)).astype(np.float32)}
    with tw.Session() as sess:
        got_pre, got_out = sess.run([pre, out], feed)
        assert _plan_stats(sess)["conv_bias_relu_fused"] == 1  # conv + bias; the Relu apart
        np.testing.assert_array_equal(got_out, np.maximum(got_pre, 0))
        sess.run(out, feed)
        assert _plan_stats(sess)["conv_bias_relu_fused"] == 1


def test_nchw_layers_are_left_alone():
    rng = np.random.default_rng(2)
    x = tw.placeholder(tw.float32, [2, 3, 8, 8])
    f = tw.constant(rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
    b = tw.constant(rng.standard_normal(4).astype(np.float32))
    out = tw.nn.relu(tw.nn.bias_add(tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME",
                                                 data_format="NCHW"), b, data_format="NCHW"))
    with tw.Session() as sess:
        sess.run(out, {x: np.ones((2, 3, 8, 8), np.float32)})
        assert _plan_stats(sess)["conv_bias_relu_fused"] == 0


def test_fused_bias_of_the_wrong_size_is_named():
    x = tw.placeholder(tw.float32, [1, 6, 6, 2])
    b = tw.placeholder(tw.float32, [None])
    out = tw.nn.relu(tw.nn.bias_add(
        tw.nn.conv2d(x, tw.ones([3, 3, 2, 4]), [1, 1, 1, 1], "SAME"), b, name="the_bias"))
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="bias shape \\[3\\].*the_bias"):
            sess.run(out, {x: np.ones((1, 6, 6, 2), np.float32), b: np.ones(3, np.float32)})


def test_pool_gradient_with_ties_and_nan_equals_the_two_kernels():
    """Rectified activations tie at zero in whole windows; a NaN makes its window's max NaN.
    The fused kernel gives what MaxPoolGrad then ReluGrad give, bit for bit."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((2, 6, 6, 3)).astype(np.float32), 0)
    x[0, :2, :2, :] = 0.0  # a window of ties at zero
    x[1, 2:4, 2:4, 0] = 1.5  # a window of positive ties: the first takes the gradient
    x[0, 4, 4, 1] = np.nan
    for ksize, stride, padding in ((2, 2, "VALID"), (3, 2, "SAME")):
        ks, st = [1, ksize, ksize, 1], [1, stride, stride, 1]
        op = _pool_grad_op(ks, st, padding)
        win = conv.window(6, 6, ksize, ksize, st, [1, 1, 1, 1], padding)
        y = conv.max_pool(x, win)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        want = conv.max_pool_grad(x, dy, win, y)
        want = want * (x > 0)
        got = conv.max_pool_relu_grad(op)(x, y, dy)
        np.testing.assert_array_equal(got, want)


def _pool_grad_op(ksize, strides, padding):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [2, 6, 6, 3])
        y = tw.nn.max_pool(x, ksize, strides, padding)
        (dx,) = tw.gradients(y, [x])
    return dx.op


def test_relu_gradient_reads_the_output_as_tensorflow_does():
    x = tw.placeholder(tw.float32, [4])
    y = tw.nn.relu(x)
    (dx,) = tw.gradients(y * y, [x])
    assert dx.op.type == "ReluGrad" and dx.op.inputs[1] is y
    with tw.Session() as sess:
        got = sess.run(dx, {x: np.array([-1.0, 0.0, 0.5, 2.0], np.float32)})
    np.testing.assert_array_equal(got, [0.0, 0.0, 1.0, 4.0])


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("strides,dilations,padding", [
    ([1, 1, 1, 1], [1, 1, 1, 1], "SAME"), ([1, 2, 2, 1], [1, 1, 1, 1], "VALID"),
    ([1, 1, 1, 1], [1, 2, 2, 1], "SAME")])
def test_tap_major_columns_equal_the_definition(channels, strides, dilations, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 9, 10, channels)).astype(np.float32)
    f = rng.standard_normal((3, 3, channels, 5)).astype(np.float32)
    win = conv.window(9, 10, 3, 3, strides, dilations, padding)
    cols = conv._im2col(x, win)
    xp = conv._pad(x, win)
    want = np.stack([xp[:, win.rows(i), win.cols(j), :] for i, j in win.offsets()], axis=3)
    np.testing.assert_array_equal(cols, want.reshape(cols.shape))
    y = conv.conv2d(x, f, win)
    np.testing.assert_allclose(y, (want.reshape(cols.shape) @ f.reshape(-1, 5)).reshape(y.shape),
                               rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    df = conv.conv2d_backprop_filter(x, dy, win, f.shape)
    np.testing.assert_allclose(df, (want.reshape(cols.shape).T @ dy.reshape(-1, 5)).reshape(
        f.shape), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pads", [(2, 2, 2, 2), (0, 0, 0, 0), (5, 0, 1, 3), (0, 4, 2, 0)])
def test_kernel_rows_skip_padding_rows_and_equal_im2col(pads):
    """The row-tap path multiplies only real input rows; output rows under padding alone
    (explicit pads wider than the kernel) come out zero, as the column matrix gives."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 7, 16)).astype(np.float32)
    f = rng.standard_normal((3, 3, 16, 5)).astype(np.float32)
    explicit = [0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0]
    win = conv.window(6, 7, 3, 3, [1, 1, 1, 1], [1, 1, 1, 1], "EXPLICIT", explicit)
    assert conv._row_taps(x, win)
    cols = conv._patches(conv._pad(x, win), win).reshape(-1, 3 * 3 * 16)
    want = (cols.astype(np.float64) @ f.reshape(-1, 5)).reshape(2, win.oh, win.ow, 5)
    np.testing.assert_allclose(conv.conv2d(x, f, win), want, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    np.testing.assert_allclose(conv.conv2d_backprop_filter(x, dy, win, f.shape),
                               (cols.T.astype(np.float64) @ dy.reshape(-1, 5)).reshape(f.shape),
                               rtol=1e-4, atol=1e-4)
    if pads[0] >= 3:
        assert not conv.conv2d(x, f, win)[:, :pads[0] - 2].any()


def test_a_traced_step_names_the_fused_chain():
    loss, train, feed = _cnn(16, (2, 2))
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        md = tw.RunMetadata()
        sess.run([loss, train], feed, options=tw.RunOptions(
            trace_level=tw.RunOptions.FULL_TRACE), run_metadata=md)
    types = [ns.op_type for d in md.step_stats.dev_stats for ns in d.node_stats]
    assert types.count("Conv2D+BiasAdd+Relu") == 2
    assert types.count("MaxPoolGrad+ReluGrad") == 2
    assert "Conv2D" not in types and "MaxPoolGrad" not in types


# --- found by review; each failed before its fix ---------------------------------------------------
@pytest.mark.parametrize("x_shape,out_channels", [((1, 25, 41, 8), 64), ((4, 45, 92, 8), 8)])
def test_fused_column_matmul_with_a_short_last_block_is_bit_identical(x_shape, out_channels):
    """The column matrix is multiplied in row blocks (for the fused epilogue); BLAS rounds a
    short last block (one row: a matrix-vector product) differently from a whole-matrix
    product, so the unfused convolution now runs in the same blocks."""
    rng = np.random.default_rng(8)
    xv = rng.standard_normal(x_shape).astype(np.float32)
    fv = rng.standard_normal((3, 3, x_shape[3], out_channels)).astype(np.float32)
    bv = rng.standard_normal(out_channels).astype(np.float32)
    got = []
    for fusion in (True, False):
        g = tw.Graph()
        with g.as_default():
            x = tw.placeholder(tw.float32, x_shape)
            y = tw.nn.relu(tw.nn.bias_add(tw.nn.conv2d(x, fv, [1, 1, 1, 1], "SAME"), bv))
        with tw.Session(graph=g, config=tw.ConfigProto(
                graph_options=GraphOptions(fusion=fusion))) as sess:
            got.append(sess.run(y, {x: xv}))
            assert _plan_stats(sess)["conv_bias_relu_fused"] == int(fusion)
    np.testing.assert_array_equal(got[0], got[1])


def test_an_error_in_a_fused_step_names_the_op_whose_part_failed():
    x = tw.placeholder(tw.float32, [None, None, None, None])
    y = tw.nn.relu(tw.nn.bias_add(tw.nn.conv2d(x, tw.ones([3, 3, 4, 8]), [1, 1, 1, 1], "SAME",
                                               name="my_conv"), tw.zeros([8])), name="my_relu")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="node 'my_conv'") as e:
            sess.run(y, {x: np.ones((1, 5, 5, 3), np.float32)})  # 3 channels, the filter wants 4
        assert e.value.op.name == "my_conv"


def test_input_gradient_is_never_a_view_of_the_kernels_scratch():
    """N=1 with padding only in height made the cropped gradient a view of the kernel's
    reusable padded buffer: a fetched gradient changed when the session ran again."""
    x = tw.placeholder(tw.float32, [1, 6, 5, 3])
    y = tw.nn.conv2d(x, tw.constant(np.ones((3, 1, 3, 4), np.float32)), [1, 1, 1, 1], "SAME")
    dy = tw.placeholder(tw.float32, [1, 6, 5, 4])
    (dx,) = tw.gradients(y, [x], grad_ys=dy)
    zeros = np.zeros((1, 6, 5, 3), np.float32)
    with tw.Session() as sess:
        first = sess.run(dx, {x: zeros, dy: np.ones((1, 6, 5, 4), np.float32)})
        kept = first.copy()
        sess.run(dx, {x: zeros, dy: np.full((1, 6, 5, 4), 7, np.float32)})
    np.testing.assert_array_equal(first, kept)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0, as in TensorFlow
def test_relu6_gradient_multiplies_by_the_mask_as_tensorflow():
    g = tw.placeholder(tw.float32, [4])
    f = tw.placeholder(tw.float32, [4])
    d = nn_ops.activation_grad("Relu6Grad", g, f)
    with tw.Session() as sess:
        got = sess.run(d, {g: np.array([np.nan, np.inf, 2.0, np.nan], np.float32),
                           f: np.array([-1.0, 7.0, 3.0, 2.0], np.float32)})
    # TF: gradients * ((features > 0) * (features < 6)): NaN and Inf times 0 are NaN
    np.testing.assert_array_equal(got, [np.nan, np.nan, 2.0, np.nan])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pool_gradient_of_an_inf_or_nan_dy_goes_to_the_maximum_only():
    """TensorFlow's MaxPoolGrad writes dy at each window's first maximum and 0 elsewhere; an
    Inf or NaN in dy made the other positions NaN (Inf * 0). Checked against TF 2.21's
    compat.v1; the fused relu path gives what the two kernels give."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    dy[0, 0, 0, 0], dy[1, 1, 1, 2] = np.inf, np.nan
    win = conv.window(4, 4, 2, 2, [1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    top = conv.max_pool(x, win)
    want = np.zeros_like(x)
    for n, i, j, c in np.ndindex(*top.shape):
        block = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
        a, b = np.unravel_index(np.argmax(block), (2, 2))
        want[n, 2 * i + a, 2 * j + b, c] = dy[n, i, j, c]
    got = conv.max_pool_grad(x, dy, win, top)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got).sum() == 1 and np.isinf(got).sum() == 1
    fused = conv.max_pool_relu_grad(_pool_grad_op([1, 2, 2, 1], [1, 2, 2, 1], "VALID"))
    r = np.maximum(x, 0)
    np.testing.assert_array_equal(fused(r, conv.max_pool(r, win), dy),
                                  conv.max_pool_grad(r, dy, win) * (r > 0))


def test_conv_plus_a_channel_bias_fuses_like_bias_add():
    """TF1's tutorials write ``tf.nn.relu(conv2d(x, W) + b)``: an Add of a [channels] bias (in
    either order) fuses as BiasAdd does; a bias of another shape does not."""
    rng = np.random.default_rng(10)
    b = tw.constant(rng.standard_normal(4).astype(np.float32))
    b2 = tw.constant(rng.standard_normal((8, 8, 4)).astype(np.float32))
    x = tw.placeholder(tw.float32, [None, 8, 8, 2])
    conv = [tw.nn.conv2d(x, tw.constant(rng.standard_normal((3, 3, 2, 4)).astype(np.float32)),
                         [1, 1, 1, 1], "SAME") for _ in range(3)]  # three filters: no CSE
    outs = [tw.nn.relu(conv[0] + b), tw.nn.relu(b + conv[1]), tw.nn.relu(conv[2] + b2)]
    feed = {x: rng.standard_normal((3, 8, 8, 2)).astype(np.float32)}
    got = {}
    for fusion in (True, False):
        with tw.Session(config=tw.ConfigProto(graph_options=GraphOptions(fusion=fusion))) as s:
            got[fusion] = s.run(outs, feed)
            assert _plan_stats(s)["conv_bias_relu_fused"] == (2 if fusion else 0)
    for a, c in zip(got[True], got[False]):
        np.testing.assert_array_equal(a, c)


# --- found by a second review; each failed before its fix --------------------------------------------
def _on_off(build):
    """(fused result, unfused result, fused plan's conv fusions) of ``build() -> (out, feed)``."""
    got, fused = [], None
    for fusion in (True, False):
        g = tw.Graph()
        with g.as_default():
            out, feed = build()
        with tw.Session(graph=g, config=tw.ConfigProto(
                graph_options=GraphOptions(fusion=fusion))) as sess:
            got.append(sess.run(out, feed))
            if fusion:
                fused = _plan_stats(sess)
    return got[0], got[1], fused


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("order", ["conv+b", "b+conv"])
def test_conv_plus_bias_keeps_the_operand_order_of_the_add(order):
    """NaN + NaN keeps the first operand's NaN: the fused add follows the graph's order."""
    def build():
        x = tw.placeholder(tw.float32, [1, 4, 4, 3])
        bias = tw.placeholder(tw.float32, [2])
        c = tw.nn.conv2d(x, tw.constant(np.zeros((3, 3, 3, 2), np.float32)), [1, 1, 1, 1],
                         "SAME")
        xv = np.ones((1, 4, 4, 3), np.float32)
        xv[0, 1, 1, 0] = np.inf  # inf * 0: the default NaN (0xffc00000 on x86)
        out = tw.nn.relu(bias + c if order == "b+conv" else c + bias)
        return out, {x: xv, bias: np.array([np.nan, 1.0], np.float32)}  # +NaN: 0x7fc00000

    on, off, stats = _on_off(build)
    assert stats["conv_bias_relu_fused"] == 1
    np.testing.assert_array_equal(on.view(np.uint32), off.view(np.uint32))


def test_a_bias_whose_static_shape_lies_broadcasts_as_unfused():
    """``set_shape([2])`` on a value fed as [1]: NumPy broadcasts it in the unfused Add; the
    fused step falls back to the same add instead of raising."""
    def build():
        x = tw.placeholder(tw.float32, [1, 4, 4, 1])
        v = tw.placeholder(tw.float32, [None])
        b = tw.identity(v)
        b.set_shape([2])
        f = tw.constant(np.arange(18, dtype=np.float32).reshape(3, 3, 1, 2) - 9)
        out = tw.nn.relu(tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME") + b)
        return out, {x: np.ones((1, 4, 4, 1), np.float32), v: np.array([0.5], np.float32)}

    on, off, stats = _on_off(build)
    assert stats["conv_bias_relu_fused"] == 1
    np.testing.assert_array_equal(on, off)


def test_pool_gradient_whose_finite_sum_overflows_is_fused_as_unfused():
    """dy = [[3e38, -1], [3e38, 1]]: finite, but its float32 sum overflows. The sum alone sent
    the unfused kernel to its non-finite path and the fused one (masked dy, no overflow) to the
    multiply: zero signs differed. Now every element decides when the sum overflows."""
    def build():
        x = tw.placeholder(tw.float32, [1, 4, 4, 1])  # fed: nothing is constant-folded
        y = tw.nn.max_pool(tw.nn.relu(x), [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        dy = tw.constant(np.array([3e38, -1, 3e38, 1], np.float32).reshape(1, 2, 2, 1))
        xv = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [-1, -2, -3, -4], [-5, -6, -7, 9]],
                      np.float32).reshape(1, 4, 4, 1)
        return tw.gradients(y, x, grad_ys=dy)[0], {x: xv}

    on, off, stats = _on_off(build)
    assert stats["pool_relu_grad_fused"] == 1
    np.testing.assert_array_equal(on.view(np.uint32), off.view(np.uint32))


def test_pool_gradient_zeros_are_positive_as_tensorflow_writes_them():
    """TensorFlow adds dy into zeros at each window's maximum: every other position is +0.0.
    A float product dy * hit gave -0.0 there for a negative dy (equal values, other bits)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    win = conv.window(6, 6, 2, 2, [1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    top = conv.max_pool(x, win)
    dy = -np.abs(rng.standard_normal(top.shape)).astype(np.float32) - 1
    got = conv.max_pool_grad(x, dy, win, top)
    assert (got != 0).sum() == dy.size  # one position per window
    assert not np.signbit(got[got == 0]).any()

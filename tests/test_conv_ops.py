"""Convolution, pooling and batch-norm ops: forward against naive NumPy loops, gradients
against central differences (shared harness), and the non-table behaviour."""

import itertools

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case
from tensorweave.ops.op_util import make


# --- naive references: one loop per output position, TensorFlow's padding rule written out ------
def _geometry(size, k, stride, dilation, padding):
    k_eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        return out, max((out - 1) * stride + k_eff - size, 0) // 2
    return (size - k_eff) // stride + 1, 0


def _windows(h, w, kh, kw, strides, dilations, padding):
    """Yields (oh, ow, [(i, j, ih, iw) for in-bounds taps]) for every output position."""
    oh_n, pt = _geometry(h, kh, strides[0], dilations[0], padding)
    ow_n, pl = _geometry(w, kw, strides[1], dilations[1], padding)
    for oh in range(oh_n):
        for ow in range(ow_n):
            taps = []
            for i in range(kh):
                for j in range(kw):
                    ih = oh * strides[0] + i * dilations[0] - pt
                    iw = ow * strides[1] + j * dilations[1] - pl
                    if 0 <= ih < h and 0 <= iw < w:
                        taps.append((i, j, ih, iw))
            yield oh, ow, taps
    return oh_n, ow_n


def _out_hw(h, w, kh, kw, strides, dilations, padding):
    return (_geometry(h, kh, strides[0], dilations[0], padding)[0],
            _geometry(w, kw, strides[1], dilations[1], padding)[0])


def ref_conv2d(x, f, strides=(1, 1), padding="SAME", dilations=(1, 1)):
    n, h, w, _ = x.shape
    kh, kw, _, o = f.shape
    out = np.zeros((n,) + _out_hw(h, w, kh, kw, strides, dilations, padding) + (o,))
    for oh, ow, taps in _windows(h, w, kh, kw, strides, dilations, padding):
        for i, j, ih, iw in taps:
            out[:, oh, ow, :] += x[:, ih, iw, :] @ f[i, j]
    return out


def ref_depthwise(x, f, strides=(1, 1), padding="SAME", dilations=(1, 1)):
    n, h, w, c = x.shape
    kh, kw, _, m = f.shape
    out = np.zeros((n,) + _out_hw(h, w, kh, kw, strides, dilations, padding) + (c, m))
    for oh, ow, taps in _windows(h, w, kh, kw, strides, dilations, padding):
        for i, j, ih, iw in taps:
            out[:, oh, ow] += x[:, ih, iw, :, None] * f[i, j]
    return out.reshape(out.shape[:3] + (c * m,))


def ref_conv2d_transpose(x, f, out_shape, strides, padding):
    """Every input pixel scatters filter * value onto the output (the adjoint of conv2d)."""
    out = np.zeros(out_shape)
    kh, kw = f.shape[:2]
    for oh, ow, taps in _windows(out_shape[1], out_shape[2], kh, kw, strides, (1, 1), padding):
        for i, j, ih, iw in taps:
            out[:, ih, iw, :] += x[:, oh, ow, :] @ f[i, j].T
    return out


def ref_pool(x, k, strides, padding, reduce):
    n, h, w, c = x.shape
    out = np.zeros((n,) + _out_hw(h, w, k[0], k[1], strides, (1, 1), padding) + (c,))
    for oh, ow, taps in _windows(h, w, k[0], k[1], strides, (1, 1), padding):
        vals = np.stack([x[:, ih, iw, :] for _, _, ih, iw in taps])
        out[:, oh, ow, :] = reduce(vals, axis=0)
    return out


# --- forward tables: every padding x stride x dilation x odd/even kernel and input ---------------
def _fwd_cases():
    cases = []
    for pad, s, d, k, size in itertools.product(("SAME", "VALID"), (1, 2), (1, 2), (3, 2),
                                                (7, 6)):
        if pad == "VALID" and (k - 1) * d + 1 > size:
            continue
        tag = f"{pad}_s{s}_d{d}_k{k}_in{size}"
        st, dl = [1, s, s, 1], [1, d, d, 1]
        cases.append(OpCase(
            f"conv2d_{tag}",
            lambda x, f, st=st, dl=dl, pad=pad: tw.nn.conv2d(x, f, st, pad, dilations=dl),
            lambda x, f, s=s, d=d, pad=pad: ref_conv2d(x, f, (s, s), pad, (d, d)),
            [(2, size, size + 1, 3), (k, k + 1, 3, 4)], grad=False))
        if d == 1 or s == 1:  # TF's depthwise_conv2d rejects rate > 1 with strides > 1
            cases.append(OpCase(
                f"depthwise_{tag}",
                lambda x, f, st=st, d=d, pad=pad: tw.nn.depthwise_conv2d(x, f, st, pad,
                                                                         rate=[d, d]),
                lambda x, f, s=s, d=d, pad=pad: ref_depthwise(x, f, (s, s), pad, (d, d)),
                [(2, size, size + 1, 3), (k, k, 3, 2)], grad=False))
        if d == 1:
            kk, ss = [1, k, k + 1, 1], [1, s, s, 1]
            cases.append(OpCase(
                f"max_pool_{tag}",
                lambda x, kk=kk, ss=ss, pad=pad: tw.nn.max_pool(x, kk, ss, pad),
                lambda x, k=k, s=s, pad=pad: ref_pool(x, (k, k + 1), (s, s), pad, np.max),
                [(2, size, size, 3)], grad=False))
            cases.append(OpCase(
                f"avg_pool_{tag}",
                lambda x, kk=kk, ss=ss, pad=pad: tw.nn.avg_pool(x, kk, ss, pad),
                lambda x, k=k, s=s, pad=pad: ref_pool(x, (k, k + 1), (s, s), pad, np.mean),
                [(2, size, size, 3)], grad=False))
    return cases


def _pool_argmax_taps(x, k, strides, padding):
    """Per output position, the input position of each (n, c) window's first maximum."""
    n, h, w, c = x.shape
    for oh, ow, taps in _windows(h, w, k[0], k[1], strides, (1, 1), padding):
        vals = np.stack([x[:, ih, iw, :] for _, _, ih, iw in taps])
        first = vals.argmax(0)  # argmax returns the first of tied maxima
        yield oh, ow, [(taps[t][2], taps[t][3]) for t in range(len(taps))], first


def ref_max_pool_grad(x, dy, k=(3, 3), strides=(2, 2), padding="SAME"):
    dx = np.zeros_like(x)
    for oh, ow, pos, first in _pool_argmax_taps(x, k, strides, padding):
        for t, (ih, iw) in enumerate(pos):
            dx[:, ih, iw, :] += np.where(first == t, dy[:, oh, ow, :], 0.0)
    return dx


def ref_max_pool_grad_grad(x, g, k=(3, 3), strides=(2, 2), padding="SAME"):
    out = np.zeros((x.shape[0],) + _out_hw(x.shape[1], x.shape[2], k[0], k[1], strides,
                                           (1, 1), padding) + (x.shape[3],))
    for oh, ow, pos, first in _pool_argmax_taps(x, k, strides, padding):
        for t, (ih, iw) in enumerate(pos):
            out[:, oh, ow, :] += np.where(first == t, g[:, ih, iw, :], 0.0)
    return out


def ref_avg_pool_grad(x, dy, k=(3, 3), strides=(2, 2), padding="SAME"):
    dx = np.zeros_like(x)
    for oh, ow, taps in _windows(x.shape[1], x.shape[2], k[0], k[1], strides, (1, 1), padding):
        for _, _, ih, iw in taps:
            dx[:, ih, iw, :] += dy[:, oh, ow, :] / len(taps)
    return dx


def _distinct(*shape):
    """Values far apart (no ties), so finite differences never move a max-pool argmax."""
    def make_inputs(rng):
        n = int(np.prod(shape))
        return [rng.permutation(n).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape)]
    return make_inputs


def _pool_grad_of(pool, x, dy, **kw):
    """The pool's input gradient as a function of the upstream gradient ``dy``."""
    return tw.gradients(pool(x, **kw), [x], grad_ys=dy)[0]


_P22 = dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
_P32 = dict(ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME")

GRAD_CASES = [
    OpCase("conv2d_same_grad", lambda x, f: tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME"),
           ref_conv2d, [(2, 4, 5, 2), (3, 3, 2, 3)], second_order=True),
    OpCase("conv2d_valid_s2_d2_grad",
           lambda x, f: tw.nn.conv2d(x, f, [1, 2, 2, 1], "VALID", dilations=[1, 2, 2, 1]),
           lambda x, f: ref_conv2d(x, f, (2, 2), "VALID", (2, 2)),
           [(1, 7, 6, 2), (2, 2, 2, 3)], second_order=True),
    OpCase("conv2d_same_s2_even_grad", lambda x, f: tw.nn.conv2d(x, f, 2, "SAME"),
           lambda x, f: ref_conv2d(x, f, (2, 2), "SAME"), [(1, 6, 5, 2), (2, 4, 2, 2)]),
    OpCase("conv2d_nchw_grad",
           lambda x, f: tw.nn.conv2d(x, f, [1, 1, 2, 2], "SAME", data_format="NCHW"),
           lambda x, f: ref_conv2d(x.transpose(0, 2, 3, 1), f, (2, 2)).transpose(0, 3, 1, 2),
           [(1, 2, 5, 4), (3, 2, 2, 3)]),
    OpCase("conv2d_explicit_pad",
           lambda x, f: tw.nn.conv2d(x, f, 1, [[0, 0], [2, 1], [0, 1], [0, 0]]),
           lambda x, f: ref_conv2d(np.pad(x, [(0, 0), (2, 1), (0, 1), (0, 0)]), f, (1, 1),
                                   "VALID"),
           [(1, 4, 4, 2), (3, 2, 2, 2)]),
    OpCase("depthwise_same_grad",
           lambda x, f: tw.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME"),
           ref_depthwise, [(2, 4, 5, 3), (3, 2, 3, 2)], second_order=True),
    OpCase("depthwise_valid_s2_grad",
           lambda x, f: tw.nn.depthwise_conv2d(x, f, [1, 2, 2, 1], "VALID"),
           lambda x, f: ref_depthwise(x, f, (2, 2), "VALID"), [(1, 7, 6, 2), (3, 3, 2, 1)]),
    OpCase("conv2d_transpose_s2_same",
           lambda x, f: tw.nn.conv2d_transpose(x, f, [2, 7, 6, 3], [1, 2, 2, 1], "SAME"),
           lambda x, f: ref_conv2d_transpose(x, f, (2, 7, 6, 3), (2, 2), "SAME"),
           [(2, 4, 3, 2), (3, 2, 3, 2)], second_order=True),
    OpCase("conv2d_transpose_s1_valid",
           lambda x, f: tw.nn.conv2d_transpose(x, f, [1, 6, 5, 2], [1, 1, 1, 1], "VALID"),
           lambda x, f: ref_conv2d_transpose(x, f, (1, 6, 5, 2), (1, 1), "VALID"),
           [(1, 4, 4, 3), (3, 2, 2, 3)]),
    OpCase("max_pool_2x2_grad", lambda x: tw.nn.max_pool(x, **_P22),
           lambda x: ref_pool(x, (2, 2), (2, 2), "VALID", np.max), [(2, 4, 5, 2)],
           make_inputs=_distinct(2, 4, 5, 2)),
    OpCase("max_pool_3x3_s2_same_grad", lambda x: tw.nn.max_pool(x, **_P32),
           lambda x: ref_pool(x, (3, 3), (2, 2), "SAME", np.max), [(1, 5, 6, 2)],
           make_inputs=_distinct(1, 5, 6, 2)),
    OpCase("max_pool_grad_wrt_dy",  # differentiates MaxPoolGrad: MaxPoolGradGrad
           lambda x, dy: _pool_grad_of(tw.nn.max_pool, x, dy, **_P32), ref_max_pool_grad,
           [(1, 5, 6, 2), (1, 3, 3, 2)], grad_inputs=[1], second_order=True,
           make_inputs=lambda r: _distinct(1, 5, 6, 2)(r) + [r.standard_normal((1, 3, 3, 2))]),
    OpCase("max_pool_grad_grad_wrt_g",  # differentiates MaxPoolGradGrad: MaxPoolGrad again
           lambda x, g: make("MaxPoolGradGrad", [x, tw.nn.max_pool(x, **_P32), g],
                             tw.nn.max_pool(x, **_P32).op.attrs), ref_max_pool_grad_grad,
           [(1, 5, 6, 2), (1, 5, 6, 2)], grad_inputs=[1],
           make_inputs=lambda r: _distinct(1, 5, 6, 2)(r) + [r.standard_normal((1, 5, 6, 2))]),
    OpCase("avg_pool_same_grad", lambda x: tw.nn.avg_pool(x, **_P32),
           lambda x: ref_pool(x, (3, 3), (2, 2), "SAME", np.mean), [(2, 5, 6, 2)]),
    OpCase("avg_pool_2x2_grad", lambda x: tw.nn.avg_pool(x, **_P22),
           lambda x: ref_pool(x, (2, 2), (2, 2), "VALID", np.mean), [(1, 4, 4, 3)]),
    OpCase("conv2d_dynamic_shapes", lambda x, f: tw.nn.conv2d(x, f, 2, "SAME"),
           lambda x, f: ref_conv2d(x, f, (2, 2), "SAME"), [(2, 5, 4, 2), (3, 3, 2, 2)],
           static_shapes=False, second_order=True),
    OpCase("max_pool_nchw_dynamic",
           lambda x: tw.nn.max_pool(x, 3, 2, "SAME", data_format="NCHW"),
           lambda x: ref_pool(x.transpose(0, 2, 3, 1), (3, 3), (2, 2), "SAME",
                              np.max).transpose(0, 3, 1, 2),
           [(1, 2, 5, 6)], make_inputs=_distinct(1, 2, 5, 6), static_shapes=False),
    OpCase("avg_pool_nchw_dynamic",
           lambda x: tw.nn.avg_pool(x, 3, 2, "SAME", data_format="NCHW"),
           lambda x: ref_pool(x.transpose(0, 2, 3, 1), (3, 3), (2, 2), "SAME",
                              np.mean).transpose(0, 3, 1, 2),
           [(1, 2, 5, 6)], static_shapes=False),
    OpCase("avg_pool_grad_wrt_dy",  # differentiates AvgPoolGrad: AvgPool
           lambda x, dy: _pool_grad_of(tw.nn.avg_pool, x, dy, **_P32), ref_avg_pool_grad,
           [(1, 5, 6, 2), (1, 3, 3, 2)], grad_inputs=[1]),
]


def _bn_ref(x, scale, offset, mean=None, var=None, eps=1e-3, axes=(0, 1, 2)):
    if mean is None:
        mean, var = x.mean(axes), x.var(axes)
    return (x - mean) / np.sqrt(var + eps) * scale + offset


def _bn_inputs(c, *lead, inference=False):
    def make_inputs(rng):
        arrays = [rng.standard_normal(lead + (c,)) * 2 + 1, rng.uniform(0.5, 1.5, c),
                  rng.standard_normal(c)]
        if inference:
            arrays += [rng.standard_normal(c), rng.uniform(0.5, 2.0, c)]
        return arrays
    return make_inputs


BN_CASES = [
    OpCase("fused_bn_train", lambda x, s, o: tw.nn.fused_batch_norm(x, s, o)[0], _bn_ref,
           [(2, 3, 3, 2), (2,), (2,)], make_inputs=_bn_inputs(2, 2, 3, 3)),
    OpCase("fused_bn_train_nchw",
           lambda x, s, o: tw.nn.fused_batch_norm(x, s, o, data_format="NCHW")[0],
           lambda x, s, o: _bn_ref(x, s[:, None, None], o[:, None, None], axes=(0, 2, 3),
                                   mean=x.mean((0, 2, 3))[:, None, None],
                                   var=x.var((0, 2, 3))[:, None, None]),
           [(2, 3, 2, 3), (3,), (3,)],
           make_inputs=lambda r: [r.standard_normal((2, 3, 2, 3)), r.uniform(0.5, 1.5, 3),
                                  r.standard_normal(3)]),
    OpCase("fused_bn_train_dynamic", lambda x, s, o: tw.nn.fused_batch_norm(x, s, o)[0],
           _bn_ref, [(3, 2, 2, 2), (2,), (2,)], make_inputs=_bn_inputs(2, 3, 2, 2),
           static_shapes=False),
    OpCase("fused_bn_inference",
           lambda x, s, o, m, v: tw.nn.fused_batch_norm(x, s, o, m, v, epsilon=1e-3,
                                                        is_training=False)[0],
           _bn_ref, [(2, 2, 3, 3), (3,), (3,), (3,), (3,)], grad_inputs=[0, 1, 2],
           make_inputs=_bn_inputs(3, 2, 2, 3, inference=True)),
]


# Second order of batch norm and the composed normalizations need the math family's rsqrt and
# squared_difference. AddN of three scalars is broken in kernels/cpu/math.py at the time of
# writing, so the second-order cases differentiate two inputs.
def _math_family_ready():
    from tensorweave.framework.registry import registered_ops
    ops = registered_ops()
    return all(t in ops and ops[t].has_gradient for t in ("Rsqrt", "SquaredDifference"))


needs_math = pytest.mark.skipif(not _math_family_ready(),
                                reason="waits for Rsqrt/SquaredDifference and their gradients")

BN_SECOND_ORDER = [
    OpCase("fused_bn_train_2nd", lambda x, s, o: tw.nn.fused_batch_norm(x, s, o)[0], _bn_ref,
           [(2, 2, 3, 2), (2,), (2,)], make_inputs=_bn_inputs(2, 2, 2, 3), grad_inputs=[0, 1],
           second_order=True),
    OpCase("fused_bn_train_nchw_2nd",
           lambda x, s, o: tw.nn.fused_batch_norm(x, s, o, data_format="NCHW")[0],
           lambda x, s, o: _bn_ref(x, s[:, None, None], o[:, None, None], axes=(0, 2, 3),
                                   mean=x.mean((0, 2, 3))[:, None, None],
                                   var=x.var((0, 2, 3))[:, None, None]),
           [(2, 2, 2, 3), (2,), (2,)], grad_inputs=[0, 1], second_order=True,
           make_inputs=lambda r: [r.standard_normal((2, 2, 2, 3)), r.uniform(0.5, 1.5, 2),
                                  r.standard_normal(2)]),
    OpCase("fused_bn_inference_2nd",
           lambda x, s, o, m, v: tw.nn.fused_batch_norm(x, s, o, m, v, is_training=False)[0],
           _bn_ref, [(2, 2, 2, 3), (3,), (3,), (3,), (3,)], grad_inputs=[0, 1],
           second_order=True, make_inputs=_bn_inputs(3, 2, 2, 2, inference=True)),
]


@needs_math
@pytest.mark.parametrize("case", BN_SECOND_ORDER, ids=str)
def test_batch_norm_second_order(case):
    check_case(case)


def _moments_ref(x, axes, keep=False):
    return x.mean(tuple(axes), keepdims=keep), x.var(tuple(axes), keepdims=keep)


COMPOSED_CASES = [
    OpCase("moments_mean", lambda x: tw.nn.moments(x, [0, 1, 2])[0],
           lambda x: _moments_ref(x, [0, 1, 2])[0], [(2, 3, 3, 4)]),
    OpCase("moments_variance", lambda x: tw.nn.moments(x, [0, 1, 2])[1],
           lambda x: _moments_ref(x, [0, 1, 2])[1], [(2, 3, 3, 4)]),
    OpCase("moments_keep_dims", lambda x: tw.nn.moments(x, [1], keep_dims=True)[1],
           lambda x: _moments_ref(x, [1], True)[1], [(3, 4)]),
    OpCase("batch_normalization",
           lambda x, m, v, o, s: tw.nn.batch_normalization(x, m, v, o, s, 1e-3),
           lambda x, m, v, o, s: (x - m) / np.sqrt(v + 1e-3) * s + o,
           [(2, 3, 4), (4,), (4,), (4,), (4,)],
           make_inputs=lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal(4),
                                  r.uniform(0.5, 2, 4), r.standard_normal(4),
                                  r.uniform(0.5, 2, 4)]),
]


@needs_math
@pytest.mark.parametrize("case", COMPOSED_CASES, ids=str)
def test_composed_normalization(case):
    check_case(case)


@needs_math
def test_moments_feed_fused_batch_norm_inference():
    """The composed path and the fused op agree (the training-mode identity TF relies on)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 3, 2))
    s, o = rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    with tw.Graph().as_default():
        xt = tw.constant(x)
        mean, var = tw.nn.moments(xt, [0, 1, 2])
        composed = tw.nn.batch_normalization(xt, mean, var, o, s, 1e-3)
        fused = tw.nn.fused_batch_norm(xt, s, o, epsilon=1e-3)[0]
        a, b = _run([composed, fused])
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def ref_lrn(x, r=2, bias=1.5, alpha=0.3, beta=0.75):
    out = np.empty_like(x)
    for d in range(x.shape[-1]):
        sq = np.square(x[..., max(0, d - r):d + r + 1]).sum(-1)
        out[..., d] = x[..., d] / (bias + alpha * sq) ** beta
    return out


LRN_CASES = [
    OpCase("lrn", lambda x: tw.nn.local_response_normalization(x, 2, 1.5, 0.3, 0.75), ref_lrn,
           [(2, 2, 3, 6)]),
    OpCase("lrn_defaults", tw.nn.lrn, lambda x: ref_lrn(x, 5, 1.0, 1.0, 0.5), [(1, 2, 2, 4)]),
]


@pytest.mark.parametrize("case", _fwd_cases() + GRAD_CASES + BN_CASES + LRN_CASES, ids=str)
def test_op(case):
    check_case(case)


# --- focused behaviour ---------------------------------------------------------------------------
def _run(fetches, feed=None):
    with tw.Session() as s:  # the enclosing test's default graph
        return s.run(fetches, feed)


def test_conv2d_channel_mismatch_names_both_shapes():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [1, 5, 5, 3])
        f = tw.placeholder(tw.float32, [3, 3, 2, 4])
        with pytest.raises(ValueError, match=r"\(1, 5, 5, 3\).*\(3, 3, 2, 4\)"):
            tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME")


def test_bad_arguments_are_named():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [1, 5, 5, 3])
        f = tw.placeholder(tw.float32, [3, 3, 3, 4])
        with pytest.raises(ValueError, match="padding"):
            tw.nn.conv2d(x, f, [1, 1, 1, 1], "FULL")
        with pytest.raises(ValueError, match="strides"):
            tw.nn.conv2d(x, f, [1, 1, 1], "SAME")
        with pytest.raises(ValueError, match="batch or channel"):
            tw.nn.conv2d(x, f, [2, 1, 1, 1], "SAME")
        with pytest.raises(ValueError, match="Negative dimension"):
            tw.nn.conv2d(x, tw.placeholder(tw.float32, [7, 7, 3, 4]), 1, "VALID")
        with pytest.raises(ValueError, match="rate"):
            tw.nn.depthwise_conv2d(x, f, [1, 2, 2, 1], "SAME", rate=[2, 2])
        with pytest.raises(ValueError, match="channels"):
            tw.nn.conv2d_transpose(x, f, [1, 5, 5, 3], [1, 1, 1, 1])


def test_conv_ops_carry_tensorflow_types_and_attrs():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [2, 8, 8, 3])
        f = tw.placeholder(tw.float32, [3, 3, 3, 4])
        y = tw.nn.conv2d(x, f, 2, "SAME", dilations=1)
        assert y.op.type == "Conv2D"
        a = y.op.attrs
        assert (a["strides"], a["padding"], a["dilations"], a["data_format"]) == \
            ([1, 2, 2, 1], "SAME", [1, 1, 1, 1], "NHWC")
        gx, gf = tw.gradients(y, [x, f])
        assert (gx.op.type, gf.op.type) == ("Conv2DBackpropInput", "Conv2DBackpropFilter")
        assert gx.shape.as_list() == [2, 8, 8, 3] and gf.shape.as_list() == [3, 3, 3, 4]
        t = tw.nn.conv2d_transpose(y, f, [2, 8, 8, 3], [1, 2, 2, 1])
        assert t.op.type == "Conv2DBackpropInput" and t.shape.as_list() == [2, 8, 8, 3]
        p = tw.nn.max_pool(x, 2, 2, "VALID")
        assert p.op.type == "MaxPool" and p.op.attrs["ksize"] == [1, 2, 2, 1]
        assert tw.gradients(p, x)[0].op.type == "MaxPoolGrad"
        assert tw.gradients(tw.nn.avg_pool(x, 2, 2, "VALID"), x)[0].op.type == "AvgPoolGrad"
        bn = tw.nn.fused_batch_norm(x, tw.ones([3]), tw.zeros([3]))
        assert bn[0].op.type == "FusedBatchNormV3" and len(bn[0].op.outputs) == 6
        assert tw.gradients(bn[0], x)[0].op.type == "FusedBatchNormGradV3"


def test_conv2d_unknown_batch_runs_and_float32_stays_float32():
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [None, 6, 6, 2])
        f = tw.constant(np.ones((3, 3, 2, 4), np.float32))
        y = tw.nn.conv2d(x, f, [1, 1, 1, 1], "SAME")
        assert y.shape.as_list() == [None, 6, 6, 4]
        gx = tw.gradients(tw.reduce_sum(y), x)[0]
        xv = np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32)
        with tw.Session() as s:
            yv, gv = s.run([y, gx], {x: xv})
    assert yv.dtype == np.float32 and gv.dtype == np.float32
    np.testing.assert_allclose(yv, ref_conv2d(xv.astype(np.float64), np.ones((3, 3, 2, 4))),
                               rtol=1e-5, atol=1e-5)


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = np.zeros((1, 2, 2, 1))
    x[0, 1, 0, 0] = x[0, 1, 1, 0] = 1.0  # a tie: TensorFlow routes to the first in row order
    with tw.Graph().as_default():
        t = tw.constant(x)
        g = tw.gradients(tw.nn.max_pool(t, 2, 2, "VALID"), t)[0]
        got = _run(g)
    np.testing.assert_array_equal(got[0, :, :, 0], [[0, 0], [1, 0]])


@pytest.mark.parametrize("size", [8, 7])
def test_tiled_max_pool_gradient_with_ties_and_a_remainder_row(size):
    """2x2/2 pooling takes the tiled path (7x7: the last row and column are in no window and
    get zero); values from {0, 1} make ties in most windows."""
    x = np.random.default_rng(4).integers(0, 2, (2, size, size, 3)).astype(np.float32)
    dy = np.random.default_rng(5).standard_normal((2, size // 2, size // 2, 3)).astype(np.float32)
    with tw.Graph().as_default():
        t = tw.constant(x)
        y = tw.nn.max_pool(t, 2, 2, "VALID")
        g = tw.gradients(y, t, grad_ys=tw.constant(dy))[0]
        got = _run(g)
    np.testing.assert_allclose(got, ref_max_pool_grad(x, dy, (2, 2), (2, 2), "VALID"))


def test_fused_batch_norm_training_outputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2, 5)) * 3 + 2
    s, o = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    with tw.Graph().as_default():
        y, mean, var = tw.nn.fused_batch_norm(tw.constant(x), tw.constant(s), tw.constant(o),
                                              epsilon=1e-4)
        got = _run([y, mean, var])
    n = x.size // 5
    np.testing.assert_allclose(got[0], _bn_ref(x, s, o, eps=1e-4), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1], x.mean((0, 1, 2)), rtol=1e-12)
    # the returned variance is the unbiased one, for the running average
    np.testing.assert_allclose(got[2], x.var((0, 1, 2)) * n / (n - 1), rtol=1e-12)


def test_fused_batch_norm_inference_uses_given_statistics():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    s, o = np.full(4, 2.0, np.float32), np.full(4, 0.5, np.float32)
    m, v = np.array([0, 1, 2, 3], np.float32), np.array([1, 2, 3, 4], np.float32)
    with tw.Graph().as_default():
        y, bm, bv = tw.nn.fused_batch_norm(x, s, o, m, v, epsilon=0.0, is_training=False)
        got = _run([y, bm, bv])
    # epsilon is raised to TF's floor of 1.001e-5
    np.testing.assert_allclose(got[0], (x - m) / np.sqrt(v + 1.001e-5) * s + o, rtol=1e-5)
    np.testing.assert_array_equal(got[1], m)
    np.testing.assert_array_equal(got[2], v)
    with pytest.raises(ValueError, match="mean"):
        with tw.Graph().as_default():
            tw.nn.fused_batch_norm(x, s, o, is_training=False)


def test_fused_batch_norm_half_input_keeps_float32_statistics():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 3, 2)).astype(np.float16)
    with tw.Graph().as_default():
        xt = tw.constant(x)
        y, mean, var = tw.nn.fused_batch_norm(xt, np.ones(2, np.float32), np.zeros(2, np.float32))
        assert (y.dtype, mean.dtype) == (tw.float16, tw.float32)
        dx = tw.gradients(tw.reduce_sum(y * y), xt)[0]
        yv, mv, dxv = _run([y, mean, dx])
    assert yv.dtype == np.float16 and mv.dtype == np.float32 and dxv.dtype == np.float16
    np.testing.assert_allclose(yv, _bn_ref(x.astype(np.float64), 1.0, 0.0), atol=2e-2)
    # sum(y^2) is invariant to x's scale and shift per channel: its gradient is ~0
    np.testing.assert_allclose(dxv, 0.0, atol=5e-2)


def ref_conv2d_filter_grad(x, dy, f_shape, padding):
    kh, kw, c, o = f_shape
    df = np.zeros(f_shape)
    for oh, ow, taps in _windows(x.shape[1], x.shape[2], kh, kw, (1, 1), (1, 1), padding):
        for i, j, ih, iw in taps:
            df[i, j] += x[:, ih, iw, :].T @ dy[:, oh, ow, :]
    return df


@pytest.mark.parametrize("shape,k,padding", [((3, 7, 9, 16), (3, 3), "SAME"),
                                             ((2, 6, 5, 20), (2, 5), "SAME"),
                                             ((2, 8, 7, 17), (3, 2), "VALID")])
def test_conv2d_by_kernel_rows_matches_loops(shape, k, padding):
    """Unit strides with >= 16 channels take the row-tap path (KH matmuls over an h-major
    column matrix, kernels/cpu/conv.py): forward and filter gradient against the loops."""
    from tensorweave.kernels.cpu import conv as cpu_conv
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    f = rng.standard_normal(k + (shape[3], 4)).astype(np.float32)
    win = cpu_conv.window(shape[1], shape[2], k[0], k[1], [1, 1, 1, 1], [1, 1, 1, 1], padding)
    assert cpu_conv._row_taps(x, win)
    dy = rng.standard_normal((shape[0], win.oh, win.ow, 4)).astype(np.float32)
    with tw.Graph().as_default():
        tx, tf_ = tw.constant(x), tw.constant(f)
        y = tw.nn.conv2d(tx, tf_, strides=1, padding=padding)
        g = tw.gradients(y, tf_, grad_ys=tw.constant(dy))[0]
        got_y, got_g = _run([y, g])
    np.testing.assert_allclose(got_y, ref_conv2d(x.astype(np.float64), f, padding=padding),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_g, ref_conv2d_filter_grad(x.astype(np.float64), dy, f.shape,
                                                             padding), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shape,k,padding", [((3, 9, 11, 5), (3, 3), "VALID"),
                                             ((2, 7, 6, 4), (2, 5), "SAME"),
                                             ((2, 8, 7, 3), (3, 2), "SAME")])
def test_conv2d_input_gradient_by_kernel_rows_matches_loops(shape, k, padding):
    """With unit strides and >= 16 output channels the input gradient is the convolution of
    the padded ``dy`` with the flipped filter, by kernel rows: against the loops."""
    from tensorweave.kernels.cpu import conv as cpu_conv
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.standard_normal(shape).astype(np.float32)
    f = rng.standard_normal(k + (shape[3], 17)).astype(np.float32)
    win = cpu_conv.window(shape[1], shape[2], k[0], k[1], [1, 1, 1, 1], [1, 1, 1, 1], padding)
    dy = rng.standard_normal((shape[0], win.oh, win.ow, 17)).astype(np.float32)
    assert cpu_conv._row_taps(dy, win)
    want = np.zeros(shape)
    for oh, ow, taps in _windows(shape[1], shape[2], k[0], k[1], (1, 1), (1, 1), padding):
        for i, j, ih, iw in taps:
            want[:, ih, iw, :] += dy[:, oh, ow, :].astype(np.float64) @ f[i, j].T
    with tw.Graph().as_default():
        tx = tw.constant(x)
        y = tw.nn.conv2d(tx, tw.constant(f), strides=1, padding=padding)
        got = _run(tw.gradients(y, tx, grad_ys=tw.constant(dy))[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

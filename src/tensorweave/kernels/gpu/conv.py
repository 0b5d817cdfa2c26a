"""GPU kernels for convolution, pooling and fused batch norm: the CPU kernels' algorithms
(``kernels/cpu/conv.py``: im2col + one cuBLAS matmul, col2im by KH*KW strided adds, pools as
loops over window offsets) written against ``xp``. CuPy 14 ships no cuDNN binding, so this is
the path. Window geometry (TensorFlow's padding rules) and the attrs' NHWC reading are the CPU module's."""

from __future__ import annotations

import numpy as np

from tensorweave.kernels.cpu.conv import (  # the attrs and window geometry, shared
    _check_out,
    _nhwc_attr,
    _window_factory,
)
from tensorweave.kernels.gpu.common import int_list
from tensorweave.kernels.gpu.elementwise import (
    FLOAT_DTYPES,
    KernelUnavailable,
    Program,
    compile_program,
)

# dx of a tiled max pool: the gradient goes to the tap its window's argmax names
_PICK_TAP = Program(("g", "k", "tap"), ("o0",), (("o0", "=", "where_(k == tap, g, T(0))"),),
                    types=("T", "I", "I"))


def _tiles(win, h, w):
    return (win.kh == win.sh and win.kw == win.sw and win.dh == win.dw == 1
            and not win.padded and win.oh * win.kh <= h and win.ow * win.kw <= w)


def _window_counts_host(win, h, w):
    """Number of real (unpadded) inputs under each window, shape (OH, OW, 1), on the host."""
    def axis(o, k, s, d, lo, size):
        start = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo
        return ((start >= 0) & (start < size)).sum(1)

    ch = axis(win.oh, win.kh, win.sh, win.dh, win.pads[0], h)
    cw = axis(win.ow, win.kw, win.sw, win.dw, win.pads[2], w)
    return (ch[:, None] * cw[None, :])[:, :, None]


def kernels(be):
    xp = be.xp

    # --- window helpers on device arrays -----------------------------------------------------
    def pad(x, win, value=0.0):
        if not win.padded:
            return x
        pt, pb, pl, pr = win.pads
        n, h, w, c = x.shape
        out = xp.full((n, h + pt + pb, w + pl + pr, c), value, dtype=x.dtype)
        out[:, pt:pt + h, pl:pl + w, :] = x
        return out

    def crop(xpd, win, h, w):
        if not win.padded:
            return xpd
        pt, _, pl, _ = win.pads
        return xp.ascontiguousarray(xpd[:, pt:pt + h, pl:pl + w, :])

    def patches(xpd, win):
        """(N, OH, OW, KH, KW, C) strided view of the padded input."""
        xpd = xp.ascontiguousarray(xpd)
        n, _, _, c = xpd.shape
        s_n, s_h, s_w, s_c = xpd.strides
        return be.as_strided(xpd, (n, win.oh, win.ow, win.kh, win.kw, c),
                             (s_n, s_h * win.sh, s_w * win.sw, s_h * win.dh, s_w * win.dw, s_c))

    def zeros_padded(win, shape, dtype):
        n, h, w, c = shape
        pt, pb, pl, pr = win.pads
        return xp.zeros((n, h + pt + pb, w + pl + pr, c), dtype)

    def col2im(cols, win, shape):
        dxp = zeros_padded(win, shape, cols.dtype)
        for i, j in win.offsets():
            dxp[:, win.rows(i), win.cols(j), :] += cols[:, :, :, i, j, :]
        return crop(dxp, win, shape[1], shape[2])

    def im2col(x, win):
        p = patches(pad(x, win), win)
        return xp.ascontiguousarray(p).reshape(-1, win.kh * win.kw * x.shape[3])

    def counts(win, h, w, dtype):
        return be.small(_window_counts_host(win, h, w).astype(dtype))

    # --- convolution ------------------------------------------------------------------------------
    def conv2d(x, f, win):
        kh, kw, c, o = f.shape
        cols = im2col(x, win)
        return xp.matmul(cols, f.reshape(kh * kw * c, o)).reshape(x.shape[0], win.oh, win.ow, o)

    def conv2d_backprop_input(dy, f, win, in_shape):
        kh, kw, c, o = f.shape
        n = dy.shape[0]
        if dy.dtype in FLOAT_DTYPES and win.sh == win.sw == win.dh == win.dw == 1:
            return transposed_conv(dy, f, win, in_shape)
        cols = xp.matmul(dy.reshape(-1, o), f.reshape(kh * kw * c, o).T)
        return col2im(cols.reshape(n, win.oh, win.ow, kh, kw, c), win, in_shape)

    def transposed_conv(dy, f, win, in_shape):
        """Stride-1 input gradient as one convolution of dy, padded by (k - 1 - pad), with the
        flipped filter: a few launches instead of col2im's one strided add per filter tap."""
        kh, kw, c, o = f.shape
        n, h, w, _ = in_shape
        pt, pb, pl, pr = win.pads
        top, bottom, left, right = kh - 1 - pt, kh - 1 - pb, kw - 1 - pl, kw - 1 - pr
        if min(top, bottom, left, right) < 0:  # padding wider than the filter: the general path
            cols = xp.matmul(dy.reshape(-1, o), f.reshape(kh * kw * c, o).T)
            return col2im(cols.reshape(n, win.oh, win.ow, kh, kw, c), win, in_shape)
        dyp = xp.zeros((n, win.oh + top + bottom, win.ow + left + right, o), dy.dtype)
        dyp[:, top:top + win.oh, left:left + win.ow, :] = dy
        s_n, s_h, s_w, s_c = dyp.strides
        cols = xp.ascontiguousarray(be.as_strided(dyp, (n, h, w, kh, kw, o),
                                                  (s_n, s_h, s_w, s_h, s_w, s_c)))
        flipped = xp.ascontiguousarray(f[::-1, ::-1].transpose(0, 1, 3, 2))  # (kh, kw, o, c)
        return xp.matmul(cols.reshape(-1, kh * kw * o),
                         flipped.reshape(kh * kw * o, c)).reshape(n, h, w, c)

    def conv2d_backprop_filter(x, dy, win, f_shape):
        kh, kw, c, o = f_shape
        cols = im2col(x, win)
        return xp.matmul(cols.T, dy.reshape(-1, o)).reshape(kh, kw, c, o)

    def depthwise_conv2d(x, f, win):
        xpd = pad(x, win)
        n, _, _, c = x.shape
        m = f.shape[3]
        out = xp.zeros((n, win.oh, win.ow, c, m), dtype=x.dtype)
        for i, j in win.offsets():
            out += xpd[:, win.rows(i), win.cols(j), :, None] * f[i, j]
        return out.reshape(n, win.oh, win.ow, c * m)

    def depthwise_backprop_input(dy, f, win, in_shape):
        kh, kw, c, m = f.shape
        dy5 = dy.reshape(dy.shape[0], win.oh, win.ow, c, m)
        dxp = zeros_padded(win, in_shape, dy.dtype)
        for i, j in win.offsets():
            dxp[:, win.rows(i), win.cols(j), :] += xp.sum(dy5 * f[i, j], axis=-1)
        return crop(dxp, win, in_shape[1], in_shape[2])

    def depthwise_backprop_filter(x, dy, win, f_shape):
        kh, kw, c, m = f_shape
        xpd = pad(x, win)
        dy5 = dy.reshape(dy.shape[0], win.oh, win.ow, c, m)
        df = xp.empty((kh, kw, c, m), dtype=dy.dtype)
        for i, j in win.offsets():
            df[i, j] = xp.sum(xpd[:, win.rows(i), win.cols(j), :, None] * dy5, axis=(0, 1, 2))
        return df

    # --- pooling ---------------------------------------------------------------------------------
    def tiled(x, win):
        n, h, w, c = x.shape
        x = x[:, :win.oh * win.kh, :win.ow * win.kw, :]
        return x.reshape(n, win.oh, win.kh, win.ow, win.kw, c)

    def max_pool(x, win):
        if _tiles(win, x.shape[1], x.shape[2]):
            return xp.max(tiled(x, win), axis=(2, 4))
        xpd = pad(x, win, -np.inf)
        out = None
        for i, j in win.offsets():
            s = xpd[:, win.rows(i), win.cols(j), :]
            out = s.copy() if out is None else xp.maximum(out, s, out=out)
        return out

    def argmax(x, win):
        """Index k = i*KW + j of each window's first maximum (TensorFlow's tie rule)."""
        xpd = pad(x, win, -np.inf)
        best = arg = None
        for k, (i, j) in enumerate(win.offsets()):
            s = xpd[:, win.rows(i), win.cols(j), :]
            if best is None:
                best, arg = s.copy(), xp.zeros(s.shape, xp.int32)
                continue
            arg = xp.where(s > best, xp.full((), k, xp.int32), arg)
            best = xp.maximum(best, s)
        return arg

    pick_tap = compile_program(be, _PICK_TAP)
    taps_cache: dict = {}

    def max_pool_grad(x, dy, win):
        n, h, w, c = x.shape
        if _tiles(win, h, w) and dy.dtype in FLOAT_DTYPES:
            try:
                return tiled_max_pool_grad(x, dy, win)
            except KernelUnavailable:
                pass
        return max_pool_grad_xp(x, dy, win)

    def tiled_max_pool_grad(x, dy, win):
        """Argmax of each window (first maximum, row-major taps), then one kernel writes every
        tap's gradient: 3 launches instead of several per tap."""
        n, h, w, c = x.shape
        xt = tiled(x, win)
        per_window = xp.ascontiguousarray(xt.transpose(0, 1, 3, 5, 2, 4))
        k = xp.argmax(per_window.reshape(n, win.oh, win.ow, c, win.kh * win.kw), axis=-1)
        taps = taps_cache.get((win.kh, win.kw, k.dtype))
        if taps is None:
            taps = taps_cache[(win.kh, win.kw, k.dtype)] = be.small(np.arange(
                win.kh * win.kw, dtype=k.dtype).reshape(1, 1, win.kh, 1, win.kw, 1))
        shape6 = (n, win.oh, 1, win.ow, 1, c)
        dxt = pick_tap(dy.reshape(shape6), k.reshape(shape6), taps)[0]
        hh, ww = win.oh * win.kh, win.ow * win.kw
        if (hh, ww) == (h, w):
            return dxt.reshape(n, h, w, c)
        dx = xp.zeros((n, h, w, c), dtype=dy.dtype)
        dx[:, :hh, :ww, :] = dxt.reshape(n, hh, ww, c)
        return dx

    def max_pool_grad_xp(x, dy, win):
        n, h, w, c = x.shape
        if _tiles(win, h, w):
            # windows are disjoint: each tap's gradient is written once, no accumulation
            xt = tiled(x, win)
            top = xp.max(xt, axis=(2, 4))
            taken = xp.zeros(top.shape, dtype=xp.bool_)
            # written into its own contiguous buffer: no reliance on reshape returning a view
            dxt = xp.zeros((n, win.oh, win.kh, win.ow, win.kw, c), dtype=dy.dtype)
            zero = xp.zeros((), dy.dtype)
            for i, j in win.offsets():
                hit = (xt[:, :, i, :, j, :] == top) & ~taken
                taken = taken | hit
                dxt[:, :, i, :, j, :] = xp.where(hit, dy, zero)
            hh, ww = win.oh * win.kh, win.ow * win.kw
            if (hh, ww) == (h, w):
                return dxt.reshape(n, h, w, c)
            dx = xp.zeros((n, h, w, c), dtype=dy.dtype)
            dx[:, :hh, :ww, :] = dxt.reshape(n, hh, ww, c)
            return dx
        arg = argmax(x, win)
        dxp = zeros_padded(win, x.shape, dy.dtype)
        zero = xp.zeros((), dy.dtype)
        for k, (i, j) in enumerate(win.offsets()):
            dxp[:, win.rows(i), win.cols(j), :] += xp.where(arg == k, dy, zero)
        return crop(dxp, win, h, w)

    def max_pool_grad_grad(x, g, win):
        arg = argmax(x, win)
        gp = pad(g, win)
        out = xp.zeros(arg.shape, dtype=g.dtype)
        for k, (i, j) in enumerate(win.offsets()):
            out = xp.where(arg == k, gp[:, win.rows(i), win.cols(j), :], out)
        return out

    def avg_pool(x, win):
        if _tiles(win, x.shape[1], x.shape[2]):
            return xp.mean(tiled(x, win), axis=(2, 4), dtype=x.dtype)
        xpd = pad(x, win)
        out = None
        for i, j in win.offsets():
            s = xpd[:, win.rows(i), win.cols(j), :]
            out = s.copy() if out is None else xp.add(out, s, out=out)
        return out / counts(win, x.shape[1], x.shape[2], x.dtype)

    def avg_pool_grad(dy, win, in_shape):
        n, h, w, c = in_shape
        g = dy / counts(win, h, w, dy.dtype)
        dxp = zeros_padded(win, in_shape, dy.dtype)
        for i, j in win.offsets():
            dxp[:, win.rows(i), win.cols(j), :] += g
        return crop(dxp, win, h, w)

    # --- factories --------------------------------------------------------------------------------
    def layout(op):
        if op.attrs.get("data_format", "NHWC") == "NCHW":
            return ((lambda a: a.transpose(0, 2, 3, 1)),
                    (lambda a: xp.ascontiguousarray(a.transpose(0, 3, 1, 2))),
                    (lambda s: [s[0], s[2], s[3], s[1]]))
        return (lambda a: a), (lambda a: a), list

    def conv_family(fwd, bwd_input, bwd_filter):
        def forward(op, ctx):
            to, back, _ = layout(op)
            win = _window_factory(op)

            def run(x, f):
                x = to(x)
                return back(fwd(x, f, win(x.shape, f.shape[0], f.shape[1])))

            return run

        def backprop_input(op, ctx):
            to, back, sizes = layout(op)
            win = _window_factory(op)

            def run(input_sizes, f, dy):
                shape = tuple(sizes(int_list(be, input_sizes)))
                dy = to(dy)
                w = win(shape, f.shape[0], f.shape[1])
                _check_out(op, w, dy)
                return back(bwd_input(dy, f, w, shape))

            return run

        def backprop_filter(op, ctx):
            to, back, _ = layout(op)
            win = _window_factory(op)

            def run(x, filter_sizes, dy):
                x, dy = to(x), to(dy)
                f_shape = tuple(int_list(be, filter_sizes))
                w = win(x.shape, f_shape[0], f_shape[1])
                _check_out(op, w, dy)
                return bwd_filter(x, dy, w, f_shape)

            return run

        return forward, backprop_input, backprop_filter

    def pool_window(op):
        ksize = _nhwc_attr(op, "ksize")
        win = _window_factory(op)
        return lambda shape: win(shape, ksize[1], ksize[2])

    def pool_kernel(body, n_in):
        def factory(op, ctx):
            to, back, _ = layout(op)
            win = pool_window(op)

            if n_in == 1:
                def run(x):
                    x = to(x)
                    return back(body(x, win(x.shape)))
            else:
                def run(x, y, g):
                    x = to(x)
                    return back(body(x, to(g), win(x.shape)))
            return run

        return factory

    def avg_pool_grad_kernel(op, ctx):
        to, back, sizes = layout(op)
        win = pool_window(op)

        def run(orig_input_shape, dy):
            shape = tuple(sizes(int_list(be, orig_input_shape)))
            return back(avg_pool_grad(to(dy), win(shape), shape))

        return run

    # --- fused batch norm -------------------------------------------------------------------------
    def bn_axes(op, x):
        if op.attrs.get("data_format", "NHWC") in ("NCHW", "NCDHW"):
            return (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
        return tuple(range(x.ndim - 1)), (1,) * (x.ndim - 1) + (-1,)

    def fused_batch_norm(op, ctx):
        eps = float(op.attrs["epsilon"])
        training = bool(op.attrs["is_training"])
        v3 = op.type == "FusedBatchNormV3"

        def run(x, scale, offset, mean, variance):
            axes, bshape = bn_axes(op, x)
            u = scale.dtype
            xf = x.astype(u, copy=False)
            if training:
                mean = xp.mean(xf, axis=axes, dtype=u)
                centered = xf - mean.reshape(bshape)
                var = xp.mean(xp.square(centered), axis=axes, dtype=u)
                n = x.size // max(mean.size, 1)
                out_var = var * u.type(n / max(n - 1, 1))
            else:
                centered = xf - mean.reshape(bshape)
                var = out_var = variance
            mean, var, out_var = mean.copy(), var.copy(), out_var.copy()
            inv = 1.0 / xp.sqrt(var + u.type(eps))
            y = centered * (inv * scale).reshape(bshape) + offset.reshape(bshape)
            outs = (y.astype(x.dtype, copy=False), mean, out_var, mean.copy(), var)
            return outs + (xp.empty(0, u),) if v3 else outs

        return run

    def fused_batch_norm_grad(op, ctx):
        eps = float(op.attrs["epsilon"])
        training = bool(op.attrs["is_training"])

        def run(dy, x, scale, mean, var, *unused):
            axes, bshape = bn_axes(op, x)
            u = scale.dtype
            dyf, xf = dy.astype(u, copy=False), x.astype(u, copy=False)
            inv = 1.0 / xp.sqrt(var + u.type(eps))
            x_hat = (xf - mean.reshape(bshape)) * inv.reshape(bshape)
            d_offset = xp.sum(dyf, axis=axes, dtype=u)
            d_scale = xp.sum(dyf * x_hat, axis=axes, dtype=u)
            if training:
                n = x.size // max(mean.size, 1)
                dx = (scale * inv).reshape(bshape) * (
                    dyf - (d_offset / n).reshape(bshape) - x_hat * (d_scale / n).reshape(bshape))
            else:
                dx = dyf * (scale * inv).reshape(bshape)
            empty = xp.empty(0, u)
            return dx.astype(x.dtype, copy=False), d_scale, d_offset, empty, empty

        return run

    table = {}
    for prefix, fns in (("Conv2D", (conv2d, conv2d_backprop_input, conv2d_backprop_filter)),
                        ("DepthwiseConv2dNative", (depthwise_conv2d, depthwise_backprop_input,
                                                   depthwise_backprop_filter))):
        fwd, bin_, bfil = conv_family(*fns)
        table.update({prefix: fwd, prefix + "BackpropInput": bin_,
                      prefix + "BackpropFilter": bfil})
    table.update({
        "MaxPool": pool_kernel(max_pool, 1), "MaxPoolGrad": pool_kernel(max_pool_grad, 3),
        "MaxPoolGradGrad": pool_kernel(max_pool_grad_grad, 3),
        "AvgPool": pool_kernel(avg_pool, 1), "AvgPoolGrad": avg_pool_grad_kernel,
        "FusedBatchNorm": fused_batch_norm, "FusedBatchNormV3": fused_batch_norm,
        "FusedBatchNormGrad": fused_batch_norm_grad,
        "FusedBatchNormGradV3": fused_batch_norm_grad,
    })
    return table

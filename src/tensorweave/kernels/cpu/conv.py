"""NumPy kernels for ops/conv_ops.py: convolutions, pooling and fused batch norm.

All window arithmetic happens in NHWC; NCHW inputs are transposed views on the way in and out.
A convolution is im2col + one BLAS matmul: a strided view of the padded input with shape
(N, OH, OW, KH, KW, C) costs nothing until it is copied into the (N*OH*OW, KH*KW*C) column
matrix. The input gradient multiplies the output gradient by the filter into one block per
tap and scatter-adds the blocks (col2im, KH*KW strided adds); the filter gradient is one
matmul of columns and gradient.
Pools loop over the KH*KW window offsets with whole-tensor NumPy ops.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel
from tensorweave.kernels.cpu import blas


class Scratch(threading.local):
    """Work buffers one kernel instance reuses across steps (per thread, never returned):
    refilling a warm buffer is cheaper than faulting in a fresh one (tens of MB) each step."""

    MAX_ELEMENTS = 1 << 25  # larger buffers are allocated per call instead of held

    def get(self, key, shape, dtype):
        buf = self.__dict__.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            if int(np.prod(shape)) > self.MAX_ELEMENTS:
                return np.empty(shape, dtype)
            buf = self.__dict__[key] = np.empty(shape, dtype)
        return buf

    def zeros(self, key, shape, dtype):
        buf = self.get(key, shape, dtype)
        buf.fill(0)
        return buf


# --- window geometry ----------------------------------------------------------------------------
class Window(NamedTuple):
    """A 2-D sliding window over an (H, W) plane, with TensorFlow's padding rules applied."""

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pads: tuple  # (top, bottom, left, right)
    oh: int
    ow: int

    def rows(self, i):
        """The padded-input rows that window row ``i`` touches, one per output row."""
        start = i * self.dh
        return slice(start, start + (self.oh - 1) * self.sh + 1, self.sh)

    def cols(self, j):
        start = j * self.dw
        return slice(start, start + (self.ow - 1) * self.sw + 1, self.sw)

    def offsets(self):
        return [(i, j) for i in range(self.kh) for j in range(self.kw)]

    @property
    def padded(self):
        return any(self.pads)


def _axis(size, k, stride, dilation, padding, explicit):
    k_eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + k_eff - size, 0)
        return out, total // 2, total - total // 2
    lo, hi = explicit if padding == "EXPLICIT" else (0, 0)
    return (size + lo + hi - k_eff) // stride + 1, lo, hi


def window(h, w, kh, kw, strides, dilations, padding, explicit=()):
    """Geometry for an NHWC plane of size (h, w); strides/dilations/explicit are NHWC 4-lists."""
    ex = list(explicit) or [0] * 8
    oh, pt, pb = _axis(h, kh, strides[1], dilations[1], padding, ex[2:4])
    ow, pl, pr = _axis(w, kw, strides[2], dilations[2], padding, ex[4:6])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"a {kh}x{kw} window (dilations {list(dilations)}) does not fit an "
                         f"input of spatial size {h}x{w} with {padding} padding")
    return Window(kh, kw, strides[1], strides[2], dilations[1], dilations[2],
                  (pt, pb, pl, pr), oh, ow)


def _pad(x, win, value=0.0):
    if not win.padded:
        return x
    pt, pb, pl, pr = win.pads
    n, h, w, c = x.shape
    xp = np.full((n, h + pt + pb, w + pl + pr, c), value, dtype=x.dtype)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def _crop(xp, win, h, w):
    """The unpadded part of ``xp``, always a new array: ``xp`` may be a scratch buffer that the
    next step overwrites (a crop that happens to be contiguous, N=1 padded only in height,
    would otherwise be a view of it)."""
    if not win.padded:
        return xp
    pt, _, pl, _ = win.pads
    return xp[:, pt:pt + h, pl:pl + w, :].copy()


def _patches(xp, win):
    """(N, OH, OW, KH, KW, C) read-only view of the padded input: no copy."""
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    return as_strided(xp, (n, win.oh, win.ow, win.kh, win.kw, c),
                      (s_n, s_h * win.sh, s_w * win.sw, s_h * win.dh, s_w * win.dw, s_c),
                      writeable=False)


def _zeros_padded(win, shape, dtype, scratch):
    """The zeroed padded-gradient accumulator (scratch when it is only cropped from)."""
    n, h, w, c = shape
    pt, pb, pl, pr = win.pads
    full = (n, h + pt + pb, w + pl + pr, c)
    if win.padded and scratch is not None:
        return scratch.zeros("dxp", full, dtype)
    return np.zeros(full, dtype)


# With one or two input channels an im2col row is KH*KW*C scattered single floats, and the
# copy runs element by element; built transposed instead, each tap is one plane copy with
# contiguous rows. Bench conv1 (64x28x28x1, 5x5): columns 2.25 -> 0.61 ms, filter gradient
# 3.6 -> 2.1 ms. From three channels on the plain layout copies faster (C=3: 4.0 vs 4.8 ms).
_TAP_MAJOR_MAX_CHANNELS = 2


def _im2col(x, win, scratch=None):
    """The (N*OH*OW, KH*KW*C) column matrix of ``x``'s windows (possibly a transposed view of
    a tap-major buffer: BLAS reads either layout)."""
    c = x.shape[3]
    if c <= _TAP_MAJOR_MAX_CHANNELS:
        xp = _pad(x, win)
        shape = (win.kh, win.kw, c, x.shape[0], win.oh, win.ow)
        ct = np.empty(shape, x.dtype) if scratch is None else scratch.get("cols_t", shape,
                                                                           x.dtype)
        for i, j in win.offsets():
            np.copyto(ct[i, j], xp[:, win.rows(i), win.cols(j), :].transpose(3, 0, 1, 2))
        return ct.reshape(win.kh * win.kw * c, -1).T
    p = _patches(_pad(x, win), win)
    if scratch is None:
        return p.reshape(-1, win.kh * win.kw * c)
    cols = scratch.get("cols", p.shape, p.dtype)
    np.copyto(cols, p)
    return cols.reshape(-1, win.kh * win.kw * c)


# --- convolution ------------------------------------------------------------------------------
# Below this many input channels the row-tap path's matmuls (K = KW * C) are too thin to beat
# one im2col matmul (K = KH * KW * C). At C = 32, 5x5, 64x14x14 (the bench's LeNet conv2),
# measured: forward 21.3 -> 19.3 ms, filter gradient 27.1 -> 21.3 ms, input gradient
# 39 -> 26 ms; the bench's CNN step 118 -> 102 ms (interleaved in one process). The path
# allocates its buffers per call: reusing them through `Scratch` measured no faster.
_ROW_TAPS_MIN_CHANNELS = 16


def _row_taps(x, win) -> bool:
    """Whether to convolve by kernel rows (:func:`_hmajor_cols`): unit strides and dilations,
    enough channels."""
    return win.sh == win.sw == win.dh == win.dw == 1 and x.shape[3] >= _ROW_TAPS_MIN_CHANNELS


def _hmajor_cols(x, win):
    """(H, N*OW, KW*C): for every input row, each output column's KW-wide window (zero columns
    where it overhangs the left/right padding), laid out rows first (h-major), so that the
    input rows kernel row ``i`` reads for a run of output rows are one contiguous block: the
    convolution becomes KH matmuls of (rows*N*OW, KW*C) blocks, with a column matrix KH times
    smaller than im2col's. Padding rows are not stored: see :func:`_tap_rows`."""
    n, h, w, c = x.shape
    _, _, pl, pr = win.pads
    xp = np.zeros((h, n, w + pl + pr, c), x.dtype)
    xp[:, :, pl:pl + w, :] = x.transpose(1, 0, 2, 3)
    s0, s1, s2, s3 = xp.strides
    taps = as_strided(xp, (h, n, win.ow, win.kw, c), (s0, s1, s2, s2, s3), writeable=False)
    return np.ascontiguousarray(taps).reshape(h, n * win.ow, win.kw * c)


def _tap_rows(win, h, i):
    """(first output row, end output row, first input row) that kernel row ``i`` reads real
    input for (unit strides): the rows in the top/bottom padding contribute only zeros and are
    skipped (bench conv2, 14 rows padded by 2: 8.6% of the products)."""
    pt = win.pads[0]
    lo, hi = max(0, pt - i), min(win.oh, h + pt - i)
    return lo, max(lo, hi), lo + i - pt


def _row_tap_order(win, h):
    """Kernel rows in accumulation order; the first one covers every output row when some row
    does (it then initializes the result), else None comes first (start from zeros)."""
    full = [i for i in range(win.kh) if _tap_rows(win, h, i)[:2] == (0, win.oh)]
    if not full:
        return [None] + list(range(win.kh))
    return full[:1] + [i for i in range(win.kh) if i != full[0]]


def _epilogue(block, bias, relu, bias_first=False):
    """Conv2D -> BiasAdd [-> Relu] fused (runtime/plan.py): the same two NumPy ops as the
    unfused kernels, in place on a block of the convolution's output while it is in cache.
    ``bias_first``: the graph adds ``b + conv`` (operand order decides which NaN survives)."""
    if bias is not None:
        np.add(*((bias, block) if bias_first else (block, bias)), out=block)
    if relu:
        np.maximum(block, 0, out=block)


def _conv2d_rows(x, f, win, bias=None, relu=False, bias_first=False):
    kh, kw, c, o = f.shape
    n = x.shape[0]
    rows = _hmajor_cols(x, win)
    m = win.oh * n * win.ow
    fr = np.ascontiguousarray(f).reshape(kh, kw * c, o)
    out = np.empty((win.oh, n, win.ow, o), np.result_type(x, f))
    acc = out.reshape(m, o)
    order = _row_tap_order(win, x.shape[1])
    for i in order:
        if i is None:
            acc.fill(0)
            continue
        lo, hi, r = _tap_rows(win, x.shape[1], i)
        if hi == lo:
            continue
        a = rows[r:r + hi - lo].reshape(-1, kw * c)
        block = out[lo:hi].reshape(-1, o)
        if i == order[0]:
            np.matmul(a, fr[i], out=block)
        elif not blas.gemm_update(block, a, fr[i], 1.0):
            block += a @ fr[i]
    out_t = out.transpose(1, 0, 2, 3)
    if bias is None and not relu:
        return np.ascontiguousarray(out_t)
    if bias is not None:
        _epilogue(acc, bias, False, bias_first)
    res = np.empty(out_t.shape, out.dtype)
    if relu:  # the rectification is the layout copy
        return np.maximum(out_t, 0, out=res)
    np.copyto(res, out_t)
    return res


# Rows of the column matrix per matmul: the block of output (~256 KB) is still in L2 when a
# fused bias and rectification pass over it. Conv1 of the bench (64x28x28x1 -> 32, 5x5):
# conv + bias + relu 6.7-9.6 ms unfused, 3.9-4.3 ms fused. The convolution alone runs in the
# same blocks: BLAS may round a short last block differently from a whole-matrix product, and
# the fused and unfused results must be the same bits.
_EPILOGUE_BLOCK_ELEMENTS = 1 << 16


def conv2d(x, f, win, scratch=None, bias=None, relu=False, bias_first=False):
    """NHWC input, HWIO filter -> NHWC output; ``bias`` ([O]) and ``relu`` fuse the BiasAdd
    (or ``+ b``) and Relu that follow the convolution (bit-identical to running them after
    it)."""
    kh, kw, c, o = f.shape
    if _row_taps(x, win):
        return _conv2d_rows(x, f, win, bias, relu, bias_first)
    cols = _im2col(x, win, scratch)
    f2 = f.reshape(kh * kw * c, o)
    out = np.empty((cols.shape[0], o), np.result_type(cols, f2))
    rows = max(1, _EPILOGUE_BLOCK_ELEMENTS // max(o, 1))
    for lo in range(0, cols.shape[0], rows):
        block = out[lo:lo + rows]
        np.matmul(cols[lo:lo + rows], f2, out=block)
        _epilogue(block, bias, relu, bias_first)
    return out.reshape(x.shape[0], win.oh, win.ow, o)


def conv2d_backprop_input(dy, f, win, in_shape, scratch=None):
    """col2im: one batched matmul gives every tap's contribution as a contiguous block,
    which is added into the (strided) input positions that tap read. With unit strides it is
    the forward convolution of ``dy``, padded by ``k - 1 - pad``, with the flipped filter
    (by kernel rows, like :func:`conv2d`)."""
    kh, kw, c, o = f.shape
    if _row_taps(dy, win):
        pt, pb, pl, pr = win.pads
        full = Window(kh, kw, 1, 1, 1, 1, (kh - 1 - pt, kh - 1 - pb, kw - 1 - pl, kw - 1 - pr),
                      in_shape[1], in_shape[2])
        if min(full.pads) >= 0:
            return _conv2d_rows(dy, f[::-1, ::-1].transpose(0, 1, 3, 2), full)
    m = dy.shape[0] * win.oh * win.ow
    dtype = np.result_type(dy, f)
    shape = (kh * kw, m, c)
    blocks = np.empty(shape, dtype) if scratch is None else scratch.get("blocks", shape, dtype)
    f_t = np.ascontiguousarray(f.reshape(kh * kw, c, o).transpose(0, 2, 1))
    np.matmul(dy.reshape(1, m, o), f_t, out=blocks)
    dxp = _zeros_padded(win, in_shape, dtype, scratch)
    for k, (i, j) in enumerate(win.offsets()):
        dxp[:, win.rows(i), win.cols(j), :] += blocks[k].reshape(-1, win.oh, win.ow, c)
    return _crop(dxp, win, in_shape[1], in_shape[2])


def conv2d_backprop_filter(x, dy, win, f_shape, scratch=None):
    kh, kw, c, o = f_shape
    if _row_taps(x, win):
        rows = _hmajor_cols(x, win)
        dy_h = np.ascontiguousarray(dy.transpose(1, 0, 2, 3))
        df = np.zeros((kh, kw * c, o), np.result_type(x, dy))
        for i in range(kh):
            lo, hi, r = _tap_rows(win, x.shape[1], i)
            if hi > lo:
                np.matmul(rows[r:r + hi - lo].reshape(-1, kw * c).T,
                          dy_h[lo:hi].reshape(-1, o), out=df[i])
        return df.reshape(kh, kw, c, o)
    cols = _im2col(x, win, scratch)
    return (cols.T @ dy.reshape(-1, o)).reshape(kh, kw, c, o)


def depthwise_conv2d(x, f, win, scratch=None):
    """Channel c of the input, filtered by f[:, :, c, m], gives output channel c*M + m."""
    xp = _pad(x, win)
    n, _, _, c = x.shape
    m = f.shape[3]
    out = np.zeros((n, win.oh, win.ow, c, m), dtype=np.result_type(x, f))
    tmp = np.empty_like(out)
    for i, j in win.offsets():
        np.multiply(xp[:, win.rows(i), win.cols(j), :, None], f[i, j], out=tmp)
        out += tmp
    return out.reshape(n, win.oh, win.ow, c * m)


def depthwise_backprop_input(dy, f, win, in_shape, scratch=None):
    kh, kw, c, m = f.shape
    dy5 = dy.reshape(dy.shape[0], win.oh, win.ow, c, m)
    pt, pb, pl, pr = win.pads
    n, h, w, _ = in_shape
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
    for i, j in win.offsets():
        dxp[:, win.rows(i), win.cols(j), :] += np.einsum("nhwcm,cm->nhwc", dy5, f[i, j])
    return _crop(dxp, win, h, w)


def depthwise_backprop_filter(x, dy, win, f_shape, scratch=None):
    kh, kw, c, m = f_shape
    xp = _pad(x, win)
    dy5 = dy.reshape(dy.shape[0], win.oh, win.ow, c, m)
    df = np.empty((kh, kw, c, m), dtype=dy.dtype)
    for i, j in win.offsets():
        df[i, j] = np.einsum("nhwc,nhwcm->cm", xp[:, win.rows(i), win.cols(j), :], dy5)
    return df


# --- pooling ----------------------------------------------------------------------------------
def _tiles(win, h, w):
    """Non-overlapping, unpadded windows (the usual 2x2/2): pooling is a reshape."""
    return (win.kh == win.sh and win.kw == win.sw and win.dh == win.dw == 1
            and not win.padded and win.oh * win.kh <= h and win.ow * win.kw <= w)


def _tiled(x, win):
    n, h, w, c = x.shape
    x = x[:, :win.oh * win.kh, :win.ow * win.kw, :]
    return x.reshape(n, win.oh, win.kh, win.ow, win.kw, c)


def _tile_max(xt, win):
    """Max over the (KH, KW) axes of a tiled view: elementwise maxima of the taps are ~3x
    faster than a multi-axis ``max`` reduction."""
    out = None
    for i, j in win.offsets():
        tap = xt[:, :, i, :, j, :]
        out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def max_pool(x, win):
    if _tiles(win, x.shape[1], x.shape[2]):
        return _tile_max(_tiled(x, win), win)
    xp = _pad(x, win, -np.inf)
    out = None
    for i, j in win.offsets():
        s = xp[:, win.rows(i), win.cols(j), :]
        out = s.copy() if out is None else np.maximum(out, s, out=out)
    return out


def _argmax(x, win):
    """Index k = i*KW + j of each window's first maximum (TensorFlow's tie rule)."""
    xp = _pad(x, win, -np.inf)
    best = arg = None
    for k, (i, j) in enumerate(win.offsets()):
        s = xp[:, win.rows(i), win.cols(j), :]
        if best is None:
            best, arg = s.copy(), np.zeros(s.shape, np.int32)
            continue
        np.copyto(arg, k, where=s > best)
        np.maximum(best, s, out=best)
    return arg


def max_pool_grad(x, dy, win, top=None):
    """``top``: the pooled output when the caller has it (MaxPoolGrad's second input)."""
    n, h, w, c = x.shape
    zero = dy.dtype.type(0)
    if _tiles(win, h, w):
        # windows are disjoint: each position's gradient is written once (the rows or columns
        # past the last window, if any, stay zero)
        xt = _tiled(x, win)
        if top is None:
            top = _tile_max(xt, win)
        taken = None
        covered = win.oh * win.kh == h and win.ow * win.kw == w
        # dy's bits times hit: dy where a tap is its window's first maximum, +0.0 elsewhere, as
        # TensorFlow writes (an Inf or NaN in dy stays where it belongs, and no -0.0 appears
        # where a float product would give one), at the cost of a float multiply
        bits = np.dtype(f"u{dy.dtype.itemsize}") if dy.dtype.kind == "f" and \
            dy.dtype.itemsize in (2, 4, 8) else None
        dx = (np.empty if covered else np.zeros)((n, h, w, c), dtype=dy.dtype)
        dxt = _tiled(dx, win)
        for i, j in win.offsets():
            hit = xt[:, :, i, :, j, :] == top
            if taken is None:
                taken = hit
            else:  # the first maximum of a window takes the gradient (TensorFlow's rule)
                hit &= ~taken
                taken |= hit
            tap = dxt[:, :, i, :, j, :]
            if bits is None:
                np.multiply(dy, hit, out=tap)
            else:
                np.multiply(dy.view(bits), hit, out=tap.view(bits))
        return dx
    arg = _argmax(x, win)
    dxp = _zeros_padded(win, x.shape, dy.dtype, None)
    for k, (i, j) in enumerate(win.offsets()):
        dxp[:, win.rows(i), win.cols(j), :] += np.where(arg == k, dy, zero)
    return _crop(dxp, win, h, w)


def max_pool_grad_grad(x, g, win):
    """The gradient flowing into each window's argmax, read back out (shape of the output)."""
    arg = _argmax(x, win)
    gp = _pad(g, win)
    out = np.zeros(arg.shape, dtype=g.dtype)
    for k, (i, j) in enumerate(win.offsets()):
        sel = arg == k
        out[sel] = gp[:, win.rows(i), win.cols(j), :][sel]
    return out


def _window_counts(win, h, w, dtype):
    """Number of real (unpadded) inputs under each window, shape (OH, OW, 1)."""
    def axis(o, k, s, d, lo, size):
        start = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo
        return ((start >= 0) & (start < size)).sum(1)

    ch = axis(win.oh, win.kh, win.sh, win.dh, win.pads[0], h)
    cw = axis(win.ow, win.kw, win.sw, win.dw, win.pads[2], w)
    return (ch[:, None] * cw[None, :]).astype(dtype)[:, :, None]


def avg_pool(x, win):
    if _tiles(win, x.shape[1], x.shape[2]):
        return _tiled(x, win).mean(axis=(2, 4), dtype=x.dtype)
    xp = _pad(x, win)
    out = None
    for i, j in win.offsets():
        s = xp[:, win.rows(i), win.cols(j), :]
        out = s.copy() if out is None else np.add(out, s, out=out)
    return out / _window_counts(win, x.shape[1], x.shape[2], x.dtype)


def avg_pool_grad(dy, win, in_shape):
    n, h, w, c = in_shape
    g = dy / _window_counts(win, h, w, dy.dtype)
    pt, pb, pl, pr = win.pads
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=dy.dtype)
    for i, j in win.offsets():
        dxp[:, win.rows(i), win.cols(j), :] += g
    return _crop(dxp, win, h, w)


# --- kernel factories ---------------------------------------------------------------------------
def _layout(op):
    """(to_nhwc, from_nhwc, sizes_to_nhwc) for the op's data_format."""
    if op.attrs.get("data_format", "NHWC") == "NCHW":
        def to_nhwc(a):
            return a.transpose(0, 2, 3, 1)

        def from_nhwc(a):
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

        return to_nhwc, from_nhwc, lambda s: [s[0], s[2], s[3], s[1]]
    return (lambda a: a), (lambda a: a), list


def _nhwc_attr(op, name, default=(1, 1, 1, 1)):
    v = list(op.attrs.get(name, default))
    if op.attrs.get("data_format", "NHWC") == "NCHW":
        return [v[0], v[2], v[3], v[1]]
    return v


def _nhwc_pads(op):
    ex = list(op.attrs.get("explicit_paddings", ()))
    if ex and op.attrs.get("data_format", "NHWC") == "NCHW":
        ex = ex[0:2] + ex[4:8] + ex[2:4]
    return ex


def _window_factory(op):
    strides, dil = _nhwc_attr(op, "strides"), _nhwc_attr(op, "dilations")
    padding, ex = op.attrs["padding"], _nhwc_pads(op)

    def win(in_shape, kh, kw):
        try:
            return window(in_shape[1], in_shape[2], kh, kw, strides, dil, padding, ex)
        except ValueError as e:
            raise errors.InvalidArgumentError(None, op, f"{op.type} '{op.name}': {e}") from None

    return win


def _check_out(op, win, dy):
    if tuple(dy.shape[1:3]) != (win.oh, win.ow):  # a CuPy array's shape too
        raise errors.InvalidArgumentError(
            None, op, f"{op.type} '{op.name}': out_backprop has spatial size "
            f"{dy.shape[1]}x{dy.shape[2]} but the forward op would produce {win.oh}x{win.ow}")


def _conv_family(fwd, bwd_input, bwd_filter, prefix):
    def forward(op, ctx):
        to, back, _ = _layout(op)
        win, scratch = _window_factory(op), Scratch()

        def run(x, f):
            x = to(x)
            return back(fwd(x, f, win(x.shape, f.shape[0], f.shape[1]), scratch))

        return run

    def backprop_input(op, ctx):
        to, back, sizes = _layout(op)
        win, scratch = _window_factory(op), Scratch()

        def run(input_sizes, f, dy):
            shape = tuple(int(s) for s in sizes(list(input_sizes)))
            dy = to(dy)
            w = win(shape, f.shape[0], f.shape[1])
            _check_out(op, w, dy)
            return back(bwd_input(dy, f, w, shape, scratch))

        return run

    def backprop_filter(op, ctx):
        to, back, _ = _layout(op)
        win, scratch = _window_factory(op), Scratch()

        def run(x, filter_sizes, dy):
            x, dy = to(x), to(dy)
            f_shape = tuple(int(s) for s in filter_sizes)
            w = win(x.shape, f_shape[0], f_shape[1])
            _check_out(op, w, dy)
            return bwd_filter(x, dy, w, f_shape, scratch)

        return run

    register_kernel(prefix)(forward)
    register_kernel(prefix + "BackpropInput")(backprop_input)
    register_kernel(prefix + "BackpropFilter")(backprop_filter)


_conv_family(conv2d, conv2d_backprop_input, conv2d_backprop_filter, "Conv2D")
_conv_family(depthwise_conv2d, depthwise_backprop_input, depthwise_backprop_filter,
             "DepthwiseConv2dNative")


def _pool_window(op):
    ksize = _nhwc_attr(op, "ksize")
    win = _window_factory(op)
    return lambda shape: win(shape, ksize[1], ksize[2])


@register_kernel("MaxPool")
def _max_pool(op, ctx):
    to, back, _ = _layout(op)
    win = _pool_window(op)

    def run(x):
        x = to(x)
        return back(max_pool(x, win(x.shape)))

    return run


@register_kernel("MaxPoolGrad")
def _max_pool_grad(op, ctx):
    to, back, _ = _layout(op)
    win = _pool_window(op)

    def run(x, y, dy):
        x = to(x)
        return back(max_pool_grad(x, to(dy), win(x.shape), to(y)))

    return run


# --- fused chains (runtime/plan.py picks them at plan time; GraphOptions(fusion=False) does not) ---
def _naming(op, fn):
    """``fn`` with any failure that is not already an OpError reported against ``op`` (a fused
    step stands for several ops; the error names the one whose part failed, as unfused)."""
    def run(*args):
        try:
            return fn(*args)
        except errors.OpError:
            raise
        except Exception as e:
            raise errors.InvalidArgumentError(
                None, op, f"{type(e).__name__}: {e}\n\t [[node {op.describe()}]]") from e

    return run


def conv2d_bias_relu(conv_op, bias_op, relu, bias_first=False):
    """``Relu(BiasAdd(Conv2D(x, f), b))`` (or without the Relu; or ``Add`` of a [channels]
    bias in either order, ``bias_first`` for ``b + conv``), NHWC: ``run(x, f, b)``. The bias
    and rectification run on the convolution's output while it is in cache, or as its layout
    copy (:func:`conv2d`): bit-identical to the kernels one after another."""
    win, scratch = _window_factory(conv_op), Scratch()
    convolve = _naming(conv_op, conv2d)
    add = bias_op.type != "BiasAdd"

    def run(x, f, b):
        w = win(x.shape, f.shape[0], f.shape[1])
        if b.shape != (f.shape[3],):
            if add:  # the static shape said [channels]; NumPy's broadcasting decides, as unfused
                y = convolve(x, f, w, scratch)
                y = _naming(bias_op, np.add)(*((b, y) if bias_first else (y, b)))
                return np.maximum(y, 0) if relu else y
            raise errors.InvalidArgumentError(
                None, bias_op, f"BiasAdd: bias shape {list(b.shape)} must match dimension -1 "
                f"of value shape {[x.shape[0], w.oh, w.ow, f.shape[3]]} ({bias_op.describe()})")
        return convolve(x, f, w, scratch, b, relu, bias_first)

    run.fresh_output = True
    run.trace_type = "Conv2D+" + ("Add" if add else "BiasAdd") + ("+Relu" if relu else "")
    return run


def max_pool_relu_grad(op):
    """``ReluGrad(MaxPoolGrad(x, y, dy), x)`` where ``y = MaxPool(x)`` with the same window:
    ``run(x, y, dy)``. With disjoint windows, a position takes gradient only as its window's
    first maximum, where ``x == y``: so ``x > 0`` there is ``y > 0``, and the rectifier's mask
    is applied to ``dy`` at the pooled size (a quarter of the elements for 2x2) instead of to
    the full-size gradient. Other windows run the two kernels as they are."""
    to, back, _ = _layout(op)
    win = _pool_window(op)

    def run(x, y, dy):
        xn = to(x)
        w = win(xn.shape)
        if _tiles(w, xn.shape[1], xn.shape[2]):
            return back(max_pool_grad(xn, to(np.multiply(dy, np.greater(y, 0))), w, to(y)))
        dx = back(max_pool_grad(xn, to(dy), w, to(y)))
        return np.multiply(dx, np.greater(x, 0), out=dx)

    run = _naming(op, run)
    run.fresh_output = True
    run.trace_type = "MaxPoolGrad+ReluGrad"
    return run


@register_kernel("MaxPoolGradGrad")
def _max_pool_grad_grad(op, ctx):
    to, back, _ = _layout(op)
    win = _pool_window(op)

    def run(x, y, g):
        x = to(x)
        return back(max_pool_grad_grad(x, to(g), win(x.shape)))

    return run


@register_kernel("AvgPool")
def _avg_pool(op, ctx):
    to, back, _ = _layout(op)
    win = _pool_window(op)

    def run(x):
        x = to(x)
        return back(avg_pool(x, win(x.shape)))

    return run


@register_kernel("AvgPoolGrad")
def _avg_pool_grad(op, ctx):
    to, back, sizes = _layout(op)
    win = _pool_window(op)

    def run(orig_input_shape, dy):
        shape = tuple(int(s) for s in sizes(list(orig_input_shape)))
        return back(avg_pool_grad(to(dy), win(shape), shape))

    return run


# --- fused batch norm ---------------------------------------------------------------------------
def _bn_axes(op, x):
    if op.attrs.get("data_format", "NHWC") in ("NCHW", "NCDHW"):
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, -1) + (1,) * (x.ndim - 2)
    else:
        axes = tuple(range(x.ndim - 1))
        bshape = (1,) * (x.ndim - 1) + (-1,)
    return axes, bshape


def _fused_batch_norm(op, ctx):
    eps = float(op.attrs["epsilon"])
    training = bool(op.attrs["is_training"])
    v3 = op.type == "FusedBatchNormV3"

    def run(x, scale, offset, mean, variance):
        axes, bshape = _bn_axes(op, x)
        u = scale.dtype
        xf = x.astype(u, copy=False)
        if training:
            mean = xf.mean(axis=axes, dtype=u)
            centered = xf - mean.reshape(bshape)
            var = np.square(centered).mean(axis=axes, dtype=u)
            n = x.size // max(mean.size, 1)
            # the running average wants the unbiased estimate; normalization uses the biased one
            out_var = var * u.type(n / max(n - 1, 1))
        else:
            centered = xf - mean.reshape(bshape)
            var = out_var = variance
        # outputs never alias inputs (a fed or variable mean) nor each other
        mean, var, out_var = mean.copy(), var.copy(), out_var.copy()
        inv = 1.0 / np.sqrt(var + u.type(eps))
        y = centered * (inv * scale).reshape(bshape) + offset.reshape(bshape)
        outs = (y.astype(x.dtype, copy=False), mean, out_var, mean.copy(), var)
        return outs + (np.empty(0, u),) if v3 else outs

    return run


def _fused_batch_norm_grad(op, ctx):
    eps = float(op.attrs["epsilon"])
    training = bool(op.attrs["is_training"])

    def run(dy, x, scale, mean, var, *unused):
        axes, bshape = _bn_axes(op, x)
        u = scale.dtype
        dyf, xf = dy.astype(u, copy=False), x.astype(u, copy=False)
        inv = 1.0 / np.sqrt(var + u.type(eps))
        x_hat = (xf - mean.reshape(bshape)) * inv.reshape(bshape)
        d_offset = dyf.sum(axis=axes, dtype=u)
        d_scale = (dyf * x_hat).sum(axis=axes, dtype=u)
        if training:
            n = x.size // max(mean.size, 1)
            dx = (scale * inv).reshape(bshape) * (
                dyf - (d_offset / n).reshape(bshape) - x_hat * (d_scale / n).reshape(bshape))
        else:
            dx = dyf * (scale * inv).reshape(bshape)
        empty = np.empty(0, u)
        return dx.astype(x.dtype, copy=False), d_scale, d_offset, empty, empty

    return run


for _t in ("FusedBatchNorm", "FusedBatchNormV3"):
    register_kernel(_t)(_fused_batch_norm)
for _t in ("FusedBatchNormGrad", "FusedBatchNormGradV3"):
    register_kernel(_t)(_fused_batch_norm_grad)


# --- local response normalization -----------------------------------------------------------------
def _channel_window_sum(a, r):
    """sum(a[..., d-r : d+r+1]) for every channel d (zeros past the ends), via a cumsum."""
    c = a.shape[-1]
    cs = np.zeros(a.shape[:-1] + (c + 2 * r + 1,), a.dtype)
    np.cumsum(a, axis=-1, out=cs[..., r + 1:r + 1 + c])
    cs[..., r + 1 + c:] = cs[..., r + c:r + c + 1]
    return cs[..., 2 * r + 1:] - cs[..., :c]


def _lrn_params(op):
    a = op.attrs
    return a["depth_radius"], a["bias"], a["alpha"], a["beta"]


@register_kernel("LRN")
def _lrn(op, ctx):
    r, bias, alpha, beta = _lrn_params(op)

    def run(x):
        norm = bias + alpha * _channel_window_sum(np.square(x), r)
        return (x * norm ** -beta).astype(x.dtype, copy=False)

    return run


@register_kernel("LRNGrad")
def _lrn_grad(op, ctx):
    r, bias, alpha, beta = _lrn_params(op)

    def run(g, x, y):
        # y_d = x_d * N_d^-beta, N_d = bias + alpha * sum_{k in W(d)} x_k^2; W is symmetric
        norm = bias + alpha * _channel_window_sum(np.square(x), r)
        scaled = norm ** -beta
        inner = _channel_window_sum(g * x * scaled / norm, r)
        return (g * scaled - 2.0 * alpha * beta * x * inner).astype(g.dtype, copy=False)

    return run

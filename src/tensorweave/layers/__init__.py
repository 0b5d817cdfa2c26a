"""``tw.layers``: TF1's functional layers (dense, conv2d, pooling, batch norm, dropout,
flatten), built on the ops and creating variables through ``tw.get_variable``.

Example::

    h = tw.layers.conv2d(images, 32, 5, padding="same", activation=tw.nn.relu)
    h = tw.layers.max_pooling2d(h, 2, 2)
    logits = tw.layers.dense(tw.layers.flatten(h), 10)
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import ops
from tensorweave.framework.ops import GraphKeys, convert_to_tensor

__all__ = ["dense", "conv1d", "conv2d", "conv2d_transpose", "max_pooling2d",
           "average_pooling2d", "batch_normalization", "dropout", "flatten"]


def _tw():
    import tensorweave as tw
    return tw


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def _scope(name, default):
    tw = _tw()
    return tw.variable_scope(name, default_name=default)


def _kernel(shape, dtype, initializer, regularizer, trainable):
    """The layer's ``kernel`` variable (Glorot-uniform unless told otherwise)."""
    tw = _tw()
    return tw.get_variable("kernel", shape, dtype=dtype,
                           initializer=initializer or tw.glorot_uniform_initializer(),
                           regularizer=regularizer, trainable=trainable)


def _finish(y, units, use_bias, initializer, regularizer, trainable, activation):
    """``activation(y + bias)``, the ``bias`` variable (zeros unless told otherwise) made when
    ``use_bias``."""
    tw = _tw()
    if use_bias:
        bias = tw.get_variable("bias", [units], dtype=y.dtype,
                               initializer=initializer or tw.zeros_initializer(),
                               regularizer=regularizer, trainable=trainable)
        y = tw.nn.bias_add(y, bias)
    return activation(y) if activation is not None else y


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
          trainable=True, name=None, reuse=None):
    """``activation(inputs @ kernel + bias)`` with variables ``<name>/kernel`` and ``/bias``."""
    tw = _tw()
    x = convert_to_tensor(inputs)
    n_in = x.shape[-1].value if x.shape.ndims else None
    if n_in is None:
        raise ValueError(f"The last dimension of the inputs to dense must be known, got shape "
                         f"{x.shape}")
    with tw.variable_scope(name, default_name="dense", reuse=reuse):
        kernel = _kernel([n_in, units], x.dtype, kernel_initializer, kernel_regularizer,
                         trainable)
        if x.shape.ndims == 2:
            y = tw.matmul(x, kernel)
        else:
            y = tw.tensordot(x, kernel, [[x.shape.ndims - 1], [0]]) if hasattr(tw, "tensordot") \
                else tw.reshape(tw.matmul(tw.reshape(x, [-1, n_in]), kernel),
                                tw.concat([tw.shape(x)[:-1], [units]], 0))
        return _finish(y, units, use_bias, bias_initializer, bias_regularizer, trainable,
                       activation)


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
           data_format="channels_last", dilation_rate=(1, 1), activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
           bias_regularizer=None, trainable=True, name=None, reuse=None):
    """2-D convolution layer (NHWC), variables ``<name>/kernel`` [kh, kw, in, filters]."""
    tw = _tw()
    if data_format != "channels_last":
        raise ValueError("tw.layers.conv2d supports data_format='channels_last' (NHWC) only")
    x = convert_to_tensor(inputs)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(strides, "strides")
    dh, dw = _pair(dilation_rate, "dilation_rate")
    c_in = x.shape[-1].value
    if c_in is None:
        raise ValueError(f"conv2d needs a known channel dimension, got shape {x.shape}")
    with tw.variable_scope(name, default_name="conv2d", reuse=reuse):
        kernel = _kernel([kh, kw, c_in, filters], x.dtype, kernel_initializer,
                         kernel_regularizer, trainable)
        y = tw.nn.conv2d(x, kernel, strides=[1, sh, sw, 1], padding=padding.upper(),
                         dilations=[1, dh, dw, 1])
        return _finish(y, filters, use_bias, bias_initializer, bias_regularizer, trainable,
                       activation)


def conv1d(inputs, filters, kernel_size, strides=1, padding="valid",
           data_format="channels_last", dilation_rate=1, activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
           bias_regularizer=None, trainable=True, name=None, reuse=None):
    """1-D convolution layer over [batch, width, channels]; ``<name>/kernel`` is
    [kernel_size, in, filters]."""
    tw = _tw()
    if data_format != "channels_last":
        raise ValueError("tw.layers.conv1d supports data_format='channels_last' (NWC) only")
    x = convert_to_tensor(inputs)
    k = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)[0]
    c_in = x.shape[-1].value if x.shape.ndims else None
    if c_in is None:
        raise ValueError(f"conv1d needs a known channel dimension, got shape {x.shape}")
    with tw.variable_scope(name, default_name="conv1d", reuse=reuse):
        kernel = _kernel([k, c_in, filters], x.dtype, kernel_initializer, kernel_regularizer,
                         trainable)
        y = tw.nn.conv1d(x, kernel, strides, padding.upper(), dilations=dilation_rate)
        return _finish(y, filters, use_bias, bias_initializer, bias_regularizer, trainable,
                       activation)


def conv2d_transpose(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
                     data_format="channels_last", activation=None, use_bias=True,
                     kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
                     bias_regularizer=None, trainable=True, name=None, reuse=None):
    """Transposed 2-D convolution ("deconvolution") layer: upsamples by ``strides``
    (output height ``in * s`` with "same", ``(in - 1) * s + k`` with "valid");
    ``<name>/kernel`` is [kh, kw, filters, in]."""
    tw = _tw()
    if data_format != "channels_last":
        raise ValueError("tw.layers.conv2d_transpose supports data_format='channels_last' only")
    x = convert_to_tensor(inputs)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(strides, "strides")
    h, w, c_in = (x.shape[i].value for i in (1, 2, 3))
    if c_in is None:
        raise ValueError(f"conv2d_transpose needs a known channel dimension, got {x.shape}")
    pad = padding.upper()

    def out_len(n, k, s):
        return n * s if pad == "SAME" else (n - 1) * s + k

    with tw.variable_scope(name, default_name="conv2d_transpose", reuse=reuse):
        kernel = _kernel([kh, kw, filters, c_in], x.dtype, kernel_initializer,
                         kernel_regularizer, trainable)
        dyn = tw.shape(x)
        oh = out_len(h, kh, sh) if h is not None else out_len(dyn[1], kh, sh)
        ow = out_len(w, kw, sw) if w is not None else out_len(dyn[2], kw, sw)
        y = tw.nn.conv2d_transpose(x, kernel, tw.stack([dyn[0], oh, ow, filters]),
                                   [1, sh, sw, 1], padding=pad)
        y.set_shape([x.shape[0].value, oh if isinstance(oh, int) else None,
                     ow if isinstance(ow, int) else None, filters])
        return _finish(y, filters, use_bias, bias_initializer, bias_regularizer, trainable,
                       activation)


def _pool(fn, inputs, pool_size, strides, padding, data_format, name, default):
    if data_format != "channels_last":
        raise ValueError("pooling layers support data_format='channels_last' (NHWC) only")
    ph, pw = _pair(pool_size, "pool_size")
    sh, sw = _pair(strides, "strides")
    with ops.name_scope(name, default):
        return fn(convert_to_tensor(inputs), ksize=[1, ph, pw, 1], strides=[1, sh, sw, 1],
                  padding=padding.upper())


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last",
                  name=None):
    return _pool(_tw().nn.max_pool, inputs, pool_size, strides, padding, data_format, name,
                 "max_pooling2d")


def average_pooling2d(inputs, pool_size, strides, padding="valid",
                      data_format="channels_last", name=None):
    return _pool(_tw().nn.avg_pool, inputs, pool_size, strides, padding, data_format, name,
                 "average_pooling2d")


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer=None, gamma_initializer=None,
                        moving_mean_initializer=None, moving_variance_initializer=None,
                        training=False, trainable=True, name=None, reuse=None, fused=None):
    """Batch norm over all axes but ``axis``. ``training`` (bool or bool tensor) picks batch
    statistics and adds the moving-average updates to ``GraphKeys.UPDATE_OPS`` (run them with
    the train op, as in TF1)."""
    tw = _tw()
    x = convert_to_tensor(inputs)
    rank = x.shape.ndims
    axis = axis % rank
    c = x.shape[axis].value
    reduce_axes = [i for i in range(rank) if i != axis]
    with tw.variable_scope(name, default_name="batch_normalization", reuse=reuse):
        beta = tw.get_variable("beta", [c], dtype=x.dtype, trainable=trainable and center,
                               initializer=beta_initializer or tw.zeros_initializer())
        gamma = tw.get_variable("gamma", [c], dtype=x.dtype, trainable=trainable and scale,
                                initializer=gamma_initializer or tw.ones_initializer())
        mm = tw.get_variable("moving_mean", [c], dtype=x.dtype, trainable=False,
                             initializer=moving_mean_initializer or tw.zeros_initializer())
        mv = tw.get_variable("moving_variance", [c], dtype=x.dtype, trainable=False,
                             initializer=moving_variance_initializer or tw.ones_initializer())

        def train_branch():
            mean, var = tw.nn.moments(x, reduce_axes)
            n = float(np.prod([x.shape[i].value or 1 for i in reduce_axes]))
            unbiased = var * (n / max(n - 1.0, 1.0))
            upd_m = tw.assign_sub(mm, (mm - mean) * (1.0 - momentum))
            upd_v = tw.assign_sub(mv, (mv - unbiased) * (1.0 - momentum))
            return mean, var, upd_m, upd_v

        if isinstance(training, bool):
            if training:
                mean, var, upd_m, upd_v = train_branch()
                ops.add_to_collection(GraphKeys.UPDATE_OPS, upd_m.op)
                ops.add_to_collection(GraphKeys.UPDATE_OPS, upd_v.op)
            else:
                mean, var = mm.value(), mv.value()
        else:
            bm, bv, upd_m, upd_v = train_branch()
            ops.add_to_collection(GraphKeys.UPDATE_OPS, upd_m.op)
            ops.add_to_collection(GraphKeys.UPDATE_OPS, upd_v.op)
            mean = tw.cond(training, lambda: bm, lambda: mm.value())
            var = tw.cond(training, lambda: bv, lambda: mv.value())
        return tw.nn.batch_normalization(x, mean, var, beta if center else None,
                                         gamma if scale else None, epsilon)


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """Drops units with probability ``rate`` when ``training`` (bool or bool tensor)."""
    tw = _tw()
    with ops.name_scope(name, "dropout"):
        if isinstance(training, bool):
            return tw.nn.dropout(inputs, rate=rate, noise_shape=noise_shape, seed=seed) \
                if training and rate > 0 else tw.identity(inputs)
        return tw.cond(training,
                       lambda: tw.nn.dropout(inputs, rate=rate, noise_shape=noise_shape,
                                             seed=seed),
                       lambda: tw.identity(inputs))


def flatten(inputs, name=None):
    """Flattens all but the first dimension: [N, ...] -> [N, prod(...)]."""
    tw = _tw()
    x = convert_to_tensor(inputs)
    with ops.name_scope(name, "flatten"):
        rest = x.shape[1:].num_elements() if x.shape.ndims else None
        if rest is not None:
            return tw.reshape(x, [-1, rest])
        return tw.reshape(x, tw.stack([tw.shape(x)[0], -1]))

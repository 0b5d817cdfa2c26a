"""Convolution, pooling and normalization ops (``tw.nn.conv2d``, ``tw.nn.max_pool``...).

Op types and attrs are TensorFlow's: ``Conv2D`` (strides, padding, explicit_paddings,
dilations, data_format), its backprops ``Conv2DBackpropInput``/``Conv2DBackpropFilter`` (ops in
their own right, with gradients, so second order works), ``DepthwiseConv2dNative`` and its
backprops, ``MaxPool``/``MaxPoolGrad``/``MaxPoolGradGrad``, ``AvgPool``/``AvgPoolGrad`` and
``FusedBatchNormV3``/``FusedBatchNormGradV3``. Kernels are in kernels/cpu/conv.py, gradients in
gradients/conv_grad.py. Layout is NHWC unless ``data_format="NCHW"``; filters are HWIO.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant, constant_value_as_shape
from tensorweave.framework.ops import convert_to_tensor, name_scope
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops.op_util import binary_operands, make, make_op

_FORMATS = ("NHWC", "NCHW")


# --- attribute normalization (TF's _get_sequence / convert_padding) -------------------------------
def _data_format(data_format):
    fmt = "NHWC" if data_format is None else str(data_format)
    if fmt not in _FORMATS:
        raise ValueError(f"data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return fmt


def _sequence(value, name, data_format, default=1):
    """An int, or 1, 2 or 4 ints, as the 4-list TensorFlow's attrs hold (1 on batch/channel)."""
    if value is None:
        value = default
    v = [int(value)] if np.ndim(value) == 0 else [int(a) for a in value]
    if len(v) == 4:
        return v
    if len(v) == 1:
        v = v * 2
    if len(v) != 2:
        raise ValueError(f"{name} should be an int or a list of 1, 2 or 4 ints, got {value!r}")
    return [1, v[0], v[1], 1] if data_format == "NHWC" else [1, 1, v[0], v[1]]


def _padding(padding, data_format):
    """("SAME" | "VALID" | "EXPLICIT", explicit_paddings as TF's flat list of 8 ints)."""
    if isinstance(padding, str):
        p = padding.upper()
        if p not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or a list of [before, after] "
                             f"pairs, got {padding!r}")
        return p, []
    try:
        pairs = [[int(a), int(b)] for a, b in padding]
    except (TypeError, ValueError):
        raise ValueError(f"padding must be 'SAME', 'VALID' or 4 [before, after] pairs, got "
                         f"{padding!r}") from None
    c, n = (3, 0) if data_format == "NHWC" else (1, 0)
    if len(pairs) != 4 or pairs[c] != [0, 0] or pairs[n] != [0, 0] or \
            min(min(p) for p in pairs) < 0:
        raise ValueError(f"explicit padding needs 4 non-negative [before, after] pairs with "
                         f"zeros on the batch and channel dimensions, got {padding!r}")
    return "EXPLICIT", [a for p in pairs for a in p]


# --- static shape helpers ---------------------------------------------------------------------------
def _nhwc(shape, fmt):
    d = shape.with_rank(4).as_tuple()
    return (d[0], d[2], d[3], d[1]) if fmt == "NCHW" else d


def _from_nhwc(n, h, w, c, fmt):
    return TensorShape([n, c, h, w] if fmt == "NCHW" else [n, h, w, c])


def _spatial(attr, fmt):
    return (attr[2], attr[3]) if fmt == "NCHW" else (attr[1], attr[2])


def _out_size(size, k, stride, dilation, padding, explicit):
    if size is None or k is None:
        return None
    k_eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return -(-size // stride)
    lo, hi = explicit
    out = (size + lo + hi - k_eff) // stride + 1
    if out <= 0:
        raise ValueError(f"Negative dimension size caused by a window of size {k_eff} "
                         f"(kernel {k}, dilation {dilation}) on an input dimension of size "
                         f"{size} with {padding} padding")
    return out


def _out_hw(op, h, w, kh, kw):
    a = op.attrs
    fmt = a["data_format"]
    (sh, sw), (dh, dw) = _spatial(a["strides"], fmt), _spatial(a.get("dilations", [1] * 4), fmt)
    ex = list(a.get("explicit_paddings", [])) or [0] * 8
    eh, ew = (ex[4:6], ex[6:8]) if fmt == "NCHW" else (ex[2:4], ex[4:6])
    return (_out_size(h, kh, sh, dh, a["padding"], eh),
            _out_size(w, kw, sw, dw, a["padding"], ew))


def _check_attrs(op, names=("strides",)):
    fmt = op.attrs["data_format"]
    n, c = (0, 1) if fmt == "NCHW" else (0, 3)
    for name in names + ("dilations",):
        v = op.attrs.get(name)
        if v is None:
            continue
        if len(v) != 4 or min(v) < 1:
            raise ValueError(f"{op.type} attr {name} must be 4 positive ints, got {v}")
        if v[n] != 1 or v[c] != 1:
            raise ValueError(f"{op.type} does not support {name} on the batch or channel "
                             f"dimensions ({name}={v}, data_format={fmt})")


def _same_dtype(op, a, b):
    if a.dtype != b.dtype:
        raise TypeError(f"{op.type} inputs must share a dtype: {a.name} is {a.dtype.name}, "
                        f"{b.name} is {b.dtype.name}")


def _conv_shapes(op, x_shape, f_shape, depthwise):
    """Output shape of a conv from input and filter shapes; checks the channel counts."""
    fmt = op.attrs["data_format"]
    n, h, w, c = _nhwc(x_shape, fmt)
    kh, kw, fc, fo = f_shape.with_rank(4).as_tuple()
    if c is not None and fc is not None and c != fc:
        raise ValueError(f"{op.type}: input depth {c} must equal the filter's input depth {fc} "
                         f"(input shape {x_shape}, filter shape {f_shape})")
    oh, ow = _out_hw(op, h, w, kh, kw)
    if depthwise:
        c = c if c is not None else fc
        o = None if c is None or fo is None else c * fo
    else:
        o = fo
    return _from_nhwc(n, oh, ow, o, fmt)


def _check_out_backprop(op, dy, expected):
    if not dy.shape.is_compatible_with(expected):
        raise ValueError(f"{op.type}: out_backprop shape {dy.shape} does not match the shape "
                         f"{expected} the forward convolution produces")


def _conv_infer(depthwise):
    def infer(op):
        x, f = op.inputs
        _same_dtype(op, x, f)
        _check_attrs(op)
        return [(x.dtype, _conv_shapes(op, x.shape, f.shape, depthwise))]

    return infer


def _backprop_input_infer(depthwise):
    def infer(op):
        sizes, f, dy = op.inputs
        _same_dtype(op, f, dy)
        _check_attrs(op)
        in_shape = constant_value_as_shape(sizes)
        in_shape = TensorShape([None] * 4) if in_shape.ndims is None else in_shape.with_rank(4)
        _check_out_backprop(op, dy, _conv_shapes(op, in_shape, f.shape, depthwise))
        return [(dy.dtype, in_shape)]

    return infer


def _backprop_filter_infer(depthwise):
    def infer(op):
        x, sizes, dy = op.inputs
        _same_dtype(op, x, dy)
        _check_attrs(op)
        f_shape = constant_value_as_shape(sizes)
        f_shape = TensorShape([None] * 4) if f_shape.ndims is None else f_shape.with_rank(4)
        _check_out_backprop(op, dy, _conv_shapes(op, x.shape, f_shape, depthwise))
        return [(x.dtype, f_shape)]

    return infer


for _prefix, _dw in (("Conv2D", False), ("DepthwiseConv2dNative", True)):
    register_op(_prefix)(_conv_infer(_dw))
    register_op(_prefix + "BackpropInput")(_backprop_input_infer(_dw))
    register_op(_prefix + "BackpropFilter")(_backprop_filter_infer(_dw))


def shape_tensor(t):
    """``t``'s shape as an int32 tensor: a constant when static (no op to run per step)."""
    if t.shape.is_fully_defined():
        return constant(np.array(t.shape.as_list(), np.int32), name="shape")
    from tensorweave.ops import array_ops
    return array_ops.shape(t)


def conv_attrs(strides, padding, data_format, dilations, dtype, conv2d=True):
    """The attr dict of a Conv2D-family op (depthwise ops omit the cudnn/explicit attrs)."""
    fmt = _data_format(data_format)
    pad, explicit = _padding(padding, fmt)
    attrs = {"T": dtype, "strides": _sequence(strides, "strides", fmt), "padding": pad,
             "data_format": fmt, "dilations": _sequence(dilations, "dilations", fmt)}
    if conv2d:
        attrs.update(use_cudnn_on_gpu=True, explicit_paddings=explicit)
    elif explicit:
        raise ValueError("depthwise convolutions take padding 'SAME' or 'VALID'")
    return attrs


def _filter_arg(filter, filters, fn):  # noqa: A002  (TF's argument names)
    if filter is not None and filters is not None:
        raise ValueError(f"{fn}: pass the filter as 'filter' or 'filters', not both")
    f = filter if filter is not None else filters
    if f is None:
        raise ValueError(f"{fn}: the 'filter' argument (a [height, width, in, out] tensor) is "
                         "required")
    return f


# --- public builders: convolutions -----------------------------------------------------------------
def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True,  # noqa: A002
           data_format="NHWC", dilations=[1, 1, 1, 1], name=None, filters=None):  # noqa: B006
    """2-D convolution of an NHWC ``input`` with an HWIO ``filter``.

    Example::

        y = tw.nn.conv2d(images, w, strides=[1, 1, 1, 1], padding="SAME")
    """
    x, f = binary_operands(input, _filter_arg(filter, filters, "conv2d"), "input", "filter")
    if padding is None:
        raise ValueError("conv2d: 'padding' is required ('SAME', 'VALID' or explicit pairs)")
    attrs = conv_attrs(strides, padding, data_format, dilations, x.dtype)
    attrs["use_cudnn_on_gpu"] = bool(use_cudnn_on_gpu)
    return make("Conv2D", [x, f], attrs, name=name or "Conv2D")


def _sizes(sizes):
    return convert_to_tensor(sizes, dtype=dtypes.int32)


def conv2d_backprop_input(input_sizes, filter=None, out_backprop=None, strides=None,  # noqa: A002
                          padding=None, use_cudnn_on_gpu=True, data_format="NHWC",
                          dilations=[1, 1, 1, 1], name=None, filters=None):  # noqa: B006
    """Gradient of conv2d with respect to its input, of shape ``input_sizes``."""
    f, dy = binary_operands(_filter_arg(filter, filters, "conv2d_backprop_input"),
                            out_backprop, "filter", "out_backprop")
    attrs = conv_attrs(strides, padding, data_format, dilations, f.dtype)
    return make("Conv2DBackpropInput", [_sizes(input_sizes), f, dy], attrs,
                name=name or "Conv2DBackpropInput")


def conv2d_backprop_filter(input, filter_sizes, out_backprop, strides, padding,  # noqa: A002
                           use_cudnn_on_gpu=True, data_format="NHWC", dilations=[1, 1, 1, 1],  # noqa: B006
                           name=None):
    """Gradient of conv2d with respect to its filter, of shape ``filter_sizes``."""
    x, dy = binary_operands(input, out_backprop, "input", "out_backprop")
    attrs = conv_attrs(strides, padding, data_format, dilations, x.dtype)
    return make("Conv2DBackpropFilter", [x, _sizes(filter_sizes), dy], attrs,
                name=name or "Conv2DBackpropFilter")


def conv2d_transpose(value=None, filter=None, output_shape=None, strides=None,  # noqa: A002
                     padding="SAME", data_format="NHWC", name=None, input=None,  # noqa: A002
                     filters=None, dilations=None):
    """The transpose (gradient) of conv2d: ``filter`` is [height, width, out, in].

    Example::

        up = tw.nn.conv2d_transpose(x, w, [batch, 28, 28, 16], [1, 2, 2, 1])
    """
    value = value if value is not None else input
    x, f = binary_operands(value, _filter_arg(filter, filters, "conv2d_transpose"), "value",
                           "filter")
    fmt = _data_format(data_format)
    with name_scope(name, "conv2d_transpose", [x, f]) as scope:
        sizes = _sizes(output_shape)
        c_axis = 1 if fmt == "NCHW" else 3
        fs = f.shape.with_rank(4).as_tuple()
        xc = x.shape.with_rank(4)[c_axis].value
        if xc is not None and fs[3] is not None and xc != fs[3]:
            raise ValueError(f"conv2d_transpose: input channels {xc} must equal the filter's "
                             f"last dimension {fs[3]} (input shape {x.shape}, filter shape "
                             f"{f.shape})")
        out = constant_value_as_shape(sizes)
        if out.ndims is not None:
            oc = out.with_rank(4)[c_axis].value
            if oc is not None and fs[2] is not None and oc != fs[2]:
                raise ValueError(f"conv2d_transpose: output_shape {out} has {oc} channels but "
                                 f"the filter (shape {f.shape}) produces {fs[2]}")
        attrs = conv_attrs(strides, padding, fmt, dilations, f.dtype)
        return make("Conv2DBackpropInput", [sizes, f, x], attrs, name=scope)


def _conv1d_int(v, what, channels_first):
    """An int, or 1 or 3 of them (batch, width, channels order): the width's."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = list(v)
    if len(v) == 1:
        return int(v[0])
    if len(v) == 3:
        return int(v[2] if channels_first else v[1])
    raise ValueError(f"conv1d: {what} must be an int or a list of 1 or 3 ints, got {v}")


def conv1d(value=None, filters=None, stride=1, padding="SAME", use_cudnn_on_gpu=None,
           data_format="NWC", name=None, input=None, dilations=None):  # noqa: A002
    """1-D convolution of ``value`` [batch, width, in] (``"NCW"``: [batch, in, width]) with
    ``filters`` [width, in, out]: a conv2d over a height of one, as TensorFlow does it."""
    value = value if value is not None else input
    if data_format not in ("NWC", "NHWC", "NCW", "NCHW"):
        raise ValueError(f"conv1d: data_format must be 'NWC' or 'NCW', got {data_format!r}")
    channels_first = data_format in ("NCW", "NCHW")
    stride = _conv1d_int(stride, "stride", channels_first)
    rate = 1 if dilations is None else _conv1d_int(dilations, "dilations", channels_first)
    with name_scope(name, "conv1d", [value, filters]) as scope:
        from tensorweave.ops import array_ops
        x = array_ops.expand_dims(convert_to_tensor(value), 2 if channels_first else 1)
        f = array_ops.expand_dims(convert_to_tensor(filters), 0)
        if channels_first:
            y = conv2d(x, f, [1, 1, 1, stride], padding, data_format="NCHW",
                       dilations=[1, 1, 1, rate])
        else:
            y = conv2d(x, f, [1, 1, stride, 1], padding, dilations=[1, 1, rate, 1])
        return array_ops.squeeze(y, [2 if channels_first else 1], name=scope)


def atrous_conv2d(value, filters, rate, padding, name=None):
    """conv2d with holes: the filter's taps ``rate`` pixels apart (stride 1)."""
    return conv2d(value, filters, [1, 1, 1, 1], padding, dilations=[1, rate, rate, 1],
                  name=name or "atrous_conv2d")


def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding,  # noqa: A002
                     rate=None, name=None, data_format=None, dilations=None):
    """A depthwise convolution ([h, w, in, multiplier]) followed by a 1x1 convolution
    ([1, 1, in * multiplier, out]) mixing the channels."""
    with name_scope(name, "separable_conv2d", [input, depthwise_filter, pointwise_filter]) \
            as scope:
        d = depthwise_conv2d(input, depthwise_filter, strides, padding, rate=rate,
                             name="depthwise", data_format=data_format, dilations=dilations)
        return conv2d(d, pointwise_filter, [1, 1, 1, 1], "VALID",
                      data_format=_data_format(data_format), name=scope)


def depthwise_conv2d_native(input, filter, strides, padding, data_format="NHWC",  # noqa: A002
                            dilations=[1, 1, 1, 1], name=None):  # noqa: B006
    """Per-channel convolution: filter [h, w, in, multiplier] -> in * multiplier channels."""
    x, f = binary_operands(input, filter, "input", "filter")
    attrs = conv_attrs(strides, padding, data_format, dilations, x.dtype, conv2d=False)
    return make("DepthwiseConv2dNative", [x, f], attrs, name=name or "DepthwiseConv2dNative")


def depthwise_conv2d(input, filter, strides, padding, rate=None, name=None,  # noqa: A002
                     data_format=None, dilations=None):
    """Depthwise 2-D convolution; ``rate`` (or ``dilations``) is the atrous rate (2 ints)."""
    fmt = _data_format(data_format)
    if rate is not None and dilations is not None:
        raise ValueError("depthwise_conv2d: pass 'rate' or 'dilations', not both")
    dil = _sequence(rate if rate is not None else dilations, "rate", fmt)
    st = _sequence(strides, "strides", fmt)
    if max(dil) > 1 and max(st) > 1:
        raise ValueError(f"depthwise_conv2d: strides > 1 are not supported together with rate "
                         f"> 1 (strides={strides}, rate={rate or dilations})")
    with name_scope(name, "depthwise", [input, filter]) as scope:
        return depthwise_conv2d_native(input, filter, st, padding, fmt, dil, name=scope)


def depthwise_conv2d_native_backprop_input(input_sizes, filter, out_backprop, strides,  # noqa: A002
                                           padding, data_format="NHWC",
                                           dilations=[1, 1, 1, 1], name=None):  # noqa: B006
    f, dy = binary_operands(filter, out_backprop, "filter", "out_backprop")
    attrs = conv_attrs(strides, padding, data_format, dilations, f.dtype, conv2d=False)
    return make("DepthwiseConv2dNativeBackpropInput", [_sizes(input_sizes), f, dy], attrs,
                name=name or "DepthwiseConv2dNativeBackpropInput")


def depthwise_conv2d_native_backprop_filter(input, filter_sizes, out_backprop,  # noqa: A002
                                            strides, padding, data_format="NHWC",
                                            dilations=[1, 1, 1, 1], name=None):  # noqa: B006
    x, dy = binary_operands(input, out_backprop, "input", "out_backprop")
    attrs = conv_attrs(strides, padding, data_format, dilations, x.dtype, conv2d=False)
    return make("DepthwiseConv2dNativeBackpropFilter", [x, _sizes(filter_sizes), dy], attrs,
                name=name or "DepthwiseConv2dNativeBackpropFilter")


# --- pooling ----------------------------------------------------------------------------------------
def _pool_out(op, shape):
    fmt = op.attrs["data_format"]
    _check_attrs(op, ("ksize", "strides"))
    n, h, w, c = _nhwc(shape, fmt)
    kh, kw = _spatial(op.attrs["ksize"], fmt)
    oh, ow = _out_hw(op, h, w, kh, kw)
    return _from_nhwc(n, oh, ow, c, fmt)


@register_op("MaxPool")
def _max_pool_infer(op):
    x = op.inputs[0]
    return [(x.dtype, _pool_out(op, x.shape))]


register_op("AvgPool")(_max_pool_infer)


@register_op("MaxPoolGrad")
def _max_pool_grad_infer(op):
    x, y, dy = op.inputs
    _check_out_backprop(op, dy, _pool_out(op, x.shape))
    return [(dy.dtype, x.shape)]


@register_op("MaxPoolGradGrad")
def _max_pool_grad_grad_infer(op):
    x, y, g = op.inputs
    if not g.shape.is_compatible_with(x.shape):
        raise ValueError(f"MaxPoolGradGrad: grad shape {g.shape} must match orig_input shape "
                         f"{x.shape}")
    return [(g.dtype, _pool_out(op, x.shape))]


@register_op("AvgPoolGrad")
def _avg_pool_grad_infer(op):
    sizes, dy = op.inputs
    in_shape = constant_value_as_shape(sizes)
    in_shape = TensorShape([None] * 4) if in_shape.ndims is None else in_shape.with_rank(4)
    _check_out_backprop(op, dy, _pool_out(op, in_shape))
    return [(dy.dtype, in_shape)]


def pool_attrs(ksize, strides, padding, data_format, dtype):
    fmt = _data_format(data_format)
    if padding is None:
        raise ValueError("pooling needs 'padding': 'SAME' or 'VALID'")
    pad, explicit = _padding(padding, fmt)
    if explicit:
        raise ValueError("pooling takes padding 'SAME' or 'VALID'")
    if ksize is None or strides is None:
        raise ValueError("pooling needs 'ksize' and 'strides' (an int, or 1, 2 or 4 ints)")
    return {"T": dtype, "ksize": _sequence(ksize, "ksize", fmt),
            "strides": _sequence(strides, "strides", fmt), "padding": pad, "data_format": fmt}


def max_pool(value=None, ksize=None, strides=None, padding=None, data_format="NHWC",
             name=None, input=None):  # noqa: A002
    """Max pooling: ``tw.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")``."""
    x = convert_to_tensor(value if value is not None else input)
    attrs = pool_attrs(ksize, strides, padding, data_format, x.dtype)
    return make("MaxPool", [x], attrs, name=name or "MaxPool")


def avg_pool(value=None, ksize=None, strides=None, padding=None, data_format="NHWC",
             name=None, input=None):  # noqa: A002
    """Average pooling; with SAME padding each window averages only its real inputs."""
    x = convert_to_tensor(value if value is not None else input)
    attrs = pool_attrs(ksize, strides, padding, data_format, x.dtype)
    return make("AvgPool", [x], attrs, name=name or "AvgPool")


max_pool2d = max_pool
avg_pool2d = avg_pool


# --- normalization ----------------------------------------------------------------------------------
def _bn_infer(op):
    x, scale, offset, mean, var = op.inputs
    fmt = op.attrs["data_format"]
    if fmt not in _FORMATS:
        raise ValueError(f"{op.type}: data_format must be NHWC or NCHW, got {fmt!r}")
    c = _nhwc(x.shape, fmt)[3]
    for t, what in ((scale, "scale"), (offset, "offset")) + \
            (() if op.attrs["is_training"] else ((mean, "mean"), (var, "variance"))):
        s = t.shape.with_rank(1)
        if c is not None and s[0].value is not None and s[0].value != c:
            raise ValueError(f"{op.type}: {what} of shape {t.shape} must have one entry per "
                             f"channel of x (shape {x.shape}, {fmt})")
        if t.dtype != scale.dtype:
            raise TypeError(f"{op.type}: {what} is {t.dtype.name} but scale is "
                            f"{scale.dtype.name}")
    vec = TensorShape([c])
    u = scale.dtype
    outs = [(x.dtype, x.shape), (u, vec), (u, vec), (u, vec), (u, vec)]
    return outs + [(u, TensorShape([0]))] if op.type == "FusedBatchNormV3" else outs


def _bn_grad_infer(op):
    dy, x = op.inputs[:2]
    if not dy.shape.is_compatible_with(x.shape):
        raise ValueError(f"{op.type}: y_backprop shape {dy.shape} must match x shape {x.shape}")
    u = op.inputs[2].dtype
    c = TensorShape([_nhwc(x.shape, op.attrs["data_format"])[3]])
    return [(x.dtype, x.shape), (u, c), (u, c), (u, TensorShape([0])), (u, TensorShape([0]))]


for _t in ("FusedBatchNorm", "FusedBatchNormV3"):
    register_op(_t)(_bn_infer)
for _t in ("FusedBatchNormGrad", "FusedBatchNormGradV3"):
    register_op(_t)(_bn_grad_infer)


def fused_batch_norm(x, scale, offset, mean=None, variance=None, epsilon=0.001,
                     data_format="NHWC", is_training=True, name=None):
    """Batch normalization in one op; returns ``(y, batch_mean, batch_variance)``.

    Training normalizes with the batch's (biased) variance but returns the unbiased one, for
    running averages; inference (``is_training=False``) uses the given mean and variance.
    """
    x = convert_to_tensor(x)
    scale = convert_to_tensor(scale)
    offset = convert_to_tensor(offset, dtype=scale.dtype)
    fmt = _data_format(data_format)
    if not is_training and (mean is None or variance is None):
        raise ValueError("fused_batch_norm: 'mean' and 'variance' (1-D, one entry per channel) "
                         "are required when is_training=False")
    empty = np.zeros([0], scale.dtype.as_numpy_dtype)  # training ignores mean and variance
    mean = convert_to_tensor(empty if mean is None else mean, dtype=scale.dtype)
    variance = convert_to_tensor(empty if variance is None else variance, dtype=scale.dtype)
    # as TF does: cuDNN's lower bound on epsilon, applied on every device for one behaviour
    epsilon = max(float(epsilon), 1.001e-5)
    op = make_op("FusedBatchNormV3", [x, scale, offset, mean, variance],
                 {"T": x.dtype, "U": scale.dtype, "epsilon": epsilon, "data_format": fmt,
                  "is_training": bool(is_training)}, name=name or "FusedBatchNorm")
    return op.outputs[0], op.outputs[1], op.outputs[2]


def _math():
    from tensorweave.ops import math_ops
    return math_ops


def moments(x, axes, shift=None, name=None, keep_dims=None, keepdims=None):
    """Mean and (biased) variance of ``x`` over ``axes``: ``mean, var = tw.nn.moments(x, [0])``."""
    from tensorweave.ops import array_ops
    m = _math()
    keep = bool(keepdims if keepdims is not None else keep_dims)
    x = convert_to_tensor(x)
    with name_scope(name, "moments", [x]):
        y = m.cast(x, dtypes.float32) if x.dtype == dtypes.float16 else x
        mean = m.reduce_mean(y, axes, keepdims=True, name="mean")
        # d(variance)/d(mean) is zero at the mean, so the shift needs no gradient path
        variance = m.reduce_mean(m.squared_difference(y, array_ops.stop_gradient(mean)), axes,
                                 keepdims=True, name="variance")
        if not keep:
            mean = array_ops.squeeze(mean, axes)
            variance = array_ops.squeeze(variance, axes)
        if x.dtype == dtypes.float16:
            mean, variance = m.cast(mean, x.dtype), m.cast(variance, x.dtype)
        return mean, variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """``scale * (x - mean) / sqrt(variance + variance_epsilon) + offset`` (broadcasting)."""
    m = _math()
    x = convert_to_tensor(x)
    with name_scope(name, "batchnorm", [x]):
        inv = m.rsqrt(variance + variance_epsilon)
        if scale is not None:
            inv = inv * scale
        shift = offset - mean * inv if offset is not None else -mean * inv
        return x * m.cast(inv, x.dtype) + m.cast(shift, x.dtype)


@register_op("LRN")
def _lrn_infer(op):
    x = op.inputs[0]
    x.shape.with_rank(4)
    return [(x.dtype, x.shape)]


@register_op("LRNGrad")
def _lrn_grad_infer(op):
    g, x, y = op.inputs
    if not g.shape.is_compatible_with(x.shape):
        raise ValueError(f"LRNGrad: input_grads shape {g.shape} must match input_image shape "
                         f"{x.shape}")
    return [(g.dtype, x.shape)]


def local_response_normalization(input, depth_radius=5, bias=1.0, alpha=1.0,  # noqa: A002
                                 beta=0.5, name=None):
    """``x / (bias + alpha * sum(x[..., d-r:d+r+1] ** 2)) ** beta`` over the last axis."""
    x = convert_to_tensor(input)
    if int(depth_radius) < 0:
        raise ValueError(f"local_response_normalization: depth_radius must be >= 0, got "
                         f"{depth_radius}")
    attrs = {"T": x.dtype, "depth_radius": int(depth_radius), "bias": float(bias),
             "alpha": float(alpha), "beta": float(beta)}
    return make("LRN", [x], attrs, name=name or "LRN")


lrn = local_response_normalization

__all__ = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter", "conv2d_transpose",
           "conv1d", "atrous_conv2d", "separable_conv2d",
           "depthwise_conv2d", "depthwise_conv2d_native",
           "depthwise_conv2d_native_backprop_input", "depthwise_conv2d_native_backprop_filter",
           "max_pool", "max_pool2d", "avg_pool", "avg_pool2d", "fused_batch_norm", "moments",
           "batch_normalization", "local_response_normalization", "lrn"]

"""Neural-network ops (``tw.nn.relu``, ``tw.nn.softmax``, the cross entropies...).

Op types and attrs are TensorFlow's. Activations have dedicated gradient ops (``ReluGrad``,
``Relu6Grad``, ``EluGrad``, ``SoftplusGrad``, ``SoftsignGrad``, ``LeakyReluGrad``) that are ops in
their own right, with kernels and gradients, so second derivatives work; ``BiasAdd`` has
``BiasAddGrad``. The softmax cross entropies are single ops with two outputs, the loss and its
gradient with respect to the logits (``backprop``), as in TensorFlow. Kernels are in
kernels/cpu/nn.py, gradients in gradients/nn_grad.py. Compositions (``l2_normalize``,
``dropout``, ``embedding_lookup``, ``sigmoid_cross_entropy_with_logits``) build on math_ops,
array_ops and random_ops.
"""

from __future__ import annotations

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant, constant_value
from tensorweave.framework.ops import Tensor, convert_to_tensor, name_scope
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import array_ops, math_ops
from tensorweave.ops.op_util import binary_operands, make, make_op


# --- inference helpers ----------------------------------------------------------------------------
def _float_unchanged(op):
    x = op.inputs[0]
    if not (x.dtype.is_floating or x.dtype.is_integer):
        raise TypeError(f"{op.type} expects a real-valued tensor, got {x.dtype.name} ({x.name})")
    return [(x.dtype, x.shape)]


def _activation_grad_infer(op):
    """``XGrad(gradients, features)``: both of one dtype and shape; the output too."""
    g, f = op.inputs[0], op.inputs[1]
    if g.dtype != f.dtype:
        raise TypeError(f"{op.type} inputs must share a dtype: gradients {g.dtype.name} vs "
                        f"features {f.dtype.name}")
    if not g.shape.is_compatible_with(f.shape):
        raise ValueError(f"{op.type}: gradients shape {g.shape} and features shape {f.shape} "
                         "must be equal")
    return [(g.dtype, g.shape.merge_with(f.shape))]


def _unary(op_type, x, name, attrs=None):
    return make(op_type, [convert_to_tensor(x)], attrs or {}, name=name or op_type)


# --- activations ------------------------------------------------------------------------------------
for _t in ("Relu", "Relu6", "Elu", "Softplus", "Softsign", "LeakyRelu"):
    register_op(_t)(_float_unchanged)
for _t in ("ReluGrad", "Relu6Grad", "EluGrad", "SoftplusGrad", "SoftsignGrad", "LeakyReluGrad"):
    register_op(_t)(_activation_grad_infer)


def relu(features, name=None):
    """``max(features, 0)``."""
    return _unary("Relu", features, name)


def relu6(features, name=None):
    """``min(max(features, 0), 6)``."""
    return _unary("Relu6", features, name)


def elu(features, name=None):
    """``features`` where positive, else ``exp(features) - 1``."""
    return _unary("Elu", features, name)


def selu(features, name=None):
    """Scaled ELU (Klambauer et al. 2017): ``scale * elu(x)`` for ``x > 0``, else
    ``scale * alpha * (exp(x) - 1)``, with the paper's ``alpha``/``scale``."""
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    with name_scope(name, "Selu"):
        x = convert_to_tensor(features)
        neg = alpha * math_ops.expm1(math_ops.minimum(x, 0.0))
        return scale * math_ops.where(x > 0.0, x, neg)


def swish(features, name=None):
    """``features * sigmoid(features)`` (also called SiLU)."""
    with name_scope(name, "swish"):
        x = convert_to_tensor(features)
        return x * math_ops.sigmoid(x)


def softplus(features, name=None):
    """``log(exp(features) + 1)``, computed without overflow."""
    return _unary("Softplus", features, name)


def softsign(features, name=None):
    """``features / (abs(features) + 1)``."""
    return _unary("Softsign", features, name)


def leaky_relu(features, alpha=0.2, name=None):
    """``features`` where positive, else ``alpha * features``."""
    return _unary("LeakyRelu", features, name, {"alpha": float(alpha)})


def sigmoid(x, name=None):
    """``1 / (1 + exp(-x))`` (the math family's ``Sigmoid`` op)."""
    return math_ops.sigmoid(x, name=name)


def tanh(x, name=None):
    """Hyperbolic tangent (the math family's ``Tanh`` op)."""
    return math_ops.tanh(x, name=name)


def activation_grad(op_type, gradients, features, alpha=None, name=None):
    """Builds one of the activation gradient ops (used by gradients/nn_grad.py)."""
    g, f = binary_operands(gradients, features, "gradients", "features")
    attrs = {} if alpha is None else {"alpha": float(alpha)}
    return make(op_type, [g, f], attrs, name=name or op_type)


# --- softmax ----------------------------------------------------------------------------------------
def _softmax_infer(op):
    x = op.inputs[0]
    if not x.dtype.is_floating:
        raise TypeError(f"{op.type} expects floating-point logits, got {x.dtype.name} ({x.name})")
    if x.shape.ndims == 0:
        raise ValueError(f"{op.type} needs logits of rank >= 1, got shape {x.shape}")
    return [(x.dtype, x.shape)]


register_op("Softmax")(_softmax_infer)
register_op("LogSoftmax")(_softmax_infer)


def _last_axis_op(op_type, logits, axis, name):
    """Applies a last-axis op along ``axis`` by swapping that axis with the last one."""
    x = convert_to_tensor(logits)
    if axis is None or axis == -1:
        return make(op_type, [x], {}, name=name or op_type)
    rank = x.shape.ndims
    if rank is None:
        raise ValueError(f"{op_type} along axis {axis} needs logits of known rank "
                         f"(got shape {x.shape}); use axis=-1")
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for logits of shape {x.shape}")
    axis %= rank
    if axis == rank - 1:
        return make(op_type, [x], {}, name=name or op_type)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    with name_scope(name, op_type):
        y = make(op_type, [array_ops.transpose(x, perm)], {}, name=op_type)
        return array_ops.transpose(y, perm)


def softmax(logits, axis=None, name=None, dim=None):
    """``exp(logits) / reduce_sum(exp(logits), axis)``, along the last axis by default."""
    return _last_axis_op("Softmax", logits, dim if axis is None else axis, name)


def log_softmax(logits, axis=None, name=None, dim=None):
    """``logits - log(reduce_sum(exp(logits), axis))``, along the last axis by default."""
    return _last_axis_op("LogSoftmax", logits, dim if axis is None else axis, name)


# --- bias_add -----------------------------------------------------------------------------------------
def _channel_axis(data_format, rank):
    return 1 if data_format.startswith("NC") and rank is not None and rank >= 2 else -1


def _data_format(data_format):
    fmt = "NHWC" if data_format is None else str(data_format)
    if fmt not in ("NHWC", "NCHW", "NWC", "NCW", "NDHWC", "NCDHW", "N..C", "NC.."):
        raise ValueError(f"data_format must be 'NHWC' or 'NCHW' (or another N...C / NC... "
                         f"layout), got {data_format!r}")
    return "NCHW" if fmt.startswith("NC") else "NHWC"


@register_op("BiasAdd")
def _bias_add_infer(op):
    x, b = op.inputs
    if x.dtype != b.dtype:
        raise TypeError(f"BiasAdd: value dtype {x.dtype.name} and bias dtype {b.dtype.name} "
                        "must match")
    if b.shape.ndims not in (None, 1):
        raise ValueError(f"BiasAdd: bias must be 1-D, got shape {b.shape}")
    dims = x.shape.as_tuple()
    if dims is None:
        return [(x.dtype, x.shape)]
    if len(dims) < 2:
        raise ValueError(f"BiasAdd: value must have rank >= 2, got shape {x.shape}")
    c = _channel_axis(op.attrs["data_format"], len(dims)) % len(dims)
    if not x.shape[c].is_compatible_with(b.shape[0]):
        raise ValueError(f"BiasAdd: dimension {c} of value shape {x.shape} must match the bias "
                         f"shape {b.shape} (data_format {op.attrs['data_format']})")
    out = list(dims)
    out[c] = out[c] if out[c] is not None else b.shape[0].value
    return [(x.dtype, TensorShape(out))]


@register_op("BiasAddGrad")
def _bias_add_grad_infer(op):
    g = op.inputs[0]
    dims = g.shape.as_tuple()
    if dims is None:
        return [(g.dtype, TensorShape([None]))]
    if len(dims) < 2:
        raise ValueError(f"BiasAddGrad: out_backprop must have rank >= 2, got shape {g.shape}")
    return [(g.dtype, TensorShape([dims[_channel_axis(op.attrs["data_format"], len(dims))]]))]


def bias_add(value, bias, data_format=None, name=None):
    """Adds the 1-D ``bias`` along the channel dimension of ``value`` (last, or 1 for NC...)."""
    x, b = binary_operands(value, bias, "value", "bias")
    return make("BiasAdd", [x, b], {"data_format": _data_format(data_format)},
                name=name or "BiasAdd")


def bias_add_grad(out_backprop, data_format="NHWC", name=None):
    """Sums ``out_backprop`` over every dimension but the channel one."""
    return make("BiasAddGrad", [convert_to_tensor(out_backprop)],
                {"data_format": _data_format(data_format)}, name=name or "BiasAddGrad")


def xw_plus_b(x, weights, biases, name=None):
    """``matmul(x, weights) + biases``."""
    with name_scope(name, "xw_plus_b"):
        return bias_add(math_ops.matmul(x, weights), biases, name=name)


# --- losses and norms ------------------------------------------------------------------------------
@register_op("L2Loss")
def _l2_loss_infer(op):
    x = op.inputs[0]
    if not x.dtype.is_floating:
        raise TypeError(f"L2Loss expects a floating-point tensor, got {x.dtype.name}")
    return [(x.dtype, TensorShape([]))]


def l2_loss(t, name=None):
    """``sum(t ** 2) / 2``."""
    return _unary("L2Loss", t, name)


def l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """``x / sqrt(max(sum(x ** 2, axis), epsilon))``."""
    if axis is None:
        axis = dim
    with name_scope(name, "l2_normalize"):
        x = convert_to_tensor(x)
        sq = math_ops.reduce_sum(math_ops.square(x), axis, keepdims=True)
        inv = math_ops.rsqrt(math_ops.maximum(sq, constant(epsilon, dtype=x.dtype)))
        return math_ops.multiply(x, inv, name=name)


def _as_2d_rows(x, what):
    """Reshapes ``[..., C]`` to ``[N, C]``; returns (2-D tensor, static or dynamic batch shape)."""
    dims = x.shape.as_tuple()
    if dims is not None and len(dims) == 2:
        return x, None
    if dims is not None and len(dims) == 0:
        raise ValueError(f"{what} must have rank >= 1, got a scalar")
    if dims is not None and all(d is not None for d in dims[:-1]):
        batch = list(dims[:-1])
    else:
        batch = array_ops.shape(x)[:-1]
    c = dims[-1] if dims is not None and dims[-1] is not None else -1
    if c == -1:
        flat = array_ops.reshape(x, array_ops.stack([-1, array_ops.shape(x)[-1]]))
    else:
        flat = array_ops.reshape(x, [-1, c])
    return flat, batch


def _move_axis_last(x, axis):
    rank = x.shape.ndims
    if axis == -1 or (rank is not None and axis == rank - 1):
        return x
    if rank is None:
        raise ValueError(f"a class axis other than -1 needs logits of known rank, got {x.shape}")
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for shape {x.shape}")
    perm = [i for i in range(rank) if i != axis % rank] + [axis % rank]
    return array_ops.transpose(x, perm)


# --- cross entropies --------------------------------------------------------------------------------
@register_op("SoftmaxCrossEntropyWithLogits")
def _softmax_xent_infer(op):
    logits, labels = op.inputs
    if logits.dtype != labels.dtype or not logits.dtype.is_floating:
        raise TypeError(f"SoftmaxCrossEntropyWithLogits needs floating logits and labels of one "
                        f"dtype, got {logits.dtype.name} and {labels.dtype.name}")
    ls, bs = logits.shape.with_rank(2), labels.shape.with_rank(2)
    if not ls.is_compatible_with(bs):
        raise ValueError(f"logits and labels must have the same shape, got logits shape "
                         f"{logits.shape} and labels shape {labels.shape}")
    s = ls.merge_with(bs)
    return [(logits.dtype, TensorShape([s[0]])), (logits.dtype, s)]


@register_op("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_xent_infer(op):
    logits, labels = op.inputs
    if not logits.dtype.is_floating:
        raise TypeError(f"logits must be floating-point, got {logits.dtype.name}")
    if labels.dtype not in (dtypes.int32, dtypes.int64):
        raise TypeError(f"labels must be int32 or int64, got {labels.dtype.name}")
    ls, bs = logits.shape.with_rank(2), labels.shape.with_rank(1)
    if not ls[0].is_compatible_with(bs[0]):
        raise ValueError(f"logits and labels must have the same first dimension, got logits "
                         f"shape {logits.shape} and labels shape {labels.shape}")
    n = ls[0].merge_with(bs[0])
    return [(logits.dtype, TensorShape([n])), (logits.dtype, TensorShape([n, ls[1]]))]


def _xent_args(_sentinel, labels, logits, fn):
    if _sentinel is not None:
        raise ValueError(f"Only call {fn} with named arguments (labels=..., logits=...)")
    if labels is None or logits is None:
        raise ValueError(f"{fn} needs both labels and logits")


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """Elementwise ``-z*log(sigmoid(x)) - (1-z)*log(1-sigmoid(x))`` for labels z, logits x.

    Computed as ``softplus(x) - x*z``, which never overflows for large ``|x|``.
    """
    _xent_args(_sentinel, labels, logits, "sigmoid_cross_entropy_with_logits")
    with name_scope(name, "logistic_loss"):
        x, z = binary_operands(logits, labels, "logits", "labels")
        if not x.shape.is_compatible_with(z.shape):
            raise ValueError(f"logits and labels must have the same shape ({x.shape} vs "
                             f"{z.shape})")
        return math_ops.subtract(softplus(x), x * z, name=name)


def weighted_cross_entropy_with_logits(labels=None, logits=None, pos_weight=None, name=None,
                                       targets=None):
    """Sigmoid cross entropy with the positive term weighted by ``pos_weight``:
    ``(1 - z) * x + (1 + (q - 1) * z) * softplus(-x)``."""
    labels = targets if labels is None else labels
    if labels is None or logits is None or pos_weight is None:
        raise ValueError("weighted_cross_entropy_with_logits needs labels, logits and pos_weight")
    with name_scope(name, "logistic_loss"):
        x, z = binary_operands(logits, labels, "logits", "labels")
        q = convert_to_tensor(pos_weight, dtype=x.dtype)
        one = constant(1.0, dtype=x.dtype)
        return math_ops.add((one - z) * x, (one + (q - one) * z) * softplus(-x), name=name)


def _softmax_xent(labels, logits, axis, name):
    with name_scope(name, "softmax_cross_entropy_with_logits"):
        x, z = binary_operands(logits, labels, "logits", "labels")
        if not x.shape.is_compatible_with(z.shape):
            raise ValueError(f"logits and labels must have the same shape, got logits shape "
                             f"{x.shape} and labels shape {z.shape}")
        x, z = _move_axis_last(x, axis), _move_axis_last(z, axis)
        x2, batch = _as_2d_rows(x, "logits")
        z2, _ = _as_2d_rows(z, "labels")
        loss = make_op("SoftmaxCrossEntropyWithLogits", [x2, z2], {},
                       name="SoftmaxCrossEntropyWithLogits").outputs[0]
        if batch is not None:
            loss = array_ops.reshape(loss, batch)
        return loss


def softmax_cross_entropy_with_logits_v2(_sentinel=None, labels=None, logits=None, axis=None,
                                         name=None, dim=None):
    """``-sum(labels * log_softmax(logits), axis)``; gradients flow into labels too.

    Each row of ``labels`` should be a probability distribution (the gradient with respect
    to ``logits`` is ``softmax(logits) - labels``, as in TensorFlow).
    """
    _xent_args(_sentinel, labels, logits, "softmax_cross_entropy_with_logits_v2")
    if axis is None:
        axis = -1 if dim is None else dim
    return _softmax_xent(labels, logits, axis, name)


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None):
    """TF1's version: like ``_v2`` but no gradient flows into ``labels``."""
    _xent_args(_sentinel, labels, logits, "softmax_cross_entropy_with_logits")
    if axis is None:
        axis = dim
    with name_scope(name, "softmax_cross_entropy_with_logits_sg"):
        labels = array_ops.stop_gradient(labels, name="labels_stop_gradient")
        return _softmax_xent(labels, logits, axis, None)


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                             name=None):
    """``-log_softmax(logits)[..., labels]`` for integer class ``labels`` of shape
    ``logits.shape[:-1]``."""
    _xent_args(_sentinel, labels, logits, "sparse_softmax_cross_entropy_with_logits")
    with name_scope(name, "SparseSoftmaxCrossEntropyWithLogits"):
        x = convert_to_tensor(logits)
        z = convert_to_tensor(labels)
        if z.dtype not in (dtypes.int32, dtypes.int64):
            raise TypeError(f"labels must be int32 or int64 class indices, got {z.dtype.name}")
        lr, xr = z.shape.ndims, x.shape.ndims
        if lr is not None and xr is not None:
            if lr != xr - 1:
                raise ValueError(f"Rank mismatch: rank of labels (received {lr}) should equal "
                                 f"rank of logits minus 1 (received {xr}); labels shape "
                                 f"{z.shape}, logits shape {x.shape}")
            if not z.shape.is_compatible_with(x.shape[:-1]):
                raise ValueError(f"labels shape {z.shape} must match logits shape {x.shape} "
                                 "without its last dimension")
        x2, batch = _as_2d_rows(x, "logits")
        z1 = z if lr == 1 else array_ops.reshape(z, [-1])
        loss = make_op("SparseSoftmaxCrossEntropyWithLogits", [x2, z1], {"Tlabels": z.dtype},
                       name="SparseSoftmaxCrossEntropyWithLogits").outputs[0]
        if batch is not None:
            loss = array_ops.reshape(loss, batch)
        return loss


# --- top-k --------------------------------------------------------------------------------------------
@register_op("TopKV2")
def _top_k_infer(op):
    x, k = op.inputs
    kv = constant_value(k)
    dims = x.shape.as_tuple()
    if dims is not None and len(dims) == 0:
        raise ValueError(f"top_k needs input of rank >= 1, got shape {x.shape}")
    if kv is not None:
        kv = int(kv)
        if kv < 0:
            raise ValueError(f"k must be non-negative, got {kv}")
        if dims is not None and dims[-1] is not None and kv > dims[-1]:
            raise ValueError(f"input must have at least k={kv} columns, got shape {x.shape}")
    out = TensorShape(None) if dims is None else TensorShape(list(dims[:-1]) + [kv])
    return [(x.dtype, out), (dtypes.int32, out)]


def top_k(input, k=1, sorted=True, name=None):  # noqa: A002  (TF's argument names)
    """The ``k`` largest entries of the last axis and their indices: ``(values, indices)``.

    Ties are broken by the lower index first.
    """
    x = convert_to_tensor(input)
    op = make_op("TopKV2", [x, convert_to_tensor(k, dtype=dtypes.int32)],
                 {"sorted": bool(sorted), "T": x.dtype}, name=name or "TopKV2")
    return op.outputs[0], op.outputs[1]


@register_op("InTopKV2")
def _in_top_k_infer(op):
    p, t, k = op.inputs
    ps, ts = p.shape.with_rank(2), t.shape.with_rank(1)
    if not ps[0].is_compatible_with(ts[0]):
        raise ValueError(f"predictions shape {p.shape} and targets shape {t.shape} must have "
                         "the same first dimension")
    return [(dtypes.bool_, TensorShape([ps[0].merge_with(ts[0])]))]


def in_top_k(predictions, targets, k, name=None):
    """Whether ``targets[i]`` is among the ``k`` largest ``predictions[i]`` (ties count as in;
    a non-finite prediction is never in)."""
    p = convert_to_tensor(predictions)
    t = convert_to_tensor(targets)
    if t.dtype not in (dtypes.int32, dtypes.int64):
        raise TypeError(f"targets must be int32 or int64, got {t.dtype.name}")
    return make("InTopKV2", [p, t, convert_to_tensor(k, dtype=t.dtype)], {"T": t.dtype},
                name=name or "in_top_k")


# --- dropout --------------------------------------------------------------------------------------------
def dropout(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """Keeps each element with probability ``keep_prob`` (scaled by ``1 / keep_prob``), else 0.

    TF1 semantics: pass exactly one of ``keep_prob`` and ``rate`` (``rate = 1 - keep_prob``).
    ``noise_shape`` broadcasts one keep/drop decision over some dimensions.
    """
    from tensorweave.ops import random_ops
    if (keep_prob is None) == (rate is None):
        raise ValueError("dropout: pass exactly one of keep_prob and rate "
                         f"(got keep_prob={keep_prob!r}, rate={rate!r})")
    with name_scope(name, "dropout"):
        x = convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise ValueError(f"dropout needs a floating-point tensor x, got {x.dtype.name}")
        if rate is not None:
            r = constant_value(rate) if isinstance(rate, Tensor) else rate
            if r is not None and not 0 <= float(r) < 1:
                raise ValueError(f"rate must be a scalar in [0, 1), got {r!r}")
            keep_prob = constant(1.0, dtype=x.dtype) - convert_to_tensor(rate, dtype=x.dtype)
            kp = None if r is None else 1.0 - float(r)
        else:
            kp = constant_value(keep_prob) if isinstance(keep_prob, Tensor) else keep_prob
            if kp is not None and not 0 < float(kp) <= 1:
                raise ValueError(f"keep_prob must be a scalar in (0, 1], got {kp!r}")
            keep_prob = convert_to_tensor(keep_prob, dtype=x.dtype)
        if kp is not None and float(kp) == 1.0:
            return x
        shape = array_ops.shape(x) if noise_shape is None else noise_shape
        u = random_ops.random_uniform(shape, seed=seed, dtype=x.dtype)
        # keep_prob + U[0, 1) lies in [1, 2) with probability keep_prob: floor gives the mask
        mask = math_ops.floor(keep_prob + u)
        return math_ops.multiply(x / keep_prob, mask, name=name)


# --- embeddings ---------------------------------------------------------------------------------------
def _clip_rows(rows, max_norm):
    """Scales each embedding (last axis) down to L2 norm ``max_norm`` if it is longer."""
    mn = constant(max_norm, dtype=rows.dtype)
    norm = math_ops.sqrt(math_ops.reduce_sum(math_ops.square(rows), -1, keepdims=True))
    return rows * mn / math_ops.maximum(norm, mn)


def _shard_assignments(ids, params, strategy):
    """(shard of each id, its row within the shard) for TF's "mod" and "div" strategies."""
    n = len(params)
    if strategy == "mod":
        return math_ops.floormod(ids, n), math_ops.floordiv(ids, n)
    # "div": contiguous blocks; the first (total % n) shards hold one extra row
    sizes = [p.shape[0].value for p in params]
    if all(s is not None for s in sizes):
        total = constant(sum(sizes), dtype=ids.dtype)
    else:
        total = math_ops.add_n([math_ops.cast(array_ops.shape(p)[0], ids.dtype) for p in params])
    per = math_ops.floordiv(total, n)
    extras = math_ops.floormod(total, n)
    one = constant(1, dtype=ids.dtype)
    shard = math_ops.maximum(math_ops.floordiv(ids, per + one),
                             math_ops.floordiv(ids - extras, per))
    in_big = math_ops.cast(math_ops.less(shard, extras), ids.dtype)
    row = in_big * math_ops.floormod(ids, per + one) + \
        (one - in_big) * math_ops.floormod(ids - extras, per)
    return shard, row


def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True,
                     max_norm=None):
    """Rows of ``params`` at ``ids``: ``out.shape = ids.shape + params.shape[1:]``.

    ``params`` is one tensor (or Variable) or a list of shards of one table; id ``i`` lives in
    shard ``i % n`` at row ``i // n`` ("mod"), or in contiguous blocks ("div", the first shards
    one row larger when the sizes do not divide evenly). Gradients with respect to ``params``
    are sparse (:class:`tw.IndexedSlices`), one per shard.
    """
    if isinstance(params, (list, tuple)):
        params = list(params)
    else:
        params = [params]
    if not params:
        raise ValueError("embedding_lookup needs at least one params tensor")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"partition_strategy must be 'mod' or 'div', got {partition_strategy!r}")
    with name_scope(name, "embedding_lookup"):
        ids = convert_to_tensor(ids)
        if ids.dtype not in (dtypes.int32, dtypes.int64):
            raise TypeError(f"ids must be int32 or int64, got {ids.dtype.name}")
        if len(params) == 1:
            out = array_ops.gather(params[0], ids)
            return _clip_rows(out, max_norm) if max_norm is not None else out
        params = [convert_to_tensor(p) for p in params]
        flat = array_ops.reshape(ids, [-1])
        shard, row = _shard_assignments(flat, params, partition_strategy)
        positions, parts = [], []
        for p, table in enumerate(params):
            pos = array_ops.reshape(
                math_ops.cast(array_ops._where_indices(
                    math_ops.equal(shard, constant(p, dtype=shard.dtype))), dtypes.int32), [-1])
            positions.append(pos)
            parts.append(array_ops.gather(table, array_ops.gather(row, pos)))
        out = array_ops.dynamic_stitch(positions, parts)
        if max_norm is not None:
            out = _clip_rows(out, max_norm)
        tail = params[0].shape[1:]
        idims = ids.shape.as_tuple()
        if idims is not None and None not in idims and tail.is_fully_defined():
            return array_ops.reshape(out, list(idims) + tail.as_list())
        return array_ops.reshape(out, array_ops.concat(
            [array_ops.shape(ids), array_ops.shape(params[0])[1:]], 0))


__all__ = [
    "relu", "relu6", "elu", "selu", "swish", "softplus", "softsign", "leaky_relu", "sigmoid", "tanh", "softmax",
    "log_softmax", "bias_add", "xw_plus_b", "l2_loss", "l2_normalize",
    "sigmoid_cross_entropy_with_logits", "weighted_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits_v2",
    "sparse_softmax_cross_entropy_with_logits", "top_k", "in_top_k", "dropout",
    "embedding_lookup",
]

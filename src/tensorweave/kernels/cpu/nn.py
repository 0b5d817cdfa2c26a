"""NumPy kernels for ops/nn_ops.py.

Results keep the input dtype: scalars in expressions are Python numbers, which NumPy 2 does
not let widen a float32 array.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel, register_simple_kernel
from tensorweave.kernels.cpu import blas


def _sigmoid(x):
    # tanh form: no overflow for large |x| in either direction
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# --- activations and their gradient ops -----------------------------------------------------------
register_simple_kernel("Relu", lambda x: np.maximum(x, 0))
register_simple_kernel("Relu6", lambda x: np.clip(x, 0, 6))
register_simple_kernel("Elu", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))))
register_simple_kernel("Softplus", lambda x: np.logaddexp(0, x).astype(x.dtype, copy=False))
register_simple_kernel("Softsign", lambda x: x / (1 + np.abs(x)))



def _relu_grad(g, x, out=None):
    # g * (x > 0), as TensorFlow computes it; a multiply by the mask is ~5x faster than
    # np.where on a random sign pattern (no branch per element)
    return np.multiply(g, np.greater(x, 0), out=out)


# the planner may pass out=g when g dies here (plan._mark_inplace); g and x have equal shapes
_relu_grad.accepts_out = _relu_grad.no_broadcast = True
register_simple_kernel("ReluGrad", _relu_grad)
register_simple_kernel(  # TensorFlow's formula: g times the mask (a NaN or Inf g stays one)
    "Relu6Grad", lambda g, x: np.multiply(g, (x > 0) & (x < 6)).astype(g.dtype, copy=False))
register_simple_kernel("EluGrad", lambda g, y: np.where(y < 0, g * (y + 1), g))
register_simple_kernel("SoftplusGrad", lambda g, x: g * _sigmoid(x))
register_simple_kernel("SoftsignGrad", lambda g, x: g / np.square(1 + np.abs(x)))


@register_kernel("LeakyRelu")
def _leaky_relu(op, ctx):
    alpha = op.attrs["alpha"]
    return lambda x: np.where(x > 0, x, alpha * x).astype(x.dtype, copy=False)


@register_kernel("LeakyReluGrad")
def _leaky_relu_grad(op, ctx):
    alpha = op.attrs["alpha"]
    return lambda g, x: np.where(x > 0, g, alpha * g).astype(g.dtype, copy=False)


# --- softmax -------------------------------------------------------------------------------------------
def _shifted(x):
    return x - np.max(x, axis=-1, keepdims=True)


def _softmax(x):
    e = np.exp(_shifted(x))
    return e / np.sum(e, axis=-1, keepdims=True)


def _log_softmax(x):
    s = _shifted(x)
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))


register_simple_kernel("Softmax", _softmax)
register_simple_kernel("LogSoftmax", _log_softmax)


# --- bias_add ------------------------------------------------------------------------------------------
def _bias_shape(data_format, rank, c):
    """The shape that makes a [C] bias broadcast along the channel dimension."""
    if data_format == "NCHW" and rank > 2:
        return (c,) + (1,) * (rank - 2)
    return (c,)


@register_kernel("BiasAdd")
def _bias_add(op, ctx):
    fmt = op.attrs["data_format"]

    def run(x, b, out=None):
        if x.ndim < 2:
            raise errors.InvalidArgumentError(
                None, op, f"BiasAdd: value must be at least 2-D, got shape {list(x.shape)}")
        ch = 1 if fmt == "NCHW" else -1
        if b.shape != (x.shape[ch],):
            raise errors.InvalidArgumentError(
                None, op, f"BiasAdd: bias shape {list(b.shape)} must match dimension {ch} of "
                          f"value shape {list(x.shape)} ({op.describe()})")
        return np.add(x, b.reshape(_bias_shape(fmt, x.ndim, b.shape[0])), out=out)

    run.accepts_out = True
    return run


@register_kernel("BiasAddGrad")
def _bias_add_grad(op, ctx):
    fmt = op.attrs["data_format"]

    def run(g):
        ch = 1 if fmt == "NCHW" else g.ndim - 1
        if ch == g.ndim - 1 and g.ndim >= 2 and g.size:  # channels last: a (rows, C) column sum
            s = blas.column_sums(g.reshape(-1, g.shape[-1]))
            if s is not None:
                return s
        axes = tuple(i for i in range(g.ndim) if i != ch)
        return np.sum(g, axis=axes).astype(g.dtype, copy=False)

    return run


# --- losses -------------------------------------------------------------------------------------------
register_simple_kernel("L2Loss", lambda x: np.asarray(np.sum(np.square(x)) / 2, dtype=x.dtype))


@register_kernel("SoftmaxCrossEntropyWithLogits")
def _softmax_xent(op, ctx):
    def run(logits, labels):
        s = _shifted(logits)
        e = np.exp(s)
        z = np.sum(e, axis=-1, keepdims=True)
        # labels * -log_softmax, where log_softmax = s - log(z) never overflows
        loss = np.sum(labels * (np.log(z) - s), axis=-1)
        return loss.astype(logits.dtype, copy=False), e / z - labels

    run.fresh_output = True  # both results are new: the gradient's scaling may reuse them
    return run


@register_kernel("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_xent(op, ctx):
    def run(logits, labels):
        n, c = logits.shape
        if n and (labels.min() < 0 or labels.max() >= c):
            bad = (labels < 0) | (labels >= c)
            raise errors.InvalidArgumentError(
                None, op, f"Received a label value of {int(labels[bad][0])} which is outside "
                          f"the valid range of [0, {c}). Label values: {labels.tolist()} "
                          f"({op.describe()})")
        # one (n, c) buffer: shifted logits, then exp in place, then the softmax minus one-hot.
        # Row reductions over few classes run along the transposed view (NumPy vectorizes the
        # outer loop): [128, 10] max 13 -> 6 us; the sums came out bit-identical to the row-wise
        # reduction on 20,000 random rows of 3 to 63 classes
        few = c < 64
        top = np.maximum.reduce(logits.T if few else logits, axis=0 if few else 1)
        s = np.subtract(logits, top[:, None])
        rows = np.arange(n)
        picked = s[rows, labels]
        backprop = np.exp(s, out=s)
        z = np.add.reduce(backprop.T, axis=0) if few else np.add.reduce(backprop, axis=1)
        loss = np.log(z)
        loss -= picked
        backprop /= z[:, None]
        backprop[rows, labels] -= 1
        return loss.astype(logits.dtype, copy=False), backprop

    run.fresh_output = True  # both results are new: the gradient's scaling may reuse them
    return run


# --- top-k ------------------------------------------------------------------------------------------
def _descending_key(x):
    # an order-reversing map with no overflow: bitwise not for integers, negation for floats
    return ~x if x.dtype.kind in "iu" else -x


@register_kernel("TopKV2")
def _top_k(op, ctx):
    def run(x, k):
        k = int(k)
        if k < 0 or k > x.shape[-1]:
            raise errors.InvalidArgumentError(
                None, op, f"top_k: k={k} must be in [0, {x.shape[-1]}] for input shape "
                          f"{list(x.shape)} ({op.describe()})")
        # stable sort: equal values keep the lower index first, as TensorFlow's kernel does
        idx = np.argsort(_descending_key(x), axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(x, idx, axis=-1), idx.astype(np.int32)

    return run


@register_kernel("InTopKV2")
def _in_top_k(op, ctx):
    def run(predictions, targets, k):
        n, c = predictions.shape
        valid = (targets >= 0) & (targets < c)
        t = np.where(valid, targets, 0)
        target_pred = predictions[np.arange(n), t]
        above = np.sum(predictions > target_pred[:, None], axis=1)
        return valid & np.isfinite(target_pred) & (above < int(k))

    return run

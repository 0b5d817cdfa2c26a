"""GPU kernels for nn ops: activations and their gradient ops, softmax, bias_add, L2 loss and the
two cross entropies (each returns (loss, backprop), as on the CPU).

Sparse cross entropy does not check its labels on the device (that would wait for it every
step): an out-of-range label gives a NaN loss and NaN gradient row, as TensorFlow's GPU kernel
does, where the CPU kernel raises."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.kernels.gpu.common import simple
from tensorweave.kernels.gpu.elementwise import (
    FLOAT_DTYPES,
    KernelUnavailable,
    Program,
    compile_program,
    one_kernel,
)

# Sparse cross entropy in three generated kernels (plus a max and two row sums): exp(x - max);
# then the backprop (softmax, minus 1 at the label) and the logit at the label (zeros elsewhere,
# summed per row next); then the loss. An out-of-range label gives NaN, as before.
_BAD = "((lab < 0) | (lab >= ncls))"
_XENT_EXP = Program(("x", "m"), ("o0",), (("o0", "=", "exp(x - m)"),))
_XENT_GRAD = Program(
    ("e", "z", "x", "m", "lab", "col", "ncls"), ("o0", "o1"),
    (("o0", "=", f"where_({_BAD}, T(0) / T(0), e / z - where_(lab == col, T(1), T(0)))"),
     ("o1", "=", "where_(lab == col, x - m, T(0))")), types=("T", "T", "T", "T", "I", "I", "I"))
_XENT_LOSS = Program(("z", "picked", "lab", "ncls"), ("o0",),
                     (("o0", "=", f"where_({_BAD}, T(0) / T(0), log(z) - picked)"),),
                     types=("T", "T", "I", "I"))


def kernels(be):
    xp = be.xp

    def zero(like):
        return xp.zeros((), like.dtype)

    def sigmoid(x):
        return (xp.tanh(x * 0.5) + 1) * 0.5

    def shifted(x):
        return x - xp.max(x, axis=-1, keepdims=True)

    def softmax(x):
        e = xp.exp(shifted(x))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def log_softmax(x):
        s = shifted(x)
        return s - xp.log(xp.sum(xp.exp(s), axis=-1, keepdims=True))

    def leaky_relu(op, ctx):
        alpha = op.attrs["alpha"]
        return lambda x: xp.where(x > 0, x, x * alpha).astype(x.dtype, copy=False)

    def leaky_relu_grad(op, ctx):
        alpha = op.attrs["alpha"]
        return lambda g, x: xp.where(x > 0, g, g * alpha).astype(g.dtype, copy=False)

    def bias_add(op, ctx):
        fmt = op.attrs.get("data_format", "NHWC")

        def run(x, b):
            if x.ndim < 2:
                raise errors.InvalidArgumentError(
                    None, op, f"BiasAdd: value must be at least 2-D, got shape {list(x.shape)}")
            ch = 1 if fmt == "NCHW" else -1
            if b.shape != (x.shape[ch],):
                raise errors.InvalidArgumentError(
                    None, op, f"BiasAdd: bias shape {list(b.shape)} must match dimension {ch} "
                    f"of value shape {list(x.shape)} ({op.describe()})")
            if fmt == "NCHW" and x.ndim > 2:
                b = b.reshape((b.shape[0],) + (1,) * (x.ndim - 2))
            return x + b

        return run

    def bias_add_grad(op, ctx):
        fmt = op.attrs.get("data_format", "NHWC")

        def run(g):
            ch = 1 if fmt == "NCHW" else g.ndim - 1
            axes = tuple(i for i in range(g.ndim) if i != ch)
            return xp.sum(g, axis=axes).astype(g.dtype, copy=False)

        return run

    def softmax_xent(op, ctx):
        def run(logits, labels):
            s = shifted(logits)
            e = xp.exp(s)
            z = xp.sum(e, axis=-1, keepdims=True)
            loss = xp.sum(labels * (xp.log(z) - s), axis=-1)
            return loss.astype(logits.dtype, copy=False), e / z - labels

        return run

    xent_exp, xent_grad, xent_loss = (compile_program(be, p)
                                      for p in (_XENT_EXP, _XENT_GRAD, _XENT_LOSS))

    def sparse_xent(op, ctx):
        consts: dict = {}  # (classes, label dtype) -> (column ids, class count) on the device
        slow = sparse_xent_xp(op, ctx)

        def run(logits, labels):
            if logits.dtype not in FLOAT_DTYPES or logits.ndim != 2:
                return slow(logits, labels)
            n, c = logits.shape
            key = (c, labels.dtype)
            if key not in consts:
                consts[key] = (be.small(np.arange(c, dtype=labels.dtype).reshape(1, c)),
                               be.small(np.asarray(c, dtype=labels.dtype)))
            cols, ncls = consts[key]
            lab = labels.reshape(n, 1)
            try:
                m = xp.max(logits, axis=-1, keepdims=True)
                e = xent_exp(logits, m)[0]
                z = xp.sum(e, axis=-1, keepdims=True)
                backprop, at_label = xent_grad(e, z, logits, m, lab, cols, ncls)
                picked = xp.sum(at_label, axis=-1, keepdims=True)
                return xent_loss(z, picked, lab, ncls)[0].reshape(n), backprop
            except KernelUnavailable:
                return slow(logits, labels)

        return run

    def sparse_xent_xp(op, ctx):
        def run(logits, labels):
            n, c = logits.shape
            bad = (labels < 0) | (labels >= c)
            safe = xp.where(bad, xp.zeros((), labels.dtype), labels)
            s = shifted(logits)
            e = xp.exp(s)
            z = xp.sum(e, axis=-1)
            rows = xp.arange(n)
            loss = xp.log(z) - s[rows, safe]
            backprop = e / z[:, None]
            backprop[rows, safe] -= 1
            nan = xp.full((), float("nan"), logits.dtype)
            loss = xp.where(bad, nan, loss)
            backprop = xp.where(bad[:, None], nan, backprop)
            return loss.astype(logits.dtype, copy=False), backprop

        return run

    table = {
        "Relu": simple(lambda x: xp.maximum(x, zero(x))),
        "Relu6": simple(lambda x: xp.clip(x, 0, 6)),
        "Elu": simple(lambda x: xp.where(x > 0, x, xp.expm1(xp.minimum(x, zero(x))))),
        "Softplus": simple(lambda x: xp.logaddexp(zero(x), x).astype(x.dtype, copy=False)),
        "Softsign": simple(lambda x: x / (1 + xp.abs(x))),
        "ReluGrad": simple(lambda g, x: xp.where(x > 0, g, zero(g))),
        "Relu6Grad": simple(lambda g, x: xp.where((x > 0) & (x < 6), g, zero(g))),
        "EluGrad": simple(lambda g, y: xp.where(y < 0, g * (y + 1), g)),
        "SoftplusGrad": simple(lambda g, x: g * sigmoid(x)),
        "SoftsignGrad": simple(lambda g, x: g / xp.square(1 + xp.abs(x))),
        "LeakyRelu": leaky_relu, "LeakyReluGrad": leaky_relu_grad,
        "Softmax": simple(softmax), "LogSoftmax": simple(log_softmax),
        "BiasAdd": bias_add, "BiasAddGrad": bias_add_grad,
        "L2Loss": simple(lambda x: (xp.sum(xp.square(x)) / 2).astype(x.dtype, copy=False)),
        "SoftmaxCrossEntropyWithLogits": softmax_xent,
        "SparseSoftmaxCrossEntropyWithLogits": sparse_xent,
    }
    # activations and their gradients: one generated kernel each (float32/float64)
    for op_type in ("Relu", "Relu6", "Elu", "Softsign", "ReluGrad", "Relu6Grad", "EluGrad",
                    "SoftsignGrad", "LeakyRelu", "LeakyReluGrad"):
        table[op_type] = one_kernel(be, table[op_type])
    return table

"""NumPy kernels of the training update ops (``ops/training_ops.py``).

This is the hot path of every training step, so each kernel binds the storage keys of its
variable and slots once, at plan time, and updates the arrays in place with ``out=``. The one
temporary a formula needs comes from a per-thread scratch pool keyed by (shape, dtype), so a
step allocates nothing new for dense gradients. Sparse kernels sum the rows of duplicate
indices first (TF1's optimizers do so before applying), then update only those rows.
"""

from __future__ import annotations

import threading

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel
from tensorweave.kernels.cpu import blas
from tensorweave.kernels.cpu.state import uninitialized, variable_name


class _ScratchPool(threading.local):
    """Temporaries reused across steps; per thread, so concurrent runs never share one."""

    def __init__(self):
        self.buffers = {}


_pool = _ScratchPool()


def _scratch(like, which=0):
    bufs = _pool.buffers
    key = (like.shape, like.dtype, which)
    b = bufs.get(key)
    if b is None:
        if len(bufs) >= 64:  # bounded: a long-lived thread may see many shapes
            bufs.clear()
        b = bufs[key] = np.empty_like(like)
    return b


def _kernel(op_type, n_refs, sparse=False, grad_at=None):
    """Registers ``body(op, refs, *inputs)`` as ``op_type``'s kernel: the factory binds the
    storage keys of the ``n_refs`` ref inputs once; per step the kernel reads those arrays,
    checks the gradient against the variable, and honours ``use_locking``. ``grad_at``: the
    gradient's position among the value inputs (default: last, or before the indices)."""

    def deco(body):
        def factory(op, ctx):
            store = ctx.variables
            keys = tuple(variable_name(op, i) for i in range(n_refs))
            g_at = grad_at
            whole = getattr(body, "whole", None)  # a one-call path for large variables
            if g_at is None:
                g_at = len(op.inputs) - n_refs - (2 if sparse else 1)

            def run(*inputs):
                try:
                    refs = [store[k] for k in keys]
                except KeyError as e:
                    raise uninitialized(op, e.args[0]) from None
                grad = inputs[g_at]
                if sparse:
                    idx, grad = _unique_rows(op, refs[0], inputs[g_at + 1], grad)
                    inputs = inputs[:g_at] + (grad, idx) + inputs[g_at + 2:]
                elif grad.shape != refs[0].shape:
                    raise errors.InvalidArgumentError(
                        None, op, f"var and grad do not have the same shape: "
                        f"{list(refs[0].shape)} vs {list(grad.shape)} (variable {keys[0]})")
                size = refs[0].size
                if whole is not None and size >= _WHOLE_MIN_ELEMENTS and \
                        whole(op, refs, *inputs):
                    pass
                elif not sparse and size >= _BLOCKED_MIN_ELEMENTS:
                    _blocked(body, op, refs, inputs, g_at)
                else:
                    body(op, refs, *inputs)
                return refs[0]

            if op.attrs.get("use_locking"):
                lock, unlocked = ctx.lock, run

                def run(*inputs):
                    with lock:
                        return unlocked(*inputs)

            return run

        register_kernel(op_type)(factory)
        return body

    return deco


# A dense update is a chain of ~5-12 elementwise passes over the variable, its slots, the
# gradient and a temporary. Over a large variable every pass streams all of them through
# memory; run block by block, the passes after the first find the block in cache (measured on
# 3.2M-element Adam: 15.8 ms whole, 9.7 ms in blocks of 32K elements, ~800 KB for 6 arrays).
_BLOCK_ELEMENTS = 32768
_BLOCKED_MIN_ELEMENTS = 4 * _BLOCK_ELEMENTS
_WHOLE_MIN_ELEMENTS = 4096  # below this a body's ``whole`` path costs more than it saves


def _blocked(body, op, refs, inputs, g_at):
    """``body`` over consecutive blocks of the flattened variable, slots and gradient (views:
    the updates land in place). Anything else (a broadcast or non-contiguous operand) runs
    whole."""
    grad = inputs[g_at]
    if not (grad.flags.c_contiguous and all(r.flags.c_contiguous for r in refs)) or any(
            np.ndim(x) != 0 and np.size(x) != 1 for k, x in enumerate(inputs) if k != g_at):
        body(op, refs, *inputs)
        return
    flat = [r.reshape(-1) for r in refs]
    g = grad.reshape(-1)
    args = list(inputs)
    for lo in range(0, g.size, _BLOCK_ELEMENTS):
        hi = lo + _BLOCK_ELEMENTS
        args[g_at] = g[lo:hi]
        body(op, [r[lo:hi] for r in flat], *args)


def _unique_rows(op, var, indices, rows):
    """Validates the indices and sums the rows of duplicates (sorted, deterministic)."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or rows.shape[:1] != idx.shape or rows.shape[1:] != var.shape[1:]:
        raise errors.InvalidArgumentError(
            None, op, f"grad of shape {list(rows.shape)} and indices of shape "
            f"{list(idx.shape)} do not select rows of the variable of shape {list(var.shape)}")
    if idx.size == 0:
        return idx, rows
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= var.shape[0]:
        bad = lo if lo < 0 else hi
        raise errors.InvalidArgumentError(
            None, op, f"Index {int(bad)} in indices is out of range [0, {var.shape[0]})")
    if idx.size == 1:
        return idx, rows
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    if starts.size == idx.size:
        return idx, rows
    return s[starts], np.add.reduceat(rows[order], starts, axis=0)


# --- dense ----------------------------------------------------------------------------------
@_kernel("ApplyGradientDescent", 1)
def _gradient_descent(op, refs, alpha, delta):
    var = refs[0]
    t = np.multiply(delta, alpha, out=_scratch(var))
    np.subtract(var, t, out=var)


def matmul_gradient_descent(op, ctx, transpose_a, transpose_b):
    """``ApplyGradientDescent(var, alpha, a @ b)`` as one GEMM into the variable, ``var =
    -alpha * (a @ b) + var`` (``blas.gemm_update``): no gradient buffer, no second pass over
    the weight. The plan compiler substitutes it for the MatMul + update pair (plan.py,
    ``_fuse_matmul_sgd``); anything BLAS cannot take runs the ordinary kernel on ``a @ b``."""
    from tensorweave.framework.registry import get_kernel_factory
    from tensorweave.kernels.cpu import blas

    plain = get_kernel_factory("ApplyGradientDescent", "CPU")(op, ctx)
    store, key = ctx.variables, variable_name(op, 0)

    def run(alpha, a, b):
        a = a.T if transpose_a else a
        b = b.T if transpose_b else b
        var = store.get(key)
        if var is not None and np.size(alpha) == 1 and \
                blas.gemm_update(var, a, b, -float(np.reshape(alpha, ()))):
            return var
        return plain(alpha, np.matmul(a, b))

    return run


@_kernel("ApplyMomentum", 2, grad_at=1)
def _momentum(op, refs, lr, grad, momentum):
    var, accum = refs
    np.multiply(accum, momentum, out=accum)
    np.add(accum, grad, out=accum)
    t = _scratch(var)
    if op.attrs.get("use_nesterov"):  # var -= lr * grad + lr * momentum * accum
        np.multiply(accum, momentum, out=t)
        np.add(t, grad, out=t)
        np.multiply(t, lr, out=t)
    else:
        np.multiply(accum, lr, out=t)
    np.subtract(var, t, out=var)


def _momentum_whole(op, refs, lr, grad, momentum):
    """``accum = grad + momentum * accum``, ``var += -lr * accum``: one ``saxpby`` each per
    block (TensorFlow's formulas), 2 passes instead of 4, for large float32 variables."""
    if op.attrs.get("use_nesterov") or np.size(lr) != 1 or np.size(momentum) != 1:
        return False
    var, accum = refs
    plan = _blas_blocks([var, accum, grad], var.size)
    if plan is None:
        return False
    axpby, (p_var, p_acc, p_g), blk = plan
    mu, minus_lr = float(np.reshape(momentum, ())), -float(np.reshape(lr, ()))
    if mu == 0.0 or minus_lr == 0.0:  # BLAS would skip the term, and a NaN or Inf in it
        return False
    n = var.size
    for lo in range(0, n, blk):
        k, off = min(blk, n - lo), 4 * lo
        axpby(k, 1.0, p_g + off, 1, mu, p_acc + off, 1)
        axpby(k, minus_lr, p_acc + off, 1, 1.0, p_var + off, 1)
    return True


_momentum.whole = _momentum_whole


@_kernel("ApplyAdagrad", 2)
def _adagrad(op, refs, lr, grad):
    var, accum = refs
    t = _scratch(var)
    if op.attrs.get("update_slots", True):
        np.multiply(grad, grad, out=t)
        np.add(accum, t, out=accum)
    np.sqrt(accum, out=t)
    np.divide(grad, t, out=t)
    np.multiply(t, lr, out=t)
    np.subtract(var, t, out=var)


def _decay_towards(slot, target, rate, t):
    """``slot = rate * slot + (1 - rate) * target``, as ``slot += (target - slot) * (1 - rate)``."""
    np.subtract(target, slot, out=t)
    np.multiply(t, 1 - rate, out=t)
    np.add(slot, t, out=slot)


def _rms_step(var, ms, mom, lr, momentum, epsilon, grad, t, mg=None):
    """mom = momentum * mom + lr * grad / sqrt(ms [- mg^2] + epsilon); var -= mom."""
    if mg is None:
        np.add(ms, epsilon, out=t)
    else:
        np.multiply(mg, mg, out=t)
        np.subtract(ms, t, out=t)
        np.add(t, epsilon, out=t)
    np.sqrt(t, out=t)
    np.divide(grad, t, out=t)
    np.multiply(t, lr, out=t)
    np.multiply(mom, momentum, out=mom)
    np.add(mom, t, out=mom)
    np.subtract(var, mom, out=var)


@_kernel("ApplyRMSProp", 3)
def _rms_prop(op, refs, lr, rho, momentum, epsilon, grad):
    var, ms, mom = refs
    t = _scratch(var)
    np.multiply(grad, grad, out=_scratch(var, 1))
    _decay_towards(ms, _scratch(var, 1), rho, t)
    _rms_step(var, ms, mom, lr, momentum, epsilon, grad, t)


@_kernel("ApplyCenteredRMSProp", 4)
def _centered_rms_prop(op, refs, lr, rho, momentum, epsilon, grad):
    var, mg, ms, mom = refs
    t, sq = _scratch(var), _scratch(var, 1)
    _decay_towards(mg, grad, rho, t)
    np.multiply(grad, grad, out=sq)
    _decay_towards(ms, sq, rho, t)
    _rms_step(var, ms, mom, lr, momentum, epsilon, grad, t, mg=mg)


def _adam_rate(lr, beta1_power, beta2_power):
    return lr * np.sqrt(1 - beta2_power) / (1 - beta1_power)


def _adam_var_update(var, m, v, alpha, epsilon, t):
    """var -= alpha * m / (sqrt(v) + epsilon): epsilon "hat", outside the square root."""
    np.sqrt(v, out=t)
    np.add(t, epsilon, out=t)
    np.divide(m, t, out=t)
    np.multiply(t, alpha, out=t)
    np.subtract(var, t, out=var)


def _blas_blocks(arrays, n):
    """(BLAS ``saxpby``, addresses of ``arrays``, block size) when every array is a
    C-ordered float32 array of ``n`` elements, none overlapping another; else None."""
    fn = blas.axpby()
    if fn is None or any(a.dtype != np.float32 or a.size != n or not a.flags.c_contiguous
                          for a in arrays):
        return None
    for i, a in enumerate(arrays):
        if any(np.may_share_memory(a, b) for b in arrays[i + 1:]):
            return None
    return fn, [blas.address(a) for a in arrays], min(n, _BLOCK_ELEMENTS)


def _adam_blas(var, m, v, alpha, epsilon, grad=None, beta1=None, beta2=None) -> bool:
    """Adam on float32 variables with the adds that end each moving average and the step done
    by BLAS (``y += a*x`` in one pass), block by block so each block stays in cache
    across its passes: ``m += (1-b1) * (g - m)``, ``v += (1-b2) * (g^2 - v)``, ``var +=
    -alpha * m / (sqrt(v) + eps)``: TensorFlow's formulas (an Inf meets an Inf as NaN, as
    there), 9 passes instead of NumPy's 12 (one thread, 1.6M parameters: 4.4 -> 3.5 ms;
    512K: 1.4 -> 1.2 ms). ``saxpby`` with ``b = 1`` stands in for ``saxpy``, which OpenBLAS
    splits over its thread pool from 10K elements on (slower than NumPy with two threads).
    Rounding differs from NumPy's at float32 rounding level (BLAS fuses the multiply-add).
    With ``grad`` None only the variable moves (the sparse kernel has updated the moments). False when BLAS or the layouts do not allow it,
    or a coefficient is 0 (BLAS would skip the term, and a NaN or Inf in it): the caller
    runs NumPy."""
    arrays = [var, m, v] + ([] if grad is None else [grad])
    if any(np.size(x) != 1 for x in (alpha, epsilon, beta1, beta2) if x is not None):
        return False
    plan = _blas_blocks(arrays, var.size)
    if plan is None:
        return False
    axpby, addrs, blk = plan
    coefs = [minus_alpha := -float(np.reshape(alpha, ()))]
    if grad is not None:
        c1, c2 = float(np.reshape(1 - beta1, ())), float(np.reshape(1 - beta2, ()))  # in float32
        coefs += [c1, c2]
    if 0.0 in coefs:
        return False
    p_var, p_m, p_v = addrs[:3]
    fm, fv = m.reshape(-1), v.reshape(-1)
    t = _scratch(fm[:blk])
    p_t = blas.address(t)
    if grad is not None:
        fg = grad.reshape(-1)
    n = var.size
    for lo in range(0, n, blk):
        k = min(blk, n - lo)
        off = 4 * lo
        tk, mk, vk = t[:k], fm[lo:lo + k], fv[lo:lo + k]
        if grad is not None:
            g = fg[lo:lo + k]
            np.subtract(g, mk, out=tk)
            axpby(k, c1, p_t, 1, 1.0, p_m + off, 1)
            np.multiply(g, g, out=tk)
            np.subtract(tk, vk, out=tk)
            axpby(k, c2, p_t, 1, 1.0, p_v + off, 1)
        np.sqrt(vk, out=tk)
        np.add(tk, epsilon, out=tk)
        np.divide(mk, tk, out=tk)
        axpby(k, minus_alpha, p_t, 1, 1.0, p_var + off, 1)
    return True


@_kernel("ApplyAdam", 3)
def _adam(op, refs, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    var, m, v = refs
    alpha = _adam_rate(lr, beta1_power, beta2_power)
    t, sq = _scratch(var), _scratch(var, 1)
    _decay_towards(m, grad, beta1, t)
    np.multiply(grad, grad, out=sq)
    _decay_towards(v, sq, beta2, t)
    if op.attrs.get("use_nesterov"):  # the numerator is beta1 * m + (1 - beta1) * grad
        np.multiply(m, beta1, out=sq)
        np.multiply(grad, 1 - beta1, out=t)
        np.add(sq, t, out=sq)
        np.sqrt(v, out=t)
        np.add(t, epsilon, out=t)
        np.divide(sq, t, out=t)
        np.multiply(t, alpha, out=t)
        np.subtract(var, t, out=var)
    else:
        _adam_var_update(var, m, v, alpha, epsilon, t)


def _adam_whole(op, refs, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
    if op.attrs.get("use_nesterov"):
        return False
    var, m, v = refs
    return _adam_blas(var, m, v, _adam_rate(lr, beta1_power, beta2_power), epsilon, grad,
                      beta1, beta2)


_adam.whole = _adam_whole


def _adadelta_step(var, accum, accum_update, lr, rho, epsilon, grad):
    """In place on (views of) the arrays; returns nothing."""
    accum *= rho
    accum += (1 - rho) * np.square(grad)
    update = np.sqrt(accum_update + epsilon)
    update /= np.sqrt(accum + epsilon)
    update *= grad
    accum_update *= rho
    accum_update += (1 - rho) * np.square(update)
    update *= lr
    var -= update


@_kernel("ApplyAdadelta", 3)
def _adadelta(op, refs, lr, rho, epsilon, grad):
    _adadelta_step(*refs, lr, rho, epsilon, grad)


def _proximal(prox, rate, l1, l2):
    """``sign(prox) * max(|prox| - rate * l1, 0) / (1 + rate * l2)`` (soft threshold, then
    shrink); ``rate`` may be per element."""
    shrunk = np.maximum(np.abs(prox) - rate * l1, 0)
    return np.sign(prox) * shrunk / (1 + rate * l2)


@_kernel("ApplyProximalGradientDescent", 1)
def _proximal_gd(op, refs, alpha, l1, l2, delta):
    var = refs[0]
    prox = var - alpha * delta
    var[...] = _proximal(prox, alpha, l1, l2) if l1 > 0 or l2 > 0 else prox


def _proximal_adagrad_step(var, accum, lr, l1, l2, grad):
    accum += np.square(grad)
    rate = lr / np.sqrt(accum)
    prox = var - rate * grad
    var[...] = _proximal(prox, rate, l1, l2) if l1 > 0 or l2 > 0 else prox


@_kernel("ApplyProximalAdagrad", 2)
def _proximal_adagrad(op, refs, lr, l1, l2, grad):
    _proximal_adagrad_step(*refs, lr, l1, l2, grad)


def _ftrl_step(var, accum, linear, grad, lr, l1, l2, l2_shrinkage, lr_power):
    """TensorFlow's ApplyFtrlV2: the accumulator takes the plain gradient, the linear term the
    gradient with the L2 shrinkage (``grad + 2 * l2_shrinkage * var``)."""
    shrink_grad = grad + 2 * l2_shrinkage * var if l2_shrinkage else grad
    accum_new = accum + np.square(grad)
    if lr_power == -0.5:
        sigma = (np.sqrt(accum_new) - np.sqrt(accum)) / lr
        quadratic = np.sqrt(accum_new) / lr + 2 * l2
    else:
        sigma = (np.power(accum_new, -lr_power) - np.power(accum, -lr_power)) / lr
        quadratic = np.power(accum_new, -lr_power) / lr + 2 * l2
    linear += shrink_grad - sigma * var
    clipped = np.clip(linear, -l1, l1)
    var[...] = np.where(np.abs(linear) > l1, (clipped - linear) / quadratic, 0)
    accum[...] = accum_new


@_kernel("ApplyFtrlV2", 3, grad_at=0)
def _ftrl(op, refs, grad, lr, l1, l2, l2_shrinkage, lr_power):
    _ftrl_step(*refs, grad, lr, l1, l2, l2_shrinkage, lr_power)


# --- sparse: the same formulas on the gathered rows, written back -----------------------------
@_kernel("SparseApplyMomentum", 2, sparse=True, grad_at=1)
def _sparse_momentum(op, refs, lr, grad, idx, momentum):
    var, accum = refs
    a = accum[idx]
    a *= momentum
    a += grad
    accum[idx] = a
    if op.attrs.get("use_nesterov"):
        step = a * momentum
        step += grad
        step *= lr
    else:
        step = a * lr
    var[idx] -= step


@_kernel("SparseApplyAdagrad", 2, sparse=True)
def _sparse_adagrad(op, refs, lr, grad, idx):
    var, accum = refs
    a = accum[idx]
    if op.attrs.get("update_slots", True):
        a += grad * grad
        accum[idx] = a
    var[idx] -= lr * grad / np.sqrt(a)


def _sparse_rms(op, refs, lr, rho, momentum, epsilon, grad, idx, centered):
    var, ms, mom = refs[0], refs[-2], refs[-1]
    ms_r = ms[idx]
    ms_r += (grad * grad - ms_r) * (1 - rho)
    ms[idx] = ms_r
    denom = ms_r + epsilon
    if centered:
        mg = refs[1]
        mg_r = mg[idx]
        mg_r += (grad - mg_r) * (1 - rho)
        mg[idx] = mg_r
        denom -= mg_r * mg_r
    mom_r = mom[idx] * momentum + lr * grad / np.sqrt(denom)
    mom[idx] = mom_r
    var[idx] -= mom_r


@_kernel("SparseApplyRMSProp", 3, sparse=True)
def _sparse_rms_prop(op, refs, lr, rho, momentum, epsilon, grad, idx):
    _sparse_rms(op, refs, lr, rho, momentum, epsilon, grad, idx, centered=False)


@_kernel("SparseApplyCenteredRMSProp", 4, sparse=True)
def _sparse_centered_rms_prop(op, refs, lr, rho, momentum, epsilon, grad, idx):
    _sparse_rms(op, refs, lr, rho, momentum, epsilon, grad, idx, centered=True)


@_kernel("SparseApplyAdam", 3, sparse=True)
def _sparse_adam(op, refs, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad, idx):
    # TF1 AdamOptimizer._apply_sparse_shared: decay m and v everywhere, scatter-add the rows'
    # gradient terms, then move the whole variable (rows without gradient keep their momentum)
    var, m, v = refs
    np.multiply(m, beta1, out=m)
    m[idx] += grad * (1 - beta1)
    np.multiply(v, beta2, out=v)
    v[idx] += grad * grad * (1 - beta2)
    alpha = _adam_rate(lr, beta1_power, beta2_power)
    if var.size < _WHOLE_MIN_ELEMENTS or not _adam_blas(var, m, v, alpha, epsilon):
        _adam_var_update(var, m, v, alpha, epsilon, _scratch(var))


@_kernel("SparseApplyAdadelta", 3, sparse=True)
def _sparse_adadelta(op, refs, lr, rho, epsilon, grad, idx):
    var, accum, accum_update = refs
    rows = [var[idx], accum[idx], accum_update[idx]]
    _adadelta_step(*rows, lr, rho, epsilon, grad)
    for r, v in zip(refs, rows):
        r[idx] = v


@_kernel("SparseApplyProximalAdagrad", 2, sparse=True)
def _sparse_proximal_adagrad(op, refs, lr, l1, l2, grad, idx):
    rows = [r[idx] for r in refs]
    _proximal_adagrad_step(*rows, lr, l1, l2, grad)
    for r, v in zip(refs, rows):
        r[idx] = v


@_kernel("SparseApplyFtrlV2", 3, sparse=True, grad_at=0)
def _sparse_ftrl(op, refs, grad, idx, lr, l1, l2, l2_shrinkage, lr_power):
    rows = [r[idx] for r in refs]
    _ftrl_step(*rows, grad, lr, l1, l2, l2_shrinkage, lr_power)
    for r, v in zip(refs, rows):
        r[idx] = v


@_kernel("SparseApplyProximalGradientDescent", 1, sparse=True)
def _sparse_proximal_gd(op, refs, alpha, l1, l2, grad, idx):
    var = refs[0]
    prox = var[idx] - alpha * grad
    var[idx] = _proximal(prox, alpha, l1, l2) if l1 > 0 or l2 > 0 else prox

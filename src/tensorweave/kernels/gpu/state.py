"""GPU kernels for variables and their updates: variable storage (``ctx.variables``) holds
device arrays for variables placed on the GPU, and assign, scatter and training-op kernels
update them in place, as the CPU kernels (``kernels/cpu/state.py``, ``training.py``) do.

A variable first written by a CPU kernel and then read by a GPU kernel moves to the device for
good. Sparse updates sum the rows of duplicate indices first (as the CPU kernels and TF1's
optimizers do) but do not range-check indices, which would wait for the device each step."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.kernels.cpu.state import uninitialized, variable_name
from tensorweave.kernels.gpu.elementwise import (
    FLOAT_DTYPES,
    KernelUnavailable,
    Program,
    compile_program,
)


def kernels(be):
    xp = be.xp

    def read(store, op, name):
        try:
            v = store[name]
        except KeyError:
            raise uninitialized(op, name) from None
        if type(v) is np.ndarray:  # written by a CPU kernel: move it to the device once
            v = store[name] = be.to_device(np.array(v))
        return v

    def variable(op, ctx):
        store, name = ctx.variables, op.name
        return lambda: read(store, op, name)

    def assign(op, ctx):
        store, name = ctx.variables, variable_name(op)
        npd = op.inputs[0].dtype.as_numpy_dtype
        validate = op.attrs.get("validate_shape", True)
        declared = op.inputs[0].shape

        def run(value):
            cur = store.get(name)
            if cur is not None and type(cur) is not np.ndarray and cur.shape == value.shape:
                xp.copyto(cur, value)
                return cur
            if validate and not declared.is_compatible_with(tuple(value.shape)):
                raise errors.InvalidArgumentError(
                    None, op, f"Assign requires shapes of both tensors to match: variable "
                    f"{name} has shape {declared}, value has shape {tuple(value.shape)}")
            new = value.astype(npd, copy=True)
            store[name] = new
            return new

        return run

    def assign_update(name_of_ufunc):
        ufunc = getattr(xp, name_of_ufunc)

        def factory(op, ctx):
            store, name = ctx.variables, variable_name(op)

            def run(value):
                cur = read(store, op, name)
                ufunc(cur, value, out=cur)
                return cur

            return run

        return factory

    def scatter(kind):
        def factory(op, ctx):
            store, name = ctx.variables, variable_name(op)

            def run(indices, updates):
                cur = read(store, op, name)
                if kind == "update":
                    cur[indices] = updates
                elif kind == "add":
                    xp.add.at(cur, indices, updates)
                else:  # CuPy's subtract.at is not reliable: add the negated rows
                    xp.add.at(cur, indices, -updates)
                return cur

            return run

        return factory

    def is_initialized(op, ctx):
        store, name = ctx.variables, variable_name(op)
        return lambda: be.small(np.bool_(name in store))

    table = {
        "VariableV2": variable, "Assign": assign, "AssignAdd": assign_update("add"),
        "AssignSub": assign_update("subtract"), "ScatterUpdate": scatter("update"),
        "ScatterAdd": scatter("add"), "ScatterSub": scatter("sub"),
        "IsVariableInitialized": is_initialized, "NoOp": lambda op, ctx: (lambda: None),
    }
    table.update(_training_kernels(be, read))
    return table


def _training_kernels(be, read):
    """The fused optimizer updates of ``ops/training_ops.py`` (TensorFlow's formulas)."""
    xp = be.xp

    def kernel(body, sparse=False, grad_at=None):
        def factory(op, ctx):
            store = ctx.variables
            n_refs = len(op._op_def.ref_inputs)
            keys = tuple(variable_name(op, i) for i in range(n_refs))
            g_at = grad_at
            if g_at is None:
                g_at = len(op.inputs) - n_refs - (2 if sparse else 1)
            fused = None if sparse else _update_kernel(be, op)

            def run(*inputs):
                refs = [read(store, op, k) for k in keys]
                grad = inputs[g_at]
                if sparse:
                    idx, grad = unique_rows(op, refs[0], inputs[g_at + 1], grad)
                    inputs = inputs[:g_at] + (grad, idx) + inputs[g_at + 2:]
                elif grad.shape != refs[0].shape:
                    raise errors.InvalidArgumentError(
                        None, op, f"var and grad do not have the same shape: "
                        f"{list(refs[0].shape)} vs {list(grad.shape)} (variable {keys[0]})")
                if fused is not None and all(r.dtype == grad.dtype for r in refs):
                    try:
                        fused(*inputs, *refs)  # the whole update in one kernel
                    except KernelUnavailable:  # never launched: nothing was written yet
                        body(op, refs, *inputs)
                else:
                    body(op, refs, *inputs)
                return refs[0]

            if op.attrs.get("use_locking"):
                lock, unlocked = ctx.lock, run

                def run(*inputs):
                    with lock:
                        return unlocked(*inputs)

            return run

        return factory

    def unique_rows(op, var, idx, rows):
        if idx.ndim != 1 or rows.shape[:1] != idx.shape or rows.shape[1:] != var.shape[1:]:
            raise errors.InvalidArgumentError(
                None, op, f"grad of shape {list(rows.shape)} and indices of shape "
                f"{list(idx.shape)} do not select rows of the variable of shape "
                f"{list(var.shape)}")
        if idx.shape[0] <= 1:
            return idx, rows
        uniq, inverse = xp.unique(idx, return_inverse=True)
        if uniq.shape[0] == idx.shape[0]:
            return idx, rows
        summed = xp.zeros((uniq.shape[0],) + rows.shape[1:], dtype=rows.dtype)
        xp.add.at(summed, inverse.reshape(-1), rows)
        return uniq, summed

    def decay_towards(slot, target, rate):
        """slot = rate * slot + (1 - rate) * target, written as slot += (target - slot)(1 - rate)."""
        slot += (target - slot) * (1 - rate)

    def adam_rate(lr, beta1_power, beta2_power):
        return lr * xp.sqrt(1 - beta2_power) / (1 - beta1_power)

    def gradient_descent(op, refs, alpha, delta):
        var = refs[0]
        var -= delta * alpha

    def momentum(op, refs, lr, grad, mom):
        var, accum = refs
        accum *= mom
        accum += grad
        if op.attrs.get("use_nesterov"):
            var -= (accum * mom + grad) * lr
        else:
            var -= accum * lr

    def adagrad(op, refs, lr, grad):
        var, accum = refs
        if op.attrs.get("update_slots", True):
            accum += grad * grad
        var -= grad / xp.sqrt(accum) * lr

    def rms_step(var, ms, mom, lr, momentum_, epsilon, grad, mg=None):
        denom = ms + epsilon if mg is None else ms - mg * mg + epsilon
        mom *= momentum_
        mom += grad / xp.sqrt(denom) * lr
        var -= mom

    def rms_prop(op, refs, lr, rho, momentum_, epsilon, grad):
        var, ms, mom = refs
        decay_towards(ms, grad * grad, rho)
        rms_step(var, ms, mom, lr, momentum_, epsilon, grad)

    def centered_rms_prop(op, refs, lr, rho, momentum_, epsilon, grad):
        var, mg, ms, mom = refs
        decay_towards(mg, grad, rho)
        decay_towards(ms, grad * grad, rho)
        rms_step(var, ms, mom, lr, momentum_, epsilon, grad, mg=mg)

    def adam_var_update(var, m, v, alpha, epsilon):
        var -= m / (xp.sqrt(v) + epsilon) * alpha

    def adam(op, refs, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad):
        var, m, v = refs
        alpha = adam_rate(lr, beta1_power, beta2_power)
        decay_towards(m, grad, beta1)
        decay_towards(v, grad * grad, beta2)
        if op.attrs.get("use_nesterov"):
            var -= (m * beta1 + grad * (1 - beta1)) / (xp.sqrt(v) + epsilon) * alpha
        else:
            adam_var_update(var, m, v, alpha, epsilon)

    # --- sparse: the same formulas on the (deduplicated) rows, written back -------------------
    def sparse_momentum(op, refs, lr, grad, idx, mom):
        var, accum = refs
        a = accum[idx] * mom + grad
        accum[idx] = a
        step = (a * mom + grad) * lr if op.attrs.get("use_nesterov") else a * lr
        var[idx] = var[idx] - step

    def sparse_adagrad(op, refs, lr, grad, idx):
        var, accum = refs
        a = accum[idx]
        if op.attrs.get("update_slots", True):
            a = a + grad * grad
            accum[idx] = a
        var[idx] = var[idx] - lr * grad / xp.sqrt(a)

    def sparse_rms(op, refs, lr, rho, momentum_, epsilon, grad, idx, centered):
        var, ms, mom = refs[0], refs[-2], refs[-1]
        ms_r = ms[idx]
        ms_r = ms_r + (grad * grad - ms_r) * (1 - rho)
        ms[idx] = ms_r
        denom = ms_r + epsilon
        if centered:
            mg = refs[1]
            mg_r = mg[idx]
            mg_r = mg_r + (grad - mg_r) * (1 - rho)
            mg[idx] = mg_r
            denom = denom - mg_r * mg_r
        mom_r = mom[idx] * momentum_ + lr * grad / xp.sqrt(denom)
        mom[idx] = mom_r
        var[idx] = var[idx] - mom_r

    dense_adam = compile_program(be, _SPARSE_ADAM_DENSE)

    def sparse_adam(op, refs, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad, idx):
        # rows are unique here, so a dense gradient with zero rows elsewhere is the same update
        var, m, v = refs
        dense = xp.zeros(var.shape, dtype=var.dtype)
        dense[idx] = grad
        if var.dtype in FLOAT_DTYPES and all(r.dtype == var.dtype for r in refs):
            try:  # the formulas below in one kernel
                dense_adam(beta1_power, beta2_power, lr, beta1, beta2, epsilon, dense, *refs)
                return
            except KernelUnavailable:
                pass
        m *= beta1
        m += dense * (1 - beta1)
        v *= beta2
        v += dense * dense * (1 - beta2)
        adam_var_update(var, m, v, adam_rate(lr, beta1_power, beta2_power), epsilon)

    return {
        "ApplyGradientDescent": kernel(gradient_descent),
        "ApplyMomentum": kernel(momentum, grad_at=1),
        "ApplyAdagrad": kernel(adagrad),
        "ApplyRMSProp": kernel(rms_prop),
        "ApplyCenteredRMSProp": kernel(centered_rms_prop),
        "ApplyAdam": kernel(adam),
        "SparseApplyMomentum": kernel(sparse_momentum, sparse=True, grad_at=1),
        "SparseApplyAdagrad": kernel(sparse_adagrad, sparse=True),
        "SparseApplyRMSProp": kernel(
            lambda op, refs, *a: sparse_rms(op, refs, *a, centered=False), sparse=True),
        "SparseApplyCenteredRMSProp": kernel(
            lambda op, refs, *a: sparse_rms(op, refs, *a, centered=True), sparse=True),
        "SparseApplyAdam": kernel(sparse_adam, sparse=True),
    }


# Dense updates as one generated kernel each (``elementwise.py``): the formulas of
# ``_training_kernels`` statement for statement, so results match the xp version exactly.
# op type -> (input names in op order after the refs, ref names, fn(op) -> statements)
_UPDATES = {
    "ApplyGradientDescent": (("alpha", "delta"), ("var",),
                             lambda op: [("var", "-=", "delta * alpha")]),
    "ApplyMomentum": (("lr", "g", "momentum"), ("var", "accum"), lambda op: [
        ("accum", "*=", "momentum"), ("accum", "+=", "g"),
        ("var", "-=", "(accum * momentum + g) * lr" if op.attrs.get("use_nesterov")
         else "accum * lr")]),
    "ApplyAdagrad": (("lr", "g"), ("var", "accum"), lambda op: (
        [("accum", "+=", "g * g")] if op.attrs.get("update_slots", True) else []) + [
        ("var", "-=", "g / sqrt(accum) * lr")]),
    "ApplyRMSProp": (("lr", "rho", "momentum", "epsilon", "g"), ("var", "ms", "mom"),
                     lambda op: [
        ("ms", "+=", "(g * g - ms) * (T(1) - rho)"), ("mom", "*=", "momentum"),
        ("mom", "+=", "g / sqrt(ms + epsilon) * lr"), ("var", "-=", "mom")]),
    "ApplyCenteredRMSProp": (("lr", "rho", "momentum", "epsilon", "g"),
                             ("var", "mg", "ms", "mom"), lambda op: [
        ("mg", "+=", "(g - mg) * (T(1) - rho)"), ("ms", "+=", "(g * g - ms) * (T(1) - rho)"),
        ("denom", "let", "ms - mg * mg + epsilon"), ("mom", "*=", "momentum"),
        ("mom", "+=", "g / sqrt(denom) * lr"), ("var", "-=", "mom")]),
    "ApplyAdam": (("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon", "g"),
                  ("var", "m", "v"), lambda op: [
        ("alpha", "let", "lr * sqrt(T(1) - beta2_power) / (T(1) - beta1_power)"),
        ("m", "+=", "(g - m) * (T(1) - beta1)"), ("v", "+=", "(g * g - v) * (T(1) - beta2)"),
        ("var", "-=", "(m * beta1 + g * (T(1) - beta1)) / (sqrt(v) + epsilon) * alpha"
         if op.attrs.get("use_nesterov") else "m / (sqrt(v) + epsilon) * alpha")]),
}


# SparseApplyAdam's update on its dense (scattered) gradient: the xp formulas of sparse_adam
_SPARSE_ADAM_DENSE = Program(
    ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon", "g"), (), (
        ("m", "*=", "beta1"), ("m", "+=", "g * (T(1) - beta1)"),
        ("v", "*=", "beta2"), ("v", "+=", "g * g * (T(1) - beta2)"),
        ("alpha", "let", "lr * sqrt(T(1) - beta2_power) / (T(1) - beta1_power)"),
        ("var", "-=", "m / (sqrt(v) + epsilon) * alpha")), inout=("var", "m", "v"))


def _update_kernel(be, op):
    """One generated kernel for a dense update op in float32/float64, else None."""
    spec = _UPDATES.get(op.type)
    if spec is None or np.dtype(op.inputs[0].dtype.as_numpy_dtype) not in FLOAT_DTYPES:
        return None
    names, refs, statements = spec
    return compile_program(be, Program(names, (), tuple(statements(op)), inout=refs))

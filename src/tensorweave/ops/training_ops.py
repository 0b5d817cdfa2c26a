"""Training update ops: ``ApplyGradientDescent``, ``ApplyMomentum``, ``ApplyAdagrad``,
``ApplyRMSProp``, ``ApplyCenteredRMSProp``, ``ApplyAdam`` and their ``SparseApply*`` forms.

Each op takes the variable and its slots as ref inputs (the kernel updates their storage in
place, see ``kernels/cpu/training.py``) and returns the updated variable. Input order and
attributes follow TensorFlow's ``training_ops``. ``SparseApplyAdam`` has no TensorFlow
counterpart: TF1 builds Adam's sparse update from assign/scatter_add ops; here it is one kernel
with the same result. Sparse ops sum the rows of duplicate indices before applying them, as
TF1's ``Optimizer._apply_sparse_duplicate_indices`` does.

Example::

    w = tw.Variable([1.0, 2.0])
    step = apply_gradient_descent(w, 0.1, tw.constant([1.0, 1.0]))   # w <- w - 0.1 * grad
"""

from __future__ import annotations

from tensorweave.framework.ops import convert_to_tensor
from tensorweave.framework.registry import register_op
from tensorweave.ops.op_util import make
from tensorweave.ops.state_ops import _ref

# op type -> (TF's input names in order, how many leading inputs are refs: var and its slots)
_SIGNATURES = {
    "ApplyGradientDescent": (["var", "alpha", "delta"], 1),
    "ApplyMomentum": (["var", "accum", "lr", "grad", "momentum"], 2),
    "SparseApplyMomentum": (["var", "accum", "lr", "grad", "indices", "momentum"], 2),
    "ApplyAdagrad": (["var", "accum", "lr", "grad"], 2),
    "SparseApplyAdagrad": (["var", "accum", "lr", "grad", "indices"], 2),
    "ApplyRMSProp": (["var", "ms", "mom", "lr", "rho", "momentum", "epsilon", "grad"], 3),
    "SparseApplyRMSProp": (["var", "ms", "mom", "lr", "rho", "momentum", "epsilon", "grad",
                            "indices"], 3),
    "ApplyCenteredRMSProp": (["var", "mg", "ms", "mom", "lr", "rho", "momentum", "epsilon",
                              "grad"], 4),
    "SparseApplyCenteredRMSProp": (["var", "mg", "ms", "mom", "lr", "rho", "momentum",
                                    "epsilon", "grad", "indices"], 4),
    "ApplyAdam": (["var", "m", "v", "beta1_power", "beta2_power", "lr", "beta1", "beta2",
                   "epsilon", "grad"], 3),
    "SparseApplyAdam": (["var", "m", "v", "beta1_power", "beta2_power", "lr", "beta1", "beta2",
                         "epsilon", "grad", "indices"], 3),
    "ApplyAdadelta": (["var", "accum", "accum_update", "lr", "rho", "epsilon", "grad"], 3),
    "SparseApplyAdadelta": (["var", "accum", "accum_update", "lr", "rho", "epsilon", "grad",
                             "indices"], 3),
    "ApplyProximalGradientDescent": (["var", "alpha", "l1", "l2", "delta"], 1),
    "SparseApplyProximalGradientDescent": (["var", "alpha", "l1", "l2", "grad", "indices"], 1),
    "ApplyProximalAdagrad": (["var", "accum", "lr", "l1", "l2", "grad"], 2),
    "SparseApplyProximalAdagrad": (["var", "accum", "lr", "l1", "l2", "grad", "indices"], 2),
    "ApplyFtrlV2": (["var", "accum", "linear", "grad", "lr", "l1", "l2", "l2_shrinkage",
                     "lr_power"], 3),
    "SparseApplyFtrlV2": (["var", "accum", "linear", "grad", "indices", "lr", "l1", "l2",
                           "l2_shrinkage", "lr_power"], 3),
}


def input_names(op_type):
    """TensorFlow's input names of a training op, in order."""
    return _SIGNATURES[op_type][0]


def _infer(op):
    names, n_refs = _SIGNATURES[op.type]
    ins = dict(zip(names, op.inputs))
    var = ins["var"]
    where = f"{op.type} op {op.name!r}"
    for n, t in ins.items():
        if n == "indices":
            if not t.dtype.is_integer:
                raise TypeError(f"{where}: indices must be int32 or int64, got {t.dtype.name}")
            if t.shape.ndims is not None and t.shape.ndims != 1:
                raise ValueError(f"{where}: indices must be a vector, got shape {t.shape}")
            continue
        if t.dtype.base_dtype != var.dtype.base_dtype:
            raise TypeError(f"{where}: input {n!r} has dtype {t.dtype.name}, but the variable "
                            f"{var.op.name!r} has dtype {var.dtype.name}")
    for n in names[1:n_refs]:
        if not var.shape.is_compatible_with(ins[n].shape):
            raise ValueError(f"{where}: var and {n} do not have the same shape: {var.shape} "
                             f"vs {ins[n].shape}")
    for n in names[n_refs:]:
        if n in ("grad", "delta", "indices"):
            continue
        if ins[n].shape.ndims not in (None, 0):
            raise ValueError(f"{where}: {n} must be a scalar, got shape {ins[n].shape}")
    grad = ins.get("grad", ins.get("delta"))
    if "indices" in ins:
        idx = ins["indices"]
        if grad.shape.ndims is not None and var.shape.ndims is not None:
            if grad.shape.ndims != var.shape.ndims or \
                    not grad.shape[1:].is_compatible_with(var.shape[1:]):
                raise ValueError(f"{where}: grad rows of shape {grad.shape} do not match "
                                 f"variable {var.op.name!r} of shape {var.shape} beyond the "
                                 "first dimension")
            if not grad.shape[:1].is_compatible_with(idx.shape[:1]):
                raise ValueError(f"{where}: grad has {grad.shape[0]} rows but indices has "
                                 f"{idx.shape[0]} entries")
    elif not var.shape.is_compatible_with(grad.shape):
        raise ValueError(f"{where}: var and grad do not have the same shape: {var.shape} vs "
                         f"{grad.shape}")
    return [(var.dtype, var.shape)]


for _t, (_names, _n) in _SIGNATURES.items():
    register_op(_t, stateful=True, ref_inputs=tuple(range(_n)))(_infer)


def _apply(op_type, refs, values, attrs, name):
    """Builds ``op_type`` from variables (ref inputs) and values converted to their dtype."""
    refs = [_ref(r) for r in refs]
    dtype = refs[0].dtype
    names = input_names(op_type)[len(refs):]
    ins = [convert_to_tensor(v) if n == "indices" else convert_to_tensor(v, dtype=dtype)
           for n, v in zip(names, values)]
    return make(op_type, refs + ins, {"T": dtype, "use_locking": bool(attrs.pop("use_locking")),
                                      **attrs}, name=name or op_type)


def apply_gradient_descent(var, alpha, delta, use_locking=False, name=None):
    """``var -= alpha * delta``."""
    return _apply("ApplyGradientDescent", [var], [alpha, delta],
                  {"use_locking": use_locking}, name)


def apply_momentum(var, accum, lr, grad, momentum, use_locking=False, use_nesterov=False,
                   name=None):
    """``accum = accum * momentum + grad; var -= lr * accum`` (Nesterov:
    ``var -= lr * grad + lr * momentum * accum``)."""
    return _apply("ApplyMomentum", [var, accum], [lr, grad, momentum],
                  {"use_locking": use_locking, "use_nesterov": bool(use_nesterov)}, name)


def sparse_apply_momentum(var, accum, lr, grad, indices, momentum, use_locking=False,
                          use_nesterov=False, name=None):
    """:func:`apply_momentum` on the rows ``indices`` (duplicate rows are summed first)."""
    return _apply("SparseApplyMomentum", [var, accum], [lr, grad, indices, momentum],
                  {"use_locking": use_locking, "use_nesterov": bool(use_nesterov)}, name)


def apply_adagrad(var, accum, lr, grad, use_locking=False, update_slots=True, name=None):
    """``accum += grad * grad; var -= lr * grad / sqrt(accum)``."""
    return _apply("ApplyAdagrad", [var, accum], [lr, grad],
                  {"use_locking": use_locking, "update_slots": bool(update_slots)}, name)


def sparse_apply_adagrad(var, accum, lr, grad, indices, use_locking=False, update_slots=True,
                         name=None):
    """:func:`apply_adagrad` on the rows ``indices``."""
    return _apply("SparseApplyAdagrad", [var, accum], [lr, grad, indices],
                  {"use_locking": use_locking, "update_slots": bool(update_slots)}, name)


def apply_rms_prop(var, ms, mom, lr, rho, momentum, epsilon, grad, use_locking=False,
                   name=None):
    """``ms = rho * ms + (1 - rho) * grad^2; mom = momentum * mom + lr * grad /
    sqrt(ms + epsilon); var -= mom``."""
    return _apply("ApplyRMSProp", [var, ms, mom], [lr, rho, momentum, epsilon, grad],
                  {"use_locking": use_locking}, name)


def sparse_apply_rms_prop(var, ms, mom, lr, rho, momentum, epsilon, grad, indices,
                          use_locking=False, name=None):
    """:func:`apply_rms_prop` on the rows ``indices``."""
    return _apply("SparseApplyRMSProp", [var, ms, mom],
                  [lr, rho, momentum, epsilon, grad, indices], {"use_locking": use_locking},
                  name)


def apply_centered_rms_prop(var, mg, ms, mom, lr, rho, momentum, epsilon, grad,
                            use_locking=False, name=None):
    """RMSProp normalized by the variance: ``mg = rho * mg + (1 - rho) * grad`` and
    ``mom = momentum * mom + lr * grad / sqrt(ms - mg^2 + epsilon)``."""
    return _apply("ApplyCenteredRMSProp", [var, mg, ms, mom],
                  [lr, rho, momentum, epsilon, grad], {"use_locking": use_locking}, name)


def sparse_apply_centered_rms_prop(var, mg, ms, mom, lr, rho, momentum, epsilon, grad, indices,
                                   use_locking=False, name=None):
    """:func:`apply_centered_rms_prop` on the rows ``indices``."""
    return _apply("SparseApplyCenteredRMSProp", [var, mg, ms, mom],
                  [lr, rho, momentum, epsilon, grad, indices], {"use_locking": use_locking},
                  name)


def apply_adam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
               use_locking=False, use_nesterov=False, name=None):
    """``lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power)``; ``m`` and ``v`` decay towards
    ``grad`` and ``grad^2``; ``var -= lr_t * m / (sqrt(v) + epsilon)`` (epsilon "hat")."""
    return _apply("ApplyAdam", [var, m, v],
                  [beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad],
                  {"use_locking": use_locking, "use_nesterov": bool(use_nesterov)}, name)


def sparse_apply_adam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
                      indices, use_locking=False, name=None):
    """TF1 Adam's sparse update: ``m`` and ``v`` decay everywhere, the rows' gradient terms are
    added at ``indices``, and the whole variable moves by ``lr_t * m / (sqrt(v) + epsilon)``."""
    return _apply("SparseApplyAdam", [var, m, v],
                  [beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad, indices],
                  {"use_locking": use_locking}, name)


def apply_adadelta(var, accum, accum_update, lr, rho, epsilon, grad, use_locking=False,
                   name=None):
    """``accum = rho * accum + (1 - rho) * grad^2``; ``update = sqrt(accum_update + eps) /
    sqrt(accum + eps) * grad``; ``accum_update = rho * accum_update + (1 - rho) * update^2``;
    ``var -= lr * update`` (Zeiler 2012)."""
    return _apply("ApplyAdadelta", [var, accum, accum_update], [lr, rho, epsilon, grad],
                  {"use_locking": use_locking}, name)


def sparse_apply_adadelta(var, accum, accum_update, lr, rho, epsilon, grad, indices,
                          use_locking=False, name=None):
    """:func:`apply_adadelta` on the rows ``indices``."""
    return _apply("SparseApplyAdadelta", [var, accum, accum_update],
                  [lr, rho, epsilon, grad, indices], {"use_locking": use_locking}, name)


def apply_proximal_gradient_descent(var, alpha, l1, l2, delta, use_locking=False, name=None):
    """A gradient step, then the proximal map of ``l1 |w| + l2/2 w^2``: ``prox = var - alpha *
    delta``; ``var = sign(prox) * max(|prox| - alpha * l1, 0) / (1 + alpha * l2)``."""
    return _apply("ApplyProximalGradientDescent", [var], [alpha, l1, l2, delta],
                  {"use_locking": use_locking}, name)


def sparse_apply_proximal_gradient_descent(var, alpha, l1, l2, grad, indices,
                                           use_locking=False, name=None):
    """:func:`apply_proximal_gradient_descent` on the rows ``indices`` only."""
    return _apply("SparseApplyProximalGradientDescent", [var], [alpha, l1, l2, grad, indices],
                  {"use_locking": use_locking}, name)


def apply_proximal_adagrad(var, accum, lr, l1, l2, grad, use_locking=False, name=None):
    """Adagrad's step (per-element rate ``lr / sqrt(accum)``), then the same proximal map."""
    return _apply("ApplyProximalAdagrad", [var, accum], [lr, l1, l2, grad],
                  {"use_locking": use_locking}, name)


def sparse_apply_proximal_adagrad(var, accum, lr, l1, l2, grad, indices, use_locking=False,
                                  name=None):
    """:func:`apply_proximal_adagrad` on the rows ``indices``."""
    return _apply("SparseApplyProximalAdagrad", [var, accum], [lr, l1, l2, grad, indices],
                  {"use_locking": use_locking}, name)


def apply_ftrl_v2(var, accum, linear, grad, lr, l1, l2, l2_shrinkage, lr_power,
                  use_locking=False, name=None):
    """FTRL-Proximal (McMahan et al. 2013), TensorFlow's ``ApplyFtrlV2``."""
    return _apply("ApplyFtrlV2", [var, accum, linear], [grad, lr, l1, l2, l2_shrinkage,
                                                          lr_power],
                  {"use_locking": use_locking}, name)


def sparse_apply_ftrl_v2(var, accum, linear, grad, indices, lr, l1, l2, l2_shrinkage, lr_power,
                         use_locking=False, name=None):
    """:func:`apply_ftrl_v2` on the rows ``indices``."""
    return _apply("SparseApplyFtrlV2", [var, accum, linear],
                  [grad, indices, lr, l1, l2, l2_shrinkage, lr_power],
                  {"use_locking": use_locking}, name)


__all__ = ["apply_gradient_descent", "apply_momentum", "sparse_apply_momentum", "apply_adagrad",
           "sparse_apply_adagrad", "apply_rms_prop", "sparse_apply_rms_prop",
           "apply_centered_rms_prop", "sparse_apply_centered_rms_prop", "apply_adam",
           "sparse_apply_adam", "apply_adadelta", "sparse_apply_adadelta",
           "apply_proximal_gradient_descent", "sparse_apply_proximal_gradient_descent",
           "apply_proximal_adagrad",
           "sparse_apply_proximal_adagrad", "apply_ftrl_v2", "sparse_apply_ftrl_v2"]

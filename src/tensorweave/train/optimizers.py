"""The TF1 optimizers: gradient descent, momentum (and Nesterov), Adagrad, RMSProp (with
momentum, centered), Adam, Adadelta, the proximal ones (L1/L2) and FTRL. Each update is one fused op from ``ops/training_ops.py`` whose
kernel updates the variable and its slots in place.

Example::

    opt = tw.train.AdamOptimizer(learning_rate=1e-3)
    train_op = opt.minimize(loss)
    m, v = opt.get_slot(w, "m"), opt.get_slot(w, "v")      # <w>/Adam, <w>/Adam_1
"""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.ops import Tensor, convert_to_tensor
from tensorweave.ops import control_flow_ops, math_ops, state_ops, training_ops
from tensorweave.train.optimizer import Optimizer, _call_if_callable


class GradientDescentOptimizer(Optimizer):
    """``var -= learning_rate * grad``; sparse gradients are a ScatterSub of the rows."""

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate

    def _apply_dense(self, grad, var):
        return training_ops.apply_gradient_descent(
            var, self._hyper("learning_rate", self._learning_rate, var), grad,
            use_locking=self._use_locking).op

    def _apply_sparse_duplicate_indices(self, grad, var):
        # ScatterSub adds duplicate rows itself, as TF1 does here
        lr = self._hyper("learning_rate", self._learning_rate, var)
        return state_ops.scatter_sub(var, grad.indices, grad.values * lr,
                                     use_locking=self._use_locking).op


class MomentumOptimizer(Optimizer):
    """``accum = momentum * accum + grad; var -= learning_rate * accum``; with
    ``use_nesterov``, ``var -= learning_rate * (grad + momentum * accum)``. Slot: ``momentum``
    (``<var>/Momentum``)."""

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum",
                 use_nesterov=False):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._momentum = momentum
        self._use_nesterov = use_nesterov

    def _create_slots(self, var_list):
        for v in var_list:
            self._zeros_slot(v, "momentum", self._name)

    def _args(self, var):
        return (var, self.get_slot(var, "momentum"),
                self._hyper("learning_rate", self._learning_rate, var))

    def _apply_dense(self, grad, var):
        return training_ops.apply_momentum(
            *self._args(var), grad, self._hyper("momentum", self._momentum, var),
            use_locking=self._use_locking, use_nesterov=self._use_nesterov).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_momentum(
            *self._args(var), grad.values, grad.indices,
            self._hyper("momentum", self._momentum, var),
            use_locking=self._use_locking, use_nesterov=self._use_nesterov).op


class AdagradOptimizer(Optimizer):
    """``accum += grad^2; var -= learning_rate * grad / sqrt(accum)``. Slot: ``accumulator``
    (``<var>/Adagrad``), starting at ``initial_accumulator_value``."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False,
                 name="Adagrad"):
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: "
                             f"{initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._initial_accumulator_value = initial_accumulator_value

    def _create_slots(self, var_list):
        for v in var_list:
            self._filled_slot(v, self._initial_accumulator_value, "accumulator", self._name)

    def _args(self, var):
        return (var, self.get_slot(var, "accumulator"),
                self._hyper("learning_rate", self._learning_rate, var))

    def _apply_dense(self, grad, var):
        return training_ops.apply_adagrad(*self._args(var), grad,
                                          use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_adagrad(*self._args(var), grad.values, grad.indices,
                                                 use_locking=self._use_locking).op


class RMSPropOptimizer(Optimizer):
    """``ms = decay * ms + (1 - decay) * grad^2``; ``mom = momentum * mom + learning_rate *
    grad / sqrt(ms + epsilon)``; ``var -= mom``. ``centered`` also tracks the mean gradient
    ``mg`` and divides by ``sqrt(ms - mg^2 + epsilon)``. Slots: ``rms`` (starts at ones),
    ``mg`` (centered) and ``momentum``."""

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10,
                 use_locking=False, centered=False, name="RMSProp"):
        super().__init__(use_locking, name)
        self._learning_rate = learning_rate
        self._decay = decay
        self._momentum = momentum
        self._epsilon = epsilon
        self._centered = centered

    def _create_slots(self, var_list):
        for v in var_list:
            self._filled_slot(v, 1.0, "rms", self._name)
            if self._centered:
                self._zeros_slot(v, "mg", self._name)
            self._zeros_slot(v, "momentum", self._name)

    def _args(self, var, grad_values):
        slots = [self.get_slot(var, n) for n in (("mg", "rms", "momentum") if self._centered
                                                  else ("rms", "momentum"))]
        hyper = [self._hyper("learning_rate", self._learning_rate, var),
                 self._hyper("decay", self._decay, var),
                 self._hyper("momentum", self._momentum, var),
                 self._hyper("epsilon", self._epsilon, var)]
        return [var, *slots, *hyper, grad_values]

    def _apply_dense(self, grad, var):
        fn = training_ops.apply_centered_rms_prop if self._centered else \
            training_ops.apply_rms_prop
        return fn(*self._args(var, grad), use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        fn = training_ops.sparse_apply_centered_rms_prop if self._centered else \
            training_ops.sparse_apply_rms_prop
        return fn(*self._args(var, grad.values), grad.indices, use_locking=self._use_locking).op


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) as TF1 computes it: ``lr_t = learning_rate * sqrt(1 - beta2^t) /
    (1 - beta1^t)``, ``m`` and ``v`` are moving averages of ``grad`` and ``grad^2``, and
    ``var -= lr_t * m / (sqrt(v) + epsilon)`` (epsilon "hat"). ``beta1^t`` and ``beta2^t`` are
    the non-slot variables ``beta1_power``/``beta2_power``, multiplied by the betas after each
    update. Slots: ``m`` (``<var>/Adam``) and ``v`` (``<var>/Adam_1``). With sparse gradients
    ``m`` and ``v`` decay everywhere and every row moves, as in TF1."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 use_locking=False, name="Adam"):
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta1 = beta1
        self._beta2 = beta2
        self._epsilon = epsilon

    def _get_beta_accumulators(self, graph=None):
        return (self._get_non_slot_variable("beta1_power", graph),
                self._get_non_slot_variable("beta2_power", graph))

    def _create_slots(self, var_list):
        # TF1 makes the beta powers float32 whatever the variables; here they take the first
        # variable's dtype (identical for float32 models, exact for float64 ones)
        first = min(var_list, key=lambda v: v.name)
        for beta, name in ((self._beta1, "beta1_power"), (self._beta2, "beta2_power")):
            self._create_non_slot_variable(_scalar_init(beta, first.dtype.base_dtype), name,
                                           first)
        for v in var_list:
            self._zeros_slot(v, "m", self._name)
            self._zeros_slot(v, "v", self._name)

    def _args(self, var):
        b1p, b2p = self._get_beta_accumulators(var.graph)
        return [var, self.get_slot(var, "m"), self.get_slot(var, "v"),
                self._hyper("beta1_power", b1p, var), self._hyper("beta2_power", b2p, var),
                self._hyper("learning_rate", self._lr, var),
                self._hyper("beta1", self._beta1, var), self._hyper("beta2", self._beta2, var),
                self._hyper("epsilon", self._epsilon, var)]

    def _apply_dense(self, grad, var):
        return training_ops.apply_adam(*self._args(var), grad,
                                       use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_adam(*self._args(var), grad.values, grad.indices,
                                              use_locking=self._use_locking).op

    def _finish(self, update_ops, name_scope):
        b1p, b2p = self._get_beta_accumulators()
        with ops.control_dependencies(update_ops), \
                ops.colocate_with(b1p):
            update_b1 = b1p.assign(b1p * self._hyper("beta1", self._beta1, b1p),
                                   use_locking=self._use_locking)
            update_b2 = b2p.assign(b2p * self._hyper("beta2", self._beta2, b2p),
                                   use_locking=self._use_locking)
        return control_flow_ops.group(*update_ops, update_b1, update_b2, name=name_scope)


def _scalar_init(value, dtype):
    """An initializer function: ``value`` (number, tensor or callable) as a ``dtype`` scalar."""

    def init():
        v = _call_if_callable(value)
        if isinstance(v, Tensor) or hasattr(v, "_as_graph_element"):
            return math_ops.cast(convert_to_tensor(v), dtype)
        return ops.constant_value_to_tensor(v, dtype, "initial_value")

    return init


class AdadeltaOptimizer(Optimizer):
    """Adadelta (Zeiler 2012): per-element step sizes from running averages of squared
    gradients and squared updates. Slots ``accum`` and ``accum_update`` (zeros)."""

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-8, use_locking=False,
                 name="Adadelta"):
        super().__init__(use_locking, name)
        self._lr, self._rho, self._epsilon = learning_rate, rho, epsilon

    def _create_slots(self, var_list):
        for v in var_list:
            self._zeros_slot(v, "accum", self._name)
            self._zeros_slot(v, "accum_update", self._name)

    def _args(self, var):
        return (var, self.get_slot(var, "accum"), self.get_slot(var, "accum_update"),
                self._hyper("learning_rate", self._lr, var), self._hyper("rho", self._rho, var),
                self._hyper("epsilon", self._epsilon, var))

    def _apply_dense(self, grad, var):
        return training_ops.apply_adadelta(*self._args(var), grad,
                                           use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_adadelta(*self._args(var), grad.values, grad.indices,
                                                  use_locking=self._use_locking).op


def _non_negative(**kw):
    for k, v in kw.items():
        if isinstance(v, (int, float)) and v < 0:
            raise ValueError(f"{k} must be non-negative, got {v}")


class ProximalGradientDescentOptimizer(Optimizer):
    """Gradient descent followed by the proximal step of L1/L2 regularization (exact zeros
    for weights the L1 term pushes through zero)."""

    def __init__(self, learning_rate, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, use_locking=False,
                 name="ProximalGradientDescent"):
        _non_negative(l1_regularization_strength=l1_regularization_strength,
                      l2_regularization_strength=l2_regularization_strength)
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._l1, self._l2 = l1_regularization_strength, l2_regularization_strength

    def _apply_dense(self, grad, var):
        return training_ops.apply_proximal_gradient_descent(
            var, self._hyper("learning_rate", self._lr, var), self._hyper("l1", self._l1, var),
            self._hyper("l2", self._l2, var), grad, use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):  # only the rows with a gradient move
        return training_ops.sparse_apply_proximal_gradient_descent(
            var, self._hyper("learning_rate", self._lr, var), self._hyper("l1", self._l1, var),
            self._hyper("l2", self._l2, var), grad.values, grad.indices,
            use_locking=self._use_locking).op


class ProximalAdagradOptimizer(Optimizer):
    """Adagrad's per-element rate, then the proximal L1/L2 step. Slot ``accumulator``
    (``initial_accumulator_value``)."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 use_locking=False, name="ProximalAdagrad"):
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: "
                             f"{initial_accumulator_value}")
        _non_negative(l1_regularization_strength=l1_regularization_strength,
                      l2_regularization_strength=l2_regularization_strength)
        super().__init__(use_locking, name)
        self._lr, self._init = learning_rate, initial_accumulator_value
        self._l1, self._l2 = l1_regularization_strength, l2_regularization_strength

    def _create_slots(self, var_list):
        for v in var_list:
            self._filled_slot(v, self._init, "accumulator", self._name)

    def _args(self, var):
        return (var, self.get_slot(var, "accumulator"),
                self._hyper("learning_rate", self._lr, var), self._hyper("l1", self._l1, var),
                self._hyper("l2", self._l2, var))

    def _apply_dense(self, grad, var):
        return training_ops.apply_proximal_adagrad(*self._args(var), grad,
                                                   use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_proximal_adagrad(
            *self._args(var), grad.values, grad.indices, use_locking=self._use_locking).op


class FtrlOptimizer(Optimizer):
    """FTRL-Proximal (McMahan et al. 2013), the online learner of large sparse linear models.
    Slots ``accum`` (``initial_accumulator_value``) and ``linear`` (zeros)."""

    def __init__(self, learning_rate, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 use_locking=False, name="Ftrl", accum_name=None, linear_name=None,
                 l2_shrinkage_regularization_strength=0.0):
        if initial_accumulator_value < 0.0:
            raise ValueError(f"initial_accumulator_value {initial_accumulator_value} needs to "
                             "be positive or zero")
        if learning_rate_power > 0.0:
            raise ValueError(f"learning_rate_power {learning_rate_power} needs to be negative "
                             "or zero")
        _non_negative(l1_regularization_strength=l1_regularization_strength,
                      l2_regularization_strength=l2_regularization_strength,
                      l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength)
        super().__init__(use_locking, name)
        self._lr, self._power, self._init = learning_rate, learning_rate_power, \
            initial_accumulator_value
        self._l1, self._l2 = l1_regularization_strength, l2_regularization_strength
        self._shrink = l2_shrinkage_regularization_strength
        self._accum_name, self._linear_name = accum_name, linear_name

    def _create_slots(self, var_list):
        for v in var_list:
            self._filled_slot(v, self._init, "accum", self._accum_name or self._name)
            self._zeros_slot(v, "linear", self._linear_name or self._name)

    def _hypers(self, var):
        return (self._hyper("learning_rate", self._lr, var), self._hyper("l1", self._l1, var),
                self._hyper("l2", self._l2, var), self._hyper("l2_shrinkage", self._shrink, var),
                self._hyper("learning_rate_power", self._power, var))

    def _apply_dense(self, grad, var):
        return training_ops.apply_ftrl_v2(var, self.get_slot(var, "accum"),
                                          self.get_slot(var, "linear"), grad,
                                          *self._hypers(var),
                                          use_locking=self._use_locking).op

    def _apply_sparse(self, grad, var):
        return training_ops.sparse_apply_ftrl_v2(var, self.get_slot(var, "accum"),
                                                 self.get_slot(var, "linear"), grad.values,
                                                 grad.indices, *self._hypers(var),
                                                 use_locking=self._use_locking).op


__all__ = ["GradientDescentOptimizer", "MomentumOptimizer", "AdagradOptimizer",
           "RMSPropOptimizer", "AdamOptimizer", "AdadeltaOptimizer",
           "ProximalGradientDescentOptimizer", "ProximalAdagradOptimizer", "FtrlOptimizer"]

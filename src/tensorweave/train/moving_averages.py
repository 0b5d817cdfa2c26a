"""``tw.train.ExponentialMovingAverage``: shadow copies of variables that follow them slowly,
``shadow -= (1 - decay) * (shadow - value)`` per ``apply`` op run. Evaluating (or restoring) a
model with the averaged weights often scores better than the last weights.

Example::

    train_op = opt.minimize(loss)
    ema = tw.train.ExponentialMovingAverage(decay=0.999, num_updates=global_step)
    with tw.control_dependencies([train_op]):
        train_op = ema.apply(tw.trainable_variables())   # train, then update the shadows
    ...
    # evaluation graph: the same model, its variables loaded from the shadows
    saver = tw.train.Saver(ema.variables_to_restore())
"""

from __future__ import annotations

from tensorweave.framework import ops
from tensorweave.framework.ops import convert_to_tensor
from tensorweave.ops.variables import Variable

__all__ = ["ExponentialMovingAverage"]

MOVING_AVERAGE_VARIABLES = "moving_average_variables"


def _tw():
    import tensorweave as tw
    return tw


class ExponentialMovingAverage:
    """Keeps a moving average of each variable (or tensor) passed to :meth:`apply`.

    ``decay`` is the weight of the old average (0.999: an average over roughly the last 1000
    updates). With ``num_updates`` (the global step, say), the decay used is
    ``min(decay, (1 + num_updates) / (10 + num_updates))``: faster averaging early on."""

    def __init__(self, decay, num_updates=None, zero_debias=False,
                 name="ExponentialMovingAverage"):
        if zero_debias:
            raise NotImplementedError("ExponentialMovingAverage(zero_debias=True) is not "
                                      "implemented; leave it False (TF1's default)")
        self._decay = decay
        self._num_updates = num_updates
        self._name = name
        self._averages: dict = {}  # the averaged variable or tensor -> its shadow Variable

    @property
    def name(self):
        return self._name

    def _key(self, var):
        return var if isinstance(var, Variable) else convert_to_tensor(var)

    def apply(self, var_list=None):
        """Creates a shadow variable for each of ``var_list`` (default: the trainable
        variables) that has none yet, starting at the variable's initial value (zeros for a
        tensor), and returns the op that moves every shadow one step towards its variable."""
        tw = _tw()
        var_list = list(tw.trainable_variables() if var_list is None else var_list)
        for var in var_list:
            key = self._key(var)
            if not key.dtype.base_dtype.is_floating:
                raise TypeError(f"The variables must be half, float, or double: {key.name} is "
                                f"{key.dtype.name}")
            if key in self._averages:
                continue
            with ops.name_scope(None):
                if isinstance(var, Variable):
                    init = var.initialized_value()
                    trainable = False
                else:
                    if not key.shape.is_fully_defined():
                        raise ValueError(f"ExponentialMovingAverage of the tensor {key.name} "
                                         f"needs a fully defined shape, got {key.shape}")
                    init = tw.zeros(key.shape.as_list(), key.dtype.base_dtype)
                    trainable = False
                shadow = Variable(init, trainable=trainable, name=self.average_name(var))
            ops.add_to_collection(MOVING_AVERAGE_VARIABLES, var)
            self._averages[key] = shadow
        with ops.name_scope(self._name) as scope:
            decay = convert_to_tensor(self._decay, name="decay")
            if self._num_updates is not None:
                n = tw.cast(self._num_updates, decay.dtype)
                decay = tw.minimum(decay, (1.0 + n) / (10.0 + n))
            updates = []
            for var in var_list:
                shadow = self._averages[self._key(var)]
                value = var.value() if isinstance(var, Variable) else convert_to_tensor(var)
                rate = tw.cast(1.0 - decay, shadow.dtype.base_dtype)
                updates.append(shadow.assign_sub((shadow.value() - value) * rate))
            return tw.group(*updates, name=scope)

    def average(self, var):
        """The shadow variable of ``var`` (None before :meth:`apply` saw it)."""
        return self._averages.get(self._key(var))

    def average_name(self, var):
        """``<var's op name>/<this object's name>``: the shadow's name, also in checkpoints."""
        return f"{self._key(var).op.name}/{self._name}"

    def variables_to_restore(self, moving_avg_variables=None):
        """``{name: variable}`` for a ``Saver`` that loads each moving-averaged variable from
        its shadow's saved value and every other global variable from its own."""
        tw = _tw()
        if moving_avg_variables is None:
            moving_avg_variables = (ops.get_collection(MOVING_AVERAGE_VARIABLES) or
                                    tw.trainable_variables())
        averaged = {v.op.name for v in moving_avg_variables if isinstance(v, Variable)}
        shadows = {s.op.name for s in self._averages.values()}
        out = {}
        for v in tw.global_variables():
            if v.op.name in shadows:
                continue
            name = self.average_name(v) if v.op.name in averaged else v.op.name
            out[name] = v
        return out

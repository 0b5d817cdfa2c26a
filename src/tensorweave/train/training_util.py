"""The global step (an int64 scalar variable counting training steps) and learning-rate
schedules that read it.

Example::

    step = tw.train.get_or_create_global_step()
    lr = tw.train.exponential_decay(0.1, step, decay_steps=1000, decay_rate=0.96)
    train_op = tw.train.GradientDescentOptimizer(lr).minimize(loss, global_step=step)
    ...
    tw.train.global_step(sess, step)     # -> int
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes, ops
from tensorweave.framework.ops import GraphKeys, Tensor, convert_to_tensor
from tensorweave.ops import math_ops
from tensorweave.ops.variables import Variable


def global_step(sess, global_step_tensor):
    """The global step's current value as a Python int."""
    return int(sess.run(global_step_tensor))


def assert_global_step(global_step_tensor):
    """Raises TypeError unless ``global_step_tensor`` is an integer scalar Variable/Tensor."""
    if not isinstance(global_step_tensor, (Variable, Tensor)):
        raise TypeError(f'Existing "global_step" must be a Variable or Tensor: '
                        f"{global_step_tensor!r}.")
    if not global_step_tensor.dtype.base_dtype.is_integer:
        raise TypeError(f'Existing "global_step" does not have integer type: '
                        f"{global_step_tensor.dtype.name}")
    shape = global_step_tensor.shape
    if shape.ndims is not None and shape.ndims != 0:
        raise TypeError(f'Existing "global_step" is not scalar: {shape}')


def get_global_step(graph=None):
    """The graph's global step: the one variable in the GLOBAL_STEP collection, else the
    tensor named ``global_step:0``, else None."""
    graph = graph or ops.get_default_graph()
    found = graph.get_collection(GraphKeys.GLOBAL_STEP)
    if len(found) > 1:
        return None  # ambiguous, as in TF1 (which logs an error)
    if found:
        step = found[0]
    else:
        try:
            step = graph.get_tensor_by_name("global_step:0")
        except KeyError:
            return None
    assert_global_step(step)
    return step


def create_global_step(graph=None):
    """Creates the int64 scalar variable ``global_step`` (zero, not trainable) in the
    GLOBAL_VARIABLES and GLOBAL_STEP collections; raises ValueError if one exists."""
    graph = graph or ops.get_default_graph()
    if get_global_step(graph) is not None:
        raise ValueError('"global_step" already exists.')
    with graph.as_default(), graph.name_scope(None), graph.control_dependencies(None):
        return Variable(np.zeros((), np.int64), trainable=False, name=GraphKeys.GLOBAL_STEP,
                        dtype=dtypes.int64,
                        collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.GLOBAL_STEP])


def get_or_create_global_step(graph=None):
    """The graph's global step, created if it does not exist yet."""
    graph = graph or ops.get_default_graph()
    step = get_global_step(graph)
    return step if step is not None else create_global_step(graph)


# --- learning-rate schedules --------------------------------------------------------------------
def _math(name):
    fn = getattr(math_ops, name, None)
    if fn is None:
        raise NotImplementedError(f"this schedule needs tw.{name}, which math_ops does not "
                                  "define yet")
    return fn


def _schedule(what, learning_rate, global_step, decay_steps):
    """(learning_rate, global_step, decay_steps) as tensors of the learning rate's dtype."""
    if global_step is None:
        raise ValueError(f"global_step is required for {what}.")
    lr = convert_to_tensor(learning_rate, name="learning_rate")
    dtype = lr.dtype
    return lr, math_ops.cast(global_step, dtype), math_ops.cast(decay_steps, dtype), dtype


def _progress(step, steps, staircase):
    p = math_ops.truediv(step, steps)
    return _math("floor")(p) if staircase else p


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None):
    """``learning_rate * decay_rate ** (global_step / decay_steps)``; with ``staircase``
    the exponent is floored, so the rate drops every ``decay_steps`` steps."""
    with ops.name_scope(name, "ExponentialDecay") as scope:
        lr, step, steps, dtype = _schedule("exponential_decay", learning_rate, global_step,
                                           decay_steps)
        p = _progress(step, steps, staircase)
        return math_ops.multiply(lr, _math("pow")(math_ops.cast(decay_rate, dtype), p),
                                 name=scope)


def piecewise_constant(x, boundaries, values, name=None):
    """``values[0]`` while ``x <= boundaries[0]``, ``values[1]`` while ``x <= boundaries[1]``,
    ..., ``values[-1]`` after the last boundary."""
    from tensorweave.ops import array_ops
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"The length of boundaries ({len(boundaries)}) should be 1 less than "
                         f"the length of values ({len(values)})")
    with ops.name_scope(name, "PiecewiseConstant") as scope:
        x = convert_to_tensor(x)
        table = convert_to_tensor(values, name="values")
        greater = _math("greater")
        # the index of the current piece: how many boundaries x has passed; gather keeps the
        # values exact (no float arithmetic between pieces)
        passed = [math_ops.cast(greater(x, convert_to_tensor(b, dtype=x.dtype)), dtypes.int32)
                  for b in boundaries]
        index = math_ops.add_n(passed) if passed else convert_to_tensor(0)
        return array_ops.gather(table, index, name=scope)


def natural_exp_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None):
    """``learning_rate * exp(-decay_rate * global_step / decay_steps)`` (exponent floored
    with ``staircase``)."""
    with ops.name_scope(name, "NaturalExpDecay") as scope:
        lr, step, steps, dtype = _schedule("natural_exp_decay", learning_rate, global_step,
                                           decay_steps)
        p = _progress(step, steps, staircase)
        rate = math_ops.cast(decay_rate, dtype)
        return math_ops.multiply(lr, _math("exp")(math_ops.negative(rate * p)), name=scope)


def inverse_time_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                       name=None):
    """``learning_rate / (1 + decay_rate * global_step / decay_steps)`` (floored with
    ``staircase``)."""
    with ops.name_scope(name, "InverseTimeDecay") as scope:
        lr, step, steps, dtype = _schedule("inverse_time_decay", learning_rate, global_step,
                                           decay_steps)
        p = _progress(step, steps, staircase)
        return math_ops.truediv(lr, 1.0 + math_ops.cast(decay_rate, dtype) * p, name=scope)


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001,
                     power=1.0, cycle=False, name=None):
    """From ``learning_rate`` to ``end_learning_rate`` over ``decay_steps`` steps:
    ``(lr - end) * (1 - step / decay_steps) ** power + end``, then ``end``; with ``cycle``
    the horizon grows to the next multiple of ``decay_steps`` instead."""
    with ops.name_scope(name, "PolynomialDecay") as scope:
        lr, step, steps, dtype = _schedule("polynomial_decay", learning_rate, global_step,
                                           decay_steps)
        if cycle:  # step 0 keeps a multiplier of 1
            mult = _math("ceil")(math_ops.truediv(step, steps))
            steps = steps * math_ops.maximum(mult, math_ops.cast(1.0, dtype))
        else:
            step = math_ops.minimum(step, steps)
        end = math_ops.cast(end_learning_rate, dtype)
        frac = _math("pow")(1.0 - math_ops.truediv(step, steps), math_ops.cast(power, dtype))
        return math_ops.add((lr - end) * frac, end, name=scope)


def cosine_decay(learning_rate, global_step, decay_steps, alpha=0.0, name=None):
    """Half a cosine from ``learning_rate`` down to ``alpha * learning_rate`` over
    ``decay_steps`` steps (Loshchilov and Hutter's SGDR, without restarts), then flat."""
    with ops.name_scope(name, "CosineDecay") as scope:
        lr, step, steps, dtype = _schedule("cosine_decay", learning_rate, global_step,
                                           decay_steps)
        step = math_ops.minimum(step, steps)
        cosine = 0.5 * (1.0 + _math("cos")(np.pi * math_ops.truediv(step, steps)))
        a = math_ops.cast(alpha, dtype)
        return math_ops.multiply(lr, (1.0 - a) * cosine + a, name=scope)


__all__ = ["global_step", "assert_global_step", "get_global_step", "create_global_step",
           "get_or_create_global_step", "exponential_decay", "piecewise_constant",
           "natural_exp_decay", "inverse_time_decay", "polynomial_decay", "cosine_decay"]

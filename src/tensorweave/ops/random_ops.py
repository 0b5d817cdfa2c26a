"""Random ops (``tw.random_normal``, ``tw.random_uniform``...) and TF1's seed rule.

Op types are TensorFlow's: ``RandomStandardNormal``, ``RandomUniform``, ``RandomUniformInt``,
``TruncatedNormal``, ``RandomShuffle``, ``Multinomial``, each with attrs ``seed`` and ``seed2``.
They are stateful: each op owns a generator per session (``RuntimeContext.rng``) seeded from
(seed, seed2), so a seeded graph gives the same sequence in every new session, successive runs
in one session differ, and two ops differ. Kernels are in kernels/cpu/random.py.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant, constant_value_as_shape
from tensorweave.framework.ops import Tensor, convert_to_tensor, get_default_graph, name_scope
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import math_ops
from tensorweave.ops.op_util import make

DEFAULT_GRAPH_SEED = 87654321
_MAXINT32 = 2**31 - 1


# --- seeds ------------------------------------------------------------------------------------------
def set_random_seed(seed):
    """Sets the graph-level seed of the default graph: random ops created afterwards are
    reproducible across sessions (combined with their op-level seeds as in :func:`get_seed`)."""
    get_default_graph().seed = None if seed is None else int(seed)


def get_seed(op_seed):
    """TF1's rule: ``(seed, seed2)`` for an op from the graph seed and the op's own seed.

    Graph seed set: the op seed defaults to the graph's last op id (so ops differ). Only the op
    seed set: the graph seed is a fixed default. Neither: ``(None, None)``, nondeterministic.
    """
    graph_seed = get_default_graph().seed
    if graph_seed is not None:
        if op_seed is None:
            op_seed = get_default_graph()._last_id
        seeds = int(graph_seed) % _MAXINT32, int(op_seed) % _MAXINT32
    elif op_seed is not None:
        seeds = DEFAULT_GRAPH_SEED, int(op_seed) % _MAXINT32
    else:
        return None, None
    # (0, 0) means "nondeterministic" to the kernels
    return (0, _MAXINT32) if seeds == (0, 0) else seeds


def _seed_attrs(seed):
    s1, s2 = get_seed(seed)
    return {"seed": s1 or 0, "seed2": s2 or 0}


# --- inference --------------------------------------------------------------------------------------
def _shape_tensor(shape):
    """A 1-D integer tensor from a list, tuple, TensorShape or tensor."""
    if isinstance(shape, Tensor):
        if not shape.dtype.is_integer:
            raise TypeError(f"shape must be an integer tensor, got {shape.dtype.name}")
        return shape
    if isinstance(shape, TensorShape):
        if not shape.is_fully_defined():
            raise ValueError(f"shape must be fully defined, got {shape}")
        shape = shape.as_list()
    if isinstance(shape, (list, tuple)) and any(isinstance(d, Tensor) for d in shape):
        from tensorweave.ops import array_ops
        return array_ops.stack([convert_to_tensor(d, dtype=dtypes.int32) for d in shape])
    arr = np.asarray(shape).reshape(-1)
    if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0):
        raise ValueError(f"shape must be a list of non-negative ints, got {shape!r}")
    return constant(arr.astype(np.int32), name="shape")


def _from_shape_infer(op):
    return [(op.attrs["dtype"], constant_value_as_shape(op.inputs[0]))]


for _t in ("RandomStandardNormal", "RandomUniform", "TruncatedNormal"):
    register_op(_t, stateful=True)(_from_shape_infer)


@register_op("RandomUniformInt", stateful=True)
def _uniform_int_infer(op):
    _, lo, hi = op.inputs
    for t, what in ((lo, "minval"), (hi, "maxval")):
        if t.shape.ndims not in (None, 0):
            raise ValueError(f"{what} must be a scalar, got shape {t.shape}")
    return [(op.attrs["Tout"], constant_value_as_shape(op.inputs[0]))]


@register_op("RandomShuffle", stateful=True)
def _shuffle_infer(op):
    x = op.inputs[0]
    return [(x.dtype, x.shape)]


@register_op("Multinomial", stateful=True)
def _multinomial_infer(op):
    logits, n = op.inputs
    ls = logits.shape.with_rank(2)
    if not logits.dtype.is_floating:
        raise TypeError(f"logits must be floating-point, got {logits.dtype.name}")
    from tensorweave.framework.constant_op import constant_value
    nv = constant_value(n)
    return [(op.attrs["output_dtype"], TensorShape([ls[0], None if nv is None else int(nv)]))]


# --- builders ------------------------------------------------------------------------------------------
def _float_dtype(dtype, fn):
    dtype = dtypes.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"{fn}: dtype must be a floating-point type, got {dtype.name}")
    return dtype


def _scale_shift(x, scale, shift, name):
    """``x * scale + shift`` (TF's builders always apply it, so names and graphs match)."""
    scale = convert_to_tensor(scale, dtype=x.dtype)
    shift = convert_to_tensor(shift, dtype=x.dtype)
    return math_ops.add(math_ops.multiply(x, scale), shift, name=name)


def _standard(op_type, shape, dtype, seed, name):
    s = _shape_tensor(shape)
    attrs = {"dtype": dtype, "T": s.dtype, **_seed_attrs(seed)}
    return make(op_type, [s], attrs, name=name or op_type)


def random_normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Samples from a normal distribution with ``mean`` and ``stddev``."""
    dtype = _float_dtype(dtype, "random_normal")
    with name_scope(name, "random_normal") as scope:
        rnd = _standard("RandomStandardNormal", shape, dtype, seed, None)
        return _scale_shift(rnd, stddev, mean, scope)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=dtypes.float32, seed=None, name=None):
    """Normal samples, redrawn until they lie within two standard deviations of the mean."""
    dtype = _float_dtype(dtype, "truncated_normal")
    with name_scope(name, "truncated_normal") as scope:
        rnd = _standard("TruncatedNormal", shape, dtype, seed, None)
        return _scale_shift(rnd, stddev, mean, scope)


def random_uniform(shape, minval=0, maxval=None, dtype=dtypes.float32, seed=None, name=None):
    """Uniform samples in ``[minval, maxval)`` (``maxval`` defaults to 1 for floats and must be
    given for integers)."""
    dtype = dtypes.as_dtype(dtype)
    if dtype not in (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64,
                     dtypes.int32, dtypes.int64):
        raise ValueError(f"random_uniform: dtype must be a float type, int32 or int64, got "
                         f"{dtype.name}")
    if maxval is None:
        if dtype.is_integer:
            raise ValueError(f"Must specify maxval for integer dtype {dtype.name}")
        maxval = 1
    with name_scope(name, "random_uniform") as scope:
        if dtype.is_integer:
            s = _shape_tensor(shape)
            lo = convert_to_tensor(minval, dtype=dtype, name="min")
            hi = convert_to_tensor(maxval, dtype=dtype, name="max")
            return make("RandomUniformInt", [s, lo, hi],
                        {"Tout": dtype, "T": s.dtype, **_seed_attrs(seed)}, name=scope)
        rnd = _standard("RandomUniform", shape, dtype, seed, None)
        lo = convert_to_tensor(minval, dtype=dtype, name="min")
        hi = convert_to_tensor(maxval, dtype=dtype, name="max")
        return math_ops.add(rnd * (hi - lo), lo, name=scope)


def random_shuffle(value, seed=None, name=None):
    """Shuffles ``value`` along its first dimension."""
    x = convert_to_tensor(value)
    return make("RandomShuffle", [x], {"T": x.dtype, **_seed_attrs(seed)},
                name=name or "RandomShuffle")


def multinomial(logits, num_samples, seed=None, name=None, output_dtype=None):
    """Draws ``num_samples`` class indices per row of ``logits`` (``[batch, classes]``,
    unnormalized log-probabilities): an int64 ``[batch, num_samples]`` tensor."""
    out = dtypes.int64 if output_dtype is None else dtypes.as_dtype(output_dtype)
    if out not in (dtypes.int32, dtypes.int64):
        raise ValueError(f"output_dtype must be int32 or int64, got {out.name}")
    x = convert_to_tensor(logits)
    n = convert_to_tensor(num_samples, dtype=dtypes.int32)
    return make("Multinomial", [x, n], {"T": x.dtype, "output_dtype": out, **_seed_attrs(seed)},
                name=name or "Multinomial")


def categorical(logits, num_samples, dtype=None, seed=None, name=None):
    """``tw.random.categorical``: :func:`multinomial` with TF2's argument names."""
    return multinomial(logits, num_samples, seed=seed, name=name, output_dtype=dtype)


__all__ = ["random_normal", "random_uniform", "truncated_normal", "random_shuffle",
           "multinomial", "set_random_seed", "get_seed"]

"""Initializers (TF1's ``tf.zeros_initializer``, ``tf.glorot_uniform_initializer``...).

An initializer is an object called as ``init(shape, dtype=None, partition_info=None)`` that
builds the ops computing a starting value; ``tw.get_variable`` calls it inside the variable's
``Initializer`` name scope. Random initializers build ``random_ops`` ops, so they follow TF1's
seed rule (graph seed + op seed).

Example::

    w = tw.get_variable("w", [784, 10], initializer=tw.glorot_uniform_initializer(seed=1))
    b = tw.get_variable("b", [10], initializer=tw.constant_initializer(0.1))
"""

from __future__ import annotations

import math
import types

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant
from tensorweave.framework.ops import Tensor
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops import array_ops, random_ops

# TF1: the "normal" variance-scaling distribution is truncated at two standard deviations, which
# shrinks its stddev by this factor; dividing by it restores the requested variance.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


def _dims(shape, what="shape", allow_tensor=True):
    """A list of ints (or an int tensor where the initializer can take a dynamic shape)."""
    if isinstance(shape, Tensor):
        if allow_tensor:
            return shape
        raise ValueError(f"This initializer needs a static {what}, got tensor {shape.name}")
    if isinstance(shape, TensorShape):
        if not shape.is_fully_defined():
            raise ValueError(f"Initializers need a fully defined {what}, got {shape}")
        return shape.as_list()
    dims = [int(shape)] if isinstance(shape, (int, np.integer)) else [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ValueError(f"{what} must hold non-negative sizes, got {dims}")
    return dims


class Initializer:
    """Base class: subclasses implement ``__call__(shape, dtype=None, partition_info=None)``."""

    dtype = dtypes.float32

    def __call__(self, shape, dtype=None, partition_info=None):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _dtype(self, dtype):
        return dtypes.as_dtype(dtype if dtype is not None else self.dtype)


def _float_dtype(dtype, who):
    if not (dtype.is_floating or dtype.is_complex):
        raise ValueError(f"{who} needs a floating-point dtype, got {dtype.name}")
    return dtype


class Zeros(Initializer):
    """All zeros (any dtype)."""

    def __init__(self, dtype=dtypes.float32):
        self.dtype = dtypes.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = self._dtype(dtype)
        # Fill keeps a large variable's initial value out of the graph as a constant
        return array_ops.fill(_dims(shape), constant(0, dtype=dtype), name="zeros")

    def get_config(self):
        return {"dtype": self.dtype.name}


class Ones(Zeros):
    """All ones (any dtype)."""

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = self._dtype(dtype)
        return array_ops.fill(_dims(shape), constant(1, dtype=dtype), name="ones")


class Constant(Initializer):
    """A scalar fills the shape; a list or array gives every element (TF1 pads a shorter list
    with its last element unless ``verify_shape``)."""

    def __init__(self, value=0, dtype=dtypes.float32, verify_shape=False):
        if not np.isscalar(value) and not isinstance(value, (list, tuple, np.ndarray)):
            raise TypeError(f"constant_initializer: value must be a scalar, list, tuple or "
                            f"ndarray, got {type(value).__name__}")
        self.value = value
        self.dtype = dtypes.as_dtype(dtype)
        self._verify_shape = verify_shape

    def __call__(self, shape, dtype=None, partition_info=None, verify_shape=None):
        dtype = self._dtype(dtype)
        verify = self._verify_shape if verify_shape is None else verify_shape
        arr = np.asarray(self.value)
        if arr.ndim == 0 and not verify:
            return array_ops.fill(_dims(shape), constant(self.value, dtype=dtype), name="Const")
        dims = _dims(shape, allow_tensor=False)
        n = int(np.prod(dims))
        if verify and list(arr.shape) != dims:
            raise TypeError(f"constant_initializer: expected value of shape {dims}, got "
                            f"{list(arr.shape)}")
        flat = arr.reshape(-1)
        if flat.size > n:
            raise ValueError(f"constant_initializer: too many values ({flat.size}) for a "
                             f"variable of shape {dims} ({n} elements)")
        if flat.size < n:
            if flat.size == 0:
                raise ValueError(f"constant_initializer: no values for shape {dims}")
            flat = np.concatenate([flat, np.repeat(flat[-1:], n - flat.size)])
        return constant(flat.reshape(dims), dtype=dtype, name="Const")

    def get_config(self):
        return {"value": self.value, "dtype": self.dtype.name,
                "verify_shape": self._verify_shape}


class RandomNormal(Initializer):
    """Normal samples with ``mean`` and ``stddev``."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=dtypes.float32):
        self.mean, self.stddev, self.seed = mean, stddev, seed
        self.dtype = dtypes.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(self._dtype(dtype), "random_normal_initializer")
        return random_ops.random_normal(_dims(shape), self.mean, self.stddev, dtype,
                                        seed=self.seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed,
                "dtype": self.dtype.name}


class TruncatedNormal(RandomNormal):
    """Normal samples redrawn until within two standard deviations of the mean."""

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(self._dtype(dtype), "truncated_normal_initializer")
        return random_ops.truncated_normal(_dims(shape), self.mean, self.stddev, dtype,
                                           seed=self.seed)


class RandomUniform(Initializer):
    """Uniform samples in ``[minval, maxval)`` (``maxval`` defaults to 1 for floats)."""

    def __init__(self, minval=0, maxval=None, seed=None, dtype=dtypes.float32):
        self.minval, self.maxval, self.seed = minval, maxval, seed
        self.dtype = dtypes.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        return random_ops.random_uniform(_dims(shape), self.minval, self.maxval,
                                         self._dtype(dtype), seed=self.seed)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed,
                "dtype": self.dtype.name}


def _fans(dims):
    """(fan_in, fan_out) as TF computes them: conv kernels multiply by the receptive field."""
    if len(dims) < 1:
        return 1, 1
    if len(dims) == 1:
        return dims[0], dims[0]
    if len(dims) == 2:
        return dims[0], dims[1]
    receptive = int(np.prod(dims[:-2]))
    return dims[-2] * receptive, dims[-1] * receptive


class VarianceScaling(Initializer):
    """Samples scaled to the layer's size: variance ``scale / n`` where ``n`` is fan-in,
    fan-out or their mean (``mode``); ``distribution`` is ``"truncated_normal"`` (TF1's
    ``"normal"``), ``"untruncated_normal"`` or ``"uniform"``."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 dtype=dtypes.float32):
        if scale <= 0.0:
            raise ValueError(f"variance_scaling_initializer: scale must be positive, got {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"variance_scaling_initializer: mode must be 'fan_in', 'fan_out' "
                             f"or 'fan_avg', got {mode!r}")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"variance_scaling_initializer: distribution must be 'normal', "
                             f"'truncated_normal', 'untruncated_normal' or 'uniform', got "
                             f"{distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed
        self.dtype = dtypes.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dtype = _float_dtype(self._dtype(dtype), "variance_scaling_initializer")
        dims = _dims(shape, allow_tensor=False)
        # a partitioned variable's fans are those of the whole variable
        full = list(partition_info.full_shape) if partition_info is not None else dims
        fan_in, fan_out = _fans(full)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            return random_ops.truncated_normal(dims, 0.0, math.sqrt(variance) /
                                               _TRUNCATED_NORMAL_STDDEV, dtype, seed=self.seed)
        if self.distribution == "untruncated_normal":
            return random_ops.random_normal(dims, 0.0, math.sqrt(variance), dtype,
                                            seed=self.seed)
        limit = math.sqrt(3.0 * variance)
        return random_ops.random_uniform(dims, -limit, limit, dtype, seed=self.seed)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed, "dtype": self.dtype.name}


class GlorotUniform(VarianceScaling):
    """Uniform in ``[-l, l]`` with ``l = sqrt(6 / (fan_in + fan_out))`` (Xavier)."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "uniform", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class GlorotNormal(VarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out))`` (Xavier)."""

    def __init__(self, seed=None, dtype=dtypes.float32):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed, dtype)

    def get_config(self):
        return {"seed": self.seed, "dtype": self.dtype.name}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only)."""

    def __init__(self, gain=1.0, dtype=dtypes.float32):
        self.gain = gain
        self.dtype = dtypes.as_dtype(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        dims = _dims(shape, allow_tensor=False)
        if len(dims) != 2:
            raise ValueError(f"identity_initializer needs a 2-D shape, got {dims}")
        dtype = self._dtype(dtype)
        return constant(self.gain * np.eye(*dims), dtype=dtype, name="identity")

    def get_config(self):
        return {"gain": self.gain, "dtype": self.dtype.name}


def he_normal(seed=None):
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None):
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed=None):
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed=None):
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


# TF1's lowercase names are the classes themselves (``tf.zeros_initializer()``).
zeros_initializer = Zeros
ones_initializer = Ones
constant_initializer = Constant
random_normal_initializer = RandomNormal
truncated_normal_initializer = TruncatedNormal
random_uniform_initializer = RandomUniform
variance_scaling_initializer = VarianceScaling
glorot_uniform_initializer = GlorotUniform
glorot_normal_initializer = GlorotNormal
identity_initializer = Identity


def _variables_namespace_fn(name):
    def fn(*args, **kwargs):
        from tensorweave.ops import variables
        return getattr(variables, name)(*args, **kwargs)

    fn.__name__ = name
    return fn


# ``tw.initializers``: TF1's namespace of the same classes under short names.
initializers = types.SimpleNamespace(
    zeros=Zeros, ones=Ones, constant=Constant, random_normal=RandomNormal,
    truncated_normal=TruncatedNormal, random_uniform=RandomUniform,
    variance_scaling=VarianceScaling, glorot_uniform=GlorotUniform, glorot_normal=GlorotNormal,
    identity=Identity, he_normal=he_normal, he_uniform=he_uniform, lecun_normal=lecun_normal,
    lecun_uniform=lecun_uniform, Initializer=Initializer,
    global_variables=_variables_namespace_fn("global_variables_initializer"),
    local_variables=_variables_namespace_fn("local_variables_initializer"),
    variables=_variables_namespace_fn("variables_initializer"))

__all__ = ["zeros_initializer", "ones_initializer", "constant_initializer",
           "random_normal_initializer", "truncated_normal_initializer",
           "random_uniform_initializer", "variance_scaling_initializer",
           "glorot_uniform_initializer", "glorot_normal_initializer", "identity_initializer",
           "initializers"]

"""Inference helpers shared by op declarations."""

from __future__ import annotations

from tensorweave.framework.tensor_shape import TensorShape, broadcast_shape


def unchanged(op):
    """Output 0 has input 0's dtype and shape."""
    x = op.inputs[0]
    return [(x.dtype, x.shape)]


def broadcasting_binary(op):
    """NumPy broadcasting of two inputs of one dtype; errors name both shapes and dtypes."""
    x, y = op.inputs[0], op.inputs[1]
    if x.dtype != y.dtype:
        raise TypeError(f"Input 'y' of '{op.type}' op has type {y.dtype.name} that does not "
                        f"match type {x.dtype.name} of argument 'x' ({x.name} vs {y.name}); "
                        "use tw.cast to convert one of them.")
    return [(x.dtype, broadcast_shape(x.shape, y.shape))]


def broadcasting_compare(op):
    from tensorweave.framework import dtypes
    (_, shape), = broadcasting_binary(op)
    return [(dtypes.bool_, shape)]


def no_outputs(op):
    return []


def scalar_of(dtype):
    return lambda op: [(dtype, TensorShape([]))]

"""Random ops have no gradient: their only inputs are shapes, bounds, counts or, for
RandomShuffle and Multinomial, values whose sampled order or indices are not differentiable."""

from __future__ import annotations

from tensorweave.framework.registry import NotDifferentiable

for _t in ("RandomStandardNormal", "RandomUniform", "RandomUniformInt", "TruncatedNormal",
           "RandomShuffle", "Multinomial"):
    NotDifferentiable(_t)

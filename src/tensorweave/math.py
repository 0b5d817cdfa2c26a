"""``tw.math``: TensorFlow's ``tf.math`` namespace, the same builders as ``tw.*`` under one
more name (``tw.math.reduce_sum``, ``tw.math.log``, ``tw.math.top_k``...). Imported on first
use."""

from tensorweave.ops import math_ops as _math_ops
from tensorweave.ops.array_ops import unsorted_segment_sum  # noqa: F401
from tensorweave.ops.nn_ops import (  # noqa: F401
    in_top_k,
    l2_normalize,
    log_softmax,
    softmax,
    softplus,
    softsign,
    top_k,
)

for _n in _math_ops.__all__:
    globals()[_n] = getattr(_math_ops, _n)

__all__ = sorted(set(_math_ops.__all__) | {"unsorted_segment_sum", "in_top_k", "l2_normalize",
                                           "log_softmax", "softmax", "softplus", "softsign",
                                           "top_k"})

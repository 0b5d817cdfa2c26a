"""``tw.random``: the random ops under their TF 2 style names (``tw.random.normal``...).

Example::

    tw.random.set_seed(1)
    x = tw.random.normal([2, 3], seed=7)
"""

from __future__ import annotations

from tensorweave.ops.random_ops import (
    categorical,
    get_seed,
    multinomial,
    set_random_seed,
    truncated_normal,
)
from tensorweave.ops.random_ops import random_normal as normal
from tensorweave.ops.random_ops import random_shuffle as shuffle
from tensorweave.ops.random_ops import random_uniform as uniform

set_seed = set_random_seed

__all__ = ["normal", "uniform", "truncated_normal", "shuffle", "categorical", "multinomial",
           "set_seed", "set_random_seed", "get_seed"]

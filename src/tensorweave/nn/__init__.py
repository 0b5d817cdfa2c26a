"""``tw.nn``: neural-network ops (activations, losses, convolutions) and, later, RNN cells.

Each module listed in ``_NN_MODULES`` re-exports its ``__all__`` here. Append a module to add a family.
"""

import importlib as _importlib

_NN_MODULES: list[str] = [
    # e.g. "tensorweave.ops.nn_ops",
    "tensorweave.ops.conv_ops",
    "tensorweave.ops.nn_ops",
    "tensorweave.nn.rnn",  # also makes tw.nn.rnn_cell resolve
    "tensorweave.nn.attention",
    "tensorweave.nn.decoding",
    "tensorweave.nn.sampled",
]
for _m in _NN_MODULES:
    _mod = _importlib.import_module(_m)
    for _n in getattr(_mod, "__all__", []):
        globals()[_n] = getattr(_mod, _n)

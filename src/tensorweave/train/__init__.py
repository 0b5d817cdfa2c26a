"""``tw.train``: optimizers, checkpoints (Saver), global step and training helpers.

Each module listed in ``_TRAIN_MODULES`` re-exports its ``__all__`` here.
"""

import importlib as _importlib

_TRAIN_MODULES: list[str] = [
    # e.g. "tensorweave.train.optimizer",
    "tensorweave.train.optimizer",
    "tensorweave.train.optimizers",
    "tensorweave.train.training_util",
    "tensorweave.train.moving_averages",
    "tensorweave.train.queue_runner",
    "tensorweave.train.session_run_hook",
    "tensorweave.train.monitored_session",
    "tensorweave.distributed.device_setter",
    "tensorweave.distributed.sync_replicas",
    "tensorweave.train.saver",
    "tensorweave.framework.graph_def",
]
for _m in _TRAIN_MODULES:
    _mod = _importlib.import_module(_m)
    for _n in getattr(_mod, "__all__", []):
        globals()[_n] = getattr(_mod, _n)

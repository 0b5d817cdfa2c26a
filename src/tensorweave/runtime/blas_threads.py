"""``ConfigProto.intra_op_parallelism_threads``: the size of NumPy's BLAS thread pool.

TensorFlow gives each session its own intra-op pool; NumPy's BLAS (OpenBLAS, MKL...) has one
pool per process, sized through ``threadpoolctl``. A session created with
``intra_op_parallelism_threads=n`` (n > 0) sets that pool to ``n`` threads while it is open.
Open sessions stack: the setting of the most recently created one that is still open applies,
and when the last of them closes the pool gets back the size it had before the first.
``0`` (the default) leaves the pool alone, as TensorFlow's 0 means "the system picks".
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_held: list = []        # [(token, threads)] of the open sessions that set a size, oldest first
_restore = None         # threadpoolctl's limiter holding the sizes from before the first one
_controller = None


def _limit(threads: int):
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller.limit(limits=threads, user_api="blas")


def acquire(threads: int) -> object:
    """Sets the BLAS pool to ``threads`` threads; returns the token :func:`release` takes."""
    global _restore
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"intra_op_parallelism_threads must be a positive int to size the "
                         f"BLAS pool (0 leaves it alone), got {threads!r}")
    token = object()
    with _lock:
        limiter = _limit(threads)
        if not _held:
            _restore = limiter
        _held.append((token, threads))
    return token


def release(token: object) -> None:
    """Undoes :func:`acquire`: the newest remaining session's size, or the original sizes."""
    global _restore
    with _lock:
        remaining = [entry for entry in _held if entry[0] is not token]
        if len(remaining) == len(_held):
            return  # released already
        _held[:] = remaining
        if _held:
            _limit(_held[-1][1])
        elif _restore is not None:
            _restore.restore_original_limits()
            _restore = None

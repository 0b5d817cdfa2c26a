"""Shared pytest configuration for tensorweave.

* Tests marked ``gpu`` are skipped unless CuPy imports and sees at least one CUDA device
  (checked once per session).
* Ray: the session-wide local Ray fixture (tests marked ``ray``) lives in its own module, to be
  added by the distributed runtime's owner and imported from this file; nothing about Ray is
  defined here.
"""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """None when CuPy and a CUDA GPU are usable, else why not."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA library failing to load
        return f"CuPy not importable ({type(e).__name__}: {e})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"no usable CUDA device ({type(e).__name__}: {e})"
    if count < 1:
        return "no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test skipped: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def gpu_available() -> bool:
    """True when CuPy and a CUDA GPU are usable in this session."""
    return gpu_unavailable_reason() is None


@pytest.fixture
def fresh_graph():
    """A new default graph for the test, dropped again after it (files that build into the
    default graph use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``)."""
    import tensorweave as tw
    tw.reset_default_graph()
    yield
    tw.reset_default_graph()

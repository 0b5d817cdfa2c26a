"""The one Ray instance of a test session: started on loopback without a dashboard the first
time a ``ray``-marked test asks for it, and shut down at the end only if this fixture started it
(never ``ray stop``, which would end every Ray process on the machine).

Use it from a test module with ``from ray_fixture import ray_session  # noqa: F401``.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """The ``ray`` module, initialized on 127.0.0.1 for the whole test session."""
    # read when Ray is imported: without it raylet listens on every interface
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False, configure_logging=False)
        started = True
    yield ray
    if started:
        ray.shutdown()

"""The training driver on Ray actors (2 ps + 2 workers): sync and async converge; a killed
worker is replaced; a killed parameter server is restarted and restored from the checkpoint.
Everything runs on the session's one loopback Ray instance (tests/ray_fixture.py)."""

import subprocess

import pytest

from ray_fixture import ray_session  # noqa: F401
from tensorweave.distributed.training import DistributedTrainer, SyntheticModel, TrainConfig

pytestmark = pytest.mark.ray


def _train(tmp_path, mode, workers=2, backup=0, steps=200, faults=()):
    cfg = TrainConfig(SyntheticModel(), workers=workers, ps=2, mode=mode, backup=backup,
                      steps=steps, timeout=10.0, stall_timeout=60.0, checkpoint_secs=0.5,
                      checkpoint_dir=str(tmp_path), faults=list(faults))
    trainer = DistributedTrainer(cfg, backend="ray", progress=False)
    try:
        return trainer.run(), trainer
    finally:
        trainer.shutdown()


def test_ray_stays_on_loopback(ray_session):  # noqa: F811
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, timeout=10).stdout
    ray_lines = [ln for ln in out.splitlines()
                 if any(p in ln for p in ("raylet", "gcs_server", "ray::"))]
    assert ray_lines
    assert all("127.0.0.1" in ln for ln in ray_lines), ray_lines


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ray_training_converges(ray_session, tmp_path, mode):  # noqa: F811
    r, _ = _train(tmp_path, mode)
    assert r["steps"] >= 200 and r["accuracy"] > 0.8 and r["loss"] < 0.6


@pytest.mark.parametrize("mode,workers,backup", [("async", 2, 0), ("sync", 3, 1)])
def test_ray_killed_worker_is_replaced(ray_session, tmp_path, mode, workers, backup):  # noqa: F811
    r, t = _train(tmp_path, mode, workers, backup, steps=250, faults=[("worker", 1, 30)])
    assert r["steps"] >= 250 and r["accuracy"] > 0.8
    assert any("worker 1 failed" in e for e in t.events), t.events


def test_ray_killed_ps_is_restored_from_checkpoint(ray_session, tmp_path):  # noqa: F811
    r, t = _train(tmp_path, "async", steps=300, faults=[("ps", 1, 60)])
    assert r["steps"] >= 300 and r["accuracy"] > 0.8
    assert any(e.startswith("restored /job:ps/task:1 from model.ckpt-") for e in t.events), \
        t.events

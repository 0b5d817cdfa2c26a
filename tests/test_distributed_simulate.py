"""The analytic scaling model (distributed/simulate.py): limits it must respect."""

import pytest

from tensorweave.distributed import simulate


def test_async_is_linear_until_the_servers_saturate():
    m = simulate.seed_image_model()
    s = [simulate.speedup(m, w, 32) for w in (1, 2, 10)]
    assert s[1] == pytest.approx(2 * s[0]) and s[2] == pytest.approx(10 * s[0])
    # one server moves 1.25 GB/s and each worker step needs 200 MB: at most 6.25 steps/s
    cap = simulate.throughput(m, 200, 1) / m.batch_size
    assert cap == pytest.approx(1.25e9 / 200e6)


def test_sync_pays_for_stragglers_and_backups_help():
    m = simulate.seed_image_model(straggler_cv=0.3)
    sync = simulate.throughput(m, 50, 32, "sync")
    assert sync < simulate.throughput(m, 50, 32, "async")
    per_grad_backup = simulate.throughput(m, 50, 32, "sync", backup=5) / 45
    assert per_grad_backup > sync / 50  # each aggregated gradient costs less waiting


def test_one_machine_shares_its_cores():
    m = simulate.ClusterModel(compute_per_example=1e-4, batch_size=100, bytes_per_step=1e3,
                              worker_bandwidth=1e9, ps_bandwidth=1e9, step_overhead=0.0,
                              cores=2)
    t = [simulate.throughput(m, w, 1) for w in (1, 2, 4)]
    assert t[1] == pytest.approx(2 * t[0], rel=0.01) and t[2] == pytest.approx(t[1], rel=0.01)


def test_a_configuration_reaches_the_seed_speedup_at_50_workers():
    found = simulate.configs_reaching(simulate.seed_image_model(), target=30.5, workers=50)
    assert found and all(s >= 30.5 for *_, s in found)
    assert min(p for _, _, p, _ in found) > 1  # one server is never enough
    with pytest.raises(ValueError, match="backup"):
        simulate.throughput(simulate.seed_image_model(), 4, 1, "sync", backup=4)

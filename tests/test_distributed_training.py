"""Data parallelism on the in-process transport: device setter, sync replicas (stale gradients,
backup workers, timeouts), sparse rows, bfloat16 transfers, the training driver and its fault
handling. The Ray versions of the driver tests are in test_distributed_ray.py."""

import threading

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.distributed.inprocess import InProcessCluster
from tensorweave.distributed.partition import partition_graph
from tensorweave.distributed.session import DistributedSession
from tensorweave.distributed.task import Bfloat16Payload
from tensorweave.distributed.training import (
    DistributedTrainer,
    SyntheticModel,
    TrainConfig,
    read_checkpoint,
)
from tensorweave.runtime.plan import prune


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()


@pytest.fixture
def cluster():
    c = InProcessCluster(tw.train.ClusterSpec({"ps": 2, "worker": 3}), recv_timeout=10.0)
    yield c
    c.shutdown()


# --- replica_device_setter -------------------------------------------------------------------
def test_replica_device_setter_round_robin_and_worker_ops():
    with tw.device(tw.train.replica_device_setter(ps_tasks=2,
                                                  worker_device="/job:worker/task:1")):
        a = tw.Variable(np.zeros((3, 3), np.float32), name="a")
        b = tw.Variable(np.zeros(3, np.float32), name="b")
        c = tw.Variable(0.0, name="c")
        y = tw.matmul(tw.ones([1, 3]), a)
        with tw.device("/job:ps/task:1"):
            d = tw.Variable(1.0, name="d")
    assert [v.device for v in (a, b, c)] == ["/job:ps/task:0", "/job:ps/task:1",
                                             "/job:ps/task:0"]
    assert d.device == "/job:ps/task:1"  # an explicit device inside wins (merge_devices)
    assert y.op.device == "/job:worker/task:1"


def test_replica_device_setter_cluster_and_greedy_bytes():
    assert tw.train.replica_device_setter(ps_tasks=0) is None
    spec = tw.train.ClusterSpec({"ps": 2, "worker": 1})
    strategy = tw.train.GreedyLoadBalancingStrategy(2)
    with tw.device(tw.train.replica_device_setter(cluster=spec, ps_strategy=strategy)):
        big = tw.Variable(np.zeros((100, 100), np.float32), name="big")
        small = [tw.Variable(np.zeros(10, np.float32), name=f"s{i}") for i in range(3)]
    assert big.device == "/job:ps/task:0"
    assert {v.device for v in small} == {"/job:ps/task:1"}  # the big one fills task 0
    assert strategy.loads == [40000, 120]
    with pytest.raises(ValueError, match="ps_tasks"):
        tw.train.replica_device_setter(ps_tasks=-1)


def test_optimizer_updates_run_on_the_parameter_servers():
    with tw.device(tw.train.replica_device_setter(ps_tasks=2,
                                                  worker_device="/job:worker/task:0")):
        x = tw.placeholder(tw.float32, [None, 4])
        w = tw.Variable(np.ones((4, 2), np.float32), name="w")
        b = tw.Variable(np.zeros(2, np.float32), name="b")
        loss = tw.reduce_sum(tw.matmul(x, w) + b)
        step = tw.train.get_or_create_global_step()
        train = tw.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
    ops = prune([], [train], [x])
    parts = partition_graph(ops, [], [train], [x], "/job:worker/task:0")
    applies = {t: [n["op"] for n in p.nodes if n["op"].startswith("Apply")]
               for t, p in parts.items()}
    assert applies["/job:ps/task:0"] == ["ApplyMomentum"]
    assert applies["/job:ps/task:1"] == ["ApplyMomentum"]
    assert not applies["/job:worker/task:0"]


# --- SyncReplicasOptimizer, between-graph, in process --------------------------------------------
def _sync_replica(worker, n_agg, total, lr=0.5, timeout=5.0, sparse=False):
    """Worker ``worker``'s own graph: loss = sum(w * x) (gradient x) on 2 ps tasks."""
    g = tw.Graph()
    with g.as_default(), tw.device(tw.train.replica_device_setter(
            ps_tasks=2, worker_device=f"/job:worker/task:{worker}")):
        x = tw.placeholder(tw.float32, [3], name="x")
        w = tw.Variable(np.zeros(3, np.float32), name="w")
        emb = tw.Variable(np.zeros((5, 2), np.float32), name="emb")
        rows = tw.gather(emb, [1, 3]) if sparse else tw.zeros([2, 2])
        loss = tw.reduce_sum(w * x) + tw.reduce_sum(rows) * tw.reduce_sum(x)
        step = tw.train.get_or_create_global_step()
        opt = tw.train.SyncReplicasOptimizer(tw.train.GradientDescentOptimizer(lr),
                                             replicas_to_aggregate=n_agg,
                                             total_num_replicas=total, timeout=timeout)
        train = opt.minimize(loss, global_step=step,
                             var_list=[w, emb] if sparse else [w])
        init = tw.global_variables_initializer()
    return g, x, w, emb, step, opt, train, init


def _run_workers(cluster, replicas, feeds, steps):
    """Each worker trains until the sync step reaches ``steps`` (with backup workers, a fixed
    count of steps per worker could leave the last one waiting for a step nobody completes)."""
    errors_ = []

    def work(i):
        g, x, *_rest = replicas[i]
        opt, train = replicas[i][5], replicas[i][6]
        sess = DistributedSession(cluster, graph=g, task=f"/job:worker/task:{i}")
        try:
            sess.run(opt.local_step_init_op)
            while sess.run([train, opt.worker_step], {x: feeds[i]})[1] < steps:
                pass
        except Exception as e:  # noqa: BLE001
            errors_.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors_, errors_


def test_sync_replicas_average_gradients_per_step(cluster):
    reps = [_sync_replica(i, 2, 2) for i in range(2)]
    g, x, w, emb, step, opt, train, init = reps[0]
    chief = DistributedSession(cluster, graph=g, task="/job:worker/task:0")
    chief.run(init)
    hook = opt.make_session_run_hook(is_chief=True)
    hook.after_create_session(chief)
    feeds = [np.array([1, 2, 3], np.float32), np.array([3, 2, 1], np.float32)]
    _run_workers(cluster, reps, feeds, steps=3)
    hook.end(chief)
    # w -= 0.5 * mean(x0, x1) = 0.5 * [2, 2, 2] three times
    np.testing.assert_allclose(chief.run(w), [-3.0, -3.0, -3.0])
    assert chief.run(step) == 3 and chief.run(opt.sync_step) == 3
    # the accumulator of w lives on w's parameter server
    acc = cluster.tasks["/job:ps/task:0"].ctx.resources[("accumulator", "sync_replicas/w")]
    assert acc.taken == 3 and acc.dropped == 0


def test_sync_replicas_backup_worker_gradients_are_dropped_when_stale(cluster):
    reps = [_sync_replica(i, 2, 3) for i in range(3)]
    g, x, w, emb, step, opt, train, init = reps[0]
    chief = DistributedSession(cluster, graph=g, task="/job:worker/task:0")
    chief.run(init)
    hook = opt.make_session_run_hook(is_chief=True)
    hook.after_create_session(chief)
    feeds = [np.full(3, 1.0, np.float32)] * 3
    _run_workers(cluster, reps, feeds, steps=4)
    hook.end(chief)
    acc = cluster.tasks["/job:ps/task:0"].ctx.resources[("accumulator", "sync_replicas/w")]
    # 12 gradients were pushed; each aggregation used exactly 2; the others were dropped
    # (on arrival, or when their step was aggregated without them)
    n_steps = int(chief.run(step))
    assert n_steps == acc.taken == 4
    np.testing.assert_allclose(chief.run(w), np.full(3, -0.5 * n_steps))


def test_sync_wait_times_out_with_a_clear_error(cluster):
    g, x, w, emb, step, opt, train, init = _sync_replica(0, 2, 2, timeout=0.3)
    sess = DistributedSession(cluster, graph=g, task="/job:worker/task:0")
    sess.run(init)
    sess.run(opt.local_step_init_op)
    with pytest.raises(tw.errors.DeadlineExceededError, match="was not aggregated"):
        sess.run(train, {x: np.ones(3, np.float32)})  # no chief: the step never advances
    with pytest.raises(tw.errors.DeadlineExceededError, match=r"only 1 of 2 gradients"):
        sess.run(opt.chief_train_op)  # one gradient arrived, two are needed
    np.testing.assert_allclose(sess.run(w), np.zeros(3))  # nothing was applied


def test_accumulator_drops_stale_and_averages_first_arrivals():
    from tensorweave.kernels.cpu.sync import Accumulator
    acc = Accumulator("a", sparse=False)
    acc.apply(0, np.array([1.0]))
    acc.apply(0, np.array([3.0]))
    acc.apply(0, np.array([100.0]))  # third to arrive: not among the first 2
    used = acc.take(2, 0, None)
    assert [float(u[0]) for u in used] == [1.0, 3.0]
    assert acc.dropped == 1 and acc.entries == []
    acc.apply(0, np.array([5.0]))  # computed at step 0, arriving after step 0 was aggregated
    acc.apply(1, np.array([7.0]))
    with pytest.raises(tw.errors.DeadlineExceededError, match="only 1 of 2"):
        acc.wait_ready(2, 1, 0.05, None)
    assert acc.dropped == 2 and len(acc.entries) == 1


def test_sync_replicas_sparse_gradients_travel_as_rows(cluster):
    reps = [_sync_replica(i, 2, 2, sparse=True) for i in range(2)]
    g, x, w, emb, step, opt, train, init = reps[0]
    pushes = [op for op in g.get_operations() if op.type == "SparseAccumulatorApplyGradient"]
    assert len(pushes) == 1 and pushes[0].inputs[3].shape.as_list() == [2, 2]  # 2 rows of 2
    chief = DistributedSession(cluster, graph=g, task="/job:worker/task:0")
    chief.run(init)
    hook = opt.make_session_run_hook(is_chief=True)
    hook.after_create_session(chief)
    _run_workers(cluster, reps, [np.ones(3, np.float32)] * 2, steps=2)
    hook.end(chief)
    e = chief.run(emb)
    np.testing.assert_allclose(e[[1, 3]], np.full((2, 2), -3.0))  # 2 steps x 0.5 x sum(x)=3
    np.testing.assert_allclose(e[[0, 2, 4]], 0.0)


def test_async_embedding_gradient_is_sent_as_rows(cluster):
    with tw.device(tw.train.replica_device_setter(ps_tasks=1,
                                                  worker_device="/job:worker/task:0")):
        emb = tw.Variable(np.zeros((1000, 8), np.float32), name="emb")
        ids = tw.placeholder(tw.int32, [None])
        loss = tw.reduce_sum(tw.nn.embedding_lookup(emb, ids))
        train = tw.train.GradientDescentOptimizer(1.0).minimize(loss)
    ops = prune([], [train], [ids])
    parts = partition_graph(ops, [], [train], [ids], "/job:worker/task:0")
    sent = [n for n in parts["/job:worker/task:0"].nodes if n["op"] == "_Send"]
    shapes = [tuple(n.get("shape", ())) for n in parts["/job:ps/task:0"].nodes
              if n["op"] == "_Recv"]
    assert sent and all(s[:1] != (1000,) for s in shapes)  # never the dense 1000 x 8 matrix
    sess = DistributedSession(cluster, task="/job:worker/task:0")
    sess.run(emb.initializer)
    sess.run(train, {ids: [3, 3, 7]})
    e = sess.run(emb)
    assert e[3, 0] == -2.0 and e[7, 0] == -1.0 and np.count_nonzero(e) == 16


def test_bfloat16_transfers():
    v = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    p = Bfloat16Payload(v)
    assert p.bits.dtype == np.uint16 and p.bits.nbytes == v.nbytes // 2
    np.testing.assert_allclose(p.decode(), v, rtol=2 ** -8)
    c = InProcessCluster(tw.train.ClusterSpec({"ps": 1, "worker": 1}), compress="bfloat16")
    try:
        with tw.device("/job:ps/task:0"):
            w = tw.Variable(v.reshape(100, 10), name="w")
        y = tw.reduce_sum(w * 1.0)
        sess = DistributedSession(c)
        sess.run(w.initializer)
        got = sess.run(y)
        assert got != pytest.approx(float(v.sum()), abs=1e-6)  # it really was rounded
        assert got == pytest.approx(float(v.sum()), rel=1e-2, abs=0.5)
    finally:
        c.shutdown()


# --- the driver -----------------------------------------------------------------------------------
def _trainer(mode, tmp_path, workers=2, backup=0, groups=1, steps=120, faults=(), timeout=5.0):
    cfg = TrainConfig(SyntheticModel(), workers=workers, ps=2, mode=mode, backup=backup,
                      groups=groups, steps=steps, timeout=timeout, checkpoint_secs=0.1,
                      checkpoint_dir=str(tmp_path), faults=list(faults), stall_timeout=30)
    return DistributedTrainer(cfg, backend="inprocess", progress=False)


def _run(trainer):
    try:
        return trainer.run()
    finally:
        trainer.shutdown()


@pytest.mark.parametrize("mode,workers,backup,groups", [
    ("async", 2, 0, 1), ("sync", 2, 0, 1), ("sync", 3, 1, 1), ("hybrid", 4, 0, 2)])
def test_driver_modes_converge(tmp_path, mode, workers, backup, groups):
    r = _run(_trainer(mode, tmp_path, workers, backup, groups))
    assert r["steps"] >= 120
    assert r["accuracy"] > 0.8 and r["loss"] < 0.6
    prefix, values = read_checkpoint(str(tmp_path))
    assert int(values["global_step"]) == r["steps"]


def test_driver_async_worker_killed_is_replaced(tmp_path):
    t = _trainer("async", tmp_path, steps=1500, faults=[("worker", 1, 30)])
    r = _run(t)
    assert r["steps"] >= 1500 and r["accuracy"] > 0.8
    assert any("replacing" in e for e in t.events)


def test_driver_sync_worker_killed_backup_carries_on(tmp_path):
    t = _trainer("sync", tmp_path, workers=3, backup=1, steps=300, faults=[("worker", 2, 30)])
    r = _run(t)
    # the job carries on with the two remaining replicas (a replacement may or may not join
    # before the last step: with a backup worker nothing waits for it)
    assert any(e.startswith("fault: killing worker 2") for e in t.events), t.events
    assert r["steps"] >= 300 and r["accuracy"] > 0.8


def test_driver_ps_killed_is_restored_from_checkpoint_not_reinitialized(tmp_path):
    t = _trainer("sync", tmp_path, steps=300, faults=[("ps", 1, 60)])
    r = _run(t)
    assert r["steps"] >= 300 and r["accuracy"] > 0.8
    restored = [e for e in t.events if e.startswith("restored /job:ps/task:1")]
    assert restored, t.events


def test_driver_refuses_to_reinitialize_a_ps_without_checkpoint(tmp_path):
    t = _trainer("async", tmp_path)
    try:
        from tensorweave.distributed.training import build_replica
        t.rep = build_replica(t.cfg)
        t.ps_vars = t._ps_variables()
        with pytest.raises(tw.errors.DataLossError, match="no checkpoint"):
            t._restore_task("/job:ps/task:1")
    finally:
        t.shutdown()


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(SyntheticModel(), mode="fast").validate()
    with pytest.raises(ValueError, match="equal groups"):
        TrainConfig(SyntheticModel(), workers=3, mode="hybrid", groups=2).validate()
    with pytest.raises(ValueError, match="backup"):
        TrainConfig(SyntheticModel(), workers=2, mode="sync", backup=2).validate()
    with pytest.raises(ValueError, match="total_num_replicas"):
        tw.train.SyncReplicasOptimizer(tw.train.GradientDescentOptimizer(0.1), 3, 2)

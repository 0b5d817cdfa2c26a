"""Partitioned execution on the in-process transport equals local execution."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.distributed.cluster import ClusterSpec
from tensorweave.distributed.inprocess import InProcessCluster
from tensorweave.distributed.partition import partition_graph, task_of
from tensorweave.distributed.session import DistributedSession
from tensorweave.runtime.plan import prune


@pytest.fixture
def cluster():
    c = InProcessCluster(ClusterSpec({"ps": 2, "worker": 2}), recv_timeout=10.0)
    yield c
    c.shutdown()


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()


def _model():
    rng = np.random.default_rng(0)
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    with tw.device("/job:ps/task:0"):
        w = tw.Variable(rng.standard_normal((3, 4)).astype(np.float32), name="w")
    with tw.device("/job:ps/task:1"):
        b = tw.Variable(np.zeros(4, np.float32), name="b")
    with tw.device("/job:worker/task:1"):  # model parallelism: this layer on another task
        h = tw.tanh(tw.matmul(x, w) + b)
    loss = tw.reduce_mean(h * h)
    gw, gb = tw.gradients(loss, [w, b])
    with tw.device("/job:ps/task:0"):
        uw = tw.assign_sub(w, 0.1 * gw)
    with tw.device("/job:ps/task:1"):
        ub = tw.assign_sub(b, 0.1 * gb)
    return x, w, loss, tw.group(uw, ub), tw.global_variables_initializer()


def test_task_of_device_names():
    assert task_of("/job:ps/task:1/device:CPU:0", "/job:worker/task:0") == "/job:ps/task:1"
    assert task_of("", "/job:worker/task:0") == "/job:worker/task:0"
    assert task_of("/device:GPU:0", "/job:worker/task:3") == "/job:worker/task:3"


def test_partitions_are_joined_by_send_recv_pairs():
    x, w, loss, train, init = _model()
    ops = prune([loss], [train.op if hasattr(train, "op") else train], [x])
    parts = partition_graph(ops, [loss], [train], [x], "/job:worker/task:0")
    assert set(parts) == {"/job:ps/task:0", "/job:ps/task:1", "/job:worker/task:0",
                          "/job:worker/task:1"}
    sends = sorted(n["attr"]["tensor_name"] for p in parts.values() for n in p.nodes
                   if n["op"] == "_Send")
    recvs = sorted(n["attr"]["tensor_name"] for p in parts.values() for n in p.nodes
                   if n["op"] == "_Recv")
    assert sends == recvs and sends  # every send has its receive
    # variables stay on their parameter server, next to their updates
    ps0 = {n["name"] for n in parts["/job:ps/task:0"].nodes}
    assert {"w", "AssignSub"} <= ps0


def test_partitioned_training_equals_local(cluster):
    x, w, loss, train, init = _model()
    xv = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    with tw.Session() as sess:
        sess.run(init)
        local = [sess.run([loss, train], {x: xv})[0] for _ in range(4)]
        local_w = sess.run(w)
    sess = tw.Session(target=cluster)
    assert isinstance(sess, DistributedSession)
    sess.run(init)
    dist = [sess.run([loss, train], {x: xv})[0] for _ in range(4)]
    np.testing.assert_allclose(dist, local, rtol=1e-6)
    np.testing.assert_allclose(sess.run(w), local_w, rtol=1e-6)
    # the variables live on the parameter servers, not on the workers
    assert cluster.tasks["/job:ps/task:0"].variable_names() == ["w"]
    assert cluster.tasks["/job:ps/task:1"].variable_names() == ["b"]
    assert cluster.tasks["/job:worker/task:0"].variable_names() == []
    assert len(sess._plans) == 3  # init, train and read signatures, each partitioned once


def test_two_clients_share_parameter_servers(cluster):
    x, w, loss, train, init = _model()
    xv = np.ones((2, 3), np.float32)
    a = DistributedSession(cluster, task="/job:worker/task:0")
    b = DistributedSession(cluster, task="/job:worker/task:1")
    a.run(init)
    before = b.run(w)
    b.run(train, {x: xv})
    after = a.run(w)
    assert not np.allclose(before, after)


def test_remote_error_is_reported(cluster):
    x = tw.placeholder(tw.float32, None)
    with tw.device("/job:worker/task:1"):
        y = tw.matmul(x, x, name="remote_product")
    sess = DistributedSession(cluster)
    with pytest.raises(tw.errors.InvalidArgumentError, match="remote_product"):
        sess.run(y, {x: np.ones((2, 3))})


def test_outbox_batches_pushed_gradients_and_pulled_parameters_not_activations(cluster):
    """Gradients the ps only applies travel in one message, so do parameters read one after
    another; an activation the peer computes with goes out at once, alone; and a round trip
    inside the step (worker -> ps -> worker) completes."""
    messages = []
    send, send_many = cluster.send, cluster.send_many
    cluster.send = lambda dst, k, v: (messages.append((dst, [k.split(";")[1]])),
                                      send(dst, k, v))
    cluster.send_many = lambda dst, items: (messages.append((dst, [k.split(";")[1]
                                                                  for k, _ in items])),
                                            send_many(dst, items))
    x = tw.placeholder(tw.float32, [4], name="x")
    with tw.device("/job:ps/task:0"):
        ws = [tw.Variable(np.full(4, i + 1.0, np.float32), name=f"w{i}") for i in range(3)]
    with tw.device("/job:worker/task:0"):
        h = ws[0] * x + ws[1] * x + ws[2] * x  # a replica: reads every parameter first
        grads = tw.gradients(tw.reduce_sum(h * h), ws)
        act = tw.reduce_sum(x, name="act")
    with tw.device("/job:ps/task:0"):
        pushes = [tw.assign_sub(w, g) for w, g in zip(ws, grads)]
        back = tw.multiply(act, 2.0, name="back")
    with tw.device("/job:worker/task:0"):
        out = back + 1.0
    sess = DistributedSession(cluster, task="/job:worker/task:0")
    sess.run([w.initializer for w in ws])
    messages.clear()
    xv = np.arange(4, dtype=np.float32)
    got = sess.run([out] + pushes, {x: xv})
    assert got[0] == pytest.approx(xv.sum() * 2 + 1)
    for i, v in enumerate(got[1:]):
        np.testing.assert_allclose(v, (i + 1.0) - 2 * 6.0 * xv * xv, rtol=1e-6)
    to_ps = [sorted(names) for dst, names in messages if dst == "/job:ps/task:0"]
    to_worker = [sorted(names) for dst, names in messages if dst == "/job:worker/task:0"]
    assert sorted(g.name for g in grads) in to_ps, messages  # the pushes: one message
    assert ["act:0"] in to_ps, messages  # the activation: alone, not held for the pushes
    reads = {f"{w.op.name}/read:0" for w in ws}
    assert any(reads <= set(m) for m in to_worker), messages  # the pulls: one message

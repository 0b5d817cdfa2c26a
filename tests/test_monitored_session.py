"""``tw.train.MonitoredTrainingSession``, its session creators and the standard hooks."""

import logging

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tensorweave as tw

W_TRUE = np.array([[1.0], [-2.0], [0.5]], np.float32)
X = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
Y = X @ W_TRUE


pytestmark = pytest.mark.usefixtures("fresh_graph")


def _model():
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    y = tw.placeholder(tw.float32, [None, 1], name="y")
    w = tw.Variable(np.zeros((3, 1), np.float32), name="w")
    loss = tw.losses.mean_squared_error(y, tw.matmul(x, w))
    tw.summary.scalar("loss", loss)
    step = tw.train.get_or_create_global_step()
    train_op = tw.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    return x, y, w, loss, step, train_op


def test_train_save_summarize_then_resume(tmp_path):
    x, y, w, loss, step, train_op = _model()
    hooks = [tw.train.StopAtStepHook(last_step=30)]
    runs = 0
    with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path), hooks=hooks,
                                           save_checkpoint_steps=10,
                                           save_summaries_steps=5,
                                           log_step_count_steps=10) as sess:
        assert tw.get_default_graph().finalized  # the scaffold froze the graph ...
        while not sess.should_stop():
            sess.run(train_op, {x: X, y: Y})
            runs += 1
    assert runs == 30
    assert not tw.get_default_graph().finalized  # ... until the session closed (TF1 1.14+)
    ckpt = tw.train.latest_checkpoint(str(tmp_path))
    assert ckpt.endswith("model.ckpt-30")
    w30 = tw.train.load_variable(ckpt, "w")
    assert np.abs(w30 - W_TRUE).max() < 0.05  # it trained
    ea = EventAccumulator(str(tmp_path))
    ea.Reload()
    steps = [e.step for e in ea.Scalars("loss")]
    assert steps[:3] == [1, 6, 11] and len(steps) == 6
    assert "global_step/sec" in ea.Tags()["scalars"]

    tw.reset_default_graph()
    x, y, w, loss, step, train_op = _model()
    with tw.train.MonitoredTrainingSession(checkpoint_dir=str(tmp_path),
                                           hooks=[tw.train.StopAtStepHook(num_steps=5)]) as sess:
        # restored, not re-initialized (the summary hook's first run needs the feeds, as in TF1)
        np.testing.assert_array_equal(sess.run(w, {x: X, y: Y}), w30)
        assert sess.run(step, {x: X, y: Y}) == 30
        while not sess.should_stop():
            sess.run(train_op, {x: X, y: Y})
    assert tw.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-35")  # at the end


def test_end_of_input_ends_the_loop_cleanly_and_final_ops_run():
    data = tw.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    xb, yb = data.make_one_shot_iterator().get_next()
    w = tw.Variable(np.zeros((3, 1), np.float32), name="w")
    loss = tw.losses.mean_squared_error(yb, tw.matmul(xb, w))
    step = tw.train.get_or_create_global_step()
    train_op = tw.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
    mean_loss, update_mean = tw.metrics.mean(loss)  # a local variable: initialized too
    final = tw.train.FinalOpsHook([step, mean_loss])
    runs = 0
    with tw.train.MonitoredTrainingSession(hooks=[final]) as sess:
        while not sess.should_stop():
            sess.run([train_op, update_mean])  # the fifth run raises OutOfRangeError: clean
            runs += 1
    assert runs == 4 and final.final_ops_values[0] == 4 and final.final_ops_values[1] > 0


class _FailOnce(tw.train.SessionRunHook):
    """Makes one run fail as a lost task would (UnavailableError)."""

    def __init__(self, at):
        self.at, self.calls, self.sessions = at, 0, []

    def after_create_session(self, session, coord):
        self.sessions.append(session)

    def before_run(self, run_context):
        self.calls += 1
        if self.calls == self.at:
            raise tw.errors.UnavailableError(None, None, "task /job:ps/task:0 is gone")


def test_a_lost_task_recreates_the_session_from_the_last_checkpoint(tmp_path, caplog):
    x, y, w, loss, step, train_op = _model()
    fail = _FailOnce(at=8)
    hooks = [fail, tw.train.CheckpointSaverHook(str(tmp_path), save_steps=5)]
    creator = tw.train.ChiefSessionCreator(checkpoint_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="tensorweave"):
        with tw.train.MonitoredSession(creator, hooks) as sess:
            for _ in range(10):
                sess.run(train_op, {x: X, y: Y})
            final_step = sess.run(step)
    assert len(fail.sessions) == 2  # recreated once
    # checkpoints after steps 1 and 6; the 8th run fails after 7 steps: step 6 is restored,
    # the failed run retried and 2 more run: 6 + 3
    assert final_step == 9
    assert "UnavailableError" in caplog.text and "recreating the session" in caplog.text


def test_hooks_feed_log_and_catch_nan(caplog):
    x, y, w, loss, step, train_op = _model()
    seen = []

    class Record(tw.train.SessionRunHook):
        def before_run(self, run_context):
            assert run_context.original_args.fetches is train_op
            return tw.train.SessionRunArgs({"loss": loss})

        def after_run(self, run_context, run_values):
            seen.append(run_values.results["loss"])

    feed = tw.train.FeedFnHook(lambda: {x: X, y: Y})
    logger = tw.train.LoggingTensorHook({"loss": loss}, every_n_iter=2)
    with caplog.at_level(logging.INFO, logger="tensorweave"):
        with tw.train.MonitoredTrainingSession(hooks=[feed, Record(), logger]) as sess:
            for _ in range(4):
                assert sess.run(train_op) is None
            with pytest.raises(RuntimeError, match="fed by a SessionRunHook and user"):
                sess.run(train_op, {x: X})
    assert len(seen) == 4 and seen[-1] < seen[0]
    assert caplog.text.count("loss = ") == 2

    tw.reset_default_graph()
    bad = tw.Variable(np.nan, name="bad")
    nan_step = tw.assign_add(bad, 1.0)
    with pytest.raises(tw.train.NanLossDuringTrainingError):
        with tw.train.MonitoredTrainingSession(hooks=[tw.train.NanTensorHook(bad)]) as sess:
            sess.run(nan_step)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="exactly one of num_steps and last_step"):
        tw.train.StopAtStepHook()
    with pytest.raises(ValueError, match="every_n_iter and every_n_secs"):
        tw.train.LoggingTensorHook({"a": tw.constant(1.0)})
    with pytest.raises(RuntimeError, match="needs a global step"):
        tw.train.MonitoredTrainingSession(hooks=[tw.train.StopAtStepHook(last_step=3)])
    tw.reset_default_graph()
    tw.Variable(1.0, name="shared")
    creator = tw.train.WorkerSessionCreator(max_wait_secs=0.3)
    with pytest.raises(tw.errors.DeadlineExceededError, match=r"uninitialized.*shared.*chief"):
        creator.create_session()  # a worker never initializes: nobody did here


def test_chief_and_worker_on_a_cluster_share_the_parameter_servers(tmp_path):
    from tensorweave.distributed.inprocess import InProcessCluster

    cluster = InProcessCluster(tw.train.ClusterSpec({"ps": 1, "worker": 2}), recv_timeout=10.0)

    def replica(i):
        with tw.Graph().as_default() as g:
            with tw.device(tw.train.replica_device_setter(
                    ps_tasks=1, worker_device=f"/job:worker/task:{i}")):
                x, y, w, loss, step, train_op = _model()
        return g, x, y, w, step, train_op

    try:
        g, x, y, w, step, train_op = replica(0)
        with g.as_default():
            with tw.train.MonitoredTrainingSession(
                    master=cluster, is_chief=True, checkpoint_dir=str(tmp_path),
                    task="/job:worker/task:0", save_summaries_steps=None,
                    hooks=[tw.train.StopAtStepHook(last_step=5)]) as sess:
                while not sess.should_stop():
                    sess.run(train_op, {x: X, y: Y})
        g, x, y, w, step, train_op = replica(1)
        with g.as_default():
            with tw.train.MonitoredTrainingSession(
                    master=cluster, is_chief=False, task="/job:worker/task:1",
                    max_wait_secs=5, hooks=[tw.train.StopAtStepHook(num_steps=3)]) as sess:
                assert sess.run(step) == 5  # the chief's variables, not re-initialized
                while not sess.should_stop():
                    sess.run(train_op, {x: X, y: Y})
                assert sess.run(step) == 8
    finally:
        cluster.shutdown()
    assert tw.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-5")


def test_a_second_session_on_the_same_graph_and_cleanup_on_failure(tmp_path):
    x, y, w, loss, step, train_op = _model()
    for last in (3, 6):  # was: "Fetch argument None" (the graph stayed finalized)
        with tw.train.MonitoredTrainingSession(
                checkpoint_dir=str(tmp_path), save_summaries_steps=None,
                hooks=[tw.train.StopAtStepHook(last_step=last)]) as sess:
            while not sess.should_stop():
                sess.run(train_op, {x: X, y: Y})
    assert tw.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-6")
    copied = tw.train.Scaffold(ready_op=tw.report_uninitialized_variables(),
                               copy_from_scaffold=tw.train.Scaffold(init_op=tw.no_op()))
    assert copied.ready_op is not None and copied.init_op.type == "NoOp"

    class Broken(tw.train.SessionRunHook):
        def after_create_session(self, session, coord):
            self.session = session
            raise RuntimeError("hook failed")

    broken = Broken()
    with pytest.raises(RuntimeError, match="hook failed"):
        tw.train.MonitoredSession(hooks=[broken])
    assert broken.session._closed and not tw.get_default_graph().finalized

"""``tw.train.MonitoredTrainingSession``: TF1's training loop with its bookkeeping done for it.

It initializes the variables, or restores them from the newest checkpoint in
``checkpoint_dir`` (so a restarted job resumes), starts the queue runners, runs the hooks
around every ``run`` (stop at a step, log, save checkpoints and summaries, count steps/sec),
recreates the session and restores again when a run fails with ``AbortedError`` or
``UnavailableError`` (a lost task), and ends cleanly when the input runs out
(``OutOfRangeError``), saving a final checkpoint.

Example::

    step = tw.train.get_or_create_global_step()
    train_op = tw.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
    hooks = [tw.train.StopAtStepHook(last_step=1000),
             tw.train.LoggingTensorHook({"loss": loss}, every_n_iter=100)]
    with tw.train.MonitoredTrainingSession(checkpoint_dir="/tmp/run1", hooks=hooks) as sess:
        while not sess.should_stop():
            sess.run(train_op)
"""

from __future__ import annotations

import logging
import time

from tensorweave.framework import errors, ops
from tensorweave.framework.ops import GraphKeys
from tensorweave.train import session_run_hook as hooks_lib

__all__ = ["Scaffold", "SessionCreator", "ChiefSessionCreator", "WorkerSessionCreator",
           "MonitoredSession", "SingularMonitoredSession", "MonitoredTrainingSession"]

log = logging.getLogger("tensorweave")
USE_DEFAULT = object()
_RECOVERABLE = (errors.AbortedError, errors.UnavailableError)


def _tw():
    import tensorweave as tw
    return tw


class Scaffold:
    """The ops a monitored session needs, each defaulting to the usual one when None:
    ``init_op`` (initialize the global variables), ``ready_op`` (names of uninitialized
    variables), ``local_init_op`` (initialize the local variables, e.g. metric totals),
    ``summary_op`` (every summary), ``saver`` (the graph's Saver, or a new one).
    ``init_fn(scaffold, session)`` runs after ``init_op`` (not after a restore)."""

    def __init__(self, init_op=None, init_feed_dict=None, init_fn=None, ready_op=None,
                 ready_for_local_init_op=None, local_init_op=None, summary_op=None,
                 saver=None, copy_from_scaffold=None):
        if copy_from_scaffold is not None:
            c = copy_from_scaffold

            def pick(mine, theirs):  # tensors have no truth value: compare with None
                return theirs if mine is None else mine

            init_op, init_feed_dict = pick(init_op, c.init_op), pick(init_feed_dict,
                                                                     c.init_feed_dict)
            init_fn, ready_op = pick(init_fn, c._init_fn), pick(ready_op, c.ready_op)
            ready_for_local_init_op = pick(ready_for_local_init_op, c.ready_for_local_init_op)
            local_init_op, summary_op = pick(local_init_op, c.local_init_op), pick(
                summary_op, c.summary_op)
            saver = pick(saver, c.saver)
        self.init_op, self.init_feed_dict, self._init_fn = init_op, init_feed_dict, init_fn
        self.ready_op, self.ready_for_local_init_op = ready_op, ready_for_local_init_op
        self.local_init_op, self.summary_op, self.saver = local_init_op, summary_op, saver

    @property
    def init_fn(self):
        return self._init_fn

    def finalize(self):
        """Creates the missing ops, then freezes the graph (no op may be added after)."""
        tw = _tw()
        g = ops.get_default_graph()
        # on a finalized graph a missing op cannot be made: the graph's own error says so
        if self.init_op is None:
            self.init_op = tw.global_variables_initializer()
        if self.ready_op is None:
            self.ready_op = tw.report_uninitialized_variables()
        if self.local_init_op is None:
            self.local_init_op = tw.local_variables_initializer()
        if self.summary_op is None:
            from tensorweave.summary import merge_all
            self.summary_op = merge_all()
        if self.saver is None:
            savers = ops.get_collection(GraphKeys.SAVERS)
            if len(savers) > 1:
                raise RuntimeError("More than one Saver in the SAVERS collection: give the "
                                   "Scaffold the one to use (saver=...)")
            if savers:
                self.saver = savers[0]
            else:
                self.saver = tw.train.Saver(allow_empty=True)
                ops.add_to_collection(GraphKeys.SAVERS, self.saver)
        if not g.finalized:
            g.finalize()
        return self


class SessionCreator:
    """Makes the session a MonitoredSession runs. The two built-in creators share
    :meth:`create_session` (a new session on the finalized scaffold, closed again if getting
    it ready fails) and differ in :meth:`_ready`."""

    _scaffold = None
    _master = _config = _task = None

    def create_session(self):
        if self._scaffold is None:
            raise NotImplementedError(f"{type(self).__name__} must define create_session()")
        s = self._scaffold.finalize()
        sess = _new_session(self._master, self._config, self._task)
        try:
            return self._ready(s, sess)
        except BaseException:
            sess.close()
            raise

    def _ready(self, scaffold, sess):
        raise NotImplementedError


def _new_session(master, config, task):
    tw = _tw()
    kwargs = {} if task is None else {"task": task}
    return tw.Session(master, graph=ops.get_default_graph(), config=config, **kwargs)


def _uninitialized(sess, scaffold):
    names = sess.run(scaffold.ready_op)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in list(names)]


class ChiefSessionCreator(SessionCreator):
    """Creates the chief's session: restores the newest checkpoint of ``checkpoint_dir`` (or
    ``checkpoint_filename_with_path``) if there is one, else runs the scaffold's ``init_op``
    and ``init_fn``; then the ``local_init_op``. ``task``: the worker task of a session on a
    cluster (``tw.Session(target=cluster, task=...)``), not a TF1 argument."""

    def __init__(self, scaffold=None, master="", config=None, checkpoint_dir=None,
                 checkpoint_filename_with_path=None, task=None):
        self._scaffold = scaffold or Scaffold()
        self._master, self._config, self._task = master, config, task
        self._dir, self._path = checkpoint_dir, checkpoint_filename_with_path

    def _ready(self, s, sess):
        ckpt = self._path
        if ckpt is None and self._dir:
            ckpt = _tw().train.latest_checkpoint(self._dir)
        if ckpt:
            s.saver.restore(sess, ckpt)
            log.info("Restored the model from %s", ckpt)
        else:
            sess.run(s.init_op, feed_dict=s.init_feed_dict)
            if s.init_fn is not None:
                s.init_fn(s, sess)
        sess.run(s.local_init_op)
        missing = _uninitialized(sess, s)
        if missing:
            where = f"the checkpoint {ckpt}" if ckpt else "the init_op"
            raise RuntimeError(f"{where} left variables uninitialized: {missing}. A checkpoint "
                               "from another model, or an init_op that skips variables?")
        return sess


class WorkerSessionCreator(SessionCreator):
    """Creates a non-chief worker's session on a cluster: waits (up to ``max_wait_secs``)
    until the chief has initialized or restored the shared variables, then runs the
    ``local_init_op``. It never initializes the shared variables itself."""

    def __init__(self, scaffold=None, master="", config=None, max_wait_secs=30 * 60,
                 task=None):
        self._scaffold = scaffold or Scaffold()
        self._master, self._config, self._task = master, config, task
        self._max_wait = max_wait_secs

    def _ready(self, s, sess):
        deadline = time.monotonic() + self._max_wait
        local = {v.op.name for v in ops.get_collection(GraphKeys.LOCAL_VARIABLES)}
        while True:  # the shared (global) variables: the local ones are this worker's own
            missing = [n for n in _uninitialized(sess, s) if n not in local]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise errors.DeadlineExceededError(
                    None, None, f"Session was not ready after waiting {self._max_wait} secs: "
                    f"uninitialized variables {missing}. Is the chief running (is_chief=True "
                    "initializes them)?")
            time.sleep(0.2)
        sess.run(s.local_init_op)
        return sess


class MonitoredSession:
    """A session that runs ``hooks`` around every ``run``, recovers from a lost task (the
    session is recreated through ``session_creator``, which restores the last checkpoint),
    and closes cleanly on ``OutOfRangeError`` inside ``with``."""

    def __init__(self, session_creator=None, hooks=None, stop_grace_period_secs=120,
                 should_recover=True):
        self._graph = ops.get_default_graph()
        self._graph_was_finalized = self._graph.finalized  # restored on close (TF1 1.14+)
        self._hooks = list(hooks or [])
        for h in self._hooks:
            h.begin()
        self._creator = session_creator or ChiefSessionCreator()
        self._grace = stop_grace_period_secs
        self._should_recover = should_recover
        self._sess = None
        try:
            self._create()
        except BaseException:
            self._unfinalize()
            raise

    # --- the session ---------------------------------------------------------------------
    def _create(self):
        from tensorweave.train.queue_runner import Coordinator, start_queue_runners
        self._coord, self._threads = Coordinator(), []
        self._sess = self._creator.create_session()
        try:
            self._threads = start_queue_runners(self._sess, self._coord)
            self._should_stop = False
            for h in self._hooks:
                h.after_create_session(self._sess, self._coord)
        except BaseException:
            self._close_session()
            raise

    def _unfinalize(self):
        if not self._graph_was_finalized and self._graph.finalized:
            self._graph._unsafe_unfinalize()

    def _close_session(self):
        try:
            self._coord.request_stop()
            self._coord.join(self._threads, stop_grace_period_secs=self._grace,
                             ignore_live_threads=True)
        finally:
            sess, self._sess = self._sess, None
            if sess is not None:
                sess.close()

    @property
    def graph(self):
        return ops.get_default_graph() if self._sess is None else self._sess.graph

    def _tf_sess(self):
        return self._sess

    # --- running ---------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """``Session.run`` with the hooks' fetches and feeds added; returns the caller's
        fetches' values."""
        if self._sess is None:
            raise RuntimeError("Run called on a closed MonitoredSession")
        while True:
            try:
                return self._hooked_run(fetches, feed_dict, options, run_metadata)
            except _RECOVERABLE as e:
                if not self._should_recover:
                    raise
                log.warning("A run failed with %s (%s): recreating the session",
                            type(e).__name__, e)
                try:
                    self._close_session()
                except Exception as close_error:  # noqa: BLE001  (gone either way)
                    log.warning("Closing the failed session: %s: %s",
                                type(close_error).__name__, close_error)
                self._recreate()

    def _recreate(self):
        """Creates the session again, retrying while the cluster is still recovering (as
        TF1's _RecoverableSession does)."""
        while True:
            try:
                self._create()
                return
            except _RECOVERABLE as e:
                log.warning("Creating the session failed with %s (%s): retrying",
                            type(e).__name__, e)
                time.sleep(0.5)

    def _hooked_run(self, fetches, feed_dict, options, run_metadata):
        ctx = hooks_lib.SessionRunContext(hooks_lib.SessionRunArgs(fetches, feed_dict),
                                          self._sess)
        actual = {"caller": fetches}
        feeds = dict(feed_dict or {})
        asked = {}
        for i, h in enumerate(self._hooks):
            req = h.before_run(ctx)
            if req is None:
                continue
            if req.fetches is not None:
                asked[i] = f"hook{i}"
                actual[asked[i]] = req.fetches
            for k, v in (req.feed_dict or {}).items():
                if k in feeds:
                    raise RuntimeError(f"Same tensor is fed by a SessionRunHook and user: {k}")
                feeds[k] = v
            if req.options is not None:
                options = req.options if options is None else options
        if fetches is None:
            actual.pop("caller")
        out = self._sess.run(actual, feed_dict=feeds or None, options=options,
                             run_metadata=run_metadata)
        for i, h in enumerate(self._hooks):
            h.after_run(ctx, hooks_lib.SessionRunValues(
                out[asked[i]] if i in asked else None, options, run_metadata))
        self._should_stop = self._should_stop or ctx.stop_requested
        return out.get("caller")

    def should_stop(self):
        return self._sess is None or self._should_stop or self._coord.should_stop()

    def close(self):
        self._close(ok=True)

    def _close(self, ok):
        if self._sess is None:
            return
        try:
            if ok:
                for h in self._hooks:
                    h.end(self._sess)
        finally:
            try:
                self._close_session()
            finally:
                self._unfinalize()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        clean = exc_type is None or issubclass(exc_type, (errors.OutOfRangeError, StopIteration))
        self._close(ok=clean)
        return exc_type is not None and clean


class SingularMonitoredSession(MonitoredSession):
    """A :class:`MonitoredSession` of a chief with the usual session creator and its raw
    session at hand (:meth:`raw_session`)."""

    def __init__(self, hooks=None, scaffold=None, master="", config=None, checkpoint_dir=None,
                 stop_grace_period_secs=120, checkpoint_filename_with_path=None):
        creator = ChiefSessionCreator(scaffold=scaffold, master=master, config=config,
                                      checkpoint_dir=checkpoint_dir,
                                      checkpoint_filename_with_path=checkpoint_filename_with_path)
        super().__init__(creator, hooks, stop_grace_period_secs, should_recover=False)

    def raw_session(self):
        return self._sess


def MonitoredTrainingSession(master="", is_chief=True, checkpoint_dir=None,  # noqa: N802
                             scaffold=None, hooks=None, chief_only_hooks=None,
                             save_checkpoint_secs=USE_DEFAULT, save_summaries_steps=USE_DEFAULT,
                             save_summaries_secs=USE_DEFAULT, config=None,
                             stop_grace_period_secs=120, log_step_count_steps=100,
                             max_wait_secs=7200, save_checkpoint_steps=USE_DEFAULT,
                             summary_dir=None, task=None):
    """A :class:`MonitoredSession` set up for training, as TF1 sets it up: the chief
    initializes or restores, saves a checkpoint every 600 s (or ``save_checkpoint_steps``)
    and summaries every 100 steps into ``checkpoint_dir``, and logs global steps/sec every
    ``log_step_count_steps``; a non-chief worker waits for the chief's variables. Pass None
    (or 0) to switch a saver off. ``task`` names this worker's task on a cluster ``master``
    (tensorweave's ``tw.Session(target=cluster, task=...)``)."""
    scaffold = scaffold or Scaffold()
    all_hooks = list(hooks or [])
    if not is_chief:
        creator = WorkerSessionCreator(scaffold, master, config, max_wait_secs, task)
        return MonitoredSession(creator, all_hooks, stop_grace_period_secs)
    all_hooks += list(chief_only_hooks or [])
    creator = ChiefSessionCreator(scaffold, master, config, checkpoint_dir, task=task)
    if save_summaries_steps is USE_DEFAULT and save_summaries_secs is USE_DEFAULT:
        save_summaries_steps, save_summaries_secs = 100, None
    save_summaries_steps = None if save_summaries_steps is USE_DEFAULT else save_summaries_steps
    save_summaries_secs = None if save_summaries_secs is USE_DEFAULT else save_summaries_secs
    if save_checkpoint_secs is USE_DEFAULT and save_checkpoint_steps is USE_DEFAULT:
        save_checkpoint_secs, save_checkpoint_steps = 600, None
    save_checkpoint_secs = None if save_checkpoint_secs is USE_DEFAULT else save_checkpoint_secs
    save_checkpoint_steps = None if save_checkpoint_steps is USE_DEFAULT else \
        save_checkpoint_steps
    summary_dir = summary_dir or checkpoint_dir
    if summary_dir:
        if log_step_count_steps and log_step_count_steps > 0:
            all_hooks.append(hooks_lib.StepCounterHook(every_n_steps=log_step_count_steps,
                                                       output_dir=summary_dir))
        if save_summaries_steps or save_summaries_secs:
            all_hooks.append(hooks_lib.SummarySaverHook(
                save_steps=save_summaries_steps or None,
                save_secs=None if save_summaries_steps else save_summaries_secs,
                scaffold=scaffold, output_dir=summary_dir))
    if checkpoint_dir and (save_checkpoint_secs or save_checkpoint_steps):
        all_hooks.append(hooks_lib.CheckpointSaverHook(
            checkpoint_dir, save_steps=save_checkpoint_steps or None,
            save_secs=None if save_checkpoint_steps else save_checkpoint_secs,
            scaffold=scaffold))
    return MonitoredSession(creator, all_hooks, stop_grace_period_secs)

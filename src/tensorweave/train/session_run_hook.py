"""Hooks into a :class:`~tensorweave.train.MonitoredSession`'s runs (TF1's
``tf.train.SessionRunHook``) and the standard ones: stop at a step, log tensors, save
checkpoints and summaries, count steps per second, stop on a NaN loss, feed, run final ops.

A hook's methods are called in this order::

    begin()                                  # the graph can still grow
    after_create_session(session, coord)     # variables initialized or restored
    for each run:  before_run(run_context) -> SessionRunArgs or None
                   after_run(run_context, run_values)
    end(session)                             # on a clean close

Example::

    class PrintLoss(tw.train.SessionRunHook):
        def before_run(self, run_context):
            return tw.train.SessionRunArgs(loss)          # fetched with the caller's fetches
        def after_run(self, run_context, run_values):
            print(run_values.results)
"""

from __future__ import annotations

import logging
import os
import time
from typing import NamedTuple

import numpy as np

from tensorweave.framework import ops

__all__ = ["SessionRunHook", "SessionRunArgs", "SessionRunContext", "SessionRunValues",
           "SecondOrStepTimer", "StopAtStepHook", "LoggingTensorHook", "NanTensorHook",
           "NanLossDuringTrainingError", "CheckpointSaverHook", "CheckpointSaverListener",
           "SummarySaverHook", "StepCounterHook", "FeedFnHook", "FinalOpsHook"]

log = logging.getLogger("tensorweave")


class SessionRunHook:
    """Does nothing; subclasses override what they need."""

    def begin(self):
        pass

    def after_create_session(self, session, coord):
        pass

    def before_run(self, run_context):
        return None

    def after_run(self, run_context, run_values):
        pass

    def end(self, session):
        pass


class SessionRunArgs(NamedTuple):
    """What a hook adds to a run: more ``fetches`` (any structure ``Session.run`` takes),
    feeds, and ``RunOptions``."""

    fetches: object
    feed_dict: dict | None = None
    options: object = None


class SessionRunValues(NamedTuple):
    """What a hook gets back: ``results`` (its own fetches' values), options, metadata."""

    results: object
    options: object
    run_metadata: object


class SessionRunContext:
    """The run in progress, as a hook sees it: the caller's ``original_args``, the
    ``session``, and :meth:`request_stop`."""

    def __init__(self, original_args, session):
        self.original_args = original_args
        self.session = session
        self._stop_requested = False

    def request_stop(self):
        """Ends the loop after this run: ``should_stop()`` becomes True."""
        self._stop_requested = True

    @property
    def stop_requested(self):
        return self._stop_requested


def _global_step_tensor():
    from tensorweave.train.training_util import get_global_step
    step = get_global_step()
    if step is None:
        raise RuntimeError("This hook needs a global step: create one with "
                           "tw.train.get_or_create_global_step() before the session")
    return step


def _step_now(session, step_tensor):
    """The global step after the run, read again: a variable fetched in the run that updates it
    may show the value before or after the update. Hooks fetch the step with the run and read it
    again only when that value says they may fire (TF1's way: no extra run per step)."""
    return int(session.run(step_tensor))


def _due_step(timer, run_context, run_values, step_tensor):
    """The global step if ``timer`` fires for it after this run, else None: the step fetched
    with the run says whether it may, and only then is it read again."""
    if not timer.should_trigger_for_step(int(run_values.results) + 1):
        return None
    step = _step_now(run_context.session, step_tensor)
    return step if timer.should_trigger_for_step(step) else None


def _as_tensor(t):
    return ops.get_default_graph().as_graph_element(t) if isinstance(t, str) else t


class SecondOrStepTimer:
    """Fires every ``every_secs`` seconds or every ``every_steps`` steps (exactly one)."""

    def __init__(self, every_secs=None, every_steps=None):
        if (every_secs is None) == (every_steps is None):
            raise ValueError("exactly one of every_secs and every_steps must be given, got "
                             f"every_secs={every_secs!r}, every_steps={every_steps!r}")
        if every_secs is not None and every_secs < 0 or every_steps is not None and \
                every_steps <= 0:
            raise ValueError("every_secs must be >= 0 and every_steps > 0")
        self._secs, self._steps = every_secs, every_steps
        self.reset()

    def reset(self):
        self._last_time = self._last_step = None

    def should_trigger_for_step(self, step):
        if self._last_step is None:
            return True
        if self._last_step == step:
            return False
        if self._secs is not None:
            return time.time() >= self._last_time + self._secs
        return step >= self._last_step + self._steps

    def update_last_triggered_step(self, step):
        """Records a trigger; returns (seconds, steps) since the previous one (None first)."""
        now = time.time()
        elapsed = None if self._last_time is None else (now - self._last_time,
                                                        step - self._last_step)
        self._last_time, self._last_step = now, step
        return elapsed

    def last_triggered_step(self):
        return self._last_step


class StopAtStepHook(SessionRunHook):
    """Requests a stop once the global step reaches ``last_step``, or ``num_steps`` steps
    after the step the session started at."""

    def __init__(self, num_steps=None, last_step=None):
        if (num_steps is None) == (last_step is None):
            raise ValueError("StopAtStepHook: give exactly one of num_steps and last_step")
        self._num_steps, self._last_step = num_steps, last_step

    def begin(self):
        self._step = _global_step_tensor()

    def after_create_session(self, session, coord):
        if self._last_step is None:
            self._last_step = int(session.run(self._step)) + self._num_steps

    def before_run(self, run_context):
        return SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
        if int(run_values.results) + 1 >= self._last_step and \
                _step_now(run_context.session, self._step) >= self._last_step:
            run_context.request_stop()


class LoggingTensorHook(SessionRunHook):
    """Logs tensors (a dict ``tag -> tensor`` or a list) every ``every_n_iter`` runs or
    ``every_n_secs`` seconds (and with ``at_end``, once more at the end), to the
    ``tensorweave`` logger at INFO, through ``formatter(dict of values)`` when given."""

    def __init__(self, tensors, every_n_iter=None, every_n_secs=None, at_end=False,
                 formatter=None):
        only_end = at_end and every_n_iter is None and every_n_secs is None
        if not only_end and (every_n_iter is None) == (every_n_secs is None):
            raise ValueError("LoggingTensorHook: give exactly one of every_n_iter and "
                             "every_n_secs (or only at_end=True)")
        if every_n_iter is not None and every_n_iter <= 0:
            raise ValueError(f"every_n_iter must be positive, got {every_n_iter}")
        if not isinstance(tensors, dict):
            tensors = {(t if isinstance(t, str) else t.name): t for t in tensors}
        self._tags = list(tensors)
        self._given = tensors
        self._timer = None if only_end else SecondOrStepTimer(every_n_secs, every_n_iter)
        self._at_end, self._formatter = at_end, formatter

    def begin(self):
        self._iter = 0
        self._tensors = {tag: _as_tensor(t) for tag, t in self._given.items()}
        if self._timer is not None:
            self._timer.reset()

    def before_run(self, run_context):
        self._fire = self._timer is not None and self._timer.should_trigger_for_step(self._iter)
        return SessionRunArgs(self._tensors) if self._fire else None

    def _log(self, values):
        if self._formatter is not None:
            log.info("%s", self._formatter(values))
        else:
            log.info("%s", ", ".join(f"{tag} = {values[tag]}" for tag in self._tags))

    def after_run(self, run_context, run_values):
        if self._fire:
            elapsed = self._timer.update_last_triggered_step(self._iter)
            self._log(run_values.results)
            if elapsed is not None:
                log.info("(%.3f sec)", elapsed[0])
        self._iter += 1

    def end(self, session):
        if self._at_end:
            self._log(session.run(self._tensors))


class NanLossDuringTrainingError(RuntimeError):
    def __str__(self):
        return "NaN loss during training."


class NanTensorHook(SessionRunHook):
    """Raises :class:`NanLossDuringTrainingError` (or, with ``fail_on_nan_loss=False``, logs
    and requests a stop) when ``loss_tensor`` comes out NaN."""

    def __init__(self, loss_tensor, fail_on_nan_loss=True):
        self._loss, self._fail = loss_tensor, fail_on_nan_loss

    def before_run(self, run_context):
        return SessionRunArgs(self._loss)

    def after_run(self, run_context, run_values):
        if np.isnan(run_values.results).any():
            if self._fail:
                raise NanLossDuringTrainingError
            log.warning("Model diverged with loss = NaN; stopping")
            run_context.request_stop()


class CheckpointSaverListener:
    """Told around each save of a :class:`CheckpointSaverHook`; ``after_save`` may return
    True to stop training."""

    def begin(self):
        pass

    def before_save(self, session, global_step_value):
        pass

    def after_save(self, session, global_step_value):
        pass

    def end(self, session, global_step_value):
        pass


class CheckpointSaverHook(SessionRunHook):
    """Saves ``<checkpoint_dir>/<checkpoint_basename>-<global step>`` every ``save_secs``
    seconds or ``save_steps`` steps, after the first run and at the end."""

    def __init__(self, checkpoint_dir, save_secs=None, save_steps=None, saver=None,
                 checkpoint_basename="model.ckpt", scaffold=None, listeners=None):
        if saver is not None and scaffold is not None:
            raise ValueError("CheckpointSaverHook: give saver or scaffold, not both")
        self._dir = checkpoint_dir
        self._path = os.path.join(checkpoint_dir, checkpoint_basename)
        self._saver, self._scaffold = saver, scaffold
        self._timer = SecondOrStepTimer(save_secs, save_steps)
        self._listeners = list(listeners or [])

    def begin(self):
        self._step = _global_step_tensor()
        for li in self._listeners:
            li.begin()

    def after_create_session(self, session, coord):
        os.makedirs(self._dir, exist_ok=True)
        self._timer.reset()

    def before_run(self, run_context):
        return SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
        step = _due_step(self._timer, run_context, run_values, self._step)
        if step is not None:
            self._timer.update_last_triggered_step(step)
            if self._save(run_context.session, step):
                run_context.request_stop()

    def end(self, session):
        step = int(session.run(self._step))
        if step != self._timer.last_triggered_step():
            self._save(session, step)
        for li in self._listeners:
            li.end(session, step)

    def _get_saver(self):
        if self._saver is not None:
            return self._saver
        if self._scaffold is not None:
            return self._scaffold.saver
        from tensorweave.train.saver import Saver
        savers = ops.get_collection(ops.GraphKeys.SAVERS)
        if len(savers) > 1:
            raise RuntimeError("More than one Saver in the SAVERS collection: pass saver= "
                               "or scaffold= to CheckpointSaverHook")
        self._saver = savers[0] if savers else Saver()
        return self._saver

    def _save(self, session, step):
        for li in self._listeners:
            li.before_save(session, step)
        self._get_saver().save(session, self._path, global_step=step)
        log.info("Saving checkpoints for %d into %s.", step, self._path)
        stop = False
        for li in self._listeners:
            stop = bool(li.after_save(session, step)) or stop
        return stop


class SummarySaverHook(SessionRunHook):
    """Writes the summaries of ``summary_op`` (default: the scaffold's, else every summary in
    the graph) every ``save_steps`` steps or ``save_secs`` seconds, to ``output_dir``."""

    def __init__(self, save_steps=None, save_secs=None, output_dir=None, summary_writer=None,
                 scaffold=None, summary_op=None):
        if (scaffold is None) == (summary_op is None) and scaffold is not None:
            raise ValueError("SummarySaverHook: give scaffold or summary_op, not both")
        if output_dir is None and summary_writer is None:
            raise ValueError("SummarySaverHook needs output_dir or summary_writer")
        self._timer = SecondOrStepTimer(save_secs, save_steps)
        self._dir, self._writer = output_dir, summary_writer
        self._scaffold, self._op = scaffold, summary_op

    def begin(self):
        from tensorweave import summary
        if self._writer is None:
            self._writer = summary.FileWriterCache.get(self._dir)
        self._step = _global_step_tensor()
        if self._op is None and self._scaffold is None:
            self._op = summary.merge_all()
        self._timer.reset()
        self._next = None

    def _summary_op(self):
        return self._scaffold.summary_op if self._scaffold is not None else self._op

    def before_run(self, run_context):
        self._fire = self._next is None or self._timer.should_trigger_for_step(self._next)
        op = self._summary_op()
        fetches = {"step": self._step}
        if self._fire and op is not None:
            fetches["summary"] = op
        return SessionRunArgs(fetches)

    def after_run(self, run_context, run_values):
        step = int(run_values.results["step"])
        if self._next is None:
            from tensorweave.summary import SessionLog
            self._writer.add_session_log(SessionLog(status=SessionLog.START), step)
        if self._fire:
            self._timer.update_last_triggered_step(step)
            if "summary" in run_values.results:
                self._writer.add_summary(run_values.results["summary"], step)
        self._next = step + 1

    def end(self, session):
        self._writer.flush()


class StepCounterHook(SessionRunHook):
    """Writes ``global_step/sec`` to TensorBoard (and the log) every ``every_n_steps`` steps
    or ``every_n_secs`` seconds."""

    def __init__(self, every_n_steps=100, every_n_secs=None, output_dir=None,
                 summary_writer=None):
        if (every_n_steps is None) == (every_n_secs is None):
            raise ValueError("StepCounterHook: give exactly one of every_n_steps and "
                             "every_n_secs")
        self._timer = SecondOrStepTimer(every_n_secs, every_n_steps)
        self._dir, self._writer = output_dir, summary_writer

    def begin(self):
        if self._writer is None and self._dir:
            from tensorweave import summary
            self._writer = summary.FileWriterCache.get(self._dir)
        self._step = _global_step_tensor()
        self._timer.reset()

    def before_run(self, run_context):
        return SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
        step = _due_step(self._timer, run_context, run_values, self._step)
        if step is not None:
            elapsed = self._timer.update_last_triggered_step(step)
            if elapsed is not None and elapsed[0] > 0:
                rate = elapsed[1] / elapsed[0]
                log.info("global_step/sec: %g", rate)
                if self._writer is not None:
                    from tensorweave.summary import Summary
                    self._writer.add_summary(Summary(value=[Summary.Value(
                        tag="global_step/sec", simple_value=rate)]), step)


class FeedFnHook(SessionRunHook):
    """Adds ``feed_fn()``'s feed dict to every run."""

    def __init__(self, feed_fn):
        self.feed_fn = feed_fn

    def before_run(self, run_context):
        return SessionRunArgs(fetches=None, feed_dict=self.feed_fn())


class FinalOpsHook(SessionRunHook):
    """Runs ``final_ops`` when the session ends; their values are in ``final_ops_values``."""

    def __init__(self, final_ops, final_ops_feed_dict=None):
        self._ops, self._feed = final_ops, final_ops_feed_dict
        self.final_ops_values = None

    def end(self, session):
        if self._ops is not None:
            self.final_ops_values = session.run(self._ops, feed_dict=self._feed)

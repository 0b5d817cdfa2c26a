"""``tw.train.SyncReplicasOptimizer``: synchronous data parallelism with backup workers.

Each worker pushes its gradients, tagged with the step it read the parameters at, into one
accumulator per variable on that variable's parameter server, then waits for the step to be
aggregated. The aggregator (the chief) waits until ``replicas_to_aggregate`` fresh gradients have
reached every accumulator, averages the first ones to arrive, applies them with the wrapped
optimizer and advances the step. With ``total_num_replicas = replicas_to_aggregate + b`` the b
slowest gradients of a step arrive stale and are dropped.

Example (between-graph replication; each worker builds this graph)::

    with tw.device(tw.train.replica_device_setter(cluster=spec,
                                                  worker_device=f"/job:worker/task:{i}")):
        loss = build_model()
        step = tw.train.get_or_create_global_step()
        opt = tw.train.SyncReplicasOptimizer(tw.train.GradientDescentOptimizer(0.1),
                                             replicas_to_aggregate=2, total_num_replicas=3)
        train_op = opt.minimize(loss, global_step=step)
    hook = opt.make_session_run_hook(is_chief=(i == 0))
    sess = tw.Session(target=cluster, ...)
    hook.after_create_session(sess)            # local step; the chief starts aggregating
    while ...: sess.run(train_op, feeds)
    hook.end(sess)

Unlike TF's token queue, workers wait on the step variable itself (a barrier): a slow or backup
worker that falls behind returns at once with the current step instead of consuming stale tokens.
Every wait has a timeout (``timeout`` seconds) and fails with DeadlineExceededError saying why.
"""

from __future__ import annotations

import threading
import time

from tensorweave.framework import dtypes, errors, ops
from tensorweave.framework.ops import GraphKeys, IndexedSlices
from tensorweave.ops import array_ops, control_flow_ops, state_ops, sync_ops
from tensorweave.ops.variables import Variable
from tensorweave.train.optimizer import Optimizer

__all__ = ["SyncReplicasOptimizer"]


class SyncReplicasOptimizer(Optimizer):
    """Wraps ``opt`` so that ``replicas_to_aggregate`` gradients are averaged per step.

    ``timeout``: seconds any wait (a worker for its step, the chief for gradients) may block
    before failing with a clear DeadlineExceededError.
    """

    def __init__(self, opt, replicas_to_aggregate, total_num_replicas=None,
                 variable_averages=None, variables_to_average=None, use_locking=False,
                 name="sync_replicas", timeout=60.0):
        super().__init__(use_locking, name)
        if variable_averages is not None:
            raise NotImplementedError("SyncReplicasOptimizer: variable_averages is not "
                                      "supported; pass None")
        if replicas_to_aggregate < 1:
            raise ValueError(f"replicas_to_aggregate must be >= 1, got {replicas_to_aggregate}")
        if total_num_replicas is None:
            total_num_replicas = replicas_to_aggregate
        if total_num_replicas < replicas_to_aggregate:
            raise ValueError(f"total_num_replicas ({total_num_replicas}) must be >= "
                             f"replicas_to_aggregate ({replicas_to_aggregate})")
        self._opt = opt
        self._replicas_to_aggregate = replicas_to_aggregate
        self._total_num_replicas = total_num_replicas
        self._timeout = float(timeout)
        self._gradients_applied = False
        self._chief_train_op = None
        self._local_step = None
        self._sync_step = None
        self._accumulators = []

    # --- the wrapped optimizer does the math ---------------------------------------------------
    def compute_gradients(self, *args, **kwargs):
        """The wrapped optimizer's gradients (this worker's, not yet averaged)."""
        return self._opt.compute_gradients(*args, **kwargs)

    def get_slot(self, *args, **kwargs):
        return self._opt.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._opt.get_slot_names(*args, **kwargs)

    def variables(self):
        return self._opt.variables()

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """Returns this worker's train op: push the gradients, wait for the step to be
        aggregated, and move the local step on. Also builds ``chief_train_op``."""
        if not grads_and_vars:
            raise ValueError("Must supply at least one variable")
        if global_step is None:
            raise ValueError("Global step is required to check staleness")
        if self._gradients_applied:
            raise ValueError("SyncReplicasOptimizer.apply_gradients was already called")
        self._gradients_applied = True
        grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]
        graph = global_step.graph
        with graph.as_default(), ops.name_scope(None):
            # the step that ages gradients; one per optimizer so hybrid groups are independent
            with ops.colocate_with(global_step), ops.control_dependencies(None):
                self._sync_step = Variable(array_ops.zeros([], dtypes.int64), trainable=False,
                                           name=f"{self._name}/sync_step")
            # the worker-local step lives on this worker (next to a local anchor op)
            with ops.control_dependencies(None):
                anchor = control_flow_ops.no_op(name=f"{self._name}/local_anchor")
            with ops.colocate_with(anchor), ops.control_dependencies(None):
                self._local_step = Variable(array_ops.zeros([], dtypes.int64), trainable=False,
                                            collections=[GraphKeys.LOCAL_VARIABLES],
                                            name=f"{self._name}/local_step")
                self.local_step_init_op = state_ops.assign(self._local_step,
                                                           self._sync_step.read_value()).op
        with graph.as_default(), ops.name_scope(name, self._name) as scope:
            local_step = self._local_step.value()
            pushes, handles = [], []
            for grad, var in grads_and_vars:
                shared = f"{self._name}/{var.op.name}"
                sparse = isinstance(grad, IndexedSlices)
                with ops.colocate_with(var), ops.name_scope(var.op.name):
                    handle = sync_ops.conditional_accumulator(
                        var.dtype.base_dtype, var.shape, shared, sparse=sparse)
                    if sparse:
                        push = sync_ops.sparse_accumulator_apply_gradient(
                            handle, local_step, grad.indices, grad.values)
                    else:
                        push = sync_ops.accumulator_apply_gradient(handle, local_step, grad)
                pushes.append(push)
                handles.append((handle, var, sparse))
            self._accumulators = [h for h, _, _ in handles]
            with ops.control_dependencies(pushes), ops.colocate_with(self._sync_step):
                new_step = sync_ops.sync_step_wait(self._sync_step, local_step, self._timeout)
            with ops.colocate_with(anchor):
                train_op = state_ops.assign(self._local_step, new_step, name="update_local_step")
            train_op = train_op.op
            self._worker_new_step = new_step

            # the chief's aggregation step, run repeatedly by the hook's thread (or a driver)
            with ops.name_scope("chief"):
                with ops.colocate_with(self._sync_step):
                    current = self._sync_step.read_value()
                waits = []
                for handle, var, _ in handles:
                    with ops.colocate_with(var):
                        waits.append(sync_ops.accumulator_wait_ready(
                            handle, self._replicas_to_aggregate, current, self._timeout))
                averaged = []
                with ops.control_dependencies(waits):
                    for handle, var, sparse in handles:
                        with ops.colocate_with(var):
                            taken = sync_ops.accumulator_take_gradient(
                                handle, self._replicas_to_aggregate, current)
                        if sparse:
                            taken = IndexedSlices(taken[1], taken[0],
                                                  ops.convert_to_tensor(var.shape.as_list()))
                        averaged.append((taken, var))
                apply = self._opt.apply_gradients(averaged, global_step=global_step)
                with ops.control_dependencies([apply]), ops.colocate_with(self._sync_step):
                    advanced = state_ops.assign_add(self._sync_step, 1)
                with ops.control_dependencies([advanced]), ops.colocate_with(self._sync_step):
                    notify = sync_ops.sync_step_notify(self._sync_step)
                with ops.control_dependencies([notify]):
                    self._chief_train_op = control_flow_ops.group(apply, name=scope + "done")
        train_ops = graph.get_collection_ref(GraphKeys.TRAIN_OP)
        if train_op not in train_ops:
            train_ops.append(train_op)
        return train_op

    # --- what the chief and the workers run --------------------------------------------------------
    @property
    def chief_train_op(self):
        """One aggregation step: wait for the gradients, average, apply, advance the step."""
        self._check_applied()
        return self._chief_train_op

    @property
    def sync_step(self):
        """The step variable that ages gradients (advanced once per aggregation)."""
        self._check_applied()
        return self._sync_step

    @property
    def local_step(self):
        self._check_applied()
        return self._local_step

    @property
    def worker_step(self):
        """The step value the worker's train op returned (fetch it with the train op)."""
        self._check_applied()
        return self._worker_new_step

    def get_init_tokens_op(self, num_tokens=-1):
        """For TF compatibility: this design has no token queue, so this is a no-op."""
        self._check_applied()
        return control_flow_ops.no_op(name="init_tokens")

    def get_chief_queue_runner(self):
        """An object whose ``start(sess)``/``stop()`` run the aggregation loop in a thread."""
        self._check_applied()
        return ChiefAggregator(self._chief_train_op)

    def make_session_run_hook(self, is_chief, num_tokens=-1):
        """A hook: ``after_create_session(sess)`` sets the local step and, on the chief,
        starts the aggregation thread; ``end(sess)`` stops it."""
        return _SyncReplicasHook(self, is_chief)

    def _check_applied(self):
        if not self._gradients_applied:
            raise ValueError("Call apply_gradients (or minimize) first")


class ChiefAggregator:
    """Runs ``chief_train_op`` in a loop on a thread. A wait that times out (too few gradients
    yet) is retried; after ``stall_timeout`` seconds without progress the loop stops and
    ``error`` says why."""

    def __init__(self, chief_op, stall_timeout=300.0, retryable=None):
        self.chief_op = chief_op
        self.stall_timeout = stall_timeout
        self.retryable = retryable or (lambda e: isinstance(e, errors.DeadlineExceededError))
        self.error = None
        self.steps = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self, sess):
        self._thread = threading.Thread(target=self._loop, args=(sess,), daemon=True,
                                        name="tw-sync-chief")
        self._thread.start()
        return self

    def _loop(self, sess):
        last_progress = time.monotonic()
        while not self._stop.is_set():
            try:
                sess.run(self.chief_op)
                self.steps += 1
                last_progress = time.monotonic()
            except Exception as e:  # noqa: BLE001  (reported through .error)
                if self._stop.is_set():
                    return
                self.error = e
                if not self.retryable(e) or \
                        time.monotonic() - last_progress > self.stall_timeout:
                    return
                if not isinstance(e, errors.DeadlineExceededError):
                    time.sleep(0.1)  # a task is restarting: give it a moment

    def stop(self, timeout=1.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()


class _SyncReplicasHook:
    def __init__(self, opt, is_chief):
        self._opt = opt
        self._is_chief = is_chief
        self.aggregator = None

    def begin(self):
        pass

    def after_create_session(self, session, coord=None):
        session.run(self._opt.local_step_init_op)
        if self._is_chief:
            self.aggregator = self._opt.get_chief_queue_runner().start(session)

    def before_run(self, run_context):
        return None

    def after_run(self, run_context, run_values):
        pass

    def end(self, session):
        if self.aggregator is not None:
            self.aggregator.stop()

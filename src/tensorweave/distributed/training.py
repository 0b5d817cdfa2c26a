"""The distributed training driver: async, sync and hybrid data parallelism with parameter
servers, periodic checkpoints and recovery from killed workers and parameter servers.

``train_distributed(model_fn, workers=2, ps=1, mode="sync")`` starts a cluster (Ray actors on
loopback by default, or threads with ``backend="inprocess"``), and then:

* the **driver** (this process) is the chief: it initializes the parameter servers once (or
  restores them from the newest checkpoint in ``checkpoint_dir``), writes checkpoints every
  ``checkpoint_secs``, runs the aggregation loop of each synchronous group, watches every task
  and evaluates the model on held-out data at the end;
* each **worker** builds its own replica graph (between-graph replication) inside its task and
  runs ``train_op`` until the global step reaches ``steps``.

Faults (docs/distributed.md): a dead worker is replaced and the replacement joins the running
job; a dead or restarted parameter server is restarted and its variables are restored from the
last checkpoint (never re-initialized); every wait has a timeout, and a job without progress for
``stall_timeout`` seconds fails with an error that says what is missing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tensorweave.distributed.cluster import ClusterSpec
from tensorweave.distributed.partition import task_of
from tensorweave.framework import errors

__all__ = ["train_distributed", "DistributedTrainer", "ReplicaModel", "DigitsModel",
           "SyntheticModel", "TrainConfig", "digits_model_fn"]


# --- the model contract -----------------------------------------------------------------------
@dataclass
class ReplicaModel:
    """What a ``model_fn()`` returns, built in the current default graph.

    ``train_batches(worker_index, num_workers)`` yields tuples matching ``inputs``, endlessly;
    ``eval_batches()`` yields held-out tuples; ``make_optimizer()`` returns a new optimizer.
    ``eval_loss``: the loss evaluated on held-out data when it differs from the training loss
    (e.g. an inference tower using batch norm's moving averages); default ``loss``. Ops in the
    graph's ``UPDATE_OPS`` collection (batch norm's moving averages) run with every training
    step of a worker (``build_replica`` groups them with the train op).
    """

    loss: object
    accuracy: object
    inputs: tuple
    make_optimizer: Callable
    train_batches: Callable
    eval_batches: Callable
    batch_size: int
    eval_loss: object = None


_DATA_CACHE: dict = {}


@dataclass
class DigitsModel:
    """``model_fn`` for the seed's digits MLP (``models/digits.py``): picklable, so Ray
    workers rebuild the same replica from it."""

    dataset: str = "mnist5k"
    hidden: tuple = (256, 256)
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    seed: int = 0

    def data(self):
        if self.dataset not in _DATA_CACHE:
            from tensorweave.models.digits import load
            _DATA_CACHE[self.dataset] = load(self.dataset)
        return _DATA_CACHE[self.dataset]

    def __call__(self) -> ReplicaModel:
        import tensorweave as tw
        from tensorweave.models.digits import build_mlp
        x_train, y_train, x_test, y_test = self.data()
        x = tw.placeholder(tw.float32, [None, x_train.shape[1]], name="images")
        y = tw.placeholder(tw.int64, [None], name="labels")
        logits = build_mlp(x, self.hidden, seed=self.seed)
        loss = tw.reduce_mean(
            tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        accuracy = tw.reduce_mean(tw.cast(tw.equal(tw.argmax(logits, 1), y), tw.float32),
                                  name="accuracy")
        lr, mom, bs, seed = self.learning_rate, self.momentum, self.batch_size, self.seed

        def make_optimizer():
            if mom:
                return tw.train.MomentumOptimizer(lr, mom)
            return tw.train.GradientDescentOptimizer(lr)

        def train_batches(worker, num_workers):
            rng = np.random.default_rng([seed, worker])
            n = len(x_train)
            while True:
                order = rng.permutation(n)
                for s in range(n // bs):
                    idx = order[s * bs:(s + 1) * bs]
                    yield x_train[idx], y_train[idx]

        def eval_batches():
            for i in range(0, len(x_test), 1000):
                yield x_test[i:i + 1000], y_test[i:i + 1000]

        return ReplicaModel(loss, accuracy, (x, y), make_optimizer, train_batches,
                            eval_batches, bs)


@dataclass
class SyntheticModel:
    """``model_fn`` needing no data files: an MLP classifying points labelled by a fixed random
    teacher (learnable to ~95%). ``hidden=(1024, 1024)`` makes it compute-bound (benchmarks)."""

    features: int = 32
    classes: int = 4
    hidden: tuple = (32,)
    batch_size: int = 32
    learning_rate: float = 0.1
    momentum: float = 0.0
    seed: int = 0

    def _points(self, rng, n):
        teacher = np.random.default_rng(1234).standard_normal((self.features, self.classes))
        x = rng.standard_normal((n, self.features)).astype(np.float32)
        return x, np.argmax(x @ teacher, axis=1).astype(np.int64)

    def __call__(self) -> ReplicaModel:
        import tensorweave as tw
        from tensorweave.models.digits import build_mlp
        x = tw.placeholder(tw.float32, [None, self.features], name="inputs")
        y = tw.placeholder(tw.int64, [None], name="labels")
        logits = build_mlp(x, self.hidden, num_classes=self.classes, seed=self.seed)
        loss = tw.reduce_mean(
            tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        accuracy = tw.reduce_mean(tw.cast(tw.equal(tw.argmax(logits, 1), y), tw.float32),
                                  name="accuracy")
        lr, mom = self.learning_rate, self.momentum

        def make_optimizer():
            return tw.train.MomentumOptimizer(lr, mom) if mom else \
                tw.train.GradientDescentOptimizer(lr)

        def train_batches(worker, num_workers):
            rng = np.random.default_rng([self.seed, worker, 7])
            pool = self._points(rng, 64 * self.batch_size)
            while True:
                idx = rng.integers(0, len(pool[0]), self.batch_size)
                yield pool[0][idx], pool[1][idx]

        def eval_batches():
            yield self._points(np.random.default_rng([self.seed, 99]), 1000)

        return ReplicaModel(loss, accuracy, (x, y), make_optimizer, train_batches,
                            eval_batches, self.batch_size)


def digits_model_fn(dataset="mnist5k", **kwargs) -> DigitsModel:
    """The builder the CLI passes to ``train_distributed`` for ``tensorweave train digits``."""
    return DigitsModel(dataset, **kwargs)


# --- configuration and replica graphs -------------------------------------------------------------
@dataclass
class TrainConfig:
    model_fn: Callable
    workers: int = 2
    ps: int = 1
    mode: str = "async"  # "async", "sync" or "hybrid"
    backup: int = 0  # per synchronous group
    groups: int = 1  # hybrid: asynchronous groups of synchronous replicas
    steps: int = 500  # global steps (one per aggregated update in sync mode)
    timeout: float = 30.0  # any single wait (a step, a gradient, a tensor)
    stall_timeout: float = 120.0  # no global progress for this long: fail with a clear error
    checkpoint_dir: str | None = None
    checkpoint_secs: float = 5.0
    balance: bool = False  # place variables by bytes (greedy) instead of round-robin
    faults: list = field(default_factory=list)  # [(kind, index, at_global_step)] for tests
    eval_secs: float | None = None  # evaluate held-out accuracy this often (trainer.history)

    def validate(self):
        if self.mode not in ("async", "sync", "hybrid"):
            raise ValueError(f"mode must be 'async', 'sync' or 'hybrid', got {self.mode!r}")
        if self.workers < 1 or self.ps < 1:
            raise ValueError(f"need >= 1 worker and >= 1 ps task, got workers={self.workers}, "
                             f"ps={self.ps}")
        groups = self.num_groups
        if self.workers % groups:
            raise ValueError(f"hybrid mode: {self.workers} workers do not split into "
                             f"{groups} equal groups")
        if self.mode != "async" and self.replicas_to_aggregate < 1:
            raise ValueError(f"backup={self.backup} leaves no replica to aggregate in groups "
                             f"of {self.workers // groups} workers")

    @property
    def num_groups(self):
        return {"async": 1, "sync": 1, "hybrid": max(1, self.groups)}[self.mode]

    @property
    def group_size(self):
        return self.workers // self.num_groups

    @property
    def replicas_to_aggregate(self):
        return self.group_size - self.backup

    @property
    def examples_per_step(self):
        return 1 if self.mode == "async" else self.replicas_to_aggregate

    def group_of(self, worker):
        return worker // self.group_size

    @property
    def spec(self):
        return ClusterSpec({"ps": self.ps, "worker": self.workers})


@dataclass
class Replica:
    graph: object
    model: ReplicaModel
    global_step: object
    train_op: object = None
    step_value: object = None
    local_init: object = None
    sync_opts: list = field(default_factory=list)
    init_op: object = None


def build_replica(cfg: TrainConfig, worker=None) -> Replica:
    """A replica's graph for worker ``worker``, or the driver's (chief) graph when None.

    Both come from this one function, so variables, slots and accumulators get the same
    names (and so the same storage on the parameter servers) in every graph.
    """
    import tensorweave as tw
    from tensorweave.distributed.device_setter import (
        GreedyLoadBalancingStrategy,
        replica_device_setter,
    )
    from tensorweave.distributed.sync_replicas import SyncReplicasOptimizer
    graph = tw.Graph()
    # the driver's own ops (evaluation, the aggregators' constants) run on ps 0
    device = f"/job:worker/task:{worker}" if worker is not None else "/job:ps/task:0"
    strategy = GreedyLoadBalancingStrategy(cfg.ps) if cfg.balance else None
    with graph.as_default(), tw.device(replica_device_setter(
            cluster=cfg.spec, worker_device=device, ps_strategy=strategy)):
        model = cfg.model_fn()
        gs = tw.train.get_or_create_global_step()
        rep = Replica(graph, model, gs)
        if cfg.mode == "async":
            rep.train_op = model.make_optimizer().minimize(model.loss, global_step=gs)
            rep.step_value = gs.value()
        else:
            groups = range(cfg.num_groups) if worker is None else [cfg.group_of(worker)]
            grads = None
            for g in groups:
                opt = SyncReplicasOptimizer(
                    model.make_optimizer(), cfg.replicas_to_aggregate, cfg.group_size,
                    name=f"sync_group{g}", timeout=cfg.timeout)
                if grads is None:
                    grads = opt.compute_gradients(model.loss)
                rep.train_op = opt.apply_gradients(grads, global_step=gs)
                rep.sync_opts.append(opt)
            rep.local_init = rep.sync_opts[0].local_step_init_op
            rep.step_value = gs.value()
        update_ops = tw.get_collection(tw.GraphKeys.UPDATE_OPS)
        if update_ops and worker is not None:  # e.g. batch norm's moving averages (on the PS)
            rep.train_op = tw.group(rep.train_op, *update_ops)
        if worker is None:
            rep.init_op = tw.variables_initializer(tw.global_variables())
    return rep


def _retryable(e) -> bool:
    """Errors a replica waits out (a task restarting, a variable being restored)."""
    if isinstance(e, (errors.DeadlineExceededError, errors.FailedPreconditionError,
                      errors.UnavailableError, errors.AbortedError, errors.CancelledError)):
        return True
    return type(e).__module__.startswith("ray") or "Actor" in type(e).__name__


class _Killed(Exception):
    """Raised inside an in-process worker to simulate its process dying."""


def worker_main(cluster, index, cfg: TrainConfig, kill_flag=None):
    """One worker's client program: build the replica, train until the global step reaches
    ``cfg.steps``. Runs in the worker's Ray actor (``run_client``) or on a thread."""
    from tensorweave.distributed.session import DistributedSession
    rep = build_replica(cfg, index)
    sess = DistributedSession(cluster, graph=rep.graph, task=f"/job:worker/task:{index}",
                              step_timeout=cfg.timeout * 2)
    batches = rep.model.train_batches(index, cfg.workers)
    fetches = [rep.train_op, rep.step_value]
    steps, retries, need_init = 0, 0, rep.local_init is not None
    last_ok = time.monotonic()
    while True:
        if kill_flag is not None and kill_flag.is_set():
            raise _Killed(f"worker {index} killed")
        try:
            if need_init:
                sess.run(rep.local_init)
                need_init = False
            _, gs = sess.run(fetches, dict(zip(rep.model.inputs, next(batches))))
            steps += 1
            last_ok = time.monotonic()
            if gs >= cfg.steps:
                break
        except Exception as e:  # noqa: BLE001
            if not _retryable(e) or time.monotonic() - last_ok > cfg.stall_timeout:
                raise
            retries += 1
            need_init = rep.local_init is not None
            time.sleep(0.1)
    sess.close()
    return {"worker": index, "steps": steps, "retries": retries}


# --- backends: where tasks and worker programs run -------------------------------------------------
class InProcessBackend:
    """Tasks are TaskServers in this process; worker programs run on threads. A "killed"
    worker thread stops at its next step; a "killed" PS is replaced by a fresh TaskServer."""

    def __init__(self, spec, recv_timeout, compress=None):
        from concurrent.futures import ThreadPoolExecutor

        from tensorweave.distributed.inprocess import InProcessCluster
        self.cluster = InProcessCluster(spec, recv_timeout=recv_timeout, compress=compress)
        self._pool = ThreadPoolExecutor(spec.num_tasks("worker") + 2,
                                        thread_name_prefix="tw-worker")
        self._kill = {}

    def start_worker(self, index, cfg):
        flag = self._kill[index] = threading.Event()
        return self._pool.submit(worker_main, self.cluster, index, cfg, flag)

    @staticmethod
    def result(handle, timeout=0.0):
        """(done, value or exception)."""
        if not handle.done():
            return False, None
        e = handle.exception()
        return True, (e if e is not None else handle.result())

    def kill(self, kind, index):
        if kind == "worker":
            self._kill[index].set()
        else:
            self.cluster.restart_task(f"/job:ps/task:{index}")

    def ps_alive(self, task):
        return True

    def restart(self, task):
        self.cluster.restart_task(task)

    def shutdown(self):
        for f in self._kill.values():
            f.set()
        self._pool.shutdown(wait=True)
        self.cluster.shutdown()


class RayBackend:
    """Tasks are Ray actors; each worker program runs inside its worker's actor."""

    def __init__(self, spec, recv_timeout, address=None, compress=None, resources=None):
        from tensorweave.distributed.ray_backend import RayCluster
        self.cluster = RayCluster(spec, address=address, recv_timeout=recv_timeout,
                                  compress=compress, resources=resources)

    def start_worker(self, index, cfg):
        actor = self.cluster.actors[f"/job:worker/task:{index}"]
        return actor.run_client.remote(worker_main, index, cfg)

    @staticmethod
    def result(handle, timeout=0.0):
        import ray
        ready, _ = ray.wait([handle], timeout=timeout)
        if not ready:
            return False, None
        try:
            return True, ray.get(handle, timeout=10)
        except Exception as e:  # noqa: BLE001  (the worker's error, or its actor died)
            return True, e

    def kill(self, kind, index):
        import ray
        ray.kill(self.cluster.actors[f"/job:{kind}/task:{index}"], no_restart=True)

    def ps_alive(self, task):
        import ray
        try:
            ray.get(self.cluster.actors[task].pid.remote(), timeout=10)
            return True
        except Exception:  # noqa: BLE001  (dead, or not answering: treat as dead)
            return False

    def restart(self, task):
        self.cluster.restart_task(task)

    def shutdown(self):
        self.cluster.shutdown()


# --- checkpoints --------------------------------------------------------------------------------
def write_checkpoint(directory, step, values: dict) -> str:
    """Writes ``values`` as ``<directory>/model.ckpt-<step>.npz`` (tw.train.Saver's format,
    atomically) and names it in the directory's ``checkpoint`` state file."""
    from tensorweave.train import saver as saver_lib
    prefix = os.path.join(directory, f"model.ckpt-{step}")
    saver_lib._write_data(prefix + saver_lib.DATA_SUFFIX,
                          {k: np.asarray(v) for k, v in values.items()})
    saver_lib.update_checkpoint_state(directory, prefix)
    return prefix


def read_checkpoint(directory):
    """(prefix, {name: array}) of the newest checkpoint in ``directory``, or (None, {})."""
    from tensorweave.train import saver as saver_lib
    prefix = saver_lib.latest_checkpoint(directory) if directory else None
    if prefix is None:
        return None, {}
    with np.load(prefix + saver_lib.DATA_SUFFIX, allow_pickle=False) as z:
        return prefix, {k: z[k] for k in z.files}


def _progress_bar(disable, **kwargs):
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is optional
        disable = True
    if disable:
        class _Null:
            def update(self, n):
                pass

            def set_postfix(self, **kw):
                pass

            def close(self):
                pass

        return _Null()
    return tqdm(**kwargs)


# --- the driver -----------------------------------------------------------------------------------
class DistributedTrainer:
    """The chief: see the module docstring. ``run()`` returns the result dict."""

    def __init__(self, cfg: TrainConfig, backend="ray", address=None, compress=None,
                 progress=True, resources=None):
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        self.events: list[str] = []  # what the driver did about faults, for tests and logs
        self.history: list[tuple] = []  # (seconds, global step, held-out accuracy)
        if cfg.checkpoint_dir is None:
            import tempfile
            cfg.checkpoint_dir = tempfile.mkdtemp(prefix="tw-ckpt-")
        os.makedirs(cfg.checkpoint_dir, exist_ok=True)
        recv_timeout = cfg.timeout
        if backend == "inprocess":
            self.backend = InProcessBackend(cfg.spec, recv_timeout, compress)
        elif backend == "ray":
            self.backend = RayBackend(cfg.spec, recv_timeout, address, compress, resources)
        else:
            raise ValueError(f"backend must be 'ray' or 'inprocess', got {backend!r}")
        self.cluster = self.backend.cluster

    def _log(self, msg):
        self.events.append(msg)

    # -- state on the parameter servers --
    def _ps_variables(self):
        """{ps task: [storage names]} of every global variable in the chief's graph."""
        import tensorweave as tw
        out: dict = {}
        with self.rep.graph.as_default():
            for v in tw.global_variables():
                out.setdefault(task_of(v.device, "/job:ps/task:0"), []).append(v.op.name)
        return out

    def _read_ps(self):
        values = {}
        for task in self.ps_vars:
            values.update(self.cluster.wait([self.cluster.call(task, "get_variables",
                                                               self.ps_vars[task])],
                                            self.cfg.timeout)[0])
        return values

    def checkpoint(self):
        values = self._read_ps()
        missing = [n for names in self.ps_vars.values() for n in names if n not in values]
        if missing:  # a PS lost its state since: never save a partial checkpoint
            raise errors.FailedPreconditionError(None, None, f"cannot checkpoint: {missing[:3]} "
                                                 "uninitialized")
        step = int(values[self.rep.global_step.op.name])
        self.last_checkpoint = write_checkpoint(self.cfg.checkpoint_dir, step, values)
        return self.last_checkpoint

    def _restore_task(self, task):
        prefix, values = read_checkpoint(self.cfg.checkpoint_dir)
        if prefix is None:
            raise errors.DataLossError(None, None, f"{task} lost its variables and there is no "
                                       f"checkpoint in {self.cfg.checkpoint_dir} to restore")
        names = self.ps_vars[task]
        absent = [n for n in names if n not in values]
        if absent:
            raise errors.NotFoundError(None, None, f"checkpoint {prefix} lacks {absent[:3]}")
        self.cluster.wait([self.cluster.call(task, "set_variables",
                                             {n: values[n] for n in names})], self.cfg.timeout)
        self._log(f"restored {task} from {os.path.basename(prefix)}")

    def _check_ps(self):
        """Restarts dead PS tasks and restores any PS whose variables are missing."""
        for task, names in self.ps_vars.items():
            if not self.backend.ps_alive(task):
                self._log(f"{task} died; restarting it")
                self.backend.restart(task)
            try:
                have = set(self.cluster.wait([self.cluster.call(task, "variable_names")],
                                             self.cfg.timeout)[0])
            except Exception:  # noqa: BLE001  (checked again next round)
                continue
            if not set(names) <= have:
                self._restore_task(task)

    def _init_or_restore(self):
        prefix, values = read_checkpoint(self.cfg.checkpoint_dir)
        if prefix is not None:
            for task in self.ps_vars:
                self._restore_task(task)
        else:
            self.sess.run(self.rep.init_op)
            self.checkpoint()  # step 0: a PS that dies early can be restored too

    # -- the run --
    def run(self) -> dict:
        from tensorweave.distributed.session import DistributedSession
        from tensorweave.distributed.sync_replicas import ChiefAggregator
        cfg = self.cfg
        self.rep = build_replica(cfg)
        self.sess = DistributedSession(self.cluster, graph=self.rep.graph, task="/job:ps/task:0",
                                       step_timeout=cfg.timeout * 2)
        self.ps_vars = self._ps_variables()
        self._init_or_restore()
        aggregators = []
        for opt in self.rep.sync_opts:
            s = DistributedSession(self.cluster, graph=self.rep.graph, task="/job:ps/task:0",
                                   step_timeout=cfg.timeout * 2)
            aggregators.append(ChiefAggregator(opt.chief_train_op, cfg.stall_timeout,
                                               _retryable).start(s))
        start_step = self._global_step()
        t0 = time.perf_counter()
        handles = {i: self.backend.start_worker(i, cfg) for i in range(cfg.workers)}
        restarts = {i: 0 for i in range(cfg.workers)}
        faults = sorted(cfg.faults, key=lambda f: f[2])
        bar = _progress_bar(total=cfg.steps, initial=start_step, desc=f"train[{cfg.mode}]",
                   unit="step", disable=not self.progress, mininterval=0.5)
        step, last_step, last_progress, last_ckpt = start_step, start_step, time.monotonic(), \
            time.monotonic()
        last_eval = last_health = time.monotonic()
        warm = None  # (time, step) once every worker is running: throughput is measured after
        try:
            while step < cfg.steps:
                time.sleep(0.1)
                while faults and step >= faults[0][2]:
                    kind, index, _ = faults.pop(0)
                    self._log(f"fault: killing {kind} {index} at step {step}")
                    self.backend.kill(kind, index)
                for i, h in handles.items():
                    done, value = self.backend.result(h)
                    if not done:
                        continue
                    if isinstance(value, BaseException):
                        restarts[i] += 1
                        self._log(f"worker {i} failed ({type(value).__name__}); replacing it")
                        if restarts[i] > 5:
                            raise RuntimeError(f"worker {i} failed {restarts[i]} times; last "
                                               f"error: {value}") from value
                        if not isinstance(value, _Killed) and not _retryable(value):
                            raise value
                        if isinstance(self.backend, RayBackend):
                            self.backend.restart(f"/job:worker/task:{i}")
                        handles[i] = self.backend.start_worker(i, cfg)
                if time.monotonic() - last_health > 0.5:
                    self._check_ps()
                    last_health = time.monotonic()
                for a in aggregators:
                    if not a.running:
                        raise RuntimeError(f"sync aggregation stopped: {a.error}") from a.error
                step = self._global_step(default=step)
                if warm is None and step - start_step >= cfg.workers:
                    warm = (time.perf_counter(), step)
                if step != last_step:
                    bar.update(step - last_step)
                    el = time.perf_counter() - t0
                    bar.set_postfix(steps_s=f"{(step - start_step) / el:.1f}", ex_s=f"{(step - start_step) * cfg.examples_per_step * self.rep.model.batch_size / el:.0f}")  # noqa: E501
                    last_step, last_progress = step, time.monotonic()
                elif time.monotonic() - last_progress > cfg.stall_timeout:
                    raise errors.DeadlineExceededError(
                        None, None, f"no training progress for {cfg.stall_timeout:g} s at global "
                        f"step {step}; driver events: {self.events[-5:]}")
                if cfg.eval_secs and time.monotonic() - last_eval > cfg.eval_secs:
                    try:
                        acc = self.evaluate()["accuracy"]
                        self.history.append((time.perf_counter() - t0, step, acc))
                    except Exception as e:  # noqa: BLE001  (a PS is recovering: next time)
                        self._log(f"evaluation skipped: {type(e).__name__}")
                    last_eval = time.monotonic()
                if time.monotonic() - last_ckpt > cfg.checkpoint_secs:
                    try:
                        self.checkpoint()
                    except Exception as e:  # noqa: BLE001  (a PS is recovering: next time)
                        self._log(f"checkpoint skipped: {type(e).__name__}")
                    last_ckpt = time.monotonic()
            t_end = time.perf_counter()
            seconds = t_end - t0
            if warm is None or step <= warm[1]:
                warm = (t0, start_step)
            rate = (step - warm[1]) / (t_end - warm[0])  # global steps/s in steady state
            for i, h in handles.items():  # workers stop by themselves at the target step
                deadline = time.monotonic() + cfg.timeout * 2
                while not self.backend.result(h, timeout=0.5)[0]:
                    for opt in self.rep.sync_opts:  # release replicas waiting on a group
                        self._release(opt)
                    if time.monotonic() > deadline:
                        raise errors.DeadlineExceededError(
                            None, None, f"worker {i} did not stop within {cfg.timeout * 2:g} s")
        finally:
            bar.close()
            for a in aggregators:
                a.stop()
        self._check_ps()  # a PS lost near the end is restored before the final evaluation
        result = self.evaluate()
        self.history.append((seconds, self._global_step(), result["accuracy"]))
        result.update(steps=self._global_step(),
                      examples_per_sec=rate * cfg.examples_per_step * self.rep.model.batch_size,
                      seconds=seconds)
        self.checkpoint()
        return result

    def _release(self, opt):
        import tensorweave as tw
        if not hasattr(opt, "_release_op"):
            with self.rep.graph.as_default(), tw.colocate_with(opt.sync_step):
                from tensorweave.ops import sync_ops
                bump = tw.assign_add(opt.sync_step, tw.constant(1, tw.int64))
                with tw.control_dependencies([bump]):
                    opt._release_op = sync_ops.sync_step_notify(opt.sync_step)
        self.sess.run(opt._release_op)

    def _global_step(self, default=None):
        try:
            return int(self.sess.run(self.rep.step_value))
        except Exception:  # noqa: BLE001  (a PS is down: keep the last value)
            if default is None:
                raise
            return default

    def evaluate(self) -> dict:
        """Mean loss and accuracy on the model's held-out batches."""
        m = self.rep.model
        eval_loss = m.loss if m.eval_loss is None else m.eval_loss
        losses, accs, ns = [], [], []
        for batch in m.eval_batches():
            loss, acc = self.sess.run([eval_loss, m.accuracy], dict(zip(m.inputs, batch)))
            losses.append(loss)
            accs.append(acc)
            ns.append(len(batch[0]))
        return {"loss": float(np.average(losses, weights=ns)),
                "accuracy": float(np.average(accs, weights=ns))}

    def shutdown(self):
        self.backend.shutdown()


def train_distributed(model_fn, workers, ps, mode, backup=0, groups=1, steps=None, address=None,
                      json=False, backend="ray", checkpoint_dir=None, timeout=30.0,
                      compress=None) -> dict:
    """Trains ``model_fn``'s model on ``workers`` replicas and ``ps`` parameter servers.

    ``mode``: "async" (Downpour), "sync" (``workers - backup`` gradients averaged per step) or
    "hybrid" (``groups`` asynchronous groups of synchronous replicas). ``steps``: global steps
    (default: about 15 epochs' worth of examples). Returns ``{"steps", "examples_per_sec",
    "loss", "accuracy"}`` measured on held-out data.
    """
    cfg = TrainConfig(model_fn, workers=workers, ps=ps, mode=mode, backup=backup,
                      groups=groups if mode == "hybrid" else 1, timeout=timeout,
                      checkpoint_dir=checkpoint_dir)
    cfg.validate()
    if steps is None:
        per_step = getattr(model_fn, "batch_size", 64) * cfg.examples_per_step
        steps = max(50, 15 * 4000 // per_step)
    cfg.steps = steps
    trainer = DistributedTrainer(cfg, backend=backend, address=address, compress=compress,
                                 progress=not json)
    try:
        r = trainer.run()
    finally:
        trainer.shutdown()
    return {"steps": r["steps"], "examples_per_sec": r["examples_per_sec"], "loss": r["loss"],
            "accuracy": r["accuracy"]}

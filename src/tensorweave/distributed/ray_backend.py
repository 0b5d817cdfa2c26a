"""The Ray transport: each task is a Ray actor hosting a TaskServer; tensors cross processes
through Ray (large NumPy arrays travel zero-copy through the object store).

Ray runs embedded on loopback by default (``RayCluster(spec)``), or joins an existing cluster
(``RayCluster(spec, address="127.0.0.1:6379")``). Every wait has a timeout.
"""

from __future__ import annotations

import os
import uuid


def _ray():
    # must be set before Ray is imported, or raylet listens on every interface (Ray 2.60)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as e:
        raise ImportError("The Ray backend needs the 'ray' extra: pip install -e '.[ray]'") \
            from e
    return ray


def ensure_ray(address=None, num_cpus=None):
    """Starts Ray embedded on 127.0.0.1 (or connects to ``address``) once per process."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                      configure_logging=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
    return ray


def _actor_class():
    ray = _ray()

    @ray.remote(max_concurrency=64)
    class TaskActor:
        """Hosts one task's TaskServer; ``call`` runs any of its methods."""

        def __init__(self, name, cluster_id, recv_timeout, spec=None, compress=None):
            from tensorweave.distributed.task import TaskServer
            self.spec = spec
            self.server = TaskServer(name, RayTransport(cluster_id, compress), recv_timeout)

        def call(self, method, *args):
            return getattr(self.server, method)(*args)

        def deliver(self, key, value):
            self.server.deliver(key, value)

        def deliver_many(self, items):
            self.server.deliver_many(items)

        def run_client(self, fn, *args):
            """Runs a client program inside this task (between-graph replication)."""
            cluster = RayClusterClient(self.server.ctx.resources["transport"].cluster_id,
                                       spec=self.spec, local=self.server)
            return fn(cluster, *args)

        def pid(self):
            return os.getpid()

    return TaskActor


def actor_name(cluster_id, task):
    return f"tensorweave:{cluster_id}{task}"


class RayTransport:
    """Sends tensors to other tasks' actors (looked up by name, cached)."""

    def __init__(self, cluster_id, compress=None):
        self.cluster_id = cluster_id
        self.compress = compress
        self._handles = {}

    def handle(self, task):
        h = self._handles.get(task)
        if h is None:
            h = self._handles[task] = _ray().get_actor(actor_name(self.cluster_id, task))
        return h

    def send(self, dst, key, value):
        if self.compress:
            from tensorweave.distributed.task import encode_for_wire
            value = encode_for_wire(value, self.compress)
        self.handle(dst).deliver.remote(key, value)

    def send_many(self, dst, items):
        """One actor call for several tensors (Ray puts the list as one object)."""
        if self.compress:
            from tensorweave.distributed.task import encode_for_wire
            items = [(k, encode_for_wire(v, self.compress)) for k, v in items]
        self.handle(dst).deliver_many.remote(items)

    def forget(self, task):
        self._handles.pop(task, None)

    def forget_all(self):
        self._handles.clear()


class RayClusterClient:
    """The master's view of a Ray cluster: ``call`` a task method, ``wait`` with a timeout.
    Inside a task's own actor, calls to that task run locally."""

    def __init__(self, cluster_id, spec=None, local=None):
        self.cluster_id = cluster_id
        # inside a task, share the task's transport so that forgetting a restarted peer's
        # handle (TaskServer.forget_peer) serves this client too
        self.transport = local.ctx.resources["transport"] if local is not None \
            else RayTransport(cluster_id)
        self.local = local
        self.spec = spec

    def call(self, task, method, *args):
        if self.local is not None and task == self.local.name:
            return _Done(getattr(self.local, method), args)
        return self.transport.handle(task).call.remote(method, *args)

    def send(self, dst, key, value):
        self.transport.send(dst, key, value)

    def wait(self, futures, timeout):
        ray = _ray()
        out = [None] * len(futures)
        remote = [(i, f) for i, f in enumerate(futures) if not isinstance(f, _Done)]
        for i, f in enumerate(futures):
            if isinstance(f, _Done):
                out[i] = f.result()
        if remote:
            import time
            refs = [f for _, f in remote]
            deadline = time.monotonic() + timeout
            pending = list(refs)
            while pending:  # fail fast: surface the first task error, not the slowest task
                left = deadline - time.monotonic()
                if left <= 0:
                    from tensorweave.framework import errors
                    raise errors.DeadlineExceededError(
                        None, None, f"{len(pending)} task call(s) did not answer within "
                        f"{timeout:.0f} s; a task may have failed (see `ray status`).")
                ready, pending = ray.wait(pending, num_returns=1, timeout=min(left, 5.0))
                for r in ready:
                    try:
                        ray.get(r)  # raises the task's exception
                    except ray.exceptions.RayActorError:
                        self.transport.forget_all()  # a task died: look its actor up again
                        raise
            vals = ray.get(refs, timeout=timeout)
            for (i, _), v in zip(remote, vals):
                out[i] = v
        return out


class _Done:
    """A local call made to look like a future (run when its result is asked for, so the
    remote partitions of the same step are already running)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self, timeout=None):
        return self.fn(*self.args)


class RayCluster(RayClusterClient):
    """Starts one actor per task of ``spec`` (``resources``: per-job Ray options such as
    ``{"worker": {"num_cpus": 1}}``) and is the master's transport."""

    def __init__(self, spec, address=None, resources=None, recv_timeout=20.0, compress=None):
        ray = ensure_ray(address)
        super().__init__(uuid.uuid4().hex[:10], spec)
        self.transport.compress = compress
        self._resources = resources or {}
        self._recv_timeout = recv_timeout
        self.actors = {}
        for task in spec.task_names():
            self.actors[task] = self._start_actor(task)
        ray.get([a.pid.remote() for a in self.actors.values()], timeout=120)

    def _start_actor(self, task):
        job = task.split("/")[1][4:]
        opts = dict(self._resources.get(job, {}))
        opts.setdefault("num_cpus", 0)
        return _actor_class().options(name=actor_name(self.cluster_id, task), **opts).remote(
            task, self.cluster_id, self._recv_timeout, self.spec, self.transport.compress)

    def restart_task(self, task, timeout=120.0):
        """Replaces a task's actor with a fresh one (its state must be restored) and tells the
        other tasks to look it up again."""
        import time
        ray = _ray()
        try:
            ray.kill(self.actors[task], no_restart=True)
        except Exception:  # noqa: BLE001  (already dead)
            pass
        self.transport.forget(task)
        deadline = time.monotonic() + timeout
        while True:  # the dead actor's name is released asynchronously
            try:
                self.actors[task] = self._start_actor(task)
                ray.get(self.actors[task].pid.remote(), timeout=timeout)
                break
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for other, actor in self.actors.items():
            if other != task:
                actor.call.remote("forget_peer", task)  # a dead peer simply never answers

    def run_clients(self, job, fn, *args, timeout=3600):
        """Runs ``fn(cluster_client, task_index, *args)`` in every task of ``job``."""
        refs = [self.actors[f"/job:{job}/task:{i}"].run_client.remote(fn, i, *args)
                for i in range(self.spec.num_tasks(job))]
        return _ray().get(refs, timeout=timeout)

    def shutdown(self):
        ray = _ray()
        for a in self.actors.values():
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.actors.clear()

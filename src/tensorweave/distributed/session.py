"""The master: a Session whose steps run as partitions on the tasks of a cluster."""

from __future__ import annotations

import itertools
import uuid

from tensorweave.distributed.partition import partition_graph
from tensorweave.runtime import plan as plan_lib
from tensorweave.runtime.session import BaseSession


def _task_lost(e) -> bool:
    """True for errors that may mean a task died or was restarted (its partitions are gone).
    A timeout counts: the local partition's receive may time out before the restarted
    task's "partition not registered" error is looked at."""
    from tensorweave.framework import errors
    return isinstance(e, (errors.UnavailableError, errors.DeadlineExceededError)) \
        or "Actor" in type(e).__name__


class DistributedPlan:
    """A compiled signature: one registered partition per task, run together per step."""

    def __init__(self, session, parts, pid, n_fetches):
        self.session = session
        self.parts = parts
        self.pid = pid
        self.n_fetches = n_fetches
        # attributes the local error path looks at
        self.steps, self.filename, self.line_to_step = [], None, {}
        self.rewrite_stats = {}

    def run(self, feed_values):
        cluster, timeout = self.session._cluster, self.session._step_timeout
        step_id = self.session._next_step_id()
        calls = []
        for task, p in self.parts.items():
            vals = [feed_values[i] for i, _ in p.feeds]
            calls.append((p, cluster.call(task, "run_partition", self.pid, step_id, vals)))
        try:
            outs = cluster.wait([f for _, f in calls], timeout)  # raises the first task error
        except Exception as e:
            if _task_lost(e):  # a restarted task lost its partitions: register them again
                self.session._forget_plans()
            raise
        results = [None] * self.n_fetches
        for (p, _), out in zip(calls, outs):
            for (i, _), v in zip(p.fetches, out):
                results[i] = v
        return tuple(results)


class DistributedSession(BaseSession):
    """Runs the graph across a cluster's tasks; ops without a job go to ``task``.

    Example::

        cluster = tw.distributed.InProcessCluster(tw.train.ClusterSpec({"ps": 1, "worker": 1}))
        with tw.device("/job:ps/task:0"):
            w = tw.Variable(1.0)
        with tw.Session(target=cluster) as sess:   # or DistributedSession(cluster)
            sess.run(w.initializer)
    """

    _variables_are_local = False  # a Saver reads and writes them through the graph

    def __init__(self, cluster, graph=None, config=None, task="/job:worker/task:0",
                 step_timeout=300.0):
        super().__init__("", graph, config)
        self._cluster = cluster
        self._task = task
        self._step_timeout = step_timeout
        self._uid = uuid.uuid4().hex[:12]
        self._plan_ids = itertools.count()
        self._step_base = (uuid.uuid4().int & ((1 << 38) - 1)) << 24
        self._step_counter = itertools.count(1)

    def _next_step_id(self):
        return self._step_base | (next(self._step_counter) & ((1 << 24) - 1))

    def _get_plan(self, fetch_tensors, targets, feed_tensors):
        key = (fetch_tensors, targets, feed_tensors, self._graph._version_structure())
        plan = self._plans.get(key)
        if plan is None:
            ops = plan_lib.prune(list(fetch_tensors), list(targets), list(feed_tensors))
            parts = partition_graph(ops, list(fetch_tensors), list(targets), list(feed_tensors),
                                    self._task)
            pid = f"{self._uid}/{next(self._plan_ids)}"
            futs = [self._cluster.call(task, "register_partition", pid, p,
                                       self._config.graph_options)
                    for task, p in parts.items()]
            self._cluster.wait(futs, self._step_timeout)
            plan = DistributedPlan(self, parts, pid, len(fetch_tensors))
            self._plans[key] = plan
        return plan

    def _forget_plans(self):
        self._plans.clear()
        self._callables.clear()

    def list_devices(self):
        return [f"{t}/device:CPU:0" for t in self._cluster.spec.task_names()]

    # Checkpoint support: variables live on the tasks that own them.
    def _variable_tasks(self):
        return self._cluster.spec.task_names()

    def read_variables(self, names=None) -> dict:
        out = {}
        for task in self._variable_tasks():
            out.update(self._cluster.wait(
                [self._cluster.call(task, "get_variables", names)], self._step_timeout)[0])
        return out

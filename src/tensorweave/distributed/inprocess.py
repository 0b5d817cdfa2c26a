"""The in-process transport: every task is a TaskServer object in this process, run on
threads. It runs exactly the partition code the Ray transport runs (fast tests, one machine)."""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from tensorweave.distributed.task import TaskServer


class InProcessCluster:
    """Tasks named by a ClusterSpec, living in this process."""

    def __init__(self, cluster_spec, recv_timeout: float = 60.0, compress=None):
        self.spec = cluster_spec
        self.compress = compress  # "bfloat16": what Ray would send, to test it in-process
        self.recv_timeout = recv_timeout
        self.tasks = {name: TaskServer(name, self, recv_timeout)
                      for name in cluster_spec.task_names()}
        # as a Ray actor serves 64 calls at once: blocking calls (a sync-replicas wait, a
        # receive) from several clients must never starve the others of threads
        self._pool = ThreadPoolExecutor(64 * len(self.tasks), thread_name_prefix="tw-task")

    # transport interface used by _Send kernels
    def send(self, dst, key, value):
        if self.compress:
            from tensorweave.distributed.task import encode_for_wire
            value = encode_for_wire(value, self.compress)
        self.tasks[dst].deliver(key, value)

    def send_many(self, dst, items):
        if self.compress:
            from tensorweave.distributed.task import encode_for_wire
            items = [(k, encode_for_wire(v, self.compress)) for k, v in items]
        self.tasks[dst].deliver_many(items)

    def restart_task(self, task):
        """Replaces ``task`` with a fresh TaskServer: what a restarted process looks like
        (no variables, no partitions)."""
        old = self.tasks[task]
        self.tasks[task] = TaskServer(task, self, self.recv_timeout)
        old.shutdown()  # its blocked calls fail now, as a dead process's would

    # master interface
    def call(self, task, method, *args):
        """Calls ``method`` on ``task`` asynchronously; returns a future with ``.result()``."""
        return self._pool.submit(getattr(self.tasks[task], method), *args)

    def wait(self, futures, timeout):
        """All results, or the first error as soon as any task fails (fail fast)."""
        done, pending = futures_wait(futures, timeout=timeout, return_when=FIRST_EXCEPTION)
        for f in done:
            if f.exception() is not None:
                raise f.exception()
        if pending:
            from tensorweave.framework import errors
            raise errors.DeadlineExceededError(None, None, f"{len(pending)} task call(s) did "
                                               f"not finish within {timeout:.0f} s")
        return [f.result() for f in futures]

    def shutdown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

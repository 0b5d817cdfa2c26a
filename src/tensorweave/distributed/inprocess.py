"""The in-process transport: every task is a TaskServer object in this process, run on
threads. It runs exactly the partition code the Ray transport runs (fast tests, one machine)."""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from tensorweave.distributed.task import TaskServer


class InProcessCluster:
    """Tasks named by a ClusterSpec, living in this process."""

    def __init__(self, cluster_spec, recv_timeout: float = 60.0):
        self.spec = cluster_spec
        self.tasks = {name: TaskServer(name, self, recv_timeout)
                      for name in cluster_spec.task_names()}
        self._pool = ThreadPoolExecutor(max(4, 2 * len(self.tasks)),
                                        thread_name_prefix="tw-task")

    # transport interface used by _Send kernels
    def send(self, dst, key, value):
        self.tasks[dst].deliver(key, value)

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

"""``tw.train.ClusterSpec``: jobs and their tasks, as counts or address lists."""

from __future__ import annotations


class ClusterSpec:
    """``ClusterSpec({"ps": 2, "worker": 4})`` or ``{"ps": ["host:2222"], ...}`` (TF form)."""

    def __init__(self, cluster):
        if isinstance(cluster, ClusterSpec):
            cluster = cluster._jobs
        self._jobs = {}
        for job, tasks in dict(cluster).items():
            if isinstance(tasks, int):
                if tasks < 0:
                    raise ValueError(f"Job {job!r} must have >= 0 tasks, got {tasks}")
                self._jobs[job] = [None] * tasks
            elif isinstance(tasks, dict):
                n = max(tasks) + 1 if tasks else 0
                self._jobs[job] = [tasks.get(i) for i in range(n)]
            else:
                self._jobs[job] = list(tasks)

    @property
    def jobs(self):
        return list(self._jobs)

    def num_tasks(self, job_name) -> int:
        try:
            return len(self._jobs[job_name])
        except KeyError:
            raise ValueError(f"No such job in cluster: {job_name!r}; jobs are "
                             f"{self.jobs}") from None

    def task_address(self, job_name, task_index):
        return self._jobs[job_name][task_index]

    def task_indices(self, job_name):
        return list(range(self.num_tasks(job_name)))

    def task_names(self):
        return [f"/job:{j}/task:{i}" for j, ts in self._jobs.items() for i in range(len(ts))]

    def as_dict(self):
        return {j: (list(ts) if any(a is not None for a in ts) else len(ts))
                for j, ts in self._jobs.items()}

    def __repr__(self):
        return f"ClusterSpec({self.as_dict()})"

    def __eq__(self, other):
        return isinstance(other, ClusterSpec) and self._jobs == other._jobs

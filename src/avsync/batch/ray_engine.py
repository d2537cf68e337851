"""The Ray engine: each file is a Ray task; the driver keeps the job store.

Ray does the scheduling (no scheduler of our own); we only keep a bounded
number of tasks in flight so a 70,000-file job does not submit everything at
once. Each Ray worker process keeps its loaded model between tasks
(``work.load_worker_model``). Imported only for ``--engine ray``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from avsync.batch.store import Job
from avsync.batch.work import BatchOptions, error_row, process
from avsync.errors import UsageError

#: Tasks in flight per CPU of the cluster (enough to keep every worker busy while results come back).
IN_FLIGHT_PER_CPU = 2


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError('--engine ray needs Ray: pip install "avsync[ray]"') from None
    return ray


def ray_rows(jobs: list[Job], opts: BatchOptions, workers: int, address: str | None) -> Iterator[tuple[Job, dict]]:
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
        logging.getLogger("ray").setLevel(logging.ERROR)  # start-up notices are not for a CLI's user
        try:
            if address is None:  # a local Ray for this run, with as many CPUs as workers
                ray.init(num_cpus=workers, include_dashboard=False, **kw)
            else:
                ray.init(address=address, **kw)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot start or reach Ray at {address or 'a local instance'}: {exc}") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(process)
        cpus = int(ray.cluster_resources().get("CPU", workers)) or 1
        todo = iter(jobs)
        running = {}

        def submit(n):
            for _ in range(n):
                job = next(todo, None)
                if job is None:
                    return
                running[task.remote(job, opts)] = job

        submit(IN_FLIGHT_PER_CPU * cpus)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # the task's worker died (a crash in native code, out of memory)
                    row = error_row(job, exc)
                yield job, row
            submit(len(ready))
    finally:
        if started:
            ray.shutdown()

"""Where candidates are trained: in this process, in local worker processes, or on Ray.

Every executor runs ``train.evaluate`` on a list of ``Job``s and yields the results in job
order, so the log does not depend on which executor, or how many workers, ran them. Neither
torch nor ray is imported until an executor is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from shrinkc.compiler.errors import ShrinkError

from .job import Job


class Executor:
    """Trains jobs; ``map`` yields their results in job order."""

    def map(self, jobs: list[Job]) -> Iterator[dict]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop any worker, dropping jobs not started."""


class InProcess(Executor):
    """Trains each job in this process, one after another (``--workers 1``)."""

    def map(self, jobs: list[Job]) -> Iterator[dict]:
        from .train import evaluate

        for job in jobs:
            yield evaluate(job)


def exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the driver dies (even by kill -9), instead of
    training the rest of the queued candidates for nobody."""
    import os
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class Processes(Executor):
    """A pool of ``workers`` spawned local processes (``--workers N``), each ending with the
    driver."""

    def __init__(self, workers: int):
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=exit_with_parent, initargs=(os.getpid(),))

    def map(self, jobs: list[Job]) -> Iterator[dict]:
        from .train import evaluate

        futures = [self.pool.submit(evaluate, job) for job in jobs]
        try:
            for f in futures:
                yield f.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Ray(Executor):
    """Ray tasks, one CPU each (and ``gpus`` GPUs each when candidates train on CUDA, so the
    cluster schedules them onto GPU nodes; a fraction lets several share a GPU), on the
    cluster at ``address`` or on a local Ray started with ``workers`` CPUs
    (``--executor ray``)."""

    def __init__(self, address: str | None, workers: int, gpus: float = 0.0):
        try:
            import ray
        except ImportError:
            raise ShrinkError("--executor ray needs Ray", None,
                              "pip install 'shrinkc[ray]'") from None
        from .train import evaluate

        self.ray = ray
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": workers}
            ray.init(log_to_driver=False, include_dashboard=False, **kwargs)
        self.remote = ray.remote(num_cpus=1, num_gpus=gpus)(evaluate)

    def map(self, jobs: list[Job]) -> Iterator[dict]:
        refs = [self.remote.remote(job) for job in jobs]
        for ref in refs:
            yield self.ray.get(ref)


def make_executor(kind: str, workers: int, address: str | None = None,
                  gpus: float = 0.0) -> Executor:
    """The executor for ``--executor kind`` (local or ray) and ``--workers``; ``gpus``: what
    each Ray task asks for (0 on CPUs). Local workers on a GPU machine share its GPUs."""
    if kind == "ray":
        return Ray(address, workers, gpus)
    if workers > 1:
        return Processes(workers)
    return InProcess()

"""Where candidates are trained: in this process, in local worker processes, or on Ray.

Every executor runs ``train.evaluate`` on a list of ``Job``s and yields the results in job
order, so the log does not depend on which executor, or how many workers, ran them. Neither
torch nor ray is imported until an executor is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from shrinkc.compiler.errors import ShrinkError

from .address import EXAMPLE, SCHEME, parse_address
from .job import Job

RAY_TIMEOUT = 30.0  # seconds to wait for a Ray cluster to answer (--ray-timeout)
_RESUME = "the candidates trained so far are in the run folder: continue with --resume"


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
        from concurrent.futures.process import BrokenProcessPool

        from .train import evaluate

        futures = [self.pool.submit(evaluate, job) for job in jobs]
        try:
            for f in futures:
                try:
                    result = f.result()
                except BrokenProcessPool:  # a worker killed (by a person, or out of memory)
                    raise ShrinkError("a worker process ended while training a candidate "
                                      "(killed, or out of memory?)", None, _RESUME) from None
                yield result
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Ray(Executor):
    """Ray tasks, one CPU each (and ``gpus`` GPUs each when candidates train on CUDA, so the
    cluster schedules them onto GPU nodes; a fraction lets several share a GPU), on the
    cluster at ``address`` or on a local Ray started with ``workers`` CPUs
    (``--executor ray``). Connecting to ``address`` waits at most ``timeout`` seconds
    (``--ray-timeout``): ``ray.init`` alone retries for many minutes where nothing answers."""

    def __init__(self, address: str | None, workers: int, gpus: float = 0.0,
                 timeout: float = RAY_TIMEOUT):
        try:
            import ray
        except ImportError:
            raise ShrinkError("--executor ray needs Ray", None,
                              "pip install 'shrinkc[ray]'") from None
        from .train import evaluate

        self.ray = ray
        if not ray.is_initialized():
            if address:
                connect(ray, address, timeout)
            else:
                ray.init(log_to_driver=False, include_dashboard=False, num_cpus=workers)
        self.remote = ray.remote(num_cpus=1, num_gpus=gpus)(evaluate)

    def map(self, jobs: list[Job]) -> Iterator[dict]:
        errors = self.ray.exceptions
        refs = [self.remote.remote(job) for job in jobs]
        for ref in refs:
            try:
                result = self.ray.get(ref)
            except errors.RayTaskError as e:  # raised by the training itself
                cause = getattr(e, "cause", None)
                if isinstance(cause, ShrinkError):
                    raise cause from None
                raise
            except errors.RayError as e:  # a worker or node lost, and Ray's retries spent
                raise ShrinkError(f"Ray lost a candidate: {_first_line(e)}", None,
                                  _RESUME) from None
            yield result


def connect(ray, address: str, timeout: float) -> None:
    """``ray.init`` on the cluster at ``address``, waiting at most ``timeout`` seconds: a TCP
    connection to its port first (nothing listening is said at once), then ``ray.init``, in a
    thread given up at the deadline (Ray retries in C++, where no signal stops it). What goes
    wrong is a ShrinkError naming the address and how to start a cluster."""
    try:
        where = parse_address(address)
    except ValueError as e:
        raise ShrinkError(f"--address '{address}' is not a Ray address: {e}", None,
                          EXAMPLE) from None
    outcome = _within(timeout, _connect, ray, address, where)
    at = "that --address auto leads to" if where is None else f"at {address}"
    if outcome is _LATE:
        raise ShrinkError(f"no answer from the Ray cluster {at} within {timeout:g} s", None,
                          _start_hint(address, where, late=True))
    kind, value = outcome
    if kind == "ok":
        return
    if isinstance(value, ShrinkError):
        raise value
    if _mentions(value, "AuthenticationError", "InvalidAuthToken"):
        raise ShrinkError(f"the Ray cluster {at} refused this connection: it wants its "
                          "authentication token", None,
                          "set RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token"
                          " or RAY_AUTH_TOKEN ('ray get-auth-token' prints it on the head node);"
                          " on the head node itself, --address auto finds the token")
    raise ShrinkError(f"cannot connect to the Ray cluster {at}: {_first_line(value)}", None,
                      _start_hint(address, where))


def _connect(ray, address: str, where: tuple[str, int] | None) -> None:
    """Probe the address's port, then ``ray.init``: run in a thread by ``connect``."""
    import logging
    import socket

    shown = address
    if where is None:  # auto: where the cluster started on this machine is
        try:
            where = _auto_address()
        except ConnectionError:
            raise ShrinkError("--address auto found no Ray cluster started on this machine",
                              None, _start_hint(address, None)) from None
        if where is not None:
            shown = f"{_host_port(where)} (where --address auto leads: the cluster last started " \
                    "on this machine)"
    if where is not None:
        host, port = where
        try:
            socket.create_connection((host, port), timeout=5.0).close()
        except socket.gaierror as e:
            raise ShrinkError(f"cannot find the Ray cluster's host '{host}' (--address "
                              f"{address}): {e.strerror or e}", None,
                              _start_hint(address, where)) from None
        except TimeoutError:
            pass  # a slow network: ray.init tries, until connect's deadline
        except OSError as e:
            raise ShrinkError(f"no Ray cluster at {shown}: {e.strerror or e}", None,
                              _start_hint(address, where)) from None
    logger = logging.getLogger("ray._private.worker")
    logger.addFilter(_no_thread_warning)
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    finally:
        logger.removeFilter(_no_thread_warning)


def _auto_address() -> tuple[str, int] | None:
    """Where ``auto`` leads (the cluster ``ray start`` recorded on this machine, or
    RAY_ADDRESS), to probe it first; ConnectionError where there is none; None where Ray's
    own lookup cannot be asked (``ray.init`` then decides alone)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # pragma: no cover - another version of Ray
        return None
    try:
        return parse_address(canonicalize_bootstrap_address_or_die("auto"))
    except ConnectionError:
        raise
    except Exception:  # noqa: BLE001 - Ray's private lookup: ray.init decides
        return None


def _no_thread_warning(record) -> bool:
    """A logging filter: Ray's warning that ``ray.init`` outside the main thread sets no
    SIGTERM handler is dropped (without Ray's, SIGTERM ends a search as it ends a local
    one)."""
    return "SIGTERM handler is not set" not in record.getMessage()


_LATE = object()


def _within(seconds: float, fn, *args):
    """``fn(*args)`` in a daemon thread: ``("ok", result)`` or ``("error", exception)``, or
    ``_LATE`` if it has not ended within ``seconds`` (the thread is left to end alone)."""
    import threading

    box: list = []

    def run() -> None:
        try:
            box.append(("ok", fn(*args)))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box.append(("error", e))

    thread = threading.Thread(target=run, name="shrinkc-ray-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else _LATE


def _start_hint(address: str, where: tuple[str, int] | None, late: bool = False) -> str:
    wait = "wait longer with --ray-timeout SECONDS, or " if late else ""
    if address == "auto":
        return (f"{wait}start a cluster on this machine with 'ray start --head', or give one's "
                "address: --address HOST:PORT")
    port = f" --port={where[1]}" if where and not address.startswith(SCHEME) else ""
    return (f"is a cluster running there? {wait}start one on that machine with "
            f"'ray start --head{port}'; without --address, --executor ray runs Ray on this "
            "machine")


def _host_port(where: tuple[str, int]) -> str:
    host, port = where
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mentions(e: BaseException, *words: str) -> bool:
    """Whether ``e`` or an exception it was raised from names one of ``words``."""
    seen = 0
    while e is not None and seen < 8:
        text = f"{type(e).__name__}: {e}"
        if any(w in text for w in words):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def make_executor(kind: str, workers: int, address: str | None = None,
                  gpus: float = 0.0, timeout: float = RAY_TIMEOUT) -> Executor:
    """The executor for ``--executor kind`` (local or ray) and ``--workers``; ``gpus``: what
    each Ray task asks for (0 on CPUs); ``timeout``: how long to wait for the Ray cluster at
    ``address``. Local workers on a GPU machine share its GPUs."""
    if kind == "ray":
        return Ray(address, workers, gpus, timeout)
    if workers > 1:
        return Processes(workers)
    return InProcess()

"""Where candidates are trained: in this process, in local worker processes, or on Ray.

Every executor runs ``train.evaluate`` on a list of ``Job``s and yields the results in job
order, so the log does not depend on which executor, or how many workers, ran them. Neither
torch nor ray is imported until an executor is used.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from shrinkc.compiler.errors import ShrinkError

from .job import Job

RAY_TIMEOUT = 30.0  # seconds to wait for a Ray cluster to answer (--ray-timeout)
RAY_CLIENT_PORT = 10001  # Ray Client's port (ray://HOST)
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


# --------------------------------------------------------------------------- a Ray address

_SCHEME = "ray://"
_EXAMPLE = ("write HOST:PORT (the GCS port 'ray start --head' prints, e.g. 127.0.0.1:6379), "
            "ray://HOST:PORT (Ray Client, e.g. ray://10.0.0.5:10001) or auto (the cluster "
            "started on this machine)")
# a host name's label (with '_', which container networks' names may have)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def parse_address(address: str) -> tuple[str, int] | None:
    """A Ray address's host and port (None for ``auto``); ValueError says what is wrong.
    Accepted: ``HOST:PORT`` (a cluster's GCS), ``ray://HOST[:PORT]`` (Ray Client) and
    ``auto``; HOST is a host name, an IPv4 address or an IPv6 address in brackets."""
    if address == "auto":
        return None
    rest, default_port = address, None
    if "://" in address:
        scheme = address.split("://", 1)[0]
        if scheme + "://" != _SCHEME:
            raise ValueError(f"the scheme '{scheme}' is not Ray's (only {_SCHEME}, Ray Client)")
        rest, default_port = address[len(_SCHEME):], RAY_CLIENT_PORT
    if not rest:
        raise ValueError("there is no host")
    if rest.startswith("["):  # [IPv6]:PORT
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise ValueError("an IPv6 address in brackets lacks its ']'")
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
        if tail and not tail.startswith(":"):
            raise ValueError("a ':' and the port follow the ']'")
        port_text = tail[1:] if tail else None
    elif rest.count(":") > 1:
        raise ValueError("too many ':' (an IPv6 address goes in brackets: [::1]:6379)")
    else:
        host, sep, port_text = rest.partition(":")
        port_text = port_text if sep else None
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if not host or not all(_LABEL.match(label) for label in labels) or len(host) > 253:
            raise ValueError(f"'{host}' is not a host name or IP address")
    if port_text is None:
        if default_port is None:
            raise ValueError("there is no port (HOST:PORT)")
        return host, default_port
    if not port_text:
        raise ValueError("there is no port after the ':'")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"the port '{port_text}' is not a number")
    if len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be 1 to 65535, got {port_text[:12]}")
    port = int(port_text)
    return host, port


def address_problem(value: str, label: str) -> tuple[str, str | None] | None:
    """What is wrong with ``value`` as a Ray address (the settings table's check of
    ``--address`` and of the ``address`` key): a message naming ``label`` and an example."""
    try:
        parse_address(value)
    except ValueError as e:
        shown = value if len(value) <= 80 else value[:80] + "..."
        return f"{label} '{shown}' is not a Ray address: {e}; {_EXAMPLE}", None
    return None


def connect(ray, address: str, timeout: float) -> None:
    """``ray.init`` on the cluster at ``address``, waiting at most ``timeout`` seconds: a TCP
    connection to its port first (nothing listening is said at once), then ``ray.init``, in a
    thread given up at the deadline (Ray retries in C++, where no signal stops it). What goes
    wrong is a ShrinkError naming the address and how to start a cluster."""
    try:
        where = parse_address(address)
    except ValueError as e:
        raise ShrinkError(f"--address '{address}' is not a Ray address: {e}", None,
                          _EXAMPLE) from None
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
    port = f" --port={where[1]}" if where and not address.startswith(_SCHEME) else ""
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

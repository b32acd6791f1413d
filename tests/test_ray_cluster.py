"""Shrinking on Ray: an address that cannot work is said at once, with how to start a cluster,
never a hang or a traceback (issue 24, items 5-7); and a search on a real Ray cluster started
on loopback here equals a local run, even with one of its workers killed mid-candidate.

The address tests come first: ``--address auto`` must find no cluster, and the module's
cluster starts with the first test that asks for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, TEST_SPECS, read_log

TINY = TEST_SPECS / "tiny_space.shrink"
STEPS = ("--max-steps", "2")  # 2 of the tiny search's 5 steps: 6 candidates, 3 a step


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra)
    return env


def _address_space_limit():  # 8 GiB: ray and torch map a lot; a runaway allocation fails fast
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _shrink(out: Path, *extra: str, env: dict | None = None, timeout: float = 400,
            joins: bool = False):
    """``shrinkc shrink TINY -o out --quiet extra...`` in a fresh process with a time limit
    and, unless it ``joins`` a running cluster, an address-space limit (a connected Ray driver
    maps the cluster's object store): the result and the seconds it took."""
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o", str(out),
                        "--quiet", *extra], capture_output=True, text=True, cwd=ROOT,
                       timeout=timeout, env=env or _env(), stdin=subprocess.DEVNULL,
                       preexec_fn=None if joins else _address_space_limit)
    return r, time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _needs_ray() -> None:
    pytest.importorskip("ray")


def _psutil():
    """psutil, which Ray brings (in its own folder, on the path once ray is imported)."""
    pytest.importorskip("ray")
    return pytest.importorskip("psutil")


# ------------------------------------------------------------ 7: an address that is not one


def test_an_address_that_is_not_one_is_refused_before_anything_runs(tmp_path):
    # --max-steps 0: nothing is trained, so no executor starts; the address is checked anyway
    r, _ = _shrink(tmp_path / "run", "--executor", "ray", "--address", "garbage::://",
                   "--max-steps", "0", timeout=120)
    assert r.returncode == 2, r.stderr
    assert ("--address 'garbage::://' is not a Ray address: the scheme 'garbage::' is not "
            "Ray's") in r.stderr
    assert "e.g. 127.0.0.1:6379" in r.stderr and "auto" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "there is no port"),
    ("localhost:", "there is no port after the ':'"),
    ("host:99999", "the port must be 1 to 65535, got 99999"),
    ("host:http", "the port 'http' is not a number"),
    ("::1:6379", "too many ':' (an IPv6 address goes in brackets: [::1]:6379)"),
    ("[::1:6379", "an IPv6 address in brackets lacks its ']'"),
    ("a b:6379", "'a b' is not a host name or IP address"),
    ("http://host:6379", "the scheme 'http' is not Ray's"),
    ("ray://", "there is no host"),
])
def test_each_way_an_address_is_wrong_is_said(tmp_path, capsys, address, why):
    from shrinkc.cli import main

    rc = main(["shrink", str(TINY), "-o", str(tmp_path / "run"), "--executor", "ray",
               "--address", address, "--max-steps", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and f"--address '{address}' is not a Ray address: {why}" in err, err
    assert not (tmp_path / "run").exists()


def test_an_address_that_is_not_one_in_the_run_configuration_is_located(tmp_path, capsys):
    from shrinkc.cli import main

    config = tmp_path / "run.yaml"
    config.write_text('executor: ray\naddress: "garbage::://"\n')
    rc = main(["shrink", str(TINY), "-o", str(tmp_path / "run"), "--config", str(config),
               "--max-steps", "0"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"{config.as_posix()}:2:10: error: address 'garbage::://' is not a Ray address" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:6379", "[::1]:6379", "head-1.example:1",
                                     "ray://10.0.0.5:10001", "ray://head"])
def test_the_forms_of_a_ray_address_are_accepted(address):
    from shrinkc.search.address import address_problem, parse_address

    assert address_problem(address, "--address") is None
    assert parse_address("ray://head") == ("head", 10001)  # Ray Client's port
    assert parse_address("[::1]:6379") == ("::1", 6379)


# ------------------------------------------------------------- 5: nothing listening there


def test_an_address_with_nothing_listening_is_said_at_once(tmp_path):
    _needs_ray()
    port = _free_port()  # closed again: nothing listens there
    r, seconds = _shrink(tmp_path / "run", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                         "--ray-timeout", "3", timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"no Ray cluster at 127.0.0.1:{port}" in r.stderr
    assert f"ray start --head --port={port}" in r.stderr
    assert "Traceback" not in r.stderr
    assert seconds < 60  # Ray alone retries for about 14 minutes


def test_an_address_that_does_not_answer_is_given_up_after_the_timeout(tmp_path):
    """Something listens but never answers (a port that is not Ray's, a cluster hung): the
    wait ends --ray-timeout seconds after the first connection, not Ray's minutes later."""
    _needs_ray()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    accepted: list[float] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        r, _ = _shrink(tmp_path / "run", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                       "--ray-timeout", "2", timeout=120)
        ended = time.monotonic()
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert r.returncode == 1, r.stderr
    assert f"no answer from the Ray cluster at 127.0.0.1:{port} within 2 s" in r.stderr
    assert "--ray-timeout" in r.stderr and "ray start --head" in r.stderr
    assert "Traceback" not in r.stderr
    assert accepted, "the address was never tried"
    assert ended - accepted[0] < 15  # 2 s, and the exit: well under the default 30 s


def test_the_ray_timeout_is_a_declared_setting(tmp_path, capsys):
    from shrinkc.cli import main

    run = ["shrink", str(TINY), "-o", str(tmp_path / "run"), "--max-steps", "0"]
    assert main([*run, "--ray-timeout", "0"]) == 2
    assert "--ray-timeout must be above 0" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text("ray_timeout: -1\n")
    assert main([*run, "--config", str(config)]) == 1
    assert "ray_timeout must be above 0" in capsys.readouterr().err


class _Ray:
    """A stand-in for the ray module: ``init`` runs ``behaviour``."""

    def __init__(self, behaviour):
        self.init = lambda **kwargs: behaviour()


def _connect_fails(address: str, timeout: float, ray=None):
    from shrinkc.compiler.errors import ShrinkError
    from shrinkc.search.executors import connect

    with pytest.raises(ShrinkError) as e:
        connect(ray, address, timeout)
    return e.value.diagnostic


def test_a_ray_client_address_with_nothing_listening_is_said_at_once():
    port = _free_port()
    start = time.monotonic()
    d = _connect_fails(f"ray://127.0.0.1:{port}", 30)  # ray.init is never reached
    assert time.monotonic() - start < 5
    assert d.message.startswith(f"no Ray cluster at ray://127.0.0.1:{port}: ")
    assert "ray start --head" in d.hint


def test_the_wait_for_ray_init_ends_at_the_deadline():
    with socket.socket() as server:  # listening, so ray.init is tried; it never returns
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        start = time.monotonic()
        d = _connect_fails(f"127.0.0.1:{port}", 0.5, _Ray(lambda: time.sleep(60)))
    assert time.monotonic() - start < 5
    assert d.message == f"no answer from the Ray cluster at 127.0.0.1:{port} within 0.5 s"
    assert "--ray-timeout" in d.hint


def test_what_ray_init_raises_is_a_message():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def version_mismatch():
            raise RuntimeError("Version mismatch: the cluster was started with Ray 2.9\nmore")

        d = _connect_fails(f"127.0.0.1:{port}", 10, _Ray(version_mismatch))
    assert d.message == (f"cannot connect to the Ray cluster at 127.0.0.1:{port}: Version "
                         "mismatch: the cluster was started with Ray 2.9")


def test_a_candidate_ray_gives_up_on_is_a_message_that_says_resume():
    """Ray retries a candidate whose worker died (3 times by default); when it gives up,
    the search stops with a message, and --resume trains the rest."""
    import types

    from shrinkc.compiler.errors import ShrinkError
    from shrinkc.search.executors import Ray

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        def __init__(self, cause):
            super().__init__(str(cause))
            self.cause = cause

    outcomes = {"lost": RayError("The worker died unexpectedly while executing this task.\n"
                                 "Check the worker's logs"),
                "refused": RayTaskError(ShrinkError("the data is not there"))}

    def get(ref):
        if ref in outcomes:
            raise outcomes[ref]
        return {"ref": ref}

    ray = types.SimpleNamespace(get=get, exceptions=types.SimpleNamespace(
        RayError=RayError, RayTaskError=RayTaskError))
    executor = Ray.__new__(Ray)
    executor.ray = ray
    executor.remote = types.SimpleNamespace(remote=lambda job: job)
    assert list(executor.map(["a", "b"])) == [{"ref": "a"}, {"ref": "b"}]
    results = executor.map(["a", "lost", "b"])
    assert next(results) == {"ref": "a"}
    with pytest.raises(ShrinkError) as e:
        next(results)
    assert e.value.diagnostic.message == ("Ray lost a candidate: The worker died unexpectedly "
                                          "while executing this task.")
    assert "--resume" in e.value.diagnostic.hint
    with pytest.raises(ShrinkError) as e:  # the training's own message, as a local run says it
        list(executor.map(["refused"]))
    assert e.value.diagnostic.message == "the data is not there"


def test_a_local_worker_killed_is_a_message_that_says_resume():
    """The same for local worker processes (--workers N): a pool broken by a killed worker
    is a message, not a BrokenProcessPool traceback."""
    import types
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from shrinkc.compiler.errors import ShrinkError
    from shrinkc.search.executors import Processes

    def submit(fn, job):
        f = Future()
        f.set_exception(BrokenProcessPool("A process in the process pool was terminated"))
        return f

    executor = Processes.__new__(Processes)
    executor.pool = types.SimpleNamespace(submit=submit)
    with pytest.raises(ShrinkError) as e:
        list(executor.map(["a"]))
    assert "a worker process ended while training a candidate" in e.value.diagnostic.message
    assert "--resume" in e.value.diagnostic.hint


# ------------------------------------------------------------------ 6: auto with no cluster


def _a_cluster_runs_here() -> bool:
    return any(p.info["name"] == "gcs_server" for p in _psutil().process_iter(["name"]))


def test_auto_with_no_cluster_says_how_to_start_one(tmp_path):
    _needs_ray()
    if _a_cluster_runs_here():  # auto would find it, as Ray's auto finds any cluster here
        pytest.skip("a Ray cluster runs on this machine")
    # RAY_TMPDIR: the cluster 'ray start' last recorded is looked for in an empty folder
    env = _env(RAY_TMPDIR=str(tmp_path))
    r, _ = _shrink(tmp_path / "run", "--executor", "ray", "--address", "auto", env=env,
                   timeout=120)
    assert r.returncode == 1, r.stderr
    assert "--address auto found no Ray cluster started on this machine" in r.stderr
    assert "ray start --head" in r.stderr
    assert "cannot write the output" not in r.stderr and "Traceback" not in r.stderr


def test_an_oserror_that_is_not_the_outputs_is_not_reported_as_one(monkeypatch, capsys):
    """The class of item 6: an OSError of no file (a ConnectionError, a socket's timeout) is
    not taken for a failure of stdout."""
    from shrinkc.cli import main
    from shrinkc.commands import shrink

    for error in (TimeoutError("timed out"), ConnectionError("no route"), OSError(5, "I/O")):
        def fail(args, report, error=error):
            raise error

        monkeypatch.setattr(shrink, "cmd_shrink", fail)
        assert main(["shrink", str(TINY), "-o", "unused"]) == 1
        err = capsys.readouterr().err
        assert f"error: {error.strerror or error}" in err and "cannot write the output" not in err


# ------------------------------------------------------------- a real cluster, on loopback


def _ray_processes(temp_dir: str) -> list:
    """The processes of the cluster whose files are in ``temp_dir``, with their children (the
    workers, whose command lines Ray rewrites)."""
    psutil = _psutil()
    found = {}
    for p in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(p.info["cmdline"] or ()):
            found[p.pid] = p
            for child in p.children(recursive=True):
                found[child.pid] = child
    return list(found.values())


def _stop(temp_dir: str) -> None:
    psutil = _psutil()
    procs = _ray_processes(temp_dir)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on loopback (2 CPUs, no dashboard) with its files in a folder of its own,
    stopped (its processes only) at the end. It wants a token, as 'ray start' does by
    default: ``env`` holds it (and no file in ~/.ray is written or read). Its workers keep
    this process's priority: Ray's default lowers theirs by 15, which starves them on a busy
    machine."""
    _psutil()
    temp_dir = tempfile.mkdtemp(prefix="shrinkc-ray-", dir="/tmp")  # short: sockets live here
    port = _free_port()
    env = _env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex, RAY_worker_niceness="0")
    try:
        r = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
                            f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats",
                            "--object-store-memory=200000000", f"--temp-dir={temp_dir}"],
                           capture_output=True, text=True, timeout=180, env=env,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            pytest.skip(f"ray start failed: {r.stderr[-500:]}")
        yield {"address": f"127.0.0.1:{port}", "env": env, "temp_dir": temp_dir}
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    r, _ = _shrink(out, *STEPS)
    assert r.returncode == 0, r.stderr
    return out


def _same_result(out: Path, reference: Path) -> None:
    assert read_log(out) == read_log(reference)
    assert (out / "best.shrink").read_text() == (reference / "best.shrink").read_text()


def test_a_search_on_a_ray_cluster_equals_a_local_run(cluster, local_run, tmp_path):
    out = tmp_path / "run"
    r, _ = _shrink(out, *STEPS, "--executor", "ray", "--address", cluster["address"],
                   joins=True,
                   env=cluster["env"])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    _same_result(out, local_run)


def test_a_cluster_that_wants_a_token_says_so(cluster, tmp_path):
    """Without the cluster's token Ray retries, then says only "Failed to connect": the
    message names the token and how to give it. (Ray's own knob shortens its retries here.)"""
    env = _env(RAY_AUTH_MODE="disabled", RAY_gcs_server_port_wait_time_s="1")
    r, _ = _shrink(tmp_path / "run", "--executor", "ray", "--address", cluster["address"],
                   joins=True,
                   env=env)
    assert r.returncode == 1, r.stderr
    assert (f"the Ray cluster at {cluster['address']} refused this connection: it wants its "
            "authentication token") in r.stderr
    assert "RAY_AUTH_MODE=token" in r.stderr and "Traceback" not in r.stderr


def _candidate_worker(temp_dir: str):
    """A worker of the cluster training a candidate (``ray::evaluate``), or None."""
    for p in _ray_processes(temp_dir):
        try:
            if " ".join(p.cmdline()).startswith("ray::evaluate"):
                return p
        except Exception:  # noqa: BLE001 - it ended meanwhile
            continue
    return None


def test_a_worker_killed_mid_candidate_changes_nothing(cluster, local_run, tmp_path):
    """Ray retries the lost candidate (or the search says so, and --resume completes it):
    either way the result is the local run's."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o", str(out), "--quiet",
           *STEPS, "--executor", "ray", "--address", cluster["address"]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        worker = _candidate_worker(cluster["temp_dir"])
        if worker is not None:
            os.kill(worker.pid, signal.SIGKILL)
            killed = worker.pid
        else:
            time.sleep(0.02)
    _, err = proc.communicate(timeout=400)
    assert killed is not None, "no worker was seen training a candidate"
    assert "Traceback" not in err
    if proc.returncode != 0:  # Ray gave the candidate up: the search says so
        assert proc.returncode == 1 and "--resume" in err, err
        r, _ = _shrink(out, *STEPS, "--executor", "ray", "--address", cluster["address"],
                       "--resume", env=cluster["env"], joins=True)
        assert r.returncode == 0, r.stderr
    _same_result(out, local_run)

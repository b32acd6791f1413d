"""The ``shrinkc`` command line: the entry point and its parser.

Commands: compile, stats, check, fmt (``commands/build.py``), shrink (``commands/shrink.py``),
diff, viz, schema (``commands/vcs.py``), bench (``commands/bench.py``), latency (``commands/latency.py``).

Exit codes: 0 success, 1 an error in the user's input (spec, data, files), 2 wrong
command-line usage. Errors are printed as ``file:line:col: error: message`` with the source
line and a hint; never as a traceback. Heavy modules (jinja2, rich, torch) load only when
needed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Sequence

from shrinkc.compiler.errors import Diagnostic, ShrinkError, escaped
from shrinkc.console import Reporter, UsageError

__all__ = ["Reporter", "UsageError", "main", "make_parser", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2, as argparse does, with our prefix
        self.print_usage(sys.stderr)
        print(f"shrinkc: error: {escaped(message)}", file=sys.stderr)
        raise SystemExit(2)


def make_parser() -> argparse.ArgumentParser:
    from shrinkc.commands import bench, build, latency, shrink, vcs
    from shrinkc.compiler.version import __version__

    p = _Parser(prog="shrinkc", description="Compile .shrink architecture specs.")
    p.add_argument("--version", action="version", version=f"shrinkc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in (build, shrink, vcs, bench, latency):
        group.register(sub)
    return p


TROUBLE = {"diff": 2}  # the exit code that means "trouble" where 1 means something else
# Commands that build the IR of a spec and exit: the cyclic garbage collector is paused while
# they run. They allocate hundreds of thousands of small acyclic objects (parse trees, IR
# nodes), and the collector's passes over them took 40% of `stats` on a 10,000-node cell;
# what they leave is freed at exit. Not `shrink` or `bench`, which run for minutes.
SHORT_LIVED = frozenset({"compile", "stats", "check", "fmt", "diff", "viz", "schema"})
# ... and they use numpy for small arrays only (weights, BN folding, a few calibration
# images): OpenBLAS's thread pool, started when numpy is imported, cost a cold
# `compile --target onnx` about 0.1 s of CPU (a third) for nothing. One BLAS thread, unless
# the user set OPENBLAS_NUM_THREADS; numpy is not imported before the command runs.
BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def _output_failed(args, e: OSError) -> int:
    """stdout could not be written (a full disk, a closed pipe): say so on stderr, and exit
    with the code that means trouble for this command (diff's 1 means "different")."""
    with contextlib.suppress(OSError):  # nothing more goes to the broken stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    with contextlib.suppress(OSError):
        print(f"shrinkc: error: cannot write the output: {e.strerror or e}", file=sys.stderr)
    return TROUBLE.get(getattr(args, "command", ""), 1)


class OutputError(Exception):
    """stdout could not be written (a closed pipe, a full disk). ``main`` puts ``_Output`` in
    place of stdout, which raises its stream's write errors as this: an ``OSError`` that
    reaches ``main`` is never one of the output stream (a named file, a connection, a
    socket's timeout) and is never reported as one."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Output:
    """``stream`` (stdout, or its binary ``buffer``), with the ``OSError``s of its writes and
    flushes raised as ``OutputError``; everything else is the stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, data):
        try:
            return self._stream.write(data)
        except OSError as e:
            raise OutputError(e) from e

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise OutputError(e) from e

    @property
    def buffer(self):
        return _Output(self._stream.buffer)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _output_errors_marked():
    """stdout as ``_Output`` while a command runs (and as it was, after)."""
    real = sys.stdout
    if real is None or isinstance(real, _Output):
        yield
        return
    sys.stdout = marked = _Output(real)
    try:
        yield
    finally:
        if sys.stdout is marked:
            sys.stdout = real


def main(argv: Sequence[str] | None = None) -> int:
    global _ran
    parser = make_parser()
    args = parser.parse_args(argv)
    _ran = args.command
    report = Reporter()
    if args.command in SHORT_LIVED and "numpy" not in sys.modules:
        os.environ.setdefault(BLAS_THREADS, "1")
    pause_gc = args.command in SHORT_LIVED and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        with _output_errors_marked():
            rc = args.func(args, report)
            sys.stdout.flush()
        return rc
    except OutputError as e:  # stdout's, and only stdout's
        return _output_failed(args, e.error)
    except OSError as e:  # a named file's, a connection's: never the output stream's
        if isinstance(e, ShrinkError):  # pragma: no cover - ShrinkError is not an OSError
            raise
        where = f": {e.filename}" if e.filename else ""
        report(Diagnostic("error", f"{e.strerror or str(e) or type(e).__name__}{where}"))
        return 1
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"shrinkc: error: {escaped(str(e))}", file=sys.stderr)
        return 2
    except ShrinkError as e:
        report(e.diagnostic)
        return 1
    except KeyboardInterrupt:
        print("shrinkc: interrupted", file=sys.stderr)
        return 130
    except RecursionError:
        report(Diagnostic("error", "spec is nested too deeply", None,
                          "simplify deeply nested expressions"))
        return 1
    finally:
        if pause_gc:
            gc.enable()


_ran: str | None = None  # the command main() ran last


def run() -> None:
    """The program: ``main()`` on ``sys.argv``, then exit. After a short-lived command the
    process ends at once (``os._exit``) once stdout and stderr are flushed: freeing the IR
    of a large spec object by object at interpreter exit cost ``diff`` on two 10,000-node
    cells 0.1 s, and such a command has nothing else to finish (its files are written and
    closed, atomically, before it returns)."""
    rc = main()
    if _ran in SHORT_LIVED:
        try:
            sys.stdout.flush()
        except OSError as e:  # the last buffered output could not be written
            rc = _output_failed(argparse.Namespace(command=_ran), e)
        with contextlib.suppress(OSError):
            sys.stderr.flush()
        os._exit(rc)
    raise SystemExit(rc)

"""The ``latency`` score variable: a candidate's latency in the network its cell is deployed in.

A search whose score names ``latency`` (milliseconds) is scored on the search's deployment
network (its ``deploy NAME [input CxHxW]`` line; the proxy network at its own input when it has
none) with each candidate's cell in place, predicted from a table of measured pieces
(``backends/latency``). The table is settled before anything is trained:

- ``--latency-table FILE`` of another device (a phone's, measured there with the same
  routine) is used as it is; every piece the space can put into the deployment network must
  be in it, or the search stops with the pieces it lacks;
- ``--latency-table FILE`` of this machine (same fingerprint) gets the pieces it lacks measured
  here and is saved back (a table is a cache of measurements: it only grows); a FILE that does
  not exist is built here for the whole space and saved there;
- without the flag the table is built here, once, in the run folder (``latency.json``).

The run folder keeps the table it scored with (``latency.json``) and run.json its sha256,
network and fingerprint, so ``--resume`` scores with the same table and refuses another one.
Predictions are deterministic, so a resumed search removes the same edges. Each step's chosen
snapshot is then measured (the same routine, the table's protocol), when the table is this
machine's: the log's chosen entries hold ``latency`` (predicted) and ``latency_measured`` (the
median, with its interquartile range). The driver measures between steps, when no candidate
trains.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

NAME = "latency"  # the score variable
TABLE_FILE = "latency.json"  # the table a run scored with, in its run folder
MEASURED = ("latency_measured", "latency_iqr")  # what a chosen snapshot's measurement logs
Edge = tuple[int, int]


def used(expr: ir.Expr) -> bool:
    """Whether a score expression refers to ``latency``."""
    if isinstance(expr, ir.Ref):
        return expr.name == NAME
    if isinstance(expr, ir.Call):
        return any(used(a) for a in expr.args)
    if isinstance(expr, ir.BinOp):
        return used(expr.left) or used(expr.right)
    if isinstance(expr, ir.Neg):
        return used(expr.operand)
    return False


@dataclass
class Latency:
    """A run's latency scorer: the spec, the search block, the table and whether it is this
    machine's (then chosen snapshots are measured)."""

    checked: Any  # compiler.pipeline.Checked
    search: ir.SearchDef
    table: Any  # backends.latency.LatencyTable
    here: bool
    measured_here: int  # pieces this run measured into the table
    _memo: dict = field(default_factory=dict, repr=False)

    def _graph(self, edges: Iterable[Edge]):
        from shrinkc.compiler.deploy import deployment_graph

        return deployment_graph(self.checked, self.search, edges)

    def predict(self, edges: Iterable[Edge]) -> float:
        """The deployment network's predicted latency (ms) with the space cut to ``edges``."""
        from shrinkc.backends.latency import predict_ms

        key = tuple(sorted(tuple(e) for e in edges))
        if key not in self._memo:
            self._memo[key] = round(predict_ms(self._graph(key), self.table), 6)
        return self._memo[key]

    def measure(self, edges: Iterable[Edge]) -> dict:
        """The deployment network with ``edges`` measured here with the table's protocol: its
        median and interquartile range (ms)."""
        from shrinkc.backends.latency import measure_model
        from shrinkc.backends.onnx import generate

        m = measure_model(generate(self._graph(edges)), self.table.protocol)
        return dict(zip(MEASURED, (round(m.median_ms, 6), round(m.iqr_ms, 6)), strict=True))

    def record(self) -> dict:
        """What run.json records (``--resume`` compares it)."""
        from shrinkc.compiler.deploy import deploy_target

        network, dims = deploy_target(self.search)
        return {"table_sha256": self.table.digest(), "network": network,
                "input": list(dims) if dims else None,
                "fingerprint": self.table.fingerprint.to_dict(), "measured": self.here}


def _modules() -> None:
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ShrinkError(f"a latency score needs the '{e.name}' package (latency is predicted "
                          "from pieces measured with onnxruntime)", None,
                          "pip install 'shrinkc[onnx]'") from None


def _show(quiet: bool) -> Callable | None:
    """A one-line progress display on a terminal's stderr while pieces are measured."""
    if quiet or not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def show(done: int, total: int, what: str) -> None:
        sys.stderr.write(f"\r\x1b[Klatency table: measuring {done + 1}/{total} "
                         f"({time.monotonic() - start:.0f} s)")
        sys.stderr.flush()
    return show


def _space_pieces(checked, search: ir.SearchDef, space: ir.SpaceDef) -> dict:
    """Every piece a candidate of ``space`` can put into the deployment network."""
    from shrinkc.backends.latency import space_pieces
    from shrinkc.compiler.deploy import deployment_graph
    from shrinkc.compiler.passes.space import complete_edges, node_count

    full = deployment_graph(checked, search, complete_edges(node_count(space)))
    return space_pieces(full, space)


def prepare(checked, search: ir.SearchDef, space: ir.SpaceDef, table_path: str | None,
            run_copy: Path, resume: bool, quiet: bool = False) -> Latency:
    """The run's table, settled as the module says, before anything is trained (``run_copy``:
    the run folder's ``latency.json``, read on ``--resume`` without ``--latency-table``)."""
    _modules()
    from shrinkc.backends import latency as L

    if table_path is None and resume and run_copy.exists():
        table = L.load(run_copy)
        return Latency(checked, search, table, _is_here(table), 0)
    pieces = _space_pieces(checked, search, space)
    path = Path(table_path) if table_path is not None else None
    table = L.load(path) if path is not None and path.exists() else None
    if table is not None and not _is_here(table):
        table.require(pieces, f"search {search.name}'s deployment network with space "
                      f"'{space.name}'")
        return Latency(checked, search, table, False, 0)
    missing = [p for k, p in pieces.items() if table is None or k not in table.entries]
    protocol = table.protocol if table is not None else L.Protocol()
    if missing or table is None:
        show = _show(quiet)
        try:
            table = L.build_table(missing, protocol, table, show)
        finally:
            if show is not None:
                sys.stderr.write("\r\x1b[K")
        if path is not None:
            L.save(table, path)
    return Latency(checked, search, table, True, len(missing))


def _is_here(table) -> bool:
    """Whether ``table`` was measured on this machine with its own protocol's settings."""
    from shrinkc.backends.latency import differences

    return not differences(table.fingerprint, table.protocol.fingerprint().device())


__all__ = ["MEASURED", "NAME", "TABLE_FILE", "Latency", "prepare", "used"]

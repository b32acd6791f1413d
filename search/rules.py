"""The shrinker's rules, as pure functions over the IR (no torch, no files).

AutoShrink (Zhang et al., AAAI 2020): start from the complete DAG; each step samples K
single-edge removals, trains each candidate, scores it, removes the winning edge for good,
drops edges out of nodes the input no longer reaches, and snapshots. The result is the
best-scoring snapshot (ties: fewer edges). The search block's settings are read by
``settings.py``; the driver that trains candidates and keeps the run directory is
``driver.py``.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import TYPE_CHECKING

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, did_you_mean
from shrinkc.compiler.passes.space import all_edges, cleanup, node_count

if TYPE_CHECKING:
    from .logentry import Entry

Edge = tuple[int, int]

SCORE_FUNCTIONS = {
    "log10": (1, math.log10), "log": (1, math.log), "log2": (1, math.log2),
    "sqrt": (1, math.sqrt), "exp": (1, math.exp), "min": (2, min), "max": (2, max),
}


# --------------------------------------------------------------------------- the score


def check_score(expr: ir.Expr, metrics: tuple[str, ...]) -> None:
    """Check a search's score expression: only ``metrics`` and the score functions, each with
    its number of arguments; errors are located."""
    if isinstance(expr, ir.Ref):
        if expr.name not in metrics:
            raise ShrinkError(f"unknown name '{expr.name}' in the score", expr.loc,
                              did_you_mean(expr.name, metrics, "metrics") or
                              f"a score uses {', '.join(metrics)}")
    elif isinstance(expr, ir.Call):
        if expr.func not in SCORE_FUNCTIONS:
            raise ShrinkError(f"unknown function '{expr.func}' in the score", expr.loc,
                              did_you_mean(expr.func, SCORE_FUNCTIONS, "functions"))
        arity = SCORE_FUNCTIONS[expr.func][0]
        if len(expr.args) != arity:
            raise ShrinkError(f"{expr.func}() takes {arity} argument{'s' if arity > 1 else ''}, "
                              f"got {len(expr.args)}", expr.loc)
        for a in expr.args:
            check_score(a, metrics)
    elif isinstance(expr, ir.BinOp):
        check_score(expr.left, metrics)
        check_score(expr.right, metrics)
    elif isinstance(expr, ir.Neg):
        check_score(expr.operand, metrics)


def score(expr: ir.Expr, metrics: dict[str, float]) -> float:
    """Evaluate a checked score expression; a math domain error gives -inf."""
    try:
        return float(_eval(expr, metrics))
    except (ValueError, ZeroDivisionError, OverflowError):
        return float("-inf")


def _eval(e: ir.Expr, m: dict[str, float]) -> float:
    if isinstance(e, ir.Num):
        return e.value
    if isinstance(e, ir.Ref):
        return m[e.name]
    if isinstance(e, ir.Neg):
        return -_eval(e.operand, m)
    if isinstance(e, ir.Call):
        return SCORE_FUNCTIONS[e.func][1](*(_eval(a, m) for a in e.args))
    a, b = _eval(e.left, m), _eval(e.right, m)
    if e.op == "+":
        return a + b
    if e.op == "-":
        return a - b
    if e.op == "*":
        return a * b
    if e.op == "/":
        return a / b
    return a // b if e.op == "//" else a % b


# --------------------------------------------------------------------------- the DAG


def live_edges(space: ir.SpaceDef) -> tuple[Edge, ...]:
    return cleanup(all_edges(space), node_count(space))


def remove(space: ir.SpaceDef, edges: tuple[Edge, ...], gone: Edge | tuple[Edge, ...]) -> tuple[Edge, ...]:
    """``edges`` without ``gone``, cleaned up (edges out of unreachable nodes dropped)."""
    gone_set = {gone} if isinstance(gone[0], int) else set(gone)  # type: ignore[arg-type]
    return cleanup(tuple(e for e in edges if e not in gone_set), node_count(space))


def valid(edges: tuple[Edge, ...]) -> bool:
    """A cell needs at least one node fed by the input."""
    return any(i == 0 for i, _ in edges)


def shrink_space(edges: tuple[Edge, ...], space: ir.SpaceDef) -> list[Edge]:
    """Every live edge whose removal leaves a valid cell, in a fixed order."""
    return [e for e in edges if valid(remove(space, edges, e))]


def sample(edges: list[Edge], k: int, seed: int, step: int) -> list[Edge]:
    """K of the removable edges (all when fewer), the same for a given seed and step."""
    if len(edges) <= k:
        return list(edges)
    rng = random.Random(f"shrinkc:{seed}:{step}")
    return sorted(rng.sample(edges, k), key=lambda e: (e[1], e[0]))


def rungs(epochs: int, halving: int) -> list[int]:
    """The epoch budgets of a step's rounds: ``[epochs]`` without halving; with halving factor
    eta, successive halving's budgets ``epochs / eta**s, ..., epochs / eta, epochs`` (whole
    epochs, at least 1), as many as fit: ``rungs(9, 3) == [1, 3, 9]``, ``rungs(4, 2) ==
    [1, 2, 4]``, ``rungs(2, 3) == [2]``."""
    if halving < 2:
        return [epochs]
    out, b = [epochs], epochs
    while b // halving >= 1:
        b //= halving
        out.insert(0, b)
    return out


def rank(entries: list[Entry]) -> list[Entry]:
    """Candidates best first: higher score, then fewer edges, then the lower edge."""
    return sorted(entries, key=lambda e: (-e.score, e.edges, e.edge))


def survivors(entries: list[Entry], halving: int, drop: int) -> list[Edge]:
    """The edges of the candidates that go on to the next round: the best 1/eta of them,
    never fewer than the ``drop`` a step removes (when that leaves only ``drop``, they are the
    winners and the step needs no further round)."""
    keep = max(drop, -(-len(entries) // halving))
    return sorted((e.edge_key for e in rank(entries)[:keep]), key=lambda e: (e[1], e[0]))


def round_sizes(k: int, rounds: int, halving: int, drop: int) -> list[int]:
    """How many candidates each round of a step with ``k`` candidates trains."""
    sizes = [k]
    while len(sizes) < rounds and max(drop, -(-sizes[-1] // halving)) > drop:
        sizes.append(max(drop, -(-sizes[-1] // halving)))
    return sizes


def target(initial: int, keep: float) -> int:
    return int(round(initial * keep))


def candidate_seed(seed: int, step: int, edge: Edge) -> int:
    h = hashlib.sha256(f"{seed}:{step}:{edge[0]}-{edge[1]}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def best_snapshot(snapshots: list[dict]) -> dict | None:
    """The best-scoring snapshot; ties go to fewer edges, then to the earlier step."""
    if not snapshots:
        return None
    return max(snapshots, key=lambda s: (s["score"], -s["edges"], -s["step"]))


def with_edges(program: ir.Program, space: str, edges: tuple[Edge, ...]) -> ir.Program:
    """The parsed program with one space's live edges replaced (for snapshots)."""
    items = tuple(
        i.model_copy(update={"edges": tuple(sorted(edges, key=lambda e: (e[1], e[0])))})
        if isinstance(i, ir.SpaceDef) and i.name == space else i
        for i in program.items
    )
    return program.model_copy(update={"items": items})


def random_cells(program: ir.Program, space: ir.SpaceDef, n: int, seed: int,
                 exclude: tuple[str, ...] = ()) -> list[tuple[Edge, ...]]:
    """Up to ``n`` distinct random cells of ``space`` (by cell hash, none of ``exclude``'s):
    a random number of edges (2 to all), a random subset of that size, cleaned up (edges out
    of nodes the input cannot reach dropped), kept if valid. Seeded; so the cells span every
    edge count. Fewer than ``n`` only when the space has no more to give (a space of few
    edges: drawing stops after ``100 * n`` draws without a new cell)."""
    from shrinkc.compiler.analysis.cellhash import cell_hash
    from shrinkc.compiler.passes.space import expand

    rng = random.Random(seed)
    full = live_edges(space)
    nodes = node_count(space)
    seen, cells, idle = set(exclude), [], 0
    while len(cells) < n and idle < 100 * n and full:
        k = rng.randint(min(2, len(full)), len(full))
        edges = cleanup(tuple(sorted(rng.sample(full, k), key=lambda e: (e[1], e[0]))), nodes)
        idle += 1
        if not valid(edges):
            continue
        prog = with_edges(program, space.name, edges)
        h = cell_hash(expand(prog.defs(ir.SpaceDef)[space.name]))
        if h not in seen:
            seen.add(h)
            cells.append(edges)
            idle = 0
    return cells

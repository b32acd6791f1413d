"""The shrinker's rules, as pure functions over the IR (no torch, no files).

AutoShrink (Zhang et al., AAAI 2020): start from the complete DAG; each step samples K
single-edge removals, trains each candidate, scores it, removes the winning edge for good,
drops edges out of nodes the input no longer reaches, and snapshots. The result is the
best-scoring snapshot (ties: fewer edges). The driver that trains candidates and keeps the
run directory is ``compiler/shrinker.py``.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, did_you_mean
from shrinkc.compiler.passes.space import all_edges, cleanup, node_count

Edge = tuple[int, int]

SCORE_FUNCTIONS = {
    "log10": (1, math.log10), "log": (1, math.log), "log2": (1, math.log2),
    "sqrt": (1, math.sqrt), "exp": (1, math.exp), "min": (2, min), "max": (2, max),
}
CNN_METRICS = ("acc", "macs", "params", "edges")
LM_METRICS = ("ppl", "flops", "params", "edges")

TRAIN_KEYS = {"optimizer": str, "lr": float, "batch": int, "epochs": int, "patience": int,
              "momentum": float, "weight_decay": float, "finetune": int, "bptt": int,
              "clip": float}
SHRINK_KEYS = {"candidates": int, "drop": int, "keep": float, "seed": int}
DEFAULT_SHRINK = {"candidates": 10, "drop": 1, "keep": 0.01, "seed": 0}
DEFAULT_TRAIN = {"optimizer": "adam", "lr": 0.004, "batch": 128, "epochs": 20, "patience": 3,
                 "finetune": 2}  # finetune: epochs per candidate with --inherit


@dataclass(frozen=True)
class Settings:
    candidates: int
    drop: int
    keep: float
    seed: int
    train: dict
    score: ir.Expr


def _settings(args: tuple[ir.Arg, ...], keys: dict, defaults: dict, what: str) -> dict:
    out = dict(defaults)
    for a in args:
        if a.name is None:
            raise ShrinkError(f"{what} settings are named: write {what}(name=value)", a.loc,
                              f"names: {', '.join(keys)}")
        if a.name not in keys:
            raise ShrinkError(f"unknown {what} setting '{a.name}'", a.loc,
                              did_you_mean(a.name, keys, "settings"))
        v = a.value
        if keys[a.name] is str:
            if not isinstance(v, ir.Ref):
                raise ShrinkError(f"{a.name} is a name, e.g. adam", a.loc)
            value: object = v.name
        else:
            from shrinkc.compiler.passes.elaborate import evaluate

            value = evaluate(v, {})
            if isinstance(value, str) or (keys[a.name] is int and not isinstance(value, int)):
                raise ShrinkError(f"{what} setting {a.name} must be {keys[a.name].__name__}, "
                                  f"got {value!r}", a.loc)
            value = keys[a.name](value)
        out[a.name] = value
    return out


def check_score(expr: ir.Expr, metrics: tuple[str, ...]) -> None:
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


def settings(search: ir.SearchDef, overrides: dict | None = None,
             metrics: tuple[str, ...] = CNN_METRICS) -> Settings:
    shrink = _settings(search.shrink, SHRINK_KEYS, DEFAULT_SHRINK, "shrink")
    train = _settings(search.train, TRAIN_KEYS, DEFAULT_TRAIN, "train")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        (shrink if k in SHRINK_KEYS else train)[k] = v
    if train["optimizer"] not in ("adam", "sgd"):
        raise ShrinkError(f"unknown optimizer '{train['optimizer']}'", search.locs.get("train"),
                          "optimizer=adam or optimizer=sgd")
    for k in ("candidates", "drop"):
        if shrink[k] < 1:
            raise ShrinkError(f"{k} must be at least 1, got {shrink[k]}", search.locs.get("shrink"))
    if not 0 <= shrink["keep"] < 1:
        raise ShrinkError(f"keep must be a fraction in [0, 1), got {shrink['keep']}",
                          search.locs.get("shrink"))
    if train["epochs"] < 1 or train["batch"] < 2 or train["lr"] <= 0:
        raise ShrinkError("train needs epochs >= 1, batch >= 2 and lr > 0", search.locs.get("train"))
    if search.score is None:
        raise ShrinkError(f"search '{search.name}' has no score", search.loc,
                          "write e.g. score acc - 0.1 * (log10(macs) - 6)")
    check_score(search.score, metrics)
    return Settings(shrink["candidates"], shrink["drop"], shrink["keep"], shrink["seed"], train,
                    search.score)


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

"""An oracle for the AutoShrink driver: the search runs with a fake trainer, and every decision
in its run folder is recomputed here, independently of the driver's own helpers.

The other search tests check the search against its own log, so a driver that scored with the
sign of the cost term flipped, or wrote the first snapshot as ``best.shrink``, still passed
them. Here ``shrinkc.search.train.evaluate`` (what the in-process executor calls, ``workers=1``)
is replaced by a fake whose accuracy grows with the candidate's edges while its MACs grow too,
so the score's cost term decides (a flipped sign chooses differently, checked below), and whose
metrics are a function of the edge set alone, so that candidates removing edges of the same
kind tie exactly. For every step the test recomputes:

1. the removable edges of its own edge set (a removal is valid while an edge leaves the
   input: edges out of the input are never cleaned up) and the K sampled for seed and step,
2. each candidate's cell (its own clean-up), its metrics and its score from the formula
   written here (the spec's score line: ``acc - 0.1 * (log10(macs) - 6)``),
3. the chosen edge: the best score, ties to fewer edges, then the lower edge
   (``rules.rank``'s and ``driver._choose``'s documented rule), and with successive halving
   the survivors of each round (the best ceil(n / eta) by the same ranking, never fewer than
   ``drop``), each round trained for its own budget,
4. each ``step-NN.shrink`` and ``best.shrink``: the best-scoring snapshot, ties to fewer edges.

The spec (``specs/oracle_space.shrink``) gives each node a different op, so two different edge
sets are never isomorphic cells: a log entry that says ``isomorphic_to`` must name a candidate
with the very same edge set.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

import shrinkc.search.train as train_module
from shrinkc.search.driver import Options, run

from conftest import TEST_SPECS

SPEC = TEST_SPECS / "oracle_space.shrink"
NODES = 6  # the spec's "nodes 6"
DROP = 1

Edge = tuple[int, int]


# --------------------------------------------------------------------------- the fake trainer

# Per-edge weights of the fake: accuracy in thousandths (A: what any budget gets, B: what each
# epoch after the first adds) and MACs in doublings (M). Removing an edge costs accuracy and
# saves MACs, so the score's cost term decides; many edges weigh the same (several nothing at
# all), so candidates tie exactly, some with the clean-up taking more edges than others. (The
# table was drawn at random, and kept for covering every kind of decision below.)
WEIGHTS: dict[Edge, tuple[int, int, int]] = {  # edge: (A, B, M)
    (0, 1): (0, 1, 0),
    (0, 2): (45, 6, 1), (1, 2): (10, 1, 0),
    (0, 3): (45, 0, 1), (1, 3): (10, 0, 0), (2, 3): (10, 0, 0),
    (0, 4): (0, 1, 1), (1, 4): (0, 6, 1), (2, 4): (20, 0, 0), (3, 4): (20, 1, 1),
    (0, 5): (10, 6, 1), (1, 5): (20, 1, 0), (2, 5): (20, 0, 0), (3, 5): (0, 6, 0),
    (4, 5): (10, 1, 0),
}


def fake_metrics(edges: frozenset[Edge], epochs: int) -> dict:
    """What the fake trainer reports for a cell with these live edges after ``epochs``: exact
    (integers until the last division), so equal edge kinds give bitwise equal scores."""
    a, b, m = (sum(WEIGHTS[e][k] for e in edges) for k in range(3))
    acc = (400 + a + (epochs - 1) * b) / 1000
    macs = 1_000_000 * 2 ** m
    return {"acc": acc, "macs": macs, "params": 100 * len(edges)}


def score(acc: float, macs: float) -> float:
    """The spec's score line, written out: acc - 0.1 * (log10(macs) - 6)."""
    return acc - 0.1 * (math.log10(macs) - 6)


def flipped(acc: float, macs: float) -> float:
    """The same score with the sign of its cost term flipped (what a broken driver would use)."""
    return acc + 0.1 * (math.log10(macs) - 6)


_EDGES_LINE = re.compile(r"^\s*edges\s+(.*)$", re.M)


def edges_of(text: str) -> frozenset[Edge]:
    """The live edges a spec text's space lists (its ``edges`` line)."""
    (line,) = _EDGES_LINE.findall(text)
    pairs = re.findall(r"(\d+)\s*->\s*(\d+)", line)
    assert pairs, line
    return frozenset((int(i), int(j)) for i, j in pairs)


class FakeTrainer:
    """Stands in for ``train.evaluate``: records each job's edge set and budget."""

    def __init__(self):
        self.calls: list[tuple[frozenset[Edge], int]] = []

    def __call__(self, job) -> dict:
        edges = edges_of(job.text)
        epochs = job.train.epochs
        assert job.edges == len(edges), "the job's edge count is its text's"
        assert job.parent is None and not job.keep_state
        self.calls.append((edges, epochs))
        return {**fake_metrics(edges, epochs), "epochs": epochs,
                "curve": [0.1] * epochs, "seconds": 0.0, "cpu_seconds": 0.0}


# --------------------------------------------------------------------------- the rules, re-derived


def complete(n: int) -> frozenset[Edge]:
    return frozenset((i, j) for j in range(n) for i in range(j))


def clean(edges: frozenset[Edge]) -> frozenset[Edge]:
    """Drop edges out of nodes the input does not reach (a fixed point over the edge set)."""
    reach = {0}
    grown = True
    while grown:
        new = {j for i, j in edges if i in reach} - reach
        reach |= new
        grown = bool(new)
    return frozenset(e for e in edges if e[0] in reach)


def dst_src(e: Edge) -> tuple[int, int]:
    return (e[1], e[0])


def removable(edges: frozenset[Edge]) -> list[Edge]:
    """Every live edge whose removal leaves a node fed by the input: all of them, but the
    input's last outgoing edge. In the cell's order (by destination, then source)."""
    out_of_input = [e for e in edges if e[0] == 0]
    return sorted((e for e in edges if not (e[0] == 0 and len(out_of_input) == 1)), key=dst_src)


def sampled(edges: frozenset[Edge], k: int, seed: int, step: int) -> set[Edge]:
    """K of the removable edges (all when fewer), drawn with the seed and step's generator."""
    pool = removable(edges)
    if len(pool) <= k:
        return set(pool)
    return set(random.Random(f"shrinkc:{seed}:{step}").sample(pool, k))


def budgets(epochs: int, eta: int) -> list[int]:
    """A step's rounds: epochs / eta**s, ..., epochs / eta, epochs (whole, at least 1)."""
    out = [epochs]
    while eta >= 2 and out[0] // eta >= 1:
        out.insert(0, out[0] // eta)
    return out


def best_first(cands: list[dict]) -> list[dict]:
    """Higher score, then fewer edges, then the lower edge (as [i, j])."""
    return sorted(cands, key=lambda c: (-c["score"], len(c["cell"]), c["edge"]))


# --------------------------------------------------------------------------- the oracle


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def check_run(out: Path, calls: list[tuple[frozenset[Edge], int]], *, k: int, seed: int,
              keep: float, epochs: int = 1, eta: int = 0) -> dict:
    """Recompute the whole search in ``out`` and compare; returns what the run covered."""
    log = read_log(out)
    rounds = budgets(epochs, eta)
    edges = complete(NODES)
    goal = int(round(len(edges) * keep))
    seen: dict[tuple, frozenset[Edge]] = {}  # (step, edge, rung) -> the candidate's cell
    trained: list[tuple[frozenset[Edge], int]] = []  # what the fake must have been called with
    snapshots: list[dict] = []
    cover = {"top_ties": 0, "ties_to_fewer_edges": 0, "ties_to_lower_edge": 0,
             "flip_differs": 0, "later_rounds": 0, "rounds_reordered": 0, "isomorphic": 0}
    step = 0
    while len(edges) > goal and removable(edges):
        step += 1
        mine = [e for e in log if e["step"] == step]
        assert mine, f"step {step} is missing from the log"
        cands = sampled(edges, k, seed, step)
        previous: list[dict] = []
        for r, budget in enumerate(rounds):
            if r > 0:
                keep_n = max(DROP, -(-len(previous) // eta))
                cands = {tuple(c["edge"]) for c in best_first(previous)[:keep_n]}
                if len(cands) <= DROP:
                    break
                cover["later_rounds"] += 1
            rung = r if len(rounds) > 1 else None
            entries = [e for e in mine if e.get("rung") == rung]
            assert sorted(tuple(e["edge"]) for e in entries) == sorted(cands), \
                f"step {step} round {r}: trained {[e['edge'] for e in entries]}, " \
                f"expected {sorted(cands)}"
            current = []
            for e in entries:
                edge = tuple(e["edge"])
                cell = clean(edges - {edge})
                seen[(step, edge, rung)] = cell
                want = fake_metrics(cell, budget)
                where = f"step {step} round {r} edge {edge}"
                assert e["edges"] == len(cell), where
                assert (e["acc"], e["macs"], e["epochs"]) == (want["acc"], want["macs"], budget), \
                    where
                assert e["score"] == pytest.approx(score(e["acc"], e["macs"]), abs=1e-12), \
                    f"{where}: logged score {e['score']}, formula {score(e['acc'], e['macs'])}"
                if "isomorphic_to" in e:
                    cover["isomorphic"] += 1
                    twin = (e["isomorphic_to"][0], tuple(e["isomorphic_to"][1]), rung)
                    assert seen.get(twin) == cell, f"{where}: not the cell of its twin {twin}"
                else:
                    trained.append((cell, budget))
                current.append({"edge": list(edge), "cell": cell,
                                "score": score(want["acc"], want["macs"]),
                                "flipped": flipped(want["acc"], want["macs"])})
            if previous and [c["edge"] for c in best_first(current)] != \
                    [c["edge"] for c in best_first(previous) if tuple(c["edge"]) in cands]:
                cover["rounds_reordered"] += 1
            previous = current
        ranked = best_first(previous)
        winner = ranked[0]
        chosen = [e["edge"] for e in mine if e["chosen"]]
        assert chosen == [winner["edge"]], \
            f"step {step}: chosen {chosen}, expected {winner['edge']} of " \
            f"{[(c['edge'], c['score'], len(c['cell'])) for c in ranked]}"
        ties = [c for c in ranked if c["score"] == winner["score"]]
        if len(ties) > 1:
            cover["top_ties"] += 1
            if len(ties[1]["cell"]) > len(winner["cell"]):
                cover["ties_to_fewer_edges"] += 1
            else:
                cover["ties_to_lower_edge"] += 1
        if min(previous, key=lambda c: (-c["flipped"], len(c["cell"]), c["edge"]))["edge"] \
                != winner["edge"]:
            cover["flip_differs"] += 1
        edges = winner["cell"]
        snap = out / f"step-{step:02d}.shrink"
        assert edges_of(snap.read_text()) == edges, f"{snap.name} lists other edges"
        snapshots.append({"step": step, "edges": edges, "score": winner["score"]})
    assert step >= 1 and max(e["step"] for e in log) == step, "the log has steps beyond the end"
    assert not (out / f"step-{step + 1:02d}.shrink").exists()
    assert calls == trained, "the fake trainer was not called for exactly the trained candidates"
    top = max(s["score"] for s in snapshots)
    best = min((s for s in snapshots if s["score"] == top), key=lambda s: len(s["edges"]))
    assert edges_of((out / "best.shrink").read_text()) == best["edges"], \
        f"best.shrink is not step {best['step']}'s snapshot " \
        f"(scores {[(s['step'], round(s['score'], 4)) for s in snapshots]})"
    cover["steps"] = step
    cover["best_not_first"] = int(best["step"] > 1)
    cover["snapshot_ties_at_best"] = sum(s["score"] == top for s in snapshots) - 1
    return cover


def search(tmp_path: Path, monkeypatch, name: str, **overrides) -> tuple[Path, list]:
    """Run the driver in this process with the fake trainer; returns the run folder and the
    fake's calls."""
    fake = FakeTrainer()
    # the in-process executor imports ``evaluate`` from this module when it trains
    monkeypatch.setattr(train_module, "evaluate", fake)
    out = tmp_path / name
    summary = run(Options(spec=str(SPEC), out=str(out), quiet=True, train_precision="fp32",
                          device="cpu", workers=1, overrides=overrides))
    assert summary["steps"] >= 1
    return out, fake.calls


SEEDS = (0, 1, 2)


def test_the_fake_trainer_is_what_the_driver_calls(tmp_path, monkeypatch):
    import sys

    # shrinkc/search is a link to search/: one module object, the one the executor imports
    assert sys.modules["shrinkc.search.train"] is train_module
    out, calls = search(tmp_path, monkeypatch, "run", seed=0, candidates=4)
    assert calls and len(calls) == sum("isomorphic_to" not in e for e in read_log(out))


def test_every_step_is_decided_as_the_rules_say(tmp_path, monkeypatch):
    total: dict[str, int] = {}
    for seed in SEEDS:
        out, calls = search(tmp_path, monkeypatch, f"seed{seed}", seed=seed, candidates=4)
        cover = check_run(out, calls, k=4, seed=seed, keep=0.2)
        for key, v in cover.items():
            total[key] = total.get(key, 0) + v
    print(total)
    # what makes this oracle able to fail: the cost term changes a decision, exact ties at the
    # top are broken both ways, and the best snapshot is not the first
    assert total["flip_differs"] >= 2
    assert total["ties_to_fewer_edges"] >= 1 and total["ties_to_lower_edge"] >= 1
    assert total["best_not_first"] >= 2 and total["snapshot_ties_at_best"] >= 1


def test_successive_halving_keeps_the_best_of_each_round(tmp_path, monkeypatch):
    total: dict[str, int] = {}
    for seed in SEEDS:
        out, calls = search(tmp_path, monkeypatch, f"halving{seed}", seed=seed, candidates=6,
                            epochs=4, halving=2)
        cover = check_run(out, calls, k=6, seed=seed, keep=0.2, epochs=4, eta=2)
        for key, v in cover.items():
            total[key] = total.get(key, 0) + v
    print(total)
    # rounds were cut down and some reordered (the last round's budget decides), the cost term
    # changed a decision, and the best snapshot is not the first
    assert total["later_rounds"] >= 4 and total["rounds_reordered"] >= 1
    assert total["flip_differs"] >= 1 and total["best_not_first"] >= 2

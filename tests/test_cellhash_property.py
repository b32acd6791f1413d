"""The cell hash (``compiler/analysis/cellhash.py``) as properties, with hypothesis.

Random cells are written as ``.shrink`` text and read back with the front end (``check``), as
a user's would be. Writing the same cell again with other node names, its statements in
another order and the inputs of every concat (a node's ``<- a, b`` and the output's
``concat(...)``) in another order gives the same hash; moving one edge, or changing one node's
op, gives another one.

A moved edge keeps the number of edges (an added or removed one changes it, which the hash
counts outright), so only the structure can tell the two cells apart; a move that happens to
give the same cell up to names (an isomorphic one: found by trying every relabelling) is not
a change and is skipped.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shrinkc.compiler.analysis.cellhash import cell_hash
from shrinkc.compiler.pipeline import check

OPS = ("conv(w, k=1)", "conv(w, k=3)", "sepconv(w, k=3)", "maxpool(3, stride=1, padding=1)")
ACTS = ("", " relu")
# names a node may be given (none of them a keyword, an op or a merge)
NAMES = ("x", "y", "a", "b", "c", "p", "q", "r", "n1", "n2", "n3", "n4", "n5", "n6", "h0",
         "left", "right", "mid", "t_1", "t_2", "zz")

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --------------------------------------------------------------------------- cells


class Cell:
    """A cell's DAG: node 0 is the input, nodes 1..n the ops (node i reads only nodes before
    it, so every node is reachable from the input); the output concatenates the nodes that
    feed no other (so every node is live)."""

    def __init__(self, ops: list[tuple[int, int]], inputs: list[frozenset[int]]):
        self.ops = ops  # per node 1..n: (op index, activation index)
        self.inputs = inputs  # per node 1..n: the nodes it reads

    @property
    def n(self) -> int:
        return len(self.ops)

    def edges(self) -> set[tuple[int, int]]:
        return {(s, i + 1) for i, srcs in enumerate(self.inputs) for s in srcs}

    def sinks(self) -> list[int]:
        fed = {s for s, _ in self.edges()}
        return [i for i in range(1, self.n + 1) if i not in fed]

    def text(self, names: list[str] | None = None, order: list[int] | None = None,
             shuffle=None) -> str:
        """The cell as ``.shrink`` text: node i named ``names[i]`` (default x, n1, n2, ...),
        the node statements in ``order`` (default 1..n); ``shuffle(list)`` reorders each
        concat's inputs (default: as they are, in node order)."""
        names = names or ["x", *(f"n{i}" for i in range(1, self.n + 1))]
        order = order or list(range(1, self.n + 1))
        shuffle = shuffle or (lambda xs: xs)
        lines = ["shrink 1", "cell C(w: int) {", f"    input {names[0]}"]
        for i in order:
            op, act = self.ops[i - 1]
            srcs = shuffle(sorted(self.inputs[i - 1]))
            lines.append(f"    {names[i]} = {OPS[op]}{ACTS[act]} <- "
                         + ", ".join(names[s] for s in srcs))
        sinks = shuffle(self.sinks())
        out = names[sinks[0]] if len(sinks) == 1 else \
            "concat(" + ", ".join(names[s] for s in sinks) + ")"
        return "\n".join([*lines, f"    output {out}", "}", ""])


def _hash(text: str) -> str:
    checked = check("<property>.shrink", text)
    assert not checked.warnings, checked.warnings  # no node pruned: the cell is as written
    return cell_hash(checked.program.cells["C"])


def isomorphic(a: Cell, b: Cell) -> bool:
    """Whether some relabelling of b's nodes 1..n (carrying ops and edges) gives a, the input
    and the output kept (the output's edges follow from the others)."""
    if a.n != b.n or sorted(a.ops) != sorted(b.ops):
        return False
    edges_a, edges_b = a.edges(), b.edges()
    if len(edges_a) != len(edges_b):
        return False
    for perm in itertools.permutations(range(1, b.n + 1)):
        to_a = {0: 0, **{j: perm[j - 1] for j in range(1, b.n + 1)}}
        if all(b.ops[j - 1] == a.ops[to_a[j] - 1] for j in range(1, b.n + 1)) and \
                {(to_a[s], to_a[d]) for s, d in edges_b} == edges_a:
            return True
    return False


@st.composite
def cells(draw, min_nodes: int = 1, max_nodes: int = 6) -> Cell:
    n = draw(st.integers(min_nodes, max_nodes))
    ops = [(draw(st.integers(0, len(OPS) - 1)), draw(st.integers(0, len(ACTS) - 1)))
           for _ in range(n)]
    inputs = [frozenset(draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=3)))
              for i in range(1, n + 1)]
    return Cell(ops, inputs)


# --------------------------------------------------------------------------- the properties


@SETTINGS
@given(cell=cells(), data=st.data())
def test_names_statement_order_and_concat_order_do_not_count(cell, data):
    names = data.draw(st.permutations(NAMES))[: cell.n + 1]
    order = data.draw(st.permutations(range(1, cell.n + 1)))
    rng = data.draw(st.randoms(use_true_random=False))

    def shuffle(xs):
        xs = list(xs)
        rng.shuffle(xs)
        return xs

    plain, rewritten = cell.text(), cell.text(names, order, shuffle)
    assert _hash(rewritten) == _hash(plain), rewritten


@SETTINGS
@given(cell=cells(), data=st.data())
def test_one_changed_op_counts(cell, data):
    node = data.draw(st.integers(1, cell.n))
    op, act = cell.ops[node - 1]
    other = data.draw(st.sampled_from([o for o in range(len(OPS)) if o != op]))
    changed = Cell([*cell.ops[: node - 1], (other, act), *cell.ops[node:]], cell.inputs)
    assert _hash(changed.text()) != _hash(cell.text()), changed.text()


def _moves(cell: Cell) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Each (removed edge, added edge) that keeps the cell a cell of the same outputs: the
    removed edge's target keeps an input and its source still feeds a node (or is the
    input); the added edge runs forward, from the input or a node that already feeds one."""
    edges = cell.edges()
    feeds = {s for s, _ in edges}
    out_degree = {i: sum(1 for s, _ in edges if s == i) for i in range(cell.n + 1)}
    moves = []
    for u, v in sorted(edges):
        if len(cell.inputs[v - 1]) < 2 or (u != 0 and out_degree[u] < 2):
            continue
        for a in range(cell.n):
            if a != 0 and a not in feeds:
                continue
            for b in range(a + 1, cell.n + 1):
                if (a, b) not in edges and (a, b) != (u, v):
                    moves.append(((u, v), (a, b)))
    return moves


@SETTINGS
@given(cell=cells(min_nodes=3), data=st.data())
def test_one_moved_edge_counts(cell, data):
    moves = _moves(cell)
    assume(moves)
    (u, v), (a, b) = data.draw(st.sampled_from(moves))
    inputs = list(cell.inputs)
    inputs[v - 1] = inputs[v - 1] - {u}
    inputs[b - 1] = inputs[b - 1] | {a}
    moved = Cell(cell.ops, inputs)
    assert len(moved.edges()) == len(cell.edges()) and moved.sinks() == cell.sinks()
    assume(not isomorphic(moved, cell))
    assert _hash(moved.text()) != _hash(cell.text()), (cell.text(), moved.text())


def test_the_oracle_knows_a_relabelling_from_a_change():
    """``isomorphic`` itself: the cell with its two branches' numbers swapped is the same cell;
    with a branch moved to follow the other, it is not (and hashes differently)."""
    cell = Cell([(0, 0), (2, 0), (3, 1)], [frozenset({0}), frozenset({0}), frozenset({1, 2})])
    swapped = Cell([(2, 0), (0, 0), (3, 1)], [frozenset({0}), frozenset({0}), frozenset({1, 2})])
    assert isomorphic(swapped, cell) and swapped.text() != cell.text()
    assert _hash(swapped.text()) == _hash(cell.text())
    chain = Cell([(0, 0), (2, 0), (3, 1)], [frozenset({0}), frozenset({1}), frozenset({0, 2})])
    assert not isomorphic(chain, cell) and len(chain.edges()) == len(cell.edges())
    assert _hash(chain.text()) != _hash(cell.text())

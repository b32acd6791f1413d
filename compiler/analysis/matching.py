"""Node matching for ``shrinkc diff``: which node of one cell is which node of the other,
found by structure, never by name (renaming nodes, reordering statements or reformatting
compare equal).

Individualisation-refinement on Weisfeiler-Lehman colours (:mod:`.wl`): pair the nodes whose
whole neighbourhood agrees first, then those whose nearer neighbourhood agrees, then the
remaining nodes by the matched neighbours they share (a node whose op changed keeps its
partner), and finally improve the pairing by swaps while that preserves more edges.
"""

from __future__ import annotations

from typing import Any

from . import wl
from .cellhash import INPUT, NODE, OUTPUT, RESIDUAL, STATE, CellGraph, wl_refine

_SPECIAL = (INPUT, STATE, OUTPUT, RESIDUAL)


# The matching compares colours only for equality (within one colouring, and between the
# two cells' colourings of one step), never prints or stores them: it colours with
# ``wl.Ids`` (small ints, one table per diff of two cells, shared by both cells), where
# ``cellhash`` colours with sha256 texts; the partitions, stopping tests and pairings are the
# same (see :mod:`.wl`). ``cellhash``'s hashes stay the only colours anyone sees.


def _id_graph(n: int, edges: Any) -> tuple[list[list[int]], list[list[int]], list[int] | None]:
    """Predecessors, successors and a topological order (None when cyclic)."""
    preds, succs = wl.adjacency(n, edges)
    return preds, succs, wl.topological(preds, succs)


def _recolor(g: CellGraph, pins: dict[int, str], rounds: int, ids: wl.Ids) -> list[int]:
    labels = [pins.get(i, lab) for i, lab in enumerate(g.labels)]
    return wl.refine(ids, labels, *wl.adjacency(len(labels), g.edges), rounds)[0]


def _score(a: CellGraph, b: CellGraph, m: dict[int, int]) -> float:
    """Preserved edges count most, then equal labels, then equal op names."""
    edges = sum(1 for s, d in a.edges if s in m and d in m and (m[s], m[d]) in b.edges)
    labels = sum(1 for i, j in m.items() if a.labels[i] == b.labels[j])
    ops = sum(1 for i, j in m.items() if a.ops[i] == b.ops[j])
    return 4 * edges + 2 * labels + ops


def _match_by_colour(a: CellGraph, b: CellGraph) -> dict[int, int]:
    """Individualisation-refinement: pin the special nodes, then the nodes whose colours agree,
    from the widest neighbourhood that still tells nodes apart (the rounds after which the
    colourings are stable) down to the label alone. Each pass pins every agreeing pair at
    once (in node order within a colour), then colours again with the pins."""
    m: dict[int, int] = {}
    pins_a: dict[int, str] = {}
    pins_b: dict[int, str] = {}

    def pin(i: int, j: int) -> None:
        m[i] = j
        pins_a[i] = pins_b[j] = f"pin{len(m)}|{a.labels[i]}"

    for kind in _SPECIAL:
        i, j = a.index(kind), b.index(kind)
        if i is not None and j is not None:
            pin(i, j)
    if max(len(a.names), len(b.names)) > _LARGE:  # no need to count: take the linear path
        top = _MAX_ROUNDS + 1
    else:
        top = max(wl_refine(a.labels, a.edges, limit=_MAX_ROUNDS)[1],
                  wl_refine(b.labels, b.edges, limit=_MAX_ROUNDS)[1]) + 1
    b_index = {name: j for j, name in enumerate(b.names)}

    could: list = [None, None]  # _could_pair's answer, and the size of m it was for

    def could_pair() -> bool:
        if could[1] != len(m):  # m only grows: the same size is the same map
            could[:] = [_could_pair(a, b, m), len(m)]
        return could[0]

    def pin_agreeing(colour) -> None:
        while len(m) < min(len(a.names), len(b.names)) and could_pair():
            ca, cb = colour()
            pairs = _agreeing_pairs(a, b, m, ca, cb, b_index)
            if not pairs:
                return
            for pair in pairs:
                pin(*pair)
            # colouring again with the new pins only splits colours: nodes that did not
            # agree now will not agree then, so stop when every agreeing node is paired
            matched = set(m.values())
            left = {cb[j] for j in range(len(b.names)) if j not in matched}
            if not any(ca[i] in left for i in range(len(a.names)) if i not in m):
                return

    ids = wl.Ids()
    if top > _MAX_ROUNDS:  # a long chain: whole neighbourhoods first, in linear time
        joint = _joint_graph(a, b)
        for direction in ("both", "down", "up"):
            pin_agreeing(lambda d=direction: _joint_colours(a, b, pins_a, pins_b, d, ids, joint))
        top = _NEAR_ROUNDS
    for rounds in range(min(top, max(len(a.names), len(b.names))), -1, -1):
        pin_agreeing(lambda r=rounds: (_recolor(a, pins_a, r, ids), _recolor(b, pins_b, r, ids)))
    return m


# Weisfeiler-Lehman rounds the matching tries at most: a cell whose colouring is stable
# within them (every cell of the shipped specs: 2 to 5) is matched from its stable round
# down, one round at a time; a larger one (a chain of thousands of nodes needs one round per
# node) first pins the nodes whose whole graph above and below agree (``dag_colors``, in
# linear time), then those whose whole graph above, or below, agrees (the nodes before and
# after an edit), then goes down from ``_NEAR_ROUNDS`` rounds (what is left is near the
# edits): ``diff`` stays linear in cell size.
_MAX_ROUNDS = 8
_NEAR_ROUNDS = 3
_LARGE = 256  # nodes: a cell this large takes the linear path without counting its rounds


def _joint_graph(a: CellGraph, b: CellGraph) -> tuple:
    """``_id_graph`` of ``a`` and ``b`` side by side (``b``'s nodes after ``a``'s)."""
    n = len(a.labels)
    return _id_graph(n + len(b.labels), set(a.edges) | {(s + n, d + n) for s, d in b.edges})


def _joint_colours(a: CellGraph, b: CellGraph, pins_a: dict[int, str], pins_b: dict[int, str],
                   direction: str, ids: wl.Ids, joint: tuple) -> tuple[list[int], list[int]]:
    """``dag_colors`` of ``a`` and ``b`` (with their pins) in ``direction``, computed over
    both at once (``joint``: ``_joint_graph``; as ``wl.Ids``), so that its stopping
    tests see both."""
    labels = ([pins_a.get(i, x) for i, x in enumerate(a.labels)]
              + [pins_b.get(j, x) for j, x in enumerate(b.labels)])
    n = len(a.labels)
    colours = wl.dag_colours(ids, labels, *joint, direction, classes_only=True)
    return colours[:n], colours[n:]


def _could_pair(a: CellGraph, b: CellGraph, m: dict[int, int]) -> bool:
    """Whether an unmatched node of ``a`` and one of ``b`` share a label. Every colouring the
    matching uses refines the labels (a colour hashes the node's own label, or its pin, with
    its neighbourhood), so when no label is shared no colour is either, and colouring the
    whole of both graphs again (as after a one-op edit, with all else matched) is skipped."""
    matched = set(m.values())
    free = {b.labels[j] for j in range(len(b.names)) if j not in matched}
    return any(a.labels[i] in free for i in range(len(a.names)) if i not in m)


def _agreeing_pairs(a: CellGraph, b: CellGraph, m: dict[int, int], ca: list[int],
                    cb: list[int], b_index: dict[str, int]) -> list[tuple[int, int]]:
    """Unmatched nodes of equal colour, paired: a node takes its namesake where that agrees,
    else the first free node of its colour."""
    free = set(range(len(b.names))) - set(m.values())
    by_colour: dict[str, list[int]] = {}
    for j in sorted(free):
        by_colour.setdefault(cb[j], []).append(j)
    pairs = []
    rest = []
    for i in range(len(a.names)):  # first every node whose namesake agrees
        if i in m or ca[i] not in by_colour:
            continue
        j = b_index.get(a.names[i])
        if j is not None and j in free and cb[j] == ca[i]:
            free.discard(j)
            pairs.append((i, j))
        else:
            rest.append(i)
    for i in rest:  # then the others, in order within their colour
        js = by_colour[ca[i]]
        while js and js[0] not in free:
            js.pop(0)
        if js:
            free.discard(js[0])
            pairs.append((i, js.pop(0)))
    return pairs


def _neighbours(g: CellGraph, nodes: set[int] | None = None
                ) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Each node's predecessors and successors (of ``nodes`` only, when given)."""
    keep = range(len(g.names)) if nodes is None else nodes
    preds: dict[int, set[int]] = {i: set() for i in keep}
    succs: dict[int, set[int]] = {i: set() for i in keep}
    for s, d in g.edges:
        if s in succs:
            succs[s].add(d)
        if d in preds:
            preds[d].add(s)
    return preds, succs


def _match_by_neighbours(a: CellGraph, b: CellGraph, m: dict[int, int]) -> dict[int, int]:
    """The rest (nodes whose op changed), paired by the matched neighbours they share."""
    m = dict(m)
    # only the nodes unmatched now are ever looked at (the map only grows)
    matched = set(m.values())
    (preds_a, succs_a) = _neighbours(a, {i for i in range(len(a.names)) if i not in m})
    (preds_b, succs_b) = _neighbours(b, {j for j in range(len(b.names)) if j not in matched})
    while True:
        best: tuple[float, int, int] | None = None
        used = set(m.values())
        for i in range(len(a.names)):
            if i in m:
                continue
            for j in range(len(b.names)):
                if j in used or a.kinds[i] != b.kinds[j]:
                    continue
                shared = (sum(1 for s in preds_a[i] if m.get(s) in preds_b[j])
                          + sum(1 for d in succs_a[i] if m.get(d) in succs_b[j]))
                if shared == 0:
                    continue
                score = 2 * shared + (a.ops[i] == b.ops[j]) - abs(i - j) / 1000
                if best is None or score > best[0]:
                    best = (score, i, j)
        if best is None:
            return m
        m[best[1]] = best[2]


def _improve_by_swaps(a: CellGraph, b: CellGraph, m: dict[int, int]) -> dict[int, int]:
    """Swap partners (or move to a free node) while that gains shared edges; small cells
    only (at most 40 nodes a side), as each pass tries every pair."""
    nodes_a = [i for i in range(len(a.names)) if a.kinds[i] == NODE]
    nodes_b = [j for j in range(len(b.names)) if b.kinds[j] == NODE]
    if len(nodes_a) > 40 or len(nodes_b) > 40:
        return m
    current = _score(a, b, m)
    improved = True
    while improved:
        improved = False
        for i in nodes_a:
            for j in nodes_b:
                if m.get(i) == j:
                    continue
                trial = dict(m)
                other = next((k for k, v in trial.items() if v == j), None)
                old = trial.get(i)
                trial[i] = j
                if other is not None:
                    if old is None:
                        del trial[other]
                    else:
                        trial[other] = old
                s = _score(a, b, trial)
                if s > current:
                    m, current, improved = trial, s, True
    return m


def match_nodes(a: CellGraph, b: CellGraph) -> dict[int, int]:
    """A partial map from nodes of ``a`` to nodes of ``b`` that maximises what they share."""
    m = _match_by_colour(a, b)
    m = _match_by_neighbours(a, b, m)
    return _improve_by_swaps(a, b, m)



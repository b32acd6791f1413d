"""Semantic diff of two ``.shrink`` files: what changed in meaning, not in text.

Cells are matched by name (a cell that only changed its name is found by its hash). Within a
cell, nodes are matched by structure, never by name, so renaming nodes, reordering statements
or reformatting compares equal. The matching is individualisation-refinement on
Weisfeiler-Lehman colours (see :mod:`.cellhash`): pair the nodes whose whole neighbourhood
agrees first, then those whose nearer neighbourhood agrees, then the remaining nodes by the
matched neighbours they share (a node whose op changed keeps its partner), and finally improve
the pairing by swaps while that preserves more edges.

Networks (the main network of each file, as ``build_graph`` picks it) are compared at the
graph level, with every argument evaluated: network arguments, input, stem and head layers,
stages (cell, depth, arguments, downsampling, output shape, cost), and the totals.

:func:`diff_files` returns a JSON-ready dict; :func:`render` turns it into text.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ir
from ..units import human
from .cellhash import (
    INPUT,
    NODE,
    OUTPUT,
    RESIDUAL,
    STATE,
    CellGraph,
    cell_graph,
    graph_hash,
    wl_refine,
)
from .cellhash import _adjacency as cellhash_adjacency
from .cellhash import _topological as cellhash_topological

_SPECIAL = (INPUT, STATE, OUTPUT, RESIDUAL)
_NAMED = (INPUT, STATE, NODE)  # kinds whose names come from the spec


# --------------------------------------------------------------------------- node matching


# The matching compares colours only for equality (within one colouring, and between the
# two cells' colourings of one step), never prints or stores them. It computes them as small
# ints instead of sha256 texts: ``_Ids`` gives each distinct key (what ``cellhash`` would
# hash, as a tuple) the next int, shared by both cells, so two nodes get equal ints exactly
# when they would get equal hashes (sha256 has no collisions in practice) and every
# partition, stopping test and pairing is the same. ``cellhash``'s hashes stay the only
# colours anyone sees.


class _Ids(dict):
    """Key -> int, a new int for each new key (one table per diff of two cells).

    ``ids.setdefault(key, len(ids))`` is the same lookup without the call to
    ``__missing__``: the loops over every node of a large cell use it (most of their keys
    are new)."""

    def __missing__(self, key: Any) -> int:
        value = self[key] = len(self)
        return value


def _id_first(ids: _Ids, labels: list, preds: list[list[int]], succs: list[list[int]]
              ) -> list[int]:
    """``cellhash._first_colours``: a node's label with its out- and in-degree."""
    new = ids.setdefault
    return [new(("first", len(s), len(p), label), len(ids))
            for label, p, s in zip(labels, preds, succs)]


def _id_wl(ids: _Ids, labels: list, preds: list[list[int]], succs: list[list[int]],
           rounds: int | None = None) -> list[int]:
    """``cellhash.wl_colors`` (``wl_refine``'s rounds and stopping test) with ids."""
    n = len(labels)
    colors = _id_first(ids, labels, preds, succs)
    distinct = len(set(colors))
    for _ in range(n if rounds is None else rounds):
        new = [ids["wl", tuple(sorted([colors[u] for u in preds[v]])),
                   tuple(sorted([colors[u] for u in succs[v]])), colors[v]] for v in range(n)]
        colors = new
        if rounds is None:
            split = len(set(new))
            if split == distinct:
                break
            distinct = split
    return colors


def _id_graph(n: int, edges: Any) -> tuple[list[list[int]], list[list[int]], list[int] | None]:
    """Predecessors, successors and a topological order (None when cyclic)."""
    preds, succs = cellhash_adjacency(n, edges)
    return preds, succs, cellhash_topological(preds, succs)


def _id_dag(ids: _Ids, labels: list, graph: tuple, direction: str) -> list[int]:
    """``cellhash.dag_colors`` (the same sweeps, stopping test and WL rounds) with ids, on
    ``graph`` (``_id_graph``)."""
    n = len(labels)
    preds, succs, order = graph
    colors = _id_first(ids, labels, preds, succs)
    if order is None:  # not a DAG: WL alone
        return colors if direction != "both" else _id_wl(ids, colors, preds, succs)
    if direction != "both":
        return _id_sweep(ids, direction, colors, preds if direction == "down" else succs,
                         order if direction == "down" else reversed(order))
    distinct = len(set(colors))
    while True:
        down = _id_sweep(ids, "<", colors, preds, order)
        up = _id_sweep(ids, ">", colors, succs, reversed(order))
        new = ids.setdefault
        colors = [new(("both", d, u), len(ids)) for d, u in zip(down, up)]
        split = len(set(colors))
        if split == n:  # every node of both cells told apart: what follows (more sweeps,
            return colors  # WL) only refines, so it would tell apart the same nodes
        if split == distinct:
            break
        distinct = split
    return _id_wl(ids, colors, preds, succs)


def _id_sweep(ids: _Ids, tag: str, colors: list[int], near: list[list[int]], order: Any
              ) -> list[int]:
    """One sweep in ``order``: each node's id of its tag, colour and the sorted ids of its
    ``near`` nodes (swept before it)."""
    out = [0] * len(colors)
    new = ids.setdefault
    for v in order:
        us = near[v]
        if len(us) == 1:
            out[v] = new((tag, colors[v], (out[us[0]],)), len(ids))
        else:
            out[v] = new((tag, colors[v], tuple(sorted([out[u] for u in us]))), len(ids))
    return out


def _recolor(g: CellGraph, pins: dict[int, str], rounds: int, ids: _Ids) -> list[int]:
    labels = [pins.get(i, lab) for i, lab in enumerate(g.labels)]
    return _id_wl(ids, labels, *cellhash_adjacency(len(labels), g.edges), rounds)


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

    ids = _Ids()
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
                   direction: str, ids: _Ids, joint: tuple) -> tuple[list[int], list[int]]:
    """``dag_colors`` of ``a`` and ``b`` (with their pins) in ``direction``, computed over
    both at once (``joint``: ``_joint_graph``; as ids: see ``_Ids``), so that its stopping
    tests see both."""
    labels = ([pins_a.get(i, x) for i, x in enumerate(a.labels)]
              + [pins_b.get(j, x) for j, x in enumerate(b.labels)])
    n = len(a.labels)
    colours = _id_dag(ids, labels, joint, direction)
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


# --------------------------------------------------------------------------- cells


def _endpoint(g: CellGraph, i: int, name_b: str | None = None) -> str:
    kind = g.kinds[i]
    if kind in (OUTPUT, RESIDUAL):
        return kind
    name = g.names[i]
    if name_b is not None and name_b != name:
        name = f"{name}/{name_b}"
    return f"{g.ops[i]}@{name}"


def _node_text(g: CellGraph, i: int) -> str:
    s = g.shown[i]
    if g.acts[i]:
        s += f" {g.acts[i]}"
    if g.merges[i] and g.merges[i] != "concat":
        s += f" <- {g.merges[i]}(...)"
    return s


def diff_cell_graphs(ga: CellGraph, hash_a: str, gb: CellGraph, hash_b: str) -> dict[str, Any]:
    """The changes between two cells, by their graphs (``cell_graph``) and hashes: nodes
    removed, added and changed, edges removed and added, renamed nodes."""
    m = match_nodes(ga, gb)
    inv = {j: i for i, j in m.items()}
    d: dict[str, Any] = {"hash_a": hash_a, "hash_b": hash_b}
    if ga.params != gb.params:
        d["params"] = {"a": f"({ga.params})", "b": f"({gb.params})"}
    d["nodes_removed"] = [{"name": ga.names[i], "op": _node_text(ga, i)}
                          for i in range(len(ga.names)) if i not in m and ga.kinds[i] == NODE]
    d["nodes_added"] = [{"name": gb.names[j], "op": _node_text(gb, j)}
                        for j in range(len(gb.names)) if j not in inv and gb.kinds[j] == NODE]
    changed = []
    renamed = {}
    for i, j in sorted(m.items()):
        kind = ga.kinds[i]
        if kind in _NAMED and ga.names[i] != gb.names[j]:
            renamed[ga.names[i]] = gb.names[j]
        if kind in (INPUT, STATE):
            continue
        entry: dict[str, Any] = {"a": ga.names[i], "b": gb.names[j]}
        if kind == NODE and ga.calls[i] != gb.calls[j]:
            entry["op"] = [ga.shown[i], gb.shown[j]]
        if kind in (NODE, OUTPUT) and ga.acts[i] != gb.acts[j]:
            entry["act"] = [ga.acts[i] or "linear", gb.acts[j] or "linear"]
        if ga.merges[i] != gb.merges[j] and ga.merges[i] and gb.merges[j]:
            entry["merge"] = [ga.merges[i], gb.merges[j]]
        if kind == RESIDUAL and ga.calls[i] != gb.calls[j]:
            entry["residual"] = [ga.calls[i], gb.calls[j]]
        if len(entry) > 2:
            changed.append(entry)
    d["nodes_changed"] = changed
    ra, rb = ga.index(RESIDUAL), gb.index(RESIDUAL)
    if (ra is None) != (rb is None):
        d["residual"] = {"a": "none" if ra is None else ga.calls[ra],
                         "b": "none" if rb is None else gb.calls[rb]}

    def named(i: int | None, j: int | None) -> str:  # "op@a_name/b_name" (one if equal)
        if i is None:
            return _endpoint(gb, j)  # type: ignore[arg-type]
        return _endpoint(ga, i, gb.names[j] if j is not None and gb.kinds[j] in _NAMED
                         else None)

    d["edges_removed"] = [  # the edges kept filtered out before sorting: the same order
        [named(s, m.get(s)), named(t, m.get(t))]
        for s, t in sorted([(s, t) for s, t in ga.edges
                            if not (s in m and t in m and (m[s], m[t]) in gb.edges)])
        if RESIDUAL not in (ga.kinds[s], ga.kinds[t])
    ]
    d["edges_added"] = [
        [named(inv.get(s), s), named(inv.get(t), t)]
        for s, t in sorted([(s, t) for s, t in gb.edges
                            if not (s in inv and t in inv and (inv[s], inv[t]) in ga.edges)])
        if RESIDUAL not in (gb.kinds[s], gb.kinds[t])
    ]
    d["renamed"] = renamed
    d["equal"] = not any(d[k] for k in ("nodes_removed", "nodes_added", "nodes_changed",
                                        "edges_removed", "edges_added")) \
        and "params" not in d and "residual" not in d
    return d


# --------------------------------------------------------------------------- networks


def op_text(op: ir.OpInst | None) -> str:
    """An evaluated op in the language's own syntax, default arguments left out."""
    if op is None:
        return "identity"
    from .cellhash import op_defaults

    defaults = op_defaults(op.op)
    first = _required_first(op.op)
    args = []
    for k, v in op.attrs.items():
        if k in defaults and defaults[k] == v and not isinstance(v, bool):
            continue
        args.append(f"{v}" if k == first else f"{k}={v}")
    s = f"{op.op}({', '.join(args)})" if args else op.op
    return s + (f" {op.act}" if op.act else "")


def _required_first(op: str) -> str | None:
    """The op's first parameter when it is required (``out``, a pool's ``k``): shown bare."""
    from ..ops import OPS

    sig = OPS.get(op)
    if sig is None or not sig.params or sig.params[0].default is not None:
        return None
    return sig.params[0].name


def _value(v: Any) -> Any:
    return v.as_list() if isinstance(v, ir.Shape) else v


def _stage_info(s: ir.StageInst) -> dict[str, Any]:
    first, last = s.cells[0], s.cells[-1]
    first_args = {k: v for k, v in first.args.items() if last.args.get(k) != v}
    return {
        "cell": first.cell,
        "depth": len(s.cells),
        "args": dict(last.args),
        "first": first_args,
        "downsample": op_text(first.nodes[0].op) if first.nodes and first.nodes[0].op else None,
        "drop_path": [c.drop_path for c in s.cells] if any(c.drop_path for c in s.cells) else None,
        "output": s.out_shape.as_list() if s.out_shape else None,
        "params": s.cost.params if s.cost else 0,
        "macs": s.cost.macs if s.cost else 0,
    }


def _lm_info(lm) -> dict[str, Any]:
    if lm is None:
        return {}
    info = lm.model_dump(mode="json", exclude={"cell"})
    info["cell"] = lm.cell.cell
    info.update({f"dropout.{k}": v for k, v in info.pop("dropout", {}).items()})
    return info


def _dict_changes(path: str, a: dict, b: dict, out: list[dict]) -> None:
    for k in list(a) + [k for k in b if k not in a]:
        if a.get(k) != b.get(k) or (k in a) != (k in b):
            out.append({"path": f"{path}.{k}" if path else k,
                        "a": a.get(k), "b": b.get(k)})


def _chain_changes(kind: str, ta: list[str], tb: list[str], out: list[dict]) -> None:
    sm = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            ia, jb = i1 + k, j1 + k
            out.append({
                "path": f"{kind}[{(ia if ia < i2 else jb) + 1}]",
                "a": ta[ia] if ia < i2 else None,
                "b": tb[jb] if jb < j2 else None,
            })


def network_summary(g: ir.Graph) -> dict[str, Any]:
    """What ``diff_networks`` compares of a costed network graph, as plain data."""
    lm = getattr(g, "lm", None)
    return {
        "network": g.network,
        "args": dict(g.args),
        "input": g.input_shape.as_list(),
        "stem": [op_text(x.op) for x in g.stem],
        "stages": {s.name: _stage_info(s) for s in g.stages},
        "head": [op_text(x.op) for x in g.head],
        "lm": None if lm is None else _lm_info(lm),
        "output": _value(g.out_shape),
        "params": g.cost.params,
        "macs": g.cost.macs,
    }


def diff_networks(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """The changes between two networks' ``network_summary`` (None: the file has none)."""
    d: dict[str, Any] = {"a": a["network"] if a else None, "b": b["network"] if b else None}
    changes: list[dict] = []
    if a is None or b is None:
        if a is not None or b is not None:
            changes.append({"path": "network", "a": d["a"], "b": d["b"]})
        d["changes"] = changes
        d["equal"] = not changes
        return d
    if a["network"] != b["network"]:
        changes.append({"path": "network", "a": a["network"], "b": b["network"]})
    _dict_changes("args", a["args"], b["args"], changes)
    if a["input"] != b["input"]:
        changes.append({"path": "input", "a": a["input"], "b": b["input"]})
    _chain_changes("stem", a["stem"], b["stem"], changes)
    sa, sb = a["stages"], b["stages"]
    for name in list(sa) + [n for n in sb if n not in sa]:
        if name not in sb or name not in sa:
            x, y = sa.get(name), sb.get(name)
            changes.append({"path": f"stages.{name}",
                            "a": f"{x['cell']} x {x['depth']}" if x else None,
                            "b": f"{y['cell']} x {y['depth']}" if y else None})
            continue
        x, y = sa[name], sb[name]
        for key in ("cell", "depth", "downsample", "output", "drop_path"):
            if x[key] != y[key]:
                changes.append({"path": f"stages.{name}.{key}", "a": x[key], "b": y[key]})
        _dict_changes(f"stages.{name}.args", x["args"], y["args"], changes)
        _dict_changes(f"stages.{name}.first", x["first"], y["first"], changes)
        for key in ("params", "macs"):
            if x[key] != y[key]:
                changes.append({"path": f"stages.{name}.{key}", "a": x[key], "b": y[key]})
    _chain_changes("head", a["head"], b["head"], changes)
    if a["lm"] is not None or b["lm"] is not None:  # language models: sizes, dropouts, the cell
        _dict_changes("lm", a["lm"] or {}, b["lm"] or {}, changes)
    if a["output"] != b["output"]:
        changes.append({"path": "output", "a": a["output"], "b": b["output"]})
    d["changes"] = changes
    for key in ("params", "macs"):
        x, y = a[key], b[key]
        d[key] = {"a": x, "b": y, "delta": y - x}
    d["equal"] = not changes and all(d[k]["delta"] == 0 for k in ("params", "macs"))
    return d


# --------------------------------------------------------------------------- files


def _main_graph(checked) -> ir.Graph | None:
    from ..pipeline import build_graph

    if not checked.networks:
        return None
    return build_graph(checked)


@dataclass
class Side:
    """What a diff compares of one spec, as plain data (cheap to send from another process):
    each cell, in the program's order, as its graph (``cell_graph``) and hash, and the main
    network's ``network_summary`` (None when the spec has no network)."""

    cells: dict[str, tuple[CellGraph, str]]
    network: dict[str, Any] | None


def side(checked) -> Side:
    """The :class:`Side` of a :class:`~shrinkc.compiler.pipeline.Checked` spec (its main
    network is built and costed: a spec whose network does not build is an error here)."""
    cells = {}
    for name, cell in checked.program.cells.items():
        g = cell_graph(cell)
        cells[name] = (g, graph_hash(g))
    graph = _main_graph(checked)
    return Side(cells, None if graph is None else network_summary(graph))


def diff_sides(a: Side, b: Side, name_a: str = "a", name_b: str = "b") -> dict[str, Any]:
    """Diff two specs by their :class:`Side`."""
    cells_a, cells_b = a.cells, b.cells
    cells: dict[str, dict[str, Any]] = {}
    only_a = [n for n in cells_a if n not in cells_b]
    only_b = [n for n in cells_b if n not in cells_a]
    hashes_b = {n: cells_b[n][1] for n in only_b}
    for name in cells_a:
        if name in cells_b:
            d = diff_cell_graphs(*cells_a[name], *cells_b[name])
            d["status"] = "equal" if d["equal"] else "changed"
            cells[name] = d
    for name in only_a:
        h = cells_a[name][1]
        twin = next((n for n, hb in hashes_b.items() if hb == h), None)
        if twin is not None:
            del hashes_b[twin]
            cells[name] = {"status": "renamed", "b": twin, "hash_a": h, "hash_b": h,
                           "equal": False}
        else:
            cells[name] = {"status": "removed", "hash_a": h, "equal": False}
    for name, h in hashes_b.items():
        cells[name] = {"status": "added", "hash_b": h, "equal": False}
    network = diff_networks(a.network, b.network)
    return {
        "a": name_a,
        "b": name_b,
        "equal": network["equal"] and all(c["equal"] for c in cells.values()),
        "cells": cells,
        "network": network,
    }


def diff_checked(a, b, name_a: str = "a", name_b: str = "b") -> dict[str, Any]:
    """Diff two :class:`~shrinkc.compiler.pipeline.Checked` specs."""
    return diff_sides(side(a), side(b), name_a, name_b)


def diff_files(path_a: str | Path, path_b: str | Path) -> dict[str, Any]:
    from ..pipeline import check

    return diff_checked(check(path_a), check(path_b), Path(path_a).as_posix(),
                        Path(path_b).as_posix())


# --------------------------------------------------------------------------- text


def _fmt(v: Any) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "x".join(map(str, v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "()"
    return str(v)


def _costs(c: dict[str, tuple[int, int]]) -> str:
    parts = []
    if "params" in c:
        a, b = c["params"]
        parts.append(f"params {a:,} -> {b:,} ({b - a:+,})")
    if "macs" in c:
        a, b = c["macs"]
        sign = "+" if b >= a else "-"
        parts.append(f"MACs {human(a)} -> {human(b)} ({sign}{human(abs(b - a))})")
    return ", ".join(parts)


def _render_cell(name: str, c: dict[str, Any]) -> list[str]:
    """The lines of one cell's changes."""
    status = c["status"]
    if status == "equal":
        return []
    if status == "added":
        return [f"+ cell {name}"]
    if status == "removed":
        return [f"- cell {name}"]
    if status == "renamed":
        return [f"~ cell {name} renamed to {c['b']} (same structure)"]
    out = [f"~ cell {name}"]
    if "params" in c:
        out.append(f"    params: {c['params']['a']} -> {c['params']['b']}")
    for n in c["nodes_removed"]:
        out.append(f"    - node {n['name']} = {n['op']}")
    for n in c["nodes_added"]:
        out.append(f"    + node {n['name']} = {n['op']}")
    for n in c["nodes_changed"]:
        who = n["a"] if n["a"] == n["b"] else f"{n['a']}/{n['b']}"
        for key in ("op", "act", "merge", "residual"):
            if key in n:
                what = "" if key == "op" else f"{key} "
                out.append(f"    ~ {who}: {what}{n[key][0]} -> {n[key][1]}")
    if "residual" in c:
        out.append(f"    ~ residual: {c['residual']['a']} -> {c['residual']['b']}")
    for s, t in c["edges_removed"]:
        out.append(f"    - edge {s} -> {t}")
    for s, t in c["edges_added"]:
        out.append(f"    + edge {s} -> {t}")
    out.append(f"    hash: {c['hash_a'][:12]} -> {c['hash_b'][:12]}")
    return out


def _render_network(net: dict[str, Any]) -> list[str]:
    """The lines of the network's changes: arguments and shapes, then costs per stage."""
    if net["equal"] and "params" not in net:
        return []
    title = net["a"] if net["a"] == net["b"] else f"{_fmt(net['a'])} -> {_fmt(net['b'])}"
    out = [f"{'~' if not net['equal'] else ' '} network {title}"]
    costs: dict[str, dict[str, tuple[int, int]]] = {}
    for ch in net["changes"]:
        path = ch["path"].removeprefix("stages.")
        if path.endswith((".params", ".macs")):
            stage, _, key = path.rpartition(".")
            costs.setdefault(stage, {})[key] = (ch["a"], ch["b"])
    for ch in net["changes"]:
        if ch["path"] == "network":
            continue
        a, b = ch["a"], ch["b"]
        path = ch["path"].removeprefix("stages.")
        if path.endswith((".params", ".macs")):
            stage = path.rpartition(".")[0]
            if stage in costs:
                out.append(f"    {stage}: {_costs(costs.pop(stage))}")
        else:
            out.append(f"    {path}: {_fmt(a)} -> {_fmt(b)}")
    if "params" in net:
        p, m = net["params"], net["macs"]
        out.append(f"    total: {_costs({'params': (p['a'], p['b']), 'macs': (m['a'], m['b'])})}")
    return out


def render(d: dict[str, Any]) -> str:
    """The diff as text for people; empty when the two files mean the same."""
    if d["equal"]:
        return ""
    out = [f"--- {d['a']}", f"+++ {d['b']}"]
    for name, c in d["cells"].items():
        out += _render_cell(name, c)
    out += _render_network(d["network"])
    return "\n".join(out) + "\n"

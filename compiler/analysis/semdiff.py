"""Semantic diff of two ``.shrink`` files: what changed in meaning, not in text.

Cells are matched by name (a cell that only changed its name is found by its hash). Within a
cell, nodes are matched by structure, never by name, so renaming nodes, reordering statements
or reformatting compares equal (:mod:`.matching`).

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
)
from .matching import match_nodes

_NAMED = (INPUT, STATE, NODE)  # kinds whose names come from the spec


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

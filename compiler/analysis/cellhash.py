"""Isomorphism-invariant hashes of cells (Weisfeiler-Lehman, as NAS-Bench-101's ``hash_module``).

Two cells that differ only in node names, statement order or formatting hash equal; a changed
edge, op, argument, activation, merge mode, output or residual hashes different. The hash is
built with ``hashlib`` only (never Python's ``hash()``), so it is the same in every process
and on every machine: the shrinker uses it to skip training candidates it has already seen.

* :func:`dag_hash` hashes a bare DAG: one label per node and a set of ``(src, dst)`` edges.
* :func:`cell_graph` turns a resolved :class:`~shrinkc.compiler.ir.CellDef` into such a DAG:
  the input node (and, in a recurrent cell, the state node h_{t-1}), one node per operation (label: op, canonical arguments, activation, merge
  mode), an output node (label: merge mode) and, when the cell has one, a residual node (label:
  its mode) fed by the input and the output. The cell's parameter list is part of the input
  node's label, since arguments refer to it.
* :func:`cell_hash` is ``dag_hash`` of ``cell_graph``; :func:`cell_hashes` hashes every cell a
  network uses (for ``shrinkc stats``).

The order of the inputs of a ``concat`` does not take part: it permutes channels, which gives
the same family of functions (NAS-Bench-101 makes the same choice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import ir
from . import wl

INPUT, STATE, NODE, OUTPUT, RESIDUAL = "input", "state", "node", "output", "residual"
_IN_CHANNELS = "$in"  # placeholder for the name bound by ``input x[c]``


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def wl_colors(labels: list[str], edges: Iterable[tuple[int, int]], rounds: int | None = None,
              ) -> list[str]:
    """The colours of :func:`wl_refine`."""
    return wl_refine(labels, edges, rounds)[0]


def wl_refine(labels: list[str], edges: Iterable[tuple[int, int]], rounds: int | None = None,
              limit: int | None = None) -> tuple[list[str], int]:
    """Weisfeiler-Lehman colours (sha256 hex digests) of the nodes, and the rounds run:
    :func:`.wl.refine` with :class:`.wl.Hashes`."""
    return wl.refine(wl.Hashes(), labels, *wl.adjacency(len(labels), edges), rounds, limit)


def dag_colors(labels: list[str], edges: Iterable[tuple[int, int]], direction: str = "both",
               ) -> list[str]:
    """Isomorphism-invariant node colours (sha256 hex digests) of a DAG, in time linear in
    its size: :func:`.wl.dag_colours` with :class:`.wl.Hashes`."""
    preds, succs = wl.adjacency(len(labels), edges)
    return wl.dag_colours(wl.Hashes(), labels, preds, succs, wl.topological(preds, succs),
                          direction)


def dag_hash(nodes_ops: list[str], edges: set[tuple[int, int]]) -> str:
    """Isomorphism-invariant hash (64 hex digits) of a DAG with labelled nodes.

    ``nodes_ops[i]`` is node i's label (an op name, or any string); ``edges`` holds
    ``(src, dst)`` index pairs. Relabelling the indices (a permutation that carries the labels
    and edges along) gives the same hash; a different label or edge gives another one (up to
    the rare graphs that Weisfeiler-Lehman cannot tell apart). Linear in the graph's size
    (``dag_colors``).
    """
    labels = [str(x) for x in nodes_ops]
    colors = dag_colors(labels, edges)
    return _sha(f"{len(labels)}|{len(set(edges))}|" + ",".join(sorted(colors)))


# --------------------------------------------------------------------------- cells as DAGs


def expr_key(e: ir.Expr | None, bound: str | None = None) -> str:
    """A canonical text of an expression, without locations (``bound`` -> ``$in``)."""
    if e is None:
        return ""
    if isinstance(e, ir.Num):
        v = e.value
        return repr(float(v)) if isinstance(v, float) else str(int(v))
    if isinstance(e, ir.Ref):
        return _IN_CHANNELS if bound is not None and e.name == bound else e.name
    if isinstance(e, ir.BinOp):
        return f"({expr_key(e.left, bound)} {e.op} {expr_key(e.right, bound)})"
    if isinstance(e, ir.Neg):
        return f"(-{expr_key(e.operand, bound)})"
    func, args = getattr(e, "func", None), getattr(e, "args", None)
    if func is not None and args is not None:  # a call, e.g. log10(x)
        return f"{func}({', '.join(expr_key(a, bound) for a in args)})"
    return json.dumps(e.model_dump(mode="json", exclude={"loc"}), sort_keys=True)


def op_defaults(op: str) -> dict[str, object]:
    try:
        from ..ops import OPS
    except ImportError:  # pragma: no cover - ops is part of the compiler
        return {}
    sig = OPS.get(op)
    if sig is None:
        return {}
    return {p.name: p.default for p in sig.params if p.default is not None}


_BY_SIG: dict[tuple[str, str], tuple[object, object]] = {}
_OPS: dict | None = None  # ops.OPS, imported on first use


def _per_op(what: str, op: str, compute):
    """``compute(sig)`` for the op's signature, kept while ``OPS`` holds that signature (a
    cell of thousands of nodes asks about the same few ops)."""
    global _OPS
    if _OPS is None:
        try:
            from ..ops import OPS as _OPS
        except ImportError:  # pragma: no cover - ops is part of the compiler
            _OPS = {}
    sig = _OPS.get(op)
    hit = _BY_SIG.get((what, op))
    if hit is None or hit[0] is not sig:
        hit = _BY_SIG[(what, op)] = (sig, compute(sig))
    return hit[1]


def _default_keys(op: str) -> tuple[tuple[str, str], ...]:
    """``(name, canonical text)`` of the op's default arguments."""
    return _per_op("defaults", op, lambda sig: tuple(
        (name, expr_key(ir.Num(value=default)) if isinstance(default, (int, float))
         else str(default)) for name, default in op_defaults(op).items()))


def call_key(call: ir.OpCall, bound: str | None = None) -> str:
    """``op(name=value, ...)`` with keyword arguments sorted and defaults filled in."""
    positional = [expr_key(a.value, bound) for a in call.args if a.name is None]
    named = {a.name: expr_key(a.value, bound) for a in call.args if a.name is not None}
    for name, key in _default_keys(call.op):
        if name not in named:
            named[name] = key
    parts = positional + [f"{k}={v}" for k, v in sorted(named.items())]
    return f"{call.op}({', '.join(parts)})"


def _signature_order(op: str) -> tuple[list[str], str | None]:
    """The op's parameter names in order, and the first one when it is required."""
    def compute(sig):
        order = [p.name for p in sig.params] if sig else []
        return order, order[0] if sig and sig.params and sig.params[0].default is None else None

    return _per_op("order", op, compute)


def call_text(call: ir.OpCall) -> str:
    """``op(args)`` as written, for people: the first required argument bare."""
    order, first = _signature_order(call.op)
    named = sorted((a for a in call.args if a.name is not None),
                   key=lambda a: order.index(a.name) if a.name in order else len(order))
    parts = [expr_text(a.value) for a in call.args if a.name is None]
    for a in named:
        v = expr_text(a.value)
        parts.append(v if a.name == first and not parts else f"{a.name}={v}")
    return f"{call.op}({', '.join(parts)})" if parts else call.op


def expr_text(e: ir.Expr | None) -> str:
    """An expression as the printer writes it (canonical text where the printer cannot)."""
    if e is None:
        return ""
    try:
        from ..syntax.printer import expr

        return expr(e)
    except (KeyError, TypeError, AttributeError):  # a kind the printer does not know
        return expr_key(e)


def params_key(params: tuple[ir.Param, ...]) -> str:
    return ", ".join(
        p.name + (f": {p.type}" if p.type else "") + (f" = {expr_key(p.default)}" if p.default
                                                      is not None else "")
        for p in params
    )


class _Shown(list):
    """``CellGraph.shown`` as ``cell_graph`` makes it: an op call (an ``ir.OpCall`` here) is
    written for people (``call_text``) when it is first read, as a diff shows a few of a
    large cell's nodes and a hash none. Reads as the list of texts."""

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        v = list.__getitem__(self, i)
        if not isinstance(v, str):
            v = call_text(v)
            list.__setitem__(self, i, v)
        return v

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))

    def __reduce__(self):  # pickled as the texts: no IR sent between processes
        return list, (list(self),)


@dataclass
class CellGraph:
    """A cell as a labelled DAG: index 0 is the input; then the nodes, the output, the residual."""

    cell: str
    names: list[str] = field(default_factory=list)  # node names; "output" and "residual" too
    kinds: list[str] = field(default_factory=list)  # INPUT, STATE, NODE, OUTPUT or RESIDUAL
    labels: list[str] = field(default_factory=list)  # what the hash sees
    ops: list[str] = field(default_factory=list)  # the op's name ("input", "output", ...)
    calls: list[str] = field(default_factory=list)  # canonical op call ("" for special nodes)
    shown: list[str] = field(default_factory=list)  # the op call for people: sepconv(w, k=3)
    acts: list[str] = field(default_factory=list)  # canonical activation ("" when linear)
    merges: list[str] = field(default_factory=list)  # merge mode where >1 input, else ""
    edges: set[tuple[int, int]] = field(default_factory=set)
    params: str = ""

    def index(self, kind: str) -> int | None:
        return next((i for i, k in enumerate(self.kinds) if k == kind), None)

    def _add(self, name: str, kind: str, label: str, op: str, call: str = "", act: str = "",
             merge: str = "", shown: str | ir.OpCall = "") -> int:
        self.names.append(name)
        self.kinds.append(kind)
        self.labels.append(label)
        self.ops.append(op)
        self.calls.append(call)
        self.shown.append(shown or call)
        self.acts.append(act)
        self.merges.append(merge)
        return len(self.names) - 1


def cell_graph(cell: ir.CellDef) -> CellGraph:
    """The labelled DAG of a resolved cell (``check`` output: nodes explicit and live)."""
    inp = cell.input
    bound = inp.channels
    g = CellGraph(cell=cell.name, params=params_key(cell.params), shown=_Shown())
    recurrent = "|recurrent" if getattr(cell, "recurrent", False) else ""
    index = {inp.name: g._add(inp.name, INPUT, f"input|params=({g.params}){recurrent}", "input")}
    state = getattr(inp, "state", None)  # a recurrent cell's h_{t-1}
    if state:
        index[state] = g._add(state, STATE, "state", "state")
    # call_key and expr_key of the activation by what they depend on (ir.call_key: the op,
    # the arguments' names, names and numbers; a cell of thousands of nodes repeats a few)
    calls: dict[tuple, tuple[str, str]] = {}
    # CellGraph._add written out (a method call and eight lookups per node)
    names, kinds, labels, ops = g.names, g.kinds, g.labels, g.ops
    call_list, shown, acts, merges = g.calls, g.shown, g.acts, g.merges
    nodes = cell.nodes  # (a property that walks the body: once)
    for node in nodes:
        op = node.op
        key = ir.call_key(op, node.act)
        both = None if key is None else calls.get(key)
        if both is None:
            both = (call_key(op, bound), expr_key(node.act, bound))
            if key is not None:
                calls[key] = both
        call, act = both
        inputs = node.inputs
        fan_in = len(set(inputs))
        merge = node.merge if fan_in > 1 else ""
        label = f"node|{call}|act={act}|merge={merge}"
        if fan_in != len(inputs):  # a repeated input: keep the multiplicity
            label += f"|fan_in={len(inputs)}"
        index[node.name] = len(names)
        names.append(node.name)
        kinds.append(NODE)
        labels.append(label)
        ops.append(op.op)
        call_list.append(call)
        shown.append(op)  # call_text(node.op), when read
        acts.append(act)
        merges.append(merge)
    edges = g.edges
    for node in nodes:
        i = index[node.name]
        for src in node.inputs:
            if src in index:
                edges.add((index[src], i))
    out = cell.output
    merge = out.merge if len(set(out.nodes)) > 1 else ""
    label = f"output|merge={merge}"
    if len(set(out.nodes)) != len(out.nodes):
        label += f"|fan_in={len(out.nodes)}"
    act = expr_text(out.act) if out.act is not None else ""
    if act:  # ``output a + x relu`` (absent otherwise, so older hashes stand)
        label += f"|act={act}"
    o = g._add("output", OUTPUT, label, "output", act=act, merge=merge)
    for src in out.nodes:
        if src in index:
            g.edges.add((index[src], o))
    if out.residual is not None:
        r = g._add("residual", RESIDUAL, f"residual|{out.residual_mode}", "residual",
                   call=out.residual_mode)
        g.edges.add((o, r))
        if out.residual in index:
            g.edges.add((index[out.residual], r))
    return g


def graph_hash(g: CellGraph) -> str:
    """:func:`cell_hash` of the cell that ``g`` was made from."""
    return dag_hash(g.labels, g.edges)


def cell_hash(cell: ir.CellDef) -> str:
    """Isomorphism-invariant hash (64 hex digits) of a resolved cell; see the module docstring."""
    return graph_hash(cell_graph(cell))


def cell_hashes(graph: ir.Graph) -> dict[str, str]:
    """``{cell name: cell_hash}`` for every cell that the network of ``graph`` uses, in order."""
    cells = graph.program.cells
    return {name: cell_hash(cells[name]) for name in graph.cells_used}

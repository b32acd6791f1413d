"""Pictures of architectures with Graphviz: a cell as a DAG, a network as its stages.

This backend writes DOT source itself (no Python package needed) and calls Graphviz's ``dot``
program only to render SVG, PNG or PDF. It reads the graph IR (``ir.Graph``) for networks and
cell instances, and a resolved ``ir.CellDef`` for a cell drawn from its definition (widths as
written, e.g. ``SepConv 3x3, w``), which is also how a file without a network is drawn.

Style, meant for papers: one sans-serif font, cells top to bottom, networks left to right;
ops labelled like ``SepConv 3x3, 24`` with the activation beneath, coloured by kind (convs
blue, separable and depthwise green, pooling orange, linear violet); input and output dark;
merges as small circles; the residual as a dashed edge (labelled when it is projected).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ops import ACTS, OPS

FONT = "Helvetica"
FORMATS = ("dot", "gv", "svg", "png", "pdf")
INSTALL_HINT = ("install Graphviz: 'apt-get install graphviz' (Debian, Ubuntu) or "
                "'brew install graphviz' (macOS); or write .dot, which needs nothing")

# titles of activations drawn beneath an op (an identity activation is not drawn)
_ACT_TITLES = frozenset(a.title for a in ACTS.values() if a.name != "identity")
# (fill, border) per kind of op
_COLORS = {
    "conv": ("#DCE8F5", "#4A78AD"),
    "sepconv": ("#DDEFD6", "#4F8F43"),
    "dwconv": ("#EAF5E4", "#6FA863"),
    "pool": ("#FBE6CF", "#C2843A"),
    "linear": ("#E9E0F2", "#8462A6"),
    "other": ("#F1F1F1", "#8A8A8A"),
    "stage": ("#F7F7F7", "#38404E"),
}
_TERMINAL = ("#38404E", "#38404E")
_EDGE = "#4D4D4D"
_MUTED = "#5A5A5A"


def _kind(op: str) -> str:
    """The op's family, which picks its colours (a recurrent cell's node: ``other``)."""
    sig = OPS.get(op)
    return sig.family if sig is not None else "other"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dims(shape: ir.Shape | None) -> str:
    if shape is None:
        return ""
    return f"{shape.c}" if shape.flat else f"{shape.c}×{shape.h}×{shape.w}"


def pretty_act(act: str | None) -> str:
    if not act or act == "identity":
        return ""
    return _act_title(act)


def op_label(op: str, attrs: dict[str, object]) -> str:
    """``SepConv 3x3, 24``: an op's name, its kernel, stride and width, as papers write them."""
    sig = OPS.get(op)
    parts = [sig.title if sig is not None else op]
    k = attrs.get("k")
    if sig is not None and sig.param("k") is not None and k is not None:
        parts[0] += f" {k}x{k}"
    extra = []
    stride = attrs.get("stride")
    if sig is not None and sig.stride_zero is not None:  # a stride of 0 (or k) is the window
        if stride not in (None, 0, "0", k):
            extra.append(f"stride {stride}")
    elif stride not in (None, 1, "1"):
        extra.append(f"stride {stride}")
    for key in ("dilation", "groups"):
        v = attrs.get(key)
        if v not in (None, 1, "1"):
            extra.append(f"{key} {v}")
    # a symbolic value (a cell drawn from its definition) reads better as key=value
    pad, pad_param = attrs.get("padding"), sig.param("padding") if sig is not None else None
    if pad is not None and (pad not in (0, "0") or (pad_param is not None and pad_param.optional)):
        extra.append(f"padding {pad}")
    extra = [e if e.split(" ", 1)[1].isdigit() else e.replace(" ", "=", 1) for e in extra]
    # the optional switches (conv(..., bias=true, bn=false), a pool's ceil_mode=true)
    for key, shown in (("bias", "bias"), ("bn", "no BN"), ("ceil_mode", "ceil")):
        v = attrs.get(key)
        if v is None:
            continue
        if str(v).lower() in ("true", "false"):
            on = str(v).lower() == "true"
            if on != (key == "bn"):
                extra.append(shown)
        else:  # a parameter: shown as written
            extra.append(f"{key}={v}")
    shown = sig.label_param if sig is not None else None
    if shown is not None and attrs.get(shown) is not None:
        parts[0] += f" {attrs[shown]}"
    out = attrs.get("out")
    label = parts[0]
    if out is not None:
        label += f", {out}"
    if extra:
        label += " (" + ", ".join(extra) + ")"
    return label


def _act_title(act: str) -> str:
    sig = ACTS.get(act)
    return sig.title if sig is not None else act


def node_text(op: str, attrs: dict[str, object], act: str | None,
              recurrent: bool = False) -> tuple[str, str]:
    """(title, subtitle) of an op node: ``SepConv 3x3, 24`` over ``ReLU``; a recurrent
    cell's highway node is titled by its activation (``tanh``) over ``highway``; an
    ``identity`` with an activation by the activation alone."""
    if op == "highway":
        return _act_title(act or "identity"), "highway"
    if recurrent and op in ACTS and not attrs:  # an activation written as a recurrent cell's op
        return _act_title(op), "highway"
    if op == "identity" and act and act != "identity":
        return _act_title(act), ""
    return op_label(op, attrs), pretty_act(act)


# --------------------------------------------------------------------------- a tiny DOT model


@dataclass
class _Node:
    id: str
    title: str
    sub: str = ""
    kind: str = "other"  # an op kind, "terminal" or "merge"


@dataclass
class _Edge:
    src: str
    dst: str
    residual: bool = False
    label: str = ""


@dataclass
class _Drawing:
    nodes: list[_Node] = field(default_factory=list)
    edges: list[_Edge] = field(default_factory=list)

    def node(self, *args, **kw) -> str:
        n = _Node(*args, **kw)
        self.nodes.append(n)
        return n.id

    def edge(self, *args, **kw) -> None:
        self.edges.append(_Edge(*args, **kw))


def _node_dot(n: _Node, indent: str) -> str:
    if n.kind == "concat":
        return (f'{indent}{_q(n.id)} [style="rounded,filled", fillcolor="white", '
                f'color="{_EDGE}", fontsize=11, height=0.3, margin="0.08,0.03", '
                f'label=<{_esc(n.title)}>];')
    if n.kind == "merge":
        return (f'{indent}{_q(n.id)} [shape=circle, style="filled", fillcolor="white", '
                f'color="{_EDGE}", width=0.32, fixedsize=true, fontsize=11, '
                f'label=<{_esc(n.title)}>];')
    if n.kind == "terminal":
        fill, border = _TERMINAL
        sub = f'<BR/><FONT POINT-SIZE="10" COLOR="#D8DEE9">{_esc(n.sub)}</FONT>' if n.sub else ""
        return (f'{indent}{_q(n.id)} [style="rounded,filled", fillcolor="{fill}", '
                f'color="{border}", fontcolor="white", '
                f'label=<<B>{_esc(n.title)}</B>{sub}>];')
    fill, border = _COLORS.get(n.kind, _COLORS["other"])
    text = _esc(n.sub)
    if n.sub and n.sub.isidentifier() and n.sub not in _ACT_TITLES and n.sub != "highway":
        text = f"<I>{text}</I>"  # a parameter, e.g. act
    sub = f'<BR/><FONT POINT-SIZE="10" COLOR="{_MUTED}">{text}</FONT>' if n.sub else ""
    return (f'{indent}{_q(n.id)} [fillcolor="{fill}", color="{border}", '
            f'label=<{_esc(n.title)}{sub}>];')


def _edge_dot(e: _Edge, indent: str) -> str:
    attrs = []
    if e.residual:
        attrs += ['style="dashed"', 'color="#7A7A7A"']
    if e.label:
        attrs += [f'label=<<FONT POINT-SIZE="10" COLOR="{_MUTED}">{_esc(e.label)}</FONT>>']
    a = f" [{', '.join(attrs)}]" if attrs else ""
    return f"{indent}{_q(e.src)} -> {_q(e.dst)}{a};"


def _header(name: str, rankdir: str, title: str | None) -> list[str]:
    lines = [
        f"digraph {_q(name)} {{",
        f'  graph [rankdir={rankdir}, fontname="{FONT}", fontsize=13, nodesep=0.3, '
        f'ranksep=0.4, pad=0.15, bgcolor="white", newrank=true'
        + (f', label=<{title}>, labelloc=b' if title else "") + "];",
        (f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=12, '
         f'penwidth=1.2, margin="0.14,0.06", height=0.4];'),
        f'  edge [color="{_EDGE}", arrowsize=0.65, penwidth=1.1, fontname="{FONT}"];',
    ]
    return lines


def _body(d: _Drawing, indent: str = "  ") -> list[str]:
    return [_node_dot(n, indent) for n in d.nodes] + [_edge_dot(e, indent) for e in d.edges]


# --------------------------------------------------------------------------- cells


_MERGE_SIGN = {"sum": "+", "mean": "Mean", "concat": "Concat"}


def _merge_node(d: _Drawing, mid: str, merge: str) -> str:
    kind = "merge" if merge == "sum" else "concat"
    return d.node(mid, _MERGE_SIGN.get(merge, merge), kind=kind)


def _cell_instance(inst: ir.CellInst, prefix: str = "") -> _Drawing:
    d = _Drawing()
    ids: dict[str, str] = {}
    x = inst.nodes[0]
    first_in = prefix + "in"
    rest = inst.nodes[1:]
    recurrent = bool(x.inputs)
    if inst.n_inputs == 2:  # a two-input cell: the outputs two cells back and one back
        for k, n in enumerate(inst.nodes[:2]):
            ids[n.name] = d.node(prefix + ("in" if k == 0 else "in1"), "Input",
                                 f"{n.name} ({'two back' if k == 0 else 'previous'}), "
                                 f"{_dims(n.out_shape)}", "terminal")
        rest = inst.nodes[2:]
    elif recurrent:  # a recurrent cell: node 0 mixes x_t and h_{t-1}
        dims = _dims(inst.in_shape)
        for k, name in enumerate(x.inputs):
            title, sub = ("Input", f"{name}, {dims}") if k == 0 else ("State", f"{name} (t-1), {dims}")
            ids[name] = d.node(prefix + ("in" if k == 0 else f"in{k}"), title, sub, "terminal")
        rest = inst.nodes
    else:
        ids[x.name] = d.node(first_in, "Input", _dims(x.in_shape), "terminal")
        if x.op is not None:  # a downsampling op applied to node 0
            pool = d.node(prefix + "in.op", op_label(x.op.op, x.op.attrs), pretty_act(x.op.act),
                          _kind(x.op.op))
            d.edge(ids[x.name], pool)
            ids[x.name] = pool
    for n in rest:
        if n.op is None:
            continue
        title, sub = node_text(n.op.op, n.op.attrs, n.op.act)
        nid = d.node(prefix + "n:" + n.name, title, sub, _kind(n.op.op))
        # a recurrent cell's nodes average their inputs by definition: drawn as plain edges
        _merge_into(d, [ids[s] for s in n.inputs], nid, "concat" if recurrent else n.merge,
                    prefix + "m:" + n.name)
        ids[n.name] = nid
    _finish(d, [ids[s] for s in inst.output], inst.merge, prefix,
            residual=inst.residual,
            residual_src=ids[inst.residual_from] if inst.residual_from else first_in,
            residual_label=(op_label(inst.residual_op.op, inst.residual_op.attrs)
                            if inst.residual == "project" and inst.residual_op else ""),
            out_sub=_dims(inst.out_shape), act=pretty_act(inst.act))
    return d


def _merge_into(d: _Drawing, srcs: list[str], dst: str, merge: str, mid: str) -> None:
    if len(srcs) > 1 and merge in ("sum", "mean"):
        m = _merge_node(d, mid, merge)
        for s in srcs:
            d.edge(s, m)
        d.edge(m, dst)
    else:  # concatenation of several inputs is drawn as edges into the node
        for s in srcs:
            d.edge(s, dst)


def _finish(d: _Drawing, outs: list[str], merge: str, prefix: str, residual: str,
            residual_src: str, residual_label: str, out_sub: str, act: str = "") -> None:
    if len(outs) > 1:
        cat = _merge_node(d, prefix + "merge", merge)
        for s in outs:
            d.edge(s, cat)
        last = cat
    else:
        last = outs[0]
    if residual in ("identity", "project", "if_match"):
        add = d.node(prefix + "add", "+", kind="merge")
        d.edge(last, add)
        d.edge(residual_src, add, residual=True, label=residual_label)
        last = add
    if act:  # the activation after the output's merge and residual
        a = d.node(prefix + "out.act", act, "", "other")
        d.edge(last, a)
        last = a
    out = d.node(prefix + "out", "Output", out_sub, "terminal")
    d.edge(last, out)


def _text(e: ir.Expr | None) -> str:
    from shrinkc.compiler.analysis.cellhash import expr_text

    return expr_text(e)


def _cell_definition(cell: ir.CellDef, prefix: str = "") -> _Drawing:
    d = _Drawing()
    inp = cell.input
    ids = {inp.name: d.node(prefix + "in", "Input", inp.name + (f"[{inp.channels}]"
                                                                if inp.channels else ""),
                            "terminal")}
    state = getattr(inp, "state", None)
    if state and cell.recurrent:
        ids[state] = d.node(prefix + "in1", "State", f"{state} (t-1)", "terminal")
    elif state:  # a two-input cell
        ids = {inp.name: d.node(prefix + "in", "Input", f"{inp.name} (two back)", "terminal"),
               state: d.node(prefix + "in1", "Input", f"{state} (previous)", "terminal")}
    for n in cell.nodes:
        attrs = {a.name: _text(a.value) for a in n.op.args if a.name is not None}
        title, sub = node_text(n.op.op, attrs, _text(n.act), cell.recurrent)
        nid = d.node(prefix + "n:" + n.name, title, sub, _kind(n.op.op))
        _merge_into(d, [ids[s] for s in n.inputs if s in ids], nid, n.merge,
                    prefix + "m:" + n.name)
        ids[n.name] = nid
    out = cell.output
    mode = "none" if out.residual is None else out.residual_mode
    label = "if shapes match" if mode == "if_match" else ""
    _finish(d, [ids[s] for s in out.nodes if s in ids], out.merge, prefix, residual=mode,
            residual_src=ids.get(out.residual or "", prefix + "in"), residual_label=label,
            out_sub="", act=pretty_act(_text(out.act)))
    return d


def _params_text(cell: ir.CellDef) -> str:
    parts = []
    for p in cell.params:
        s = p.name
        if p.default is not None:
            s += f"={_text(p.default)}"
        parts.append(s)
    return f"({', '.join(parts)})" if parts else ""


def _title(main: str, sub: str = "") -> str:
    t = f'<B>{_esc(main)}</B>'
    if sub:
        t += f'<BR/><FONT POINT-SIZE="10" COLOR="{_MUTED}">{_esc(sub)}</FONT>'
    return t


def cell_definition_dot(cell: ir.CellDef) -> str:
    """DOT of a cell from its (resolved) definition: widths and arguments as written."""
    lines = _header(cell.name, "TB", _title(f"{cell.name}{_params_text(cell)}",
                                            f"{len(cell.nodes)} ops, {cell.edges} edges"))
    return "\n".join(lines + _body(_cell_definition(cell)) + ["}"]) + "\n"


def _stage_of(graph: ir.Graph, cell: str, stage: str | None) -> ir.StageInst:
    stages = [s for s in graph.stages if any(c.cell == cell for c in s.cells)]
    if stage is not None:
        found = next((s for s in graph.stages if s.name == stage), None)
        if found is None:
            from shrinkc.compiler.errors import did_you_mean

            raise ShrinkError(f"no stage '{stage}' in network {graph.network}", None,
                              did_you_mean(stage, [s.name for s in graph.stages], "stages"))
        if not any(c.cell == cell for c in found.cells):
            raise ShrinkError(f"stage '{stage}' does not use cell '{cell}'", None,
                              "stages using it: " + (", ".join(s.name for s in stages) or "none"))
        return found
    if not stages:
        raise ShrinkError(f"network {graph.network} does not use cell '{cell}'", None,
                          "draw it from its definition with --symbolic")
    # the cell as it typically runs: in the first stage that repeats it
    return next((s for s in stages if sum(c.cell == cell for c in s.cells) > 1), stages[0])


def cell_instance_dot(graph: ir.Graph, cell: str, stage: str | None = None) -> str:
    """DOT of ``cell`` as instantiated in ``stage``.

    The default stage is the first that repeats the cell (else the first that uses it), and
    the stage's last instance is drawn: the cell as it repeats, after any downsampling.
    """
    lm = getattr(graph, "lm", None)
    if lm is not None and lm.cell.cell == cell and stage is None:
        inst = lm.cell
        cost = f", {inst.cost.params:,} params" if inst.cost else ""
        sub = f"recurrent, hidden {lm.hidden}{cost}"
    else:
        st = _stage_of(graph, cell, stage)
        inst = [c for c in st.cells if c.cell == cell][-1]
        cost = f", {inst.cost.params:,} params" if inst.cost else ""
        sub = f"{st.name}: {_dims(inst.in_shape)} → {_dims(inst.out_shape)}{cost}"
    args = ", ".join(f"{k}={v}" for k, v in inst.args.items())
    lines = _header(cell, "TB", _title(f"{cell}({args})" if args else cell, sub))
    return "\n".join(lines + _body(_cell_instance(inst)) + ["}"]) + "\n"


def cells_dot(program: ir.Program, name: str = "cells") -> str:
    """DOT of every cell of a program, side by side (for files without a network)."""
    lines = _header(name, "TB", None)
    for i, cell in enumerate(program.cells.values()):
        lines += _cluster(cell, f"c{i}.")
    return "\n".join(lines + ["}"]) + "\n"


def _cluster(cell: ir.CellDef, prefix: str, note: str = "") -> list[str]:
    d = _cell_definition(cell, prefix)
    sub = f"{len(cell.nodes)} ops, {cell.edges} edges" + (f"; {note}" if note else "")
    out = [
        f"  subgraph {_q('cluster_' + prefix)} {{",
        (f'    graph [label=<{_title("cell " + cell.name + _params_text(cell), sub)}>, '
         f'labelloc=t, style="rounded", color="#B8B8B8", penwidth=1.0, margin=12];'),
    ]
    return out + _body(d, "    ") + ["  }"]


# --------------------------------------------------------------------------- networks


def _stage_label(s: ir.StageInst, index: int) -> tuple[str, str]:
    first, last = s.cells[0], s.cells[-1]
    width = next(iter(last.args.items()), None)
    title = f"{s.name}: {first.cell} ×{len(s.cells)}"
    parts = []
    if width is not None and not isinstance(width[1], str):
        parts.append(f"{width[0]}={width[1]}")
    parts.append(_dims(s.out_shape))
    if first.nodes and first.nodes[0].op is not None:
        parts.append("↓ " + op_label(first.nodes[0].op.op, first.nodes[0].op.attrs))
    overrides = {k: v for k, v in first.args.items() if last.args.get(k) != v}
    if overrides:
        parts.append("first: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    return title, ", ".join(parts)


def _layer_sub(layer: ir.LayerInst) -> str:
    shape = "" if "out" in layer.op.attrs and layer.out_shape and layer.out_shape.flat \
        else _dims(layer.out_shape)
    return ", ".join(x for x in (pretty_act(layer.op.act), shape) if x)


def _chain(d: _Drawing, prev: str, kind: str, layers: tuple[ir.LayerInst, ...]) -> str:
    """The stem's or the head's layers, one node each, after ``prev``; returns the last."""
    for i, layer in enumerate(layers):
        nid = d.node(f"{kind}{i}", op_label(layer.op.op, layer.op.attrs), _layer_sub(layer),
                     _kind(layer.op.op))
        d.edge(prev, nid)
        prev = nid
    return prev


def _lm_chain(d: _Drawing, prev: str, lm: ir.LMInst, stage_ids: dict[str, str]) -> str:
    """A language model's embedding -> recurrent cell -> decoder, after ``prev``."""
    drop = lm.dropout
    nid = d.node("lm.embed", f"Embedding, {lm.embed}",
                 f"{lm.vocab}×{lm.embed}" + (f", dropout {drop['embedding']}"
                                             if drop.get("embedding") else ""), "linear")
    d.edge(prev, nid)
    prev = nid
    nid = d.node("lm.cell", f"Recurrent: {lm.cell.cell}", f"hidden {lm.hidden}", "stage")
    stage_ids["recurrent"] = nid
    d.edge(prev, nid)
    prev = nid
    nid = d.node("lm.decoder", f"Decoder, {lm.vocab}", "tied to the embedding" if lm.tied
                 else "", "linear")
    d.edge(prev, nid)
    return nid


def _cell_clusters(graph: ir.Graph, stage_ids: dict[str, str]) -> list[str]:
    """Each distinct cell drawn from its definition, placed beside the first stage using it."""
    lines: list[str] = []
    cells = graph.program.cells
    lm = graph.lm if isinstance(graph, ir.LMGraph) else None
    for i, name in enumerate(graph.cells_used):
        used = [s.name for s in graph.stages if s.cells[0].cell == name]
        if lm is not None and lm.cell.cell == name:
            used = ["recurrent"]
        note = ("recurrent" if used == ["recurrent"] else
                "in " + (", ".join(used) if len(used) <= 3 else f"{used[0]} to {used[-1]}"))
        lines += _cluster(cells[name], f"cell{i}.", note)
        # place the cluster beside the chain, starting under the first stage using it
        first = stage_ids.get(used[0]) if used else None
        if first is not None:
            lines.append(f'  {{rank=same; {_q(first)}; {_q(f"cell{i}.in")};}}')
    return lines


def network_dot(graph: ir.Graph, with_cells: bool = True) -> str:
    """DOT of a network: input -> stem -> stages -> head -> output, left to right, with each
    distinct cell drawn from its definition in a cluster below."""
    cost = graph.cost
    lm = graph.lm if isinstance(graph, ir.LMGraph) else None
    sub = f"{cost.params:,} params, {cost.macs / 1e6:.1f}M MACs"
    if lm is None:
        sub += f", input {_dims(graph.input_shape)}"
    lines = _header(graph.network, "TB", _title(graph.network, sub))
    d = _Drawing()
    if lm is not None:
        prev = d.node("net.in", "Tokens", f"vocabulary {lm.vocab}", "terminal")
    else:
        prev = d.node("net.in", "Input", _dims(graph.input_shape), "terminal")
    prev = _chain(d, prev, "stem", graph.stem)
    stage_ids: dict[str, str] = {}
    for i, s in enumerate(graph.stages):
        title, subline = _stage_label(s, i)
        nid = d.node(f"stage:{s.name}", title, subline, "stage")
        stage_ids[s.name] = nid
        d.edge(prev, nid)
        prev = nid
    if lm is not None:
        prev = _lm_chain(d, prev, lm, stage_ids)
    prev = _chain(d, prev, "head", graph.head)
    out = d.node("net.out", "Output", _dims(graph.out_shape), "terminal")
    d.edge(prev, out)
    lines += _body(d)
    if with_cells:
        lines += _cell_clusters(graph, stage_ids)
    return "\n".join(lines + ["}"]) + "\n"


# --------------------------------------------------------------------------- output


def have_dot() -> bool:
    return shutil.which("dot") is not None


def render(source: str, fmt: str) -> bytes:
    """Render DOT ``source`` to ``fmt`` (svg, png, pdf) with Graphviz's ``dot`` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise ShrinkError(f"cannot render .{fmt}: Graphviz's 'dot' program is not installed",
                          None, INSTALL_HINT)
    cmd = [exe, f"-T{fmt}"]
    if fmt == "png":
        cmd.append("-Gdpi=200")
    try:
        proc = subprocess.run(cmd, input=source.encode("utf-8"), capture_output=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ShrinkError(f"cannot render .{fmt} with Graphviz: {e}", None, INSTALL_HINT) from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ShrinkError(f"Graphviz failed to render .{fmt}: " + (msg[-1] if msg else "error"))
    return proc.stdout


def output_format(path: str | Path) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ShrinkError(f"cannot write {Path(path).as_posix()}: unknown picture format "
                          f"'.{fmt}'", None, "use .svg, .png, .pdf or .dot")
    return "dot" if fmt == "gv" else fmt


def write(source: str, path: str | Path) -> None:
    """Write DOT ``source`` to ``path``, rendered by the file's suffix, atomically."""
    from shrinkc.compiler.fsutil import atomic_write

    fmt = output_format(path)
    data: str | bytes = source if fmt == "dot" else render(source, fmt)
    atomic_write(Path(path), data)

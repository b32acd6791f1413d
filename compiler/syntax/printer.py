"""Program IR -> canonical ``.shrink`` text. ``shrinkc fmt`` and the shrinker write through it.

Canonical form: 4-space indentation, one statement per line, ``k=3`` keyword arguments,
minimal parentheses in expressions, one blank line between blocks, comments kept where the
parser attached them. ``print_program(parse(t))`` is idempotent and
``parse(print_program(p)) == p`` for every program the parser produces.
"""

from __future__ import annotations

from .. import ir

INDENT = "    "
BLANK = "\n"  # marker in Comments.leading: a blank line between comment paragraphs

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def expr(e: ir.Expr, parent: int = 0, right: bool = False) -> str:
    if isinstance(e, ir.Num):
        v = e.value
        s = repr(float(v)) if isinstance(v, float) else str(v)
        return f"({s})" if v < 0 and parent else s
    if isinstance(e, ir.Ref):
        return e.name
    if isinstance(e, ir.Neg):
        return "-" + expr(e.operand, 3)
    if isinstance(e, ir.Call):
        return f"{e.func}({', '.join(expr(a) for a in e.args)})"
    prec = _PREC[e.op]
    s = f"{expr(e.left, prec)} {e.op} {expr(e.right, prec, True)}"
    if prec < parent or (right and prec == parent):
        return f"({s})"
    return s


def args(a: tuple[ir.Arg, ...]) -> str:
    return ", ".join(expr(x.value) if x.name is None else f"{x.name}={expr(x.value)}" for x in a)


def call(c: ir.OpCall) -> str:
    return f"{c.op}({args(c.args)})" if c.args else c.op


def _act(a: ir.Expr | None) -> str:
    return "" if a is None else " " + expr(a)


def _params(ps: tuple[ir.Param, ...]) -> str:
    if not ps:
        return ""
    parts = []
    for p in ps:
        s = p.name
        if p.type is not None:
            s += f": {p.type}"
        if p.default is not None:
            s += f" = {expr(p.default)}"
        parts.append(s)
    return "(" + ", ".join(parts) + ")"


def _sources(merge: str, names: tuple[str, ...], explicit: bool) -> str:
    if explicit:
        return f"{merge}({', '.join(names)})"
    return ", ".join(names)


def statement(s) -> str:
    """One statement of a cell or network body, without indentation or comments."""
    if isinstance(s, ir.InputStmt):
        return (f"input {s.name}" + (f"[{s.channels}]" if s.channels else "")
                + (f", {s.state}" if s.state else ""))
    if isinstance(s, ir.NodeStmt):
        line = f"{s.name} = {call(s.op)}{_act(s.act)}"
        if s.inputs:
            line += " <- " + _sources(s.merge, s.inputs, s.explicit_merge)
        return line
    if isinstance(s, ir.OutputStmt):
        line = "output " + _sources(s.merge, s.nodes, s.explicit_merge)
        if s.residual is not None:
            line += f" + {s.residual}"
            if s.residual_mode == "if_match":
                line += " if shapes match"
        return line + _act(s.act)
    if isinstance(s, ir.NetInput):
        return f"input {s.name}[{', '.join(expr(e) for e in s.shape)}]"
    if isinstance(s, ir.Chain):
        return f"{s.kind} " + " -> ".join(call(x.op) + _act(x.act) for x in s.layers)
    if isinstance(s, ir.StageStmt):
        line = "stage " + (f"{s.name}: " if s.name else "")
        line += f"{call(s.cell)} x {expr(s.repeat)}"
        if s.downsample is not None:
            line += f" downsample {call(s.downsample)}"
        if s.first:
            line += f" first({args(s.first)})"
        return line
    if isinstance(s, ir.StochasticDepthStmt):
        return f"stochastic_depth {expr(s.value)}"
    if isinstance(s, ir.LMStmt):
        if s.kind in ("tokens", "embed"):
            return f"{s.kind} {expr(s.value)}"  # type: ignore[arg-type]
        if s.kind == "recurrent":
            return f"recurrent {s.name} hidden {expr(s.value)}"  # type: ignore[arg-type]
        if s.kind == "dropout":
            return f"dropout({args(s.args)})"
        return f"decoder {s.name}"
    raise TypeError(type(s))


def _leading(c: ir.Comments, indent: str) -> list[str]:
    return ["" if t == BLANK else f"{indent}#{t}" for t in c.leading]


def _with_trailing(line: str, c: ir.Comments) -> str:
    return line + (f"  #{c.trailing}" if c.trailing is not None else "")


def _block(header: str, item, body) -> list[str]:
    out = _leading(item.comments, "")
    out.append(_with_trailing(header + " {", item.comments))
    for s in body:
        out += _leading(s.comments, INDENT)
        out.append(_with_trailing(INDENT + statement(s), s.comments))
    out += [INDENT + f"#{t}" if t != BLANK else "" for t in item.end_comments]
    out.append("}")
    return out


def _edges(edges: tuple[tuple[int, int], ...]) -> str:
    """``edges 0->1, 0->2, ...``, wrapped after a comma to stay under 100 columns."""
    lines, line = [], "edges"
    for k, (a, b) in enumerate(edges):
        part = f"{a}->{b}" + ("," if k < len(edges) - 1 else "")
        if len(INDENT + line) + 1 + len(part) > 96 and line.strip() != "edges":
            lines.append(line)
            line = INDENT + "   "
        line += " " + part
    lines.append(line)
    return ("\n" + INDENT).join(lines)


def _stmts(pairs, comments: dict[str, ir.Comments]) -> list[str]:
    out: list[str] = []
    for key, text in pairs:
        c = comments.get(key, ir.NO_COMMENTS)
        out += _leading(c, INDENT)
        out.append(_with_trailing(INDENT + text, c))
    return out


def _space(s: ir.SpaceDef) -> list[str]:
    ops = ", ".join(call(c) for c in s.ops)
    if s.rule == "cycle":
        ops = f"cycle({ops})" + (f" shuffle {s.shuffle}" if s.shuffle is not None else "")
    pairs = [("nodes", f"nodes {expr(s.nodes)}"), ("ops", f"ops {ops}")]
    if not s.recurrent:
        pairs.insert(0, ("input", f"input {s.input_name}"))
    if s.act is not None:
        pairs.append(("act", f"act {expr(s.act)}"))
    if s.edges is not None:
        pairs.append(("edges", _edges(s.edges)))
    out = _leading(s.comments, "")
    kw = "recurrent space" if s.recurrent else "space"
    out.append(_with_trailing(f"{kw} {s.name}{_params(s.params)} {{", s.comments))
    out += _stmts(pairs, s.stmt_comments)
    out += _leading(s.output.comments, INDENT)
    out.append(_with_trailing(INDENT + statement(s.output), s.output.comments))
    out += [INDENT + f"#{t}" if t != BLANK else "" for t in s.end_comments]
    return out + ["}"]


def _search(s: ir.SearchDef) -> list[str]:
    pairs = []
    if s.space is not None:
        pairs.append(("space", f"space {s.space}"))
    if s.network is not None:
        pairs.append(("network", f"network {s.network}"))
    if s.deploy is not None:
        shape = "" if s.deploy_input is None else " input " + "x".join(map(str, s.deploy_input))
        pairs.append(("deploy", f"deploy {s.deploy}{shape}"))
    if s.train:
        pairs.append(("train", f"train({args(s.train)})"))
    if s.shrink:
        pairs.append(("shrink", f"shrink({args(s.shrink)})"))
    if s.score is not None:
        pairs.append(("score", f"score {expr(s.score)}"))
    out = _leading(s.comments, "")
    out.append(_with_trailing(f"search {s.name} {{", s.comments))
    out += _stmts(pairs, s.stmt_comments)
    out += [INDENT + f"#{t}" if t != BLANK else "" for t in s.end_comments]
    return out + ["}"]


def item(i) -> list[str]:
    if isinstance(i, ir.Include):
        return _leading(i.comments, "") + [_with_trailing(f'include "{i.path}"', i.comments)]
    if isinstance(i, ir.OpPreset):
        line = f"op {i.name} = {call(i.call)}{_act(i.act)}"
        return _leading(i.comments, "") + [_with_trailing(line, i.comments)]
    if isinstance(i, ir.VariantDef):
        line = f"network {i.name} = {i.base}({args(i.args)})"
        return _leading(i.comments, "") + [_with_trailing(line, i.comments)]
    if isinstance(i, ir.CellDef):
        kw = "recurrent cell" if i.recurrent else "cell"
        return _block(f"{kw} {i.name}{_params(i.params)}", i, i.body)
    if isinstance(i, ir.NetworkDef):
        return _block(f"network {i.name}{_params(i.params)}", i, i.body)
    if isinstance(i, ir.SpaceDef):
        return _space(i)
    if isinstance(i, ir.SearchDef):
        return _search(i)
    raise TypeError(type(i))


def print_program(p: ir.Program) -> str:
    out = [f"#{t}" if t != BLANK else "" for t in p.header_comments]
    out.append(f"shrink {p.version}" + (f"  #{p.version_comment}" if p.version_comment is not None
                                         else ""))
    prev = None
    for i in p.items:
        one_line = isinstance(i, (ir.Include, ir.OpPreset, ir.VariantDef))
        grouped = one_line and type(i) is prev and not i.comments.leading
        if not grouped:
            out.append("")
        out += item(i)
        prev = type(i)
    if p.end_comments:
        out.append("")
        out += [f"#{t}" if t != BLANK else "" for t in p.end_comments]
    return "\n".join(out) + "\n"

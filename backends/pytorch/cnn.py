"""Graph IR -> one standalone PyTorch source file (rendered with a jinja2 template).

The generated file imports only torch, has one ``nn.Module`` class per cell (named after it),
a class for the network, a module-level ``build(**overrides)``, and runs one forward pass
when executed as a script. Cell classes are written the way a person would write them: the
constructor takes ``in_channels`` and the cell's parameters and computes channel counts
with the spec's own arithmetic (``in_channels * t``), so one class serves every instance.

This module never imports torch and never parses: it reads the ``Graph`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ops import pool_stride
from shrinkc.compiler.units import human

from ..naming import CELL_LOCALS, Namer, act_module, cell_attr_names, stage_attr_names
from .source import Lin, call_source, render, template, text, value

# --------------------------------------------------------------------------- ops


class _OpRenderer:
    """Renders one op call as a module constructor, tracking the channel count symbolically."""

    def __init__(self, names: dict[str, str], helpers: set[str]):
        self.names = names
        self.helpers = helpers

    def arg(self, call: ir.OpCall, name: str) -> ir.Expr | None:
        return call.arg(name)

    def kw(self, call: ir.OpCall, name: str, py: str, default: int | float) -> list[str]:
        e = call.arg(name)
        if e is None or (isinstance(e, ir.Num) and e.value == default):
            return []
        return [f"{py}={render(e, self.names)}"]

    def act(self, act: ir.Expr | None) -> str | None:
        if not act_module(act):
            return None
        return render(act, self.names)

    def render(self, call: ir.OpCall, act: ir.Expr | None, cin: Lin, indent: str,
               concrete_out: int | None = None) -> tuple[str, Lin, bool]:
        """(constructor source, output channels, whether the act is already inside)."""
        op, a = call.op, self.act(act)
        act_kw = [f"act={a}"] if a else []
        if op in ("conv", "sepconv", "dwconv"):
            helper = "SepConv" if op == "sepconv" else "ConvBN"
            self.helpers.add(helper)
            out = cin if op == "dwconv" else Lin.of(call.arg("out"), self.names)  # type: ignore[arg-type]
            kdef = 3 if op == "sepconv" else 1
            args = [str(cin), str(out)]
            args += self.kw(call, "k", "kernel_size", kdef) if op != "dwconv" else [
                f"kernel_size={render(call.arg('k'), self.names)}" if call.arg("k") else "kernel_size=3"]
            args += self.kw(call, "stride", "stride", 1)
            if op == "dwconv":
                args.append(f"groups={cin}")
            else:
                args += self.kw(call, "groups", "groups", 1)
            args += self.kw(call, "dilation", "dilation", 1) + act_kw
            return call_source(helper, args, indent), out, True
        if op in ("maxpool", "avgpool"):
            cls = "nn.MaxPool2d" if op == "maxpool" else "nn.AvgPool2d"
            args = [render(call.arg("k"), self.names)]  # type: ignore[arg-type]
            args += self.kw(call, "stride", "stride", 0) + self.kw(call, "padding", "padding", 0)
            return call_source(cls, args, indent), cin, False
        if op == "global_avgpool":
            self.helpers.add("GlobalAvgPool")
            return "GlobalAvgPool()", cin, False
        if op == "flatten":
            return "nn.Flatten()", Lin(const=concrete_out or 0), False
        if op == "linear":
            out = Lin.of(call.arg("out"), self.names)  # type: ignore[arg-type]
            return call_source("nn.Linear", [str(cin), str(out)], indent), out, False
        if op == "dropout":
            p = call.arg("p")
            return f"nn.Dropout({render(p, self.names) if p is not None else ''})", cin, False
        return "nn.Identity()", cin, False

    def module(self, call: ir.OpCall, act: ir.Expr | None, cin: Lin, indent: str,
               concrete_out: int | None = None) -> tuple[str, Lin]:
        src, out, has_act = self.render(call, act, cin, indent, concrete_out)
        a = self.act(act)
        if a and not has_act:
            src = f"{a}()" if call.op == "identity" else f"nn.Sequential({src}, {a}())"
        return src, out


def _stride_factors(call: ir.OpCall | None, names: dict[str, str]) -> list[str]:
    if call is None:
        return []
    if call.op in ("conv", "sepconv", "dwconv"):
        e = call.arg("stride")
    elif call.op in ("maxpool", "avgpool"):
        e = call.arg("stride")
        if e is None or (isinstance(e, ir.Num) and e.value == 0):
            e = call.arg("k")
    else:
        return []
    if e is None or (isinstance(e, ir.Num) and e.value == 1):
        return []
    s = render(e, names)
    return [f"({s})" if any(op in s for op in " +-") else s]


# --------------------------------------------------------------------------- cells


def cell_param_names(cell: ir.CellDef) -> dict[str, str]:
    """Python names of a cell's parameters (constructor arguments of its class)."""
    namer = Namer(CELL_LOCALS)
    return {p.name: namer(p.name) for p in cell.params}


@dataclass
class CellClass:
    name: str
    doc: str
    signature: list[str]
    init: list[str]
    forward_arg: str
    forward: list[str]


def _cell_class(cell: ir.CellDef, insts: list[ir.CellInst], class_name: str,
                helpers: set[str]) -> CellClass:
    has_down = any(i.nodes[0].op is not None for i in insts)
    names = cell_param_names(cell)
    if cell.input.channels:
        names[cell.input.channels] = "in_channels"
    nodes = cell_attr_names(cell).__getitem__
    inp = cell.input
    x = nodes(inp.name)
    forward_arg = "inputs" if has_down else x
    r = _OpRenderer(names, helpers)

    sig = ["in_channels: int"]
    for p in cell.params:
        ann = {"int": "int", "float": "float", "act": "type[nn.Module]"}[p.type or "int"]
        py = names[p.name]
        if p.default is None:
            sig.append(f"{py}: {ann}")
        else:
            sig.append(f"{py}: {ann} = {render(p.default, {})}")
    if has_down:
        sig.append("downsample: nn.Module | None = None")

    init: list[str] = []
    fwd: list[str] = []
    channels: dict[str, Lin] = {inp.name: Lin.term("in_channels")}
    strides: dict[str, list[str]] = {inp.name: ["down_stride"] if has_down else []}
    if has_down:
        init.append("self.downsample = downsample if downsample is not None else nn.Identity()")
        init.append("down_stride = downsample.stride if downsample is not None else 1")
        fwd.append(f"{x} = self.downsample(inputs)")
    concrete = {n.name: n for n in insts[0].nodes}

    def merged(merge: str, srcs: tuple[str, ...]) -> tuple[str, Lin]:
        py = [nodes(s) for s in srcs]
        if len(py) == 1:
            return py[0], channels[srcs[0]]
        if merge == "concat":
            total = Lin()
            for s in srcs:
                total = total + channels[s]
            return f"torch.cat([{', '.join(py)}], dim=1)", total
        joined = " + ".join(py)
        return (joined if merge == "sum" else f"({joined}) / {len(py)}"), channels[srcs[0]]

    for n in cell.nodes:
        src, cin = merged(n.merge, n.inputs)
        ctor, out = r.module(n.op, n.act, cin, "        ", concrete[n.name].out_shape.c)  # type: ignore[union-attr]
        init.append(f"self.{nodes(n.name)} = {ctor}")
        fwd.append(f"{nodes(n.name)} = self.{nodes(n.name)}({src})")
        channels[n.name] = out
        strides[n.name] = strides[n.inputs[0]] + _stride_factors(n.op, names)

    out = cell.output
    result, cout = merged(out.merge, out.nodes)
    init.append(f"self.out_channels = {cout}")
    stride = " * ".join(strides[out.nodes[0]])
    mode = out.residual_mode if out.residual else None
    if mode == "project":
        helpers.add("ConvBN")
        cond = "in_channels != self.out_channels"
        if stride:
            cond = f"{stride} != 1 or {cond}"
        stride_kw = f", stride={stride}" if stride else ""
        init += [
            f"if {cond}:",
            f"    self.residual = ConvBN(in_channels, self.out_channels{stride_kw})",
            "else:",
            "    self.residual = nn.Identity()",
        ]
        fwd.append(f"return {result} + self.residual({forward_arg})")
    elif mode == "if_match":
        cond = "in_channels == self.out_channels"
        if stride:
            cond = f"{stride} == 1 and {cond}"
        init.append(f"self.use_residual = {cond}")
        if result != nodes(out.nodes[0]) or len(out.nodes) > 1:
            fwd.append(f"out = {result}")
            result = "out"
        fwd += ["if self.use_residual:", f"    return {result} + {forward_arg}"]
        fwd.append(f"return {result}")
    else:
        fwd.append(f"return {result}")

    _check_residual_rule(cell, insts, mode)
    where = f"{text(cell.loc.file)}:{cell.loc.line}"
    doc = f"Cell {cell.name} ({where}): {len(cell.nodes) + 1} nodes, {cell.edges} edges."
    return CellClass(class_name, doc, sig, init, forward_arg, fwd)


def _check_residual_rule(cell: ir.CellDef, insts: list[ir.CellInst], mode: str | None) -> None:
    """The generated constructor decides residuals from strides and channels; make sure that
    agrees with the compiler's shape-based decision for every instance."""
    for inst in insts:
        predicted_same = inst.in_shape == inst.out_shape
        total = 1
        node = {n.name: n for n in inst.nodes}
        name = inst.output[0]
        chain = []
        while True:
            chain.append(node[name])
            if not node[name].inputs:
                break
            name = node[name].inputs[0]
        for n in chain:
            if n.op is not None and n.op.op in ("conv", "sepconv", "dwconv"):
                total *= int(n.op.attrs["stride"])
            elif n.op is not None and n.op.op in ("maxpool", "avgpool"):
                total *= pool_stride(n.op.attrs)
        by_rule = total == 1 and inst.in_shape.c == inst.out_shape.c  # type: ignore[union-attr]
        if by_rule != predicted_same and mode is not None:
            raise ShrinkError(
                f"the PyTorch backend cannot express the residual of cell '{cell.name}': "
                "its resolution changes without a stride", cell.loc,
                "use strides (not unpadded windows) to change resolution in a residual cell")


# --------------------------------------------------------------------------- network


@dataclass
class NetworkClass:
    name: str
    doc: str
    signature: list[str]
    init: list[str]
    input: str
    forward: list[str]


def _network_class(graph: ir.Graph, net: ir.NetworkDef, class_name: str, cell_classes: dict[str, str],
                   helpers: set[str]) -> NetworkClass:
    pnames = Namer({"super"})
    names = {p.name: pnames(p.name) for p in net.params}
    stage_attrs = stage_attr_names(graph.stages)
    r = _OpRenderer(names, helpers)
    sig = []
    for p in net.params:
        ann = {"int": "int", "float": "float", "act": "type[nn.Module]"}[p.type or "int"]
        sig.append(f"{names[p.name]}: {ann} = {value(graph.args[p.name])}")
    init: list[str] = []
    fwd: list[str] = []
    inp = Namer()(graph.input_name)
    channels = Lin.of(net.input.shape[0], names)
    current = inp

    def chain(kind: str, layers: tuple[ir.LayerInst, ...]) -> None:
        nonlocal channels, current
        stmt = net.chain(kind)
        if stmt is None:
            return
        mods: list[str] = []
        for layer, inst in zip(stmt.layers, layers):
            src, channels = r.module(layer.op, layer.act, channels, "            ",
                                     inst.out_shape.c)  # type: ignore[union-attr]
            mods.append(src)
        if len(mods) == 1:
            init.append(f"self.{kind} = {mods[0]}")
        else:
            body = "".join(f"            {m},\n" for m in mods)
            init.append(f"self.{kind} = nn.Sequential(\n{body}        )")
        if kind == "head":
            fwd.append(f"return self.head({current})")
        else:
            fwd.append(f"x = self.stem({current})")
            current = "x"

    chain("stem", graph.stem)
    for stage, attr in zip(net.stages, stage_attrs):
        helpers.add("Stage")
        cell_cls = cell_classes[stage.cell.op]
        kw = cell_param_names(graph.program.cells[stage.cell.op])
        args = [cell_cls, str(channels), render(stage.repeat, names)]
        args += [f"{kw[a.name]}={render(a.value, names)}" for a in stage.cell.args]  # type: ignore[index]
        first = [f'"{kw[a.name]}": {render(a.value, names)}' for a in stage.first]  # type: ignore[index]
        if stage.downsample is not None:
            d_src, _ = r.module(stage.downsample, None, channels, "")
            first.append(f'"downsample": {d_src}')
        if first:
            args.append(f"first={{{', '.join(first)}}}")
        init.append(f"self.{attr} = " + call_source("Stage", args, "        "))
        fwd.append(f"x = self.{attr}({current})")
        current = "x"
        channels = Lin.term(f"self.{attr}.out_channels")
    chain("head", graph.head)
    if net.chain("head") is None:
        fwd.append(f"return {current}")
    cost = graph.cost
    where = f"{text(net.loc.file)}:{net.loc.line}"
    doc = (f"Network {net.name} ({where}): {cost.params:,} parameters, "  # type: ignore[union-attr]
           f"{human(cost.macs, kilo=True)} MACs at {'x'.join(map(str, graph.input_shape.as_list()))}.")  # type: ignore[union-attr]
    return NetworkClass(class_name, doc, sig, init, inp, fwd)


# --------------------------------------------------------------------------- file


def generate_cnn(graph: ir.CNNGraph) -> str:
    """The standalone PyTorch source of an image network."""
    program = graph.program
    net = program.networks[graph.network]
    classes = Namer({"Module"})
    helpers: set[str] = set()
    cell_classes = {name: classes(name) for name in graph.cells_used}
    net_class = classes(graph.network)
    by_cell: dict[str, list[ir.CellInst]] = {}
    for stage in graph.stages:
        for c in stage.cells:
            by_cell.setdefault(c.cell, []).append(c)
    cells = [
        _cell_class(program.cells[name], by_cell[name], cell_classes[name], helpers)
        for name in graph.cells_used
    ]
    network = _network_class(graph, net, net_class, cell_classes, helpers)
    shape = graph.input_shape.as_list()
    return template("cnn.py.j2").render(
        graph=graph,
        source=text(graph.source),
        params=f"{graph.cost.params:,}",  # type: ignore[union-attr]
        macs=human(graph.cost.macs, kilo=True),  # type: ignore[union-attr]
        macs_exact=f"{graph.cost.macs:,}",  # type: ignore[union-attr]
        helpers=helpers,
        cells=cells,
        network=network,
        example_shape=", ".join(map(str, [1, *shape])),
        out_shape=", ".join(map(str, [1, *graph.out_shape.as_list()])),  # type: ignore[union-attr]
        input_desc="x".join(map(str, shape)),
    )


__all__ = ["generate_cnn"]

"""Graph IR -> one standalone PyTorch source file (rendered with a jinja2 template).

The generated file imports only torch, has one ``nn.Module`` class per cell (named after it),
a class for the network, a module-level ``build(**overrides)``, and runs one forward pass
when executed as a script. Cell classes are written the way a person would write them: the
constructor takes ``in_channels`` and the cell's parameters and computes channel counts
with the spec's own arithmetic (``in_channels * t``), so one class serves every instance.

This module never imports torch and never parses: it reads the ``Graph`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shrinkc.compiler import ir
from shrinkc.compiler.ops import stride_expr
from shrinkc.compiler.passes.residual import strides_agree
from shrinkc.compiler.units import human

from ..layout import OP_LAYOUT
from ..naming import (
    CELL_LOCALS,
    OUTPUT_ACT,
    Namer,
    act_module,
    cell_attr_names,
    stage_attr_names,
)
from .source import Lin, call_source, network_signature, render, template, text

# --------------------------------------------------------------------------- ops


class _OpRenderer:
    """Renders one op call as a module constructor, tracking the channel count symbolically."""

    def __init__(self, names: dict[str, str], helpers: set[str]):
        self.names = names
        self.helpers = helpers

    def kw(self, call: ir.OpCall, name: str, py: str, default: int | float) -> list[str]:
        e = call.arg(name)
        if e is None or (isinstance(e, ir.Num) and e.value == default):
            return []
        return [f"{py}={render(e, self.names)}"]

    def expr(self, call: ir.OpCall, name: str) -> str:
        """A required argument as Python source."""
        e = call.arg(name)
        assert e is not None, f"{call.op} without {name}"  # bound by the resolver
        return render(e, self.names)

    def channels(self, call: ir.OpCall, name: str) -> Lin:
        e = call.arg(name)
        assert e is not None, f"{call.op} without {name}"
        return Lin.of(e, self.names)

    def act(self, act: ir.Expr | None) -> str | None:
        if not act_module(act):
            return None
        return render(act, self.names)

    def module(self, call: ir.OpCall, act: ir.Expr | None, cin: Lin, indent: str,
               concrete_out: int | None = None, lead: str = "") -> tuple[str, Lin]:
        a = self.act(act)
        src, out = OP_MODULES[call.op](_Site(self, call, a, cin, indent, concrete_out, lead))
        mode = OP_LAYOUT[call.op].act
        if a and mode == "replace":
            src = f"{a}()"
        elif a and mode == "wrap":
            src = (call_source("nn.Sequential", [src, f"{a}()"], indent, lead) if "\n" not in src
                   else f"nn.Sequential({src}, {a}())")
        return src, out


@dataclass(frozen=True)
class _Site:
    """One op call being rendered: the renderer, the call, its activation's source (for ops
    that take it inside), its input channels, the indent of its line, and its concrete output
    channel count (for ``flatten``)."""

    r: _OpRenderer
    call: ir.OpCall
    act: str | None
    cin: Lin
    indent: str
    concrete_out: int | None
    lead: str = ""  # what comes before the call on its line (``self.n1 = ``)

    def kw(self, name: str, py: str, default: int | float) -> list[str]:
        return self.r.kw(self.call, name, py, default)

    def act_kw(self) -> list[str]:
        return [f"act={self.act}"] if self.act else []


def _conv_bn_call(s: _Site, helper: str, out: Lin, kernel: list[str], groups: list[str],
                  norm: list[str] | None = None) -> tuple[str, Lin]:
    s.r.helpers.add(helper)
    args = [str(s.cin), str(out), *kernel, *s.kw("stride", "stride", 1), *groups,
            *s.kw("dilation", "dilation", 1), *(norm or []), *s.act_kw()]
    return call_source(helper, args, s.indent, s.lead), out


def _conv(s: _Site) -> tuple[str, Lin]:
    variant = [kw for name in ("padding", "bias", "bn", "eps", "momentum")
               for kw in s.kw(name, name, -1)]
    if not variant:  # the common case: ConvBN, as before these arguments existed
        return _conv_bn_call(s, "ConvBN", s.r.channels(s.call, "out"),
                             s.kw("k", "kernel_size", 1), s.kw("groups", "groups", 1))
    s.r.helpers.add("Conv")
    out = s.r.channels(s.call, "out")
    args = [str(s.cin), str(out), *s.kw("k", "kernel_size", 1), *s.kw("stride", "stride", 1),
            *s.kw("groups", "groups", 1), *s.kw("dilation", "dilation", 1), *variant,
            *s.act_kw()]
    return call_source("Conv", args, s.indent, s.lead), out


def _sepconv(s: _Site) -> tuple[str, Lin]:
    norm = [kw for name in ("eps", "momentum") for kw in s.kw(name, name, -1)]
    return _conv_bn_call(s, "SepConv", s.r.channels(s.call, "out"),
                         s.kw("k", "kernel_size", 3), s.kw("groups", "groups", 1), norm)


def _dwconv(s: _Site) -> tuple[str, Lin]:
    k = s.call.arg("k")
    kernel = f"kernel_size={render(k, s.r.names)}" if k else "kernel_size=3"
    norm = [kw for name in ("eps", "momentum") for kw in s.kw(name, name, -1)]
    if not norm:
        return _conv_bn_call(s, "ConvBN", s.cin, [kernel], [f"groups={s.cin}"])
    s.r.helpers.add("Conv")  # batch norm with its own eps or momentum
    args = [str(s.cin), str(s.cin), kernel, *s.kw("stride", "stride", 1), f"groups={s.cin}",
            *s.kw("dilation", "dilation", 1), *norm, *s.act_kw()]
    return call_source("Conv", args, s.indent, s.lead), s.cin


def _se(s: _Site) -> tuple[str, Lin]:
    s.r.helpers.add("SqueezeExcite")
    args = [str(s.cin), s.r.expr(s.call, "squeeze")]
    for name, default in (("act", "relu"), ("gate", "sigmoid")):
        e = s.call.arg(name)
        if e is not None and not (isinstance(e, ir.Ref) and e.name == default):
            args.append(f"{name}={render(e, s.r.names)}")
    return call_source("SqueezeExcite", args, s.indent, s.lead), s.cin


def _pool(cls: str) -> Callable[[_Site], tuple[str, Lin]]:
    def pool(s: _Site) -> tuple[str, Lin]:
        args = [s.r.expr(s.call, "k"), *s.kw("stride", "stride", 0), *s.kw("padding", "padding", 0),
                *s.kw("ceil_mode", "ceil_mode", -1)]
        return call_source(cls, args, s.indent, s.lead), s.cin
    return pool


def _global_avgpool(s: _Site) -> tuple[str, Lin]:
    s.r.helpers.add("GlobalAvgPool")
    return "GlobalAvgPool()", s.cin


def _linear(s: _Site) -> tuple[str, Lin]:
    out = s.r.channels(s.call, "out")
    return call_source("nn.Linear", [str(s.cin), str(out)], s.indent, s.lead), out


def _dropout(s: _Site) -> tuple[str, Lin]:
    p = s.call.arg("p")
    return f"nn.Dropout({render(p, s.r.names) if p is not None else ''})", s.cin


def _factorized_reduce(s: _Site) -> tuple[str, Lin]:
    s.r.helpers.add("FactorizedReduce")
    out = s.r.channels(s.call, "out")
    return call_source("FactorizedReduce", [str(s.cin), str(out), *s.act_kw()], s.indent, s.lead), out


def _chunk(s: _Site) -> tuple[str, Lin]:
    s.r.helpers.add("Chunk")
    parts = s.r.expr(s.call, "parts")
    cin = str(s.cin)
    whole = cin if cin.isidentifier() or cin.isdigit() else f"({cin})"
    return (call_source("Chunk", [parts, s.r.expr(s.call, "index")], s.indent, s.lead),
            Lin.term(f"{whole} // {parts}" if not parts.isdigit() or int(parts) != 1 else cin))


OP_MODULES: dict[str, Callable[[_Site], tuple[str, Lin]]] = {
    "conv": _conv,
    "sepconv": _sepconv,
    "dwconv": _dwconv,
    "maxpool": _pool("nn.MaxPool2d"),
    "avgpool": _pool("nn.AvgPool2d"),
    "global_avgpool": _global_avgpool,
    "flatten": lambda s: ("nn.Flatten()", Lin(const=s.concrete_out or 0)),
    "linear": _linear,
    "dropout": _dropout,
    "identity": lambda s: ("nn.Identity()", s.cin),
    "se": _se,
    "chunk": _chunk,
    "shuffle": lambda s: (f"nn.ChannelShuffle({s.r.expr(s.call, 'groups')})", s.cin),
    "factorized_reduce": _factorized_reduce,
}
"""Op name -> the source of its module's constructor (with the activation inside where
``layout.OP_LAYOUT`` says the module takes it) and its output channels."""


def _stride_factors(call: ir.OpCall | None, names: dict[str, str]) -> list[str]:
    e = stride_expr(call)
    if e is None:
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
    forward_params: str  # "x: torch.Tensor", or "s0: torch.Tensor, s1: torch.Tensor"
    forward: list[str]


def _signature(params: tuple[ir.Param, ...], names: dict[str, str], has_down: bool,
               two_inputs: bool = False) -> list[str]:
    """The cell class constructor's parameters."""
    sig = ["prev_channels: int", "in_channels: int"] if two_inputs else ["in_channels: int"]
    for p in params:
        ann = {"int": "int", "float": "float", "act": "type[nn.Module]", "bool": "bool"}[p.type or "int"]
        py = names[p.name]
        if p.default is None:
            sig.append(f"{py}: {ann}")
        else:
            sig.append(f"{py}: {ann} = {render(p.default, {})}")
    if has_down:
        sig.append("downsample: nn.Module | None = None")
    return sig


@dataclass
class _CellBody:
    """A cell class's constructor and forward lines under construction, with the symbolic
    channel count and the stride factors of every node."""

    nodes: Callable[[str], str]  # spec name -> attribute
    init: list[str]
    fwd: list[str]
    channels: dict[str, Lin]
    strides: dict[str, list[str]]

    def merged(self, merge: str, srcs: tuple[str, ...]) -> tuple[str, Lin]:
        py = [self.nodes(s) for s in srcs]
        if len(py) == 1:
            return py[0], self.channels[srcs[0]]
        if merge == "concat":
            total = Lin()
            for s in srcs:
                total = total + self.channels[s]
            return f"torch.cat([{', '.join(py)}], dim=1)", total
        joined = " + ".join(py)
        return (joined if merge == "sum" else f"({joined}) / {len(py)}"), self.channels[srcs[0]]

    def add_nodes(self, cell: ir.CellDef, inst: ir.CellInst, r: _OpRenderer) -> None:
        concrete = {n.name: n for n in inst.nodes}
        for n in cell.nodes:
            src, cin = self.merged(n.merge, n.inputs)
            attr = self.nodes(n.name)
            ctor, out = r.module(n.op, n.act, cin, "        ", concrete[n.name].out_shape.c,
                                 f"self.{attr} = ")
            self.init.append(f"self.{attr} = {ctor}")
            self.fwd.append(f"{attr} = self.{attr}({src})")
            self.channels[n.name] = out
            self.strides[n.name] = self.strides[n.inputs[0]] + _stride_factors(n.op, r.names)

    def add_output(self, out: ir.OutputStmt, forward_arg: str, helpers: set[str],
                   names: dict[str, str], cell_input: str, drop: bool = False) -> str | None:
        """The output merge, the residual (its branch through stochastic depth where ``drop``)
        and the activation after them; returns the residual mode."""
        result, cout = self.merged(out.merge, out.nodes)
        self.init.append(f"self.out_channels = {cout}")
        strides, cin = self.strides[out.nodes[0]], "in_channels"
        if out.residual is not None and out.residual != cell_input:  # from a node
            res = out.residual
            forward_arg, cin = self.nodes(res), str(self.channels[res])
            prefix = self.strides[res]
            # passes.residual.check_residual_paths (in check) rejects any other residual
            assert strides[:len(prefix)] == prefix, f"residual from '{res}' off the stride path"
            strides = strides[len(prefix):]
        stride = " * ".join(strides)
        mode = out.residual_mode if out.residual else None
        act = None
        if act_module(out.act):
            act = f"self.{self.nodes(OUTPUT_ACT)}"  # type: ignore[arg-type]
        if mode == "project":
            helpers.add("ConvBN")
            cond = f"{cin} != self.out_channels"
            if stride:
                cond = f"{stride} != 1 or {cond}"
            stride_kw = f", stride={stride}" if stride else ""
            self.init += [
                f"if {cond}:",
                f"    self.residual = ConvBN({cin}, self.out_channels{stride_kw})",
                "else:",
                "    self.residual = nn.Identity()",
            ]
            branch = f"self.drop_path({result})" if drop else result
            total = f"{branch} + self.residual({forward_arg})"
            self.fwd.append(f"return {act}({total})" if act else f"return {total}")
        elif mode == "if_match":
            cond = f"{cin} == self.out_channels"
            if stride:
                cond = f"{stride} == 1 and {cond}"
            self.init.append(f"self.use_residual = {cond}")
            if result != self.nodes(out.nodes[0]) or len(out.nodes) > 1 or act:
                self.fwd.append(f"out = {result}")
                result = "out"
            branch = f"self.drop_path({result})" if drop else result
            if act:
                self.fwd += ["if self.use_residual:", f"    out = {branch} + {forward_arg}",
                             f"return {act}(out)"]
            else:
                self.fwd += ["if self.use_residual:", f"    return {branch} + {forward_arg}"]
                self.fwd.append(f"return {result}")
        else:
            self.fwd.append(f"return {act}({result})" if act else f"return {result}")
        if act:
            self.init.append(f"{act} = {render(out.act, names)}()")  # type: ignore[arg-type]
        return mode


_DOWN_STRIDE = "down_stride = downsample.stride if downsample is not None else 1"


def _cell_class(cell: ir.CellDef, insts: list[ir.CellInst], class_name: str,
                helpers: set[str]) -> CellClass:
    has_down = any(i.nodes[0].op is not None for i in insts)
    two = cell.two_inputs
    names = cell_param_names(cell)
    if cell.input.channels:
        names[cell.input.channels] = "prev_channels" if two else "in_channels"
    inp = cell.input
    body = _CellBody(cell_attr_names(cell).__getitem__, [], [],
                     {inp.name: Lin.term("prev_channels" if two else "in_channels")},
                     {inp.name: ["down_stride"] if has_down else []})
    if two:  # forward(s0, s1): the outputs of the cell two back and of the previous cell
        body.channels[inp.state] = Lin.term("in_channels")  # type: ignore[index]
        body.strides[inp.state] = []  # type: ignore[index]
    x = body.nodes(inp.name)
    forward_arg = "inputs" if has_down else x
    if has_down:
        body.init.append("self.downsample = downsample if downsample is not None else nn.Identity()")
        body.init.append(_DOWN_STRIDE)
        body.fwd.append(f"{x} = self.downsample(inputs)")
    body.add_nodes(cell, insts[0], _OpRenderer(names, helpers))
    drop = any(i.drop_path for i in insts)
    mode = body.add_output(cell.output, forward_arg, helpers, names, inp.name, drop)
    if has_down and not any("down_stride" in line for line in body.init[2:]):
        body.init.remove(_DOWN_STRIDE)  # no residual takes the stride: no unused local
    signature = _signature(cell.params, names, has_down, two)
    if drop:  # stochastic depth: each instance's probability comes from its Stage
        helpers.add("StochasticDepth")
        signature.append("drop_path: float = 0.0")
        body.init.append("self.drop_path = StochasticDepth(drop_path)")
    _check_residual_rule(cell, insts, mode)
    where = f"{text(cell.loc.file)}:{cell.loc.line}"
    doc = (f"{'Two-input cell' if two else 'Cell'} {cell.name} ({where}): "
           f"{cell.node_count} nodes, {cell.edges} edges.")
    params = f"{forward_arg}: torch.Tensor"
    if two:
        params += f", {body.nodes(inp.state)}: torch.Tensor"  # type: ignore[arg-type]
    return CellClass(class_name, doc, signature, body.init, params, body.fwd)


def _check_residual_rule(cell: ir.CellDef, insts: list[ir.CellInst], mode: str | None) -> None:
    """The generated constructor decides residuals from strides and channels; the compiler
    (``passes.residual.check_residual_instance``, while elaborating) made sure that agrees
    with its shape-based decision for every instance."""
    assert mode is None or all(strides_agree(i) for i in insts), \
        f"cell '{cell.name}': a residual decided otherwise by strides than by shapes"


# --------------------------------------------------------------------------- network


@dataclass
class NetworkClass:
    name: str
    doc: str
    signature: list[str]
    init: list[str]
    input: str
    forward: list[str]


@dataclass
class _NetworkBody:
    """A network class's constructor and forward lines under construction, with the current
    channel count (symbolic) and the name of the current value."""

    graph: ir.CNNGraph
    net: ir.NetworkDef
    r: _OpRenderer
    channels: Lin
    current: str
    init: list[str]
    fwd: list[str]
    # for two-input cells, the channels of the output two back and its value ("prev"); the
    # stem's output counts twice (prev_value None); prev_channels None after one-input cells
    prev_channels: Lin | None = None
    prev_value: str | None = None

    def chain(self, kind: str, layers: tuple[ir.LayerInst, ...]) -> None:
        """The stem or the head: one module, or an ``nn.Sequential`` of several."""
        stmt = self.net.chain(kind)
        if stmt is None:
            return
        mods: list[str] = []
        # one layer: ``self.stem = Conv(...)``; several: one a line in an nn.Sequential
        indent, lead = (("        ", f"self.{kind} = ") if len(stmt.layers) == 1
                        else ("            ", ""))
        for layer, inst in zip(stmt.layers, layers):
            src, self.channels = self.r.module(layer.op, layer.act, self.channels, indent,
                                               inst.out_shape.c, lead)
            mods.append(src)
        if len(mods) == 1:
            self.init.append(f"self.{kind} = {mods[0]}")
        else:
            body = "".join(f"            {m},\n" for m in mods)
            self.init.append(f"self.{kind} = nn.Sequential(\n{body}        )")
        if kind == "head":
            self.fwd.append(f"return self.head({self.current})")
        else:
            self.fwd.append(f"x = self.stem({self.current})")
            self.current = "x"

    def stage(self, stage: ir.StageStmt, attr: str, cell_cls: str, inst: ir.StageInst,
              drops: bool) -> None:
        """One ``Stage(...)`` of cells."""
        names = self.r.names
        cell = self.graph.program.cells[stage.cell.op]
        kw = cell_param_names(cell)
        args = [cell_cls, str(self.channels), render(stage.repeat, names)]
        if cell.two_inputs:
            args.insert(1, str(self.prev_channels))
        args += [f"{kw[a.name]}={render(a.value, names)}" for a in stage.cell.args]  # type: ignore[index]
        first = [f'"{kw[a.name]}": {render(a.value, names)}' for a in stage.first]  # type: ignore[index]
        if stage.downsample is not None:
            d_src, _ = self.r.module(stage.downsample, None, self.channels, "")
            first.append(f'"downsample": {d_src}')
        if first:
            args.append(f"first={{{', '.join(first)}}}")
        if drops:  # the cell class takes drop_path: each cell's probability
            args.append(f"drop_path=[{', '.join(repr(c.drop_path) for c in inst.cells)}]")
        if not cell.two_inputs:
            self.r.helpers.add("Stage")
            lead = f"self.{attr} = "
            self.init.append(lead + call_source("Stage", args, "        ", lead))
            self.fwd.append(f"x = self.{attr}({self.current})")
            self.prev_channels = None
        else:
            self.r.helpers.add("TwoInputStage")
            lead = f"self.{attr} = "
            self.init.append(lead + call_source("TwoInputStage", args, "        ", lead))
            prev = self.prev_value or self.current
            self.fwd.append(f"prev, x = self.{attr}({prev}, {self.current})")
            self.prev_value = "prev"
            self.prev_channels = Lin.term(f"self.{attr}.prev_channels")
        self.current = "x"
        self.channels = Lin.term(f"self.{attr}.out_channels")


def _network_class(graph: ir.CNNGraph, net: ir.NetworkDef, class_name: str,
                   cell_classes: dict[str, str], helpers: set[str]) -> NetworkClass:
    names, sig = network_signature(net, graph.args)
    inp = Namer()(graph.input_name)
    body = _NetworkBody(graph, net, _OpRenderer(names, helpers),
                        Lin.of(net.input.shape[0], names), inp, [], [])
    body.chain("stem", graph.stem)
    dropping = {c.cell for s in graph.stages for c in s.cells if c.drop_path}
    body.prev_channels = body.channels  # without a stem, the input counts twice
    for stage, attr, inst in zip(net.stages, stage_attr_names(graph.stages), graph.stages):
        body.stage(stage, attr, cell_classes[stage.cell.op], inst, stage.cell.op in dropping)
    body.chain("head", graph.head)
    if net.chain("head") is None:
        body.fwd.append(f"return {body.current}")
    cost = graph.cost
    where = f"{text(net.loc.file)}:{net.loc.line}"
    doc = (f"Network {net.name} ({where}): {cost.params:,} parameters, "
           f"{human(cost.macs, kilo=True)} MACs at {'x'.join(map(str, graph.input_shape.as_list()))}.")
    return NetworkClass(class_name, doc, sig, body.init, inp, body.fwd)


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
        params=f"{graph.cost.params:,}",
        macs=human(graph.cost.macs, kilo=True),
        macs_exact=f"{graph.cost.macs:,}",
        helpers=helpers,
        cells=cells,
        network=network,
        example_shape=", ".join(map(str, [1, *shape])),
        out_shape=", ".join(map(str, [1, *graph.out_shape.as_list()])),
        input_desc="x".join(map(str, shape)),
    )


__all__ = ["generate_cnn"]

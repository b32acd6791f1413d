"""Instantiation and shape inference: a resolved program and a network name -> a ``Graph``.

In this language a cell may name its input's channel count (``input x[c]``) and use it in
expressions, so evaluating a cell's arguments and inferring the shapes flowing through it
happen in one traversal: stem, then each cell of each stage, then head. Every value is
type-checked here and every shape rule (merges, residuals, op input requirements) is
checked with the location of the statement that breaks it.
"""

from __future__ import annotations

import math

from .. import ir
from ..errors import ShrinkError
from ..ops import ACTIVATIONS, CONSTANTS, OPS, ShapeError, infer, pool_stride, projection
from ..units import exact
from .residual import chain_stride, check_residual_instance

MAX_REPEAT = 1000  # cells per stage; more is a typo, and would take minutes to elaborate

_TYPE_NAMES = {"int": "an integer", "float": "a number", "act": "an activation", "bool": "true or false"}


def _type_of(v: ir.Value) -> str:
    if isinstance(v, str):
        return "act"
    if isinstance(v, bool):
        return "bool"
    return "int" if isinstance(v, int) else "float"


def evaluate(expr: ir.Expr, env: dict[str, ir.Value]) -> ir.Value:
    if isinstance(expr, ir.Num):
        return expr.value
    if isinstance(expr, ir.Ref):
        if expr.name in env:
            return env[expr.name]
        if expr.name in ACTIVATIONS:
            return expr.name
        if expr.name in CONSTANTS:
            return CONSTANTS[expr.name]
        raise ShrinkError(f"unknown name '{expr.name}'", expr.loc)
    if isinstance(expr, ir.Neg):
        v = evaluate(expr.operand, env)
        if isinstance(v, str):
            raise ShrinkError(f"cannot negate the activation '{v}'", expr.loc)
        if isinstance(v, bool):
            raise ShrinkError(f"cannot negate {str(v).lower()}", expr.loc)
        return -v
    if isinstance(expr, ir.Call):
        raise ShrinkError(f"function call '{expr.func}(...)' outside a search score", expr.loc)
    left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    for side in (left, right):
        if isinstance(side, str):
            raise ShrinkError(f"cannot do arithmetic with the activation '{side}'", expr.loc)
        if isinstance(side, bool):
            raise ShrinkError(f"cannot do arithmetic with {str(side).lower()}", expr.loc)
    op = expr.op
    if op in ("/", "//", "%") and right == 0:
        raise ShrinkError("division by zero", expr.loc)
    try:
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            return left / right
        if op == "//":
            return left // right
        return left % right
    except OverflowError:  # an int too large to mix with a float
        raise ShrinkError("number too large", expr.loc) from None


def _has_truediv(expr: ir.Expr | None) -> bool:
    if isinstance(expr, ir.BinOp):
        return expr.op == "/" or _has_truediv(expr.left) or _has_truediv(expr.right)
    return isinstance(expr, ir.Neg) and _has_truediv(expr.operand)


def _check_type(value: ir.Value, typ: str, what: str, loc: ir.Loc,
                expr: ir.Expr | None = None) -> ir.Value:
    actual = _type_of(value)
    if typ == "float" and actual == "int":
        try:
            return float(value)
        except OverflowError:
            raise ShrinkError(f"{what} is too large", loc) from None
    if typ == "act" and actual == "act" and value not in ACTIVATIONS:
        raise ShrinkError(f"unknown activation '{value}'", loc)
    if actual != typ:
        shown = f"'{value}'" if isinstance(value, str) else (
            str(value).lower() if isinstance(value, bool) else repr(value))
        hint = "use // for integer division" if typ == "int" and _has_truediv(expr) else None
        if typ == "bool":
            hint = "write true or false"
        raise ShrinkError(f"{what} must be {_TYPE_NAMES[typ]}, got {shown}", loc, hint)
    if isinstance(value, float) and not math.isfinite(value):
        raise ShrinkError(f"{what} must be a finite number, got {value}", loc)
    return value


def _op(call: ir.OpCall, act: ir.Expr | None, env: dict[str, ir.Value]) -> ir.OpInst:
    sig = OPS[call.op]
    attrs: dict[str, ir.Value] = {}
    given: dict[str | None, ir.Expr] = {}
    for a in call.args:  # call.arg(name), looked up once per argument
        given.setdefault(a.name, a.value)
    for p in sig.params:
        arg = given.get(p.name)
        if arg is None:
            if not p.optional:
                attrs[p.name] = p.default  # type: ignore[assignment]
            continue
        v = _check_type(evaluate(arg, env), p.type, f"{p.name} of {call.op}", arg.loc, arg)
        if p.minimum is not None and v < p.minimum:
            bound = "positive" if p.minimum == 1 else f"at least {p.minimum}"
            raise ShrinkError(f"{p.name} of {call.op} must be {bound}, got {v}", arg.loc)
        if p.below is not None and v >= p.below:
            raise ShrinkError(f"{p.name} of {call.op} must be below {p.below:g}, got {v}", arg.loc)
        if p.optional and v == p.implied and isinstance(v, bool) == isinstance(p.implied, bool):
            continue  # what leaving it out means: the op is the same as without it
        attrs[p.name] = v
    act_value = None
    if act is not None:
        act_value = _check_type(evaluate(act, env), "act", "the activation", act.loc)
        if act_value == "identity":
            act_value = None
    return ir.OpInst(op=call.op, attrs=attrs, act=act_value)  # type: ignore[arg-type]


MAX_CHANNELS = 1 << 20  # channels (or features) of one tensor
MAX_SIZE = 1 << 16  # height or width of one tensor


def bounded(shape: ir.Shape, loc: ir.Loc | None) -> ir.Shape:
    """``shape``, or a located error when it is beyond any network shrinkc compiles: decided
    here, before a backend allocates weights or a cost overflows a float."""
    if shape.c > MAX_CHANNELS:
        raise ShrinkError(f"{exact(shape.c)} channels is too many: at most {MAX_CHANNELS:,}", loc,
                          "is a width multiplied once too often?")
    for dim in (shape.h, shape.w):
        if dim is not None and dim > MAX_SIZE:
            raise ShrinkError(f"a height or width of {exact(dim)} is too large: at most {MAX_SIZE:,}",
                              loc)
    return shape


def _apply(op: ir.OpInst, x: ir.Shape, loc: ir.Loc) -> ir.Shape:
    try:
        return bounded(infer(op, x), loc)
    except ShapeError as e:
        raise ShrinkError(str(e), loc, e.hint) from None


def merge_shapes(merge: str, names: tuple[str, ...], shapes: list[ir.Shape], loc: ir.Loc) -> ir.Shape:
    first = shapes[0]
    for name, s in zip(names[1:], shapes[1:]):
        if s is first:  # one shape object (``cell`` shares them): it agrees with itself,
            continue  # no need for pydantic's field-by-field ``==``
        if merge == "concat":
            if s.flat != first.flat or s.h != first.h or s.w != first.w:
                raise ShrinkError(
                    f"cannot concat '{names[0]}' ({first}) with '{name}' ({s}): resolutions differ",
                    loc, "concat joins channels; the other dimensions must match")
        elif s != first:
            raise ShrinkError(
                f"cannot {merge} '{names[0]}' ({first}) with '{name}' ({s}): shapes differ",
                loc, "sum and mean need equal shapes; use concat to join channels")
    if merge == "concat":
        if len(shapes) == 1:  # the one input's shape (a copy would equal it)
            return bounded(first, loc)
        return bounded(first.model_copy(update={"c": sum(s.c for s in shapes)}), loc)
    return first


def _instantiated(err: ShrinkError, cell: ir.CellDef, args: dict[str, ir.Value],
                  stage: ir.StageStmt) -> ShrinkError:
    """An error in a cell's body, with a note naming the stage (and arguments) behind it."""
    d, s = err.diagnostic, stage.loc
    if d.note is not None or d.loc is None or (
            d.loc.file == s.file and s.line <= d.loc.line <= s.end_line):
        return err
    def short(v: ir.Value) -> str:
        text = exact(v).replace(",", "") if isinstance(v, int) else str(v)
        return text if len(text) <= 40 else text[:37] + "..."

    shown = ", ".join(f"{k}={short(v)}" for k, v in args.items())
    note = f"in {cell.name}({shown}), instantiated by the stage at {s.file}:{s.line}:{s.col}"
    return ShrinkError(d.message, d.loc, d.hint, note, quote=d.quote)


def _size(stmt: ir.LMStmt, env: dict[str, ir.Value], what: str) -> int:
    v = _check_type(evaluate(stmt.value, env), "int", what, stmt.value.loc)  # type: ignore[arg-type]
    if v < 1:
        raise ShrinkError(f"{what} must be positive, got {v}", stmt.value.loc)  # type: ignore[union-attr]
    return v  # type: ignore[return-value]


def _stochastic_depth(stages: list[ir.StageInst], stmt: ir.StochasticDepthStmt,
                      env: dict[str, ir.Value]) -> list[ir.StageInst]:
    """Each residual cell's drop probability: ``p * i / n`` for the i-th of the network's n
    cells (from 0; torchvision's EfficientNet rule), rounded to 12 places so that generated
    code shows it plainly; cells without a residual add never drop."""
    p = _check_type(evaluate(stmt.value, env), "float", "the stochastic depth", stmt.value.loc)
    if not 0 <= p < 1:  # type: ignore[operator]
        raise ShrinkError(f"the stochastic depth must be in [0, 1), got {p}", stmt.value.loc)
    n = sum(len(s.cells) for s in stages)
    out, i = [], 0
    for stage in stages:
        cells = []
        for c in stage.cells:
            drop = round(p * i / n, 12) if c.residual != "none" else 0.0  # type: ignore[operator]
            cells.append(c.model_copy(update={"drop_path": drop}) if drop else c)
            i += 1
        out.append(stage.model_copy(update={"cells": tuple(cells)}))
    return out


class _Elaborator:
    def __init__(self, program: ir.Program):
        self.cells = program.cells

    def cell(self, cell: ir.CellDef, args: dict[str, ir.Value], x: ir.Shape,
             down: ir.OpInst | None, loc: ir.Loc, down_loc: ir.Loc | None = None,
             prev: ir.Shape | None = None) -> ir.CellInst:
        """One instance of ``cell`` on input ``x`` (and, for a two-input cell, ``prev``: the
        output of the cell two back, its first input)."""
        inp = cell.input
        env = dict(args)
        if inp.channels is not None:
            env[inp.channels] = (x if prev is None else prev).c
        shapes: dict[str, ir.Shape] = {}
        if prev is not None:  # nodes[0], nodes[1]: the cell two back, the previous cell
            shapes[inp.name], shapes[inp.state] = prev, x  # type: ignore[index]
            nodes = [ir.NodeInst(name=inp.name, op=None, in_shape=prev, out_shape=prev,
                                 loc=inp.loc),
                     ir.NodeInst(name=inp.state, op=None, in_shape=x, out_shape=x,  # type: ignore[arg-type]
                                 loc=inp.loc)]
        else:
            n0 = x if down is None else _apply(down, x, down_loc or loc)
            shapes[inp.name] = n0
            nodes = [ir.NodeInst(name=inp.name, op=down, in_shape=x, out_shape=n0, loc=inp.loc)]
        ops: dict[tuple, ir.OpInst] = {}  # _op and _apply of what they depend on (see ir.call_key)
        applied: dict[tuple, ir.Shape] = {}
        # merge_shapes by the merge and the input shape objects (by id: ``shapes`` keeps them
        # alive while this runs): its checks and result depend on nothing else, and a large
        # cell merges the same few shape objects (``applied`` shares them) again and again
        merged: dict[tuple, ir.Shape] = {}
        for n in cell.nodes:
            ins = [shapes[s] for s in n.inputs]
            key = (n.merge, *map(id, ins))
            xin = merged.get(key)  # type: ignore[assignment]
            if xin is None:
                where = n.inputs_loc if n.inputs_loc.line > 1 or n.inputs_loc.col > 1 else n.loc
                xin = merged[key] = merge_shapes(n.merge, n.inputs, ins, where)
            sig = ir.call_key(n.op, n.act)
            if sig is None:
                op = _op(n.op, n.act, env)
                y = _apply(op, xin, n.op.loc)
            else:
                op = ops.get(sig)  # type: ignore[assignment]
                if op is None:
                    op = ops[sig] = _op(n.op, n.act, env)
                shape_sig = (sig, xin.c, xin.h, xin.w)
                y = applied.get(shape_sig)  # type: ignore[assignment]
                if y is None:
                    y = applied[shape_sig] = _apply(op, xin, n.op.loc)
            shapes[n.name] = y
            nodes.append(ir.NodeInst(name=n.name, op=op, inputs=n.inputs, merge=n.merge,
                                     in_shape=xin, out_shape=y, loc=n.loc))
        out = cell.output
        y = merge_shapes(out.merge, out.nodes, [shapes[s] for s in out.nodes], out.loc)
        residual, res_op, res_from = "none", None, None
        src = x  # what the residual adds: the cell input, or a node's output
        if out.residual is not None:
            if out.residual != inp.name:
                res_from, src = out.residual, shapes[out.residual]
            if y == src:
                residual = "identity"
            elif out.residual_mode == "project":
                if src.flat or y.flat:
                    raise ShrinkError(f"cannot project a residual from {src} to {y}", out.loc,
                                      "projecting residuals need image-shaped tensors")
                stride = chain_stride(nodes, out.nodes[0], res_from)
                if stride is None:
                    raise ShrinkError(
                        f"cannot project the residual from '{res_from}' ({src}) to the output ({y})",
                        out.loc, f"'{res_from}' must lie on the path of first inputs to "
                        f"'{out.nodes[0]}' for the projection's stride to be known; or match shapes")
                res_op = projection(src.c, y.c, stride)
                if _apply(res_op, src, out.loc) != y:
                    raise ShrinkError(
                        f"the residual cannot match the output resolution: input {src}, output {y}",
                        out.loc, "a projection is a 1x1 convolution with an integer stride")
                residual = "project"
        act = None
        if out.act is not None:
            act = _check_type(evaluate(out.act, env), "act", "the activation", out.act.loc)
            act = None if act == "identity" else act
        inst = ir.CellInst(cell=cell.name, args=args, nodes=tuple(nodes), output=out.nodes,
                           merge=out.merge, residual=residual, residual_op=res_op,
                           residual_from=res_from, act=act,
                           in_shape=x, prev_shape=prev, out_shape=y, loc=loc)
        check_residual_instance(cell, inst)
        return inst

    def cell_args(self, cell: ir.CellDef, stage: ir.StageStmt, first: bool,
                  env: dict[str, ir.Value]) -> dict[str, ir.Value]:
        given = {a.name: a for a in stage.cell.args}
        if first:
            given.update({a.name: a for a in stage.first})
        args: dict[str, ir.Value] = {}
        for p in cell.params:
            if p.name in given:
                arg = given[p.name]
                v, loc, expr = evaluate(arg.value, env), arg.loc, arg.value
            else:
                v, loc, expr = evaluate(p.default, {}), p.loc, p.default  # type: ignore[arg-type]
            args[p.name] = _check_type(v, p.type or "int", f"argument '{p.name}' of {cell.name}",
                                       loc, expr)
        return args

    def chain(self, chain: ir.Chain | None, x: ir.Shape, env: dict[str, ir.Value]):
        layers = []
        for layer in chain.layers if chain else ():
            op = _op(layer.op, layer.act, env)
            y = _apply(op, x, layer.op.loc)
            layers.append(ir.LayerInst(op=op, in_shape=x, out_shape=y, loc=layer.loc))
            x = y
        return tuple(layers), x

    def language_model(self, net: ir.NetworkDef, env: dict[str, ir.Value], source: str,
                       spec_hash: str, program: ir.Program | None) -> ir.LMGraph:
        """tokens -> embedding -> the recurrent cell over time -> decoder."""
        vocab = _size(net.lm("tokens"), env, "the vocabulary size")  # type: ignore[arg-type]
        embed = _size(net.lm("embed"), env, "the embedding size")  # type: ignore[arg-type]
        rec = net.lm("recurrent")
        hidden = _size(rec, env, "the hidden size")  # type: ignore[arg-type]
        dec = net.lm("decoder")
        tied = dec is None or dec.name == "tied"
        if tied and embed != hidden:
            raise ShrinkError(f"a tied decoder needs embed == hidden, got {embed} and {hidden}",
                              (dec or rec).loc, "make them equal, or write decoder untied")  # type: ignore[union-attr]
        dropout = {}
        drop = net.lm("dropout")
        for a in drop.args if drop else ():
            p = _check_type(evaluate(a.value, env), "float", f"dropout {a.name}", a.loc)
            if not 0 <= p < 1:  # type: ignore[operator]
                raise ShrinkError(f"dropout {a.name} must be in [0, 1), got {p}", a.loc)
            dropout[a.name] = p  # type: ignore[index]
        cell = self.cells[rec.name]  # type: ignore[union-attr, index]
        nodes = []
        for i, n in enumerate(cell.nodes):
            x = ir.Shape(c=embed + hidden if i == 0 else hidden)
            nodes.append(ir.NodeInst(name=n.name, op=ir.OpInst(op="highway", act=n.op.op),
                                     inputs=n.inputs, merge="mean", in_shape=x,
                                     out_shape=ir.Shape(c=hidden), loc=n.loc))
        inp = cell.input
        inst = ir.CellInst(cell=cell.name, nodes=tuple(nodes), output=cell.output.nodes, merge="mean",
                           in_shape=ir.Shape(c=embed), out_shape=ir.Shape(c=hidden), loc=rec.loc)  # type: ignore[union-attr]
        lm = ir.LMInst(vocab=vocab, embed=embed, hidden=hidden, tied=tied, dropout=dropout, cell=inst)
        return ir.LMGraph(network=net.name, source=source, spec_hash=spec_hash, args=env,
                          input_name=f"{inp.name}_tokens", input_shape=ir.Shape(c=vocab),
                          out_shape=ir.Shape(c=vocab), program=program or ir.Program(), lm=lm)

    def network(self, net: ir.NetworkDef, overrides: dict[str, ir.Value] | None = None,
                source: str = "", spec_hash: str = "", program: ir.Program | None = None) -> ir.Graph:
        env: dict[str, ir.Value] = {}
        for p in net.params:
            if overrides and p.name in overrides:
                v = overrides[p.name]
            elif p.default is not None:
                v = evaluate(p.default, env)
            else:
                raise ShrinkError(f"network '{net.name}' needs a value for '{p.name}'", p.loc,
                                  "give the parameter a default")
            env[p.name] = _check_type(v, p.type or "int", f"parameter '{p.name}'", p.loc)
        if net.is_lm:
            return self.language_model(net, env, source, spec_hash, program)
        inp = net.input
        dims = []
        for e in inp.shape:
            v = _check_type(evaluate(e, env), "int", "an input dimension", e.loc)
            if v < 1:
                raise ShrinkError(f"input dimensions must be positive, got {v}", e.loc)
            dims.append(v)
        x = ir.Shape(c=dims[0], h=dims[1], w=dims[2]) if len(dims) == 3 else ir.Shape(c=dims[0])
        bounded(x, inp.loc)
        input_shape = x
        stem, x = self.chain(net.chain("stem"), x, env)
        stages = []
        # the output of the cell two back, for two-input cells: the stem's output counts twice
        # (as in DARTS); None once a one-input cell has run
        prev: ir.Shape | None = x
        for si, stage in enumerate(net.stages, 1):
            cell = self.cells[stage.cell.op]
            if cell.two_inputs and prev is None:
                raise ShrinkError(
                    f"'{cell.name}' takes the outputs of the two cells before it, but this stage "
                    "follows a stage of one-input cells", stage.loc,
                    "put stages of two-input cells right after the stem or after each other")
            repeat = _check_type(evaluate(stage.repeat, env), "int", "a stage's repeat count",
                                 stage.repeat.loc)
            if repeat < 1:
                raise ShrinkError(f"a stage repeats its cell at least once, got {repeat}",
                                  stage.repeat.loc)
            if repeat > MAX_REPEAT:
                raise ShrinkError(f"a stage repeats its cell at most {MAX_REPEAT} times, got {repeat}",
                                  stage.repeat.loc)
            insts = []
            for i in range(repeat):
                args = self.cell_args(cell, stage, i == 0, env)
                down = None
                if i == 0 and stage.downsample is not None:
                    down = _op(stage.downsample, None, env)
                try:
                    inst = self.cell(cell, args, x, down, stage.loc,
                                     stage.downsample.loc if stage.downsample else None,
                                     prev if cell.two_inputs else None)
                except ShrinkError as e:
                    raise _instantiated(e, cell, args, stage) from None
                insts.append(inst)
                prev = x if cell.two_inputs else None
                x = inst.out_shape
            stages.append(ir.StageInst(name=stage.name or f"stage{si}", cells=tuple(insts),
                                       out_shape=x, loc=stage.loc))
        head, x = self.chain(net.chain("head"), x, env)
        if net.stochastic_depth is not None:
            stages = _stochastic_depth(stages, net.stochastic_depth, env)
        return ir.CNNGraph(network=net.name, source=source, spec_hash=spec_hash, args=env,
                           input_name=inp.name, input_shape=input_shape, stem=stem,
                           stages=tuple(stages), head=head, out_shape=x,
                           program=program or ir.Program())




def elaborate(program: ir.Program, network: str, *, source: str = "", spec_hash: str = "",
              overrides: dict[str, ir.Value] | None = None) -> ir.Graph:
    """Instantiate ``network`` of a resolved, DAG-checked ``program`` with concrete shapes."""
    nets = program.networks
    net = nets[network]
    used = {s.cell.op for s in net.stages}
    if net.is_lm:
        used = {net.lm("recurrent").name}  # type: ignore[union-attr]
    kept = tuple(i for i in program.items
                 if (isinstance(i, ir.CellDef) and i.name in used) or i is net)
    sub = program.model_copy(update={"items": kept})
    return _Elaborator(program).network(net, overrides, source, spec_hash, sub)


__all__ = ["elaborate", "evaluate", "merge_shapes", "pool_stride"]

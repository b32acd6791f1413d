"""Name resolution: merge a spec with its includes into one program, and normalise it.

After this pass:
* every name refers to something that exists (ops, presets, cells, networks, nodes,
  parameters, activations), with a located error and a 'did you mean' hint otherwise;
* op presets are expanded: every ``OpCall`` in a cell or network names a primitive op (or, in
  a stage, a cell) and its arguments are bound by name, in signature order;
* network variants are expanded into networks of their own;
* every parameter has a type (declared, or inferred from its default).

Values are not evaluated here; that is ``elaborate``'s job, once arguments are known.
"""

from __future__ import annotations

from .. import ir
from ..errors import ShrinkError, closest, did_you_mean
from ..loader import Sources
from ..ops import ACTIVATIONS, CONSTANTS, DOWNSAMPLE_OPS, OPS, RECURRENT_ACTS, P
from .deploy import check_deploy
from .space import expand as expand_space

MERGES = ("concat", "sum", "mean")
LM_DROPOUTS = ("embedding", "input", "hidden", "output")
RESERVED = set(MERGES) | {"leaves"}


def _where(loc: ir.Loc) -> str:
    return f"{loc.file}:{loc.line}"


def _param_hint(name: str, names: list[str], descr: dict[str, str] | None) -> str | None:
    """'did you mean' for a keyword argument; also matches what a parameter stands for, so
    that ``kernal=3`` or ``kernel_size=3`` suggest ``k``."""
    if closest(name, names) is None and descr:
        aliases: dict[str, str] = {}
        for n, doc in descr.items():
            if doc:
                aliases.setdefault(doc.split()[0], n)
                aliases.setdefault(doc.replace(" ", "_"), n)
        alias = closest(name, aliases)
        if alias is not None:
            n = aliases[alias]
            return f"did you mean '{n}' ({descr[n]})?"
    return did_you_mean(name, names, "parameters")



def _implied(p: P, value: ir.Expr) -> bool:
    """Whether ``value`` written for the optional parameter ``p`` is what leaving it out
    means: a constant (``bias=false``) or a number (``eps=0.00001``) equal to its implied
    value."""
    if not p.optional or p.implied is None:
        return False
    if isinstance(value, ir.Ref) and value.name in CONSTANTS:
        v = CONSTANTS[value.name]
    elif isinstance(value, ir.Num):
        v = value.value
    else:
        return False
    return v == p.implied and isinstance(v, bool) == isinstance(p.implied, bool)

class _Resolver:
    def __init__(self, sources: Sources):
        self.sources = sources
        self.presets: dict[str, ir.OpPreset] = {}
        self.cells: dict[str, ir.CellDef] = {}
        self.networks: dict[str, ir.NetworkDef | ir.VariantDef] = {}
        self.spaces: dict[str, ir.SpaceDef] = {}
        self.searches: dict[str, ir.SearchDef] = {}
        self.seen: dict[str, ir.Loc] = {}
        self.act_params: set[str] = set()  # the act-typed parameters of the definition at hand

    # ------------------------------------------------------------------ namespace

    def declare(self, item) -> None:
        name, loc = item.name, item.loc
        if name in OPS:
            raise ShrinkError(f"'{name}' is a primitive op and cannot be redefined", loc,
                              "choose another name")
        if name in self.seen:
            raise ShrinkError(f"'{name}' is already defined", loc,
                              f"first defined at {_where(self.seen[name])}")
        self.seen[name] = loc
        if isinstance(item, ir.OpPreset):
            self.presets[name] = item
        elif isinstance(item, ir.CellDef):
            self.cells[name] = item
        elif isinstance(item, ir.SpaceDef):
            self.cells[name] = expand_space(item)
            self.spaces[name] = item
        elif isinstance(item, ir.SearchDef):
            self.searches[name] = item
        else:
            self.networks[name] = item

    def search(self, s: ir.SearchDef, nets: dict[str, ir.NetworkDef]) -> ir.SearchDef:
        """Check what a search names; its settings and score are checked by the shrinker."""
        if s.space is None:
            raise ShrinkError(f"search '{s.name}' names no space", s.loc, "write space NAME")
        if s.space not in self.spaces:
            hint = ("it is a cell; a search shrinks a space" if s.space in self.cells
                    else did_you_mean(s.space, self.spaces, "spaces"))
            raise ShrinkError(f"unknown space '{s.space}'", s.locs.get("space", s.loc), hint)
        if s.network is None:
            raise ShrinkError(f"search '{s.name}' names no proxy network", s.loc,
                              "write network NAME")
        if s.network not in self.networks:
            raise ShrinkError(f"unknown network '{s.network}'", s.locs.get("network", s.loc),
                              did_you_mean(s.network, self.networks, "networks"))
        if s.deploy is not None:
            check_deploy(s, nets, self.cells)
        return s

    # ------------------------------------------------------------------ calls

    def bind(self, call_args: tuple[ir.Arg, ...], names: list[str], required: set[str],
             what: str, loc: ir.Loc, descr: dict[str, str] | None = None) -> dict[str, ir.Arg]:
        bound: dict[str, ir.Arg] = {}
        positional = True
        for i, arg in enumerate(call_args):
            if arg.name is None:
                if not positional:
                    raise ShrinkError("positional argument after a keyword argument", arg.loc,
                                      "put positional arguments first")
                if i >= len(names):
                    raise ShrinkError(
                        f"{what} takes at most {len(names)} argument{'s' if len(names) != 1 else ''}"
                        f" ({', '.join(names) or 'none'}), got {len(call_args)}", arg.loc)
                name = names[i]
            else:
                positional = False
                name = arg.name
                if name not in names:
                    raise ShrinkError(f"{what} has no parameter '{name}'", arg.loc,
                                      _param_hint(name, names, descr))
            if name in bound:
                raise ShrinkError(f"argument '{name}' of {what} is given twice", arg.loc)
            bound[name] = ir.Arg(name=name, value=arg.value, loc=arg.loc)
        missing = [n for n in names if n in required and n not in bound]
        if missing:
            n = missing[0]
            extra = f" ({descr[n]})" if descr and descr.get(n) else ""
            raise ShrinkError(f"{what} needs a value for '{n}'{extra}", loc,
                              f"write {what}({', '.join(missing)}=...)" if len(missing) > 1 else
                              f"pass {n} as an argument")
        return {n: bound[n] for n in names if n in bound}

    def expand(self, call: ir.OpCall, act: ir.Expr | None, scope: set[str],
               allow: tuple[str, ...] | None = None) -> tuple[ir.OpCall, ir.Expr | None]:
        """Expand presets, bind arguments by name and check the names in them."""
        args, op, chain = tuple(call.args), call.op, []
        while op in self.presets:
            if op in chain:
                cycle = chain[chain.index(op):] + [op]
                what = (f"op preset '{op}' refers to itself" if len(cycle) == 2 else
                        f"op presets refer to each other: {' -> '.join(cycle)}")
                raise ShrinkError(what, self.presets[op].loc)
            chain.append(op)
            preset = self.presets[op]
            pos = [a for a in preset.call.args if a.name is None] + [a for a in args if a.name is None]
            given = {a.name for a in args if a.name is not None}
            kw = [a for a in preset.call.args if a.name is not None and a.name not in given]
            args = tuple(pos + kw + [a for a in args if a.name is not None])
            act = act if act is not None else preset.act
            op = preset.call.op
        if op not in OPS:
            if op in self.cells:
                raise ShrinkError(f"'{op}' is a cell; cells are used in network stages, not as ops",
                                  call.loc)
            raise ShrinkError(f"unknown op '{op}'", call.loc,
                              did_you_mean(op, list(OPS) + list(self.presets), "ops"))
        if allow is not None and op not in allow:
            raise ShrinkError(f"'{op}' cannot be used here", call.loc,
                              f"use one of: {', '.join(allow)}")
        sig = OPS[op]
        names, required, descr = sig.bind_lists
        bound = self.bind(args, names, required, op, call.loc, descr)
        for arg in bound.values():
            self.check_names(arg.value, scope)
        if act is not None:
            self.check_act(act, scope)
        # an optional argument written as what leaving it out means (bias=false, eps=1e-5) is
        # left out, so that the op hashes, diffs and compiles as if it were not written
        kept = tuple(a for a in bound.values() if not _implied(sig.param(a.name), a.value))  # type: ignore[arg-type]
        return ir.OpCall(op=op, args=kept, loc=call.loc), act

    def expand_node(self, call: ir.OpCall, act: ir.Expr | None, scope: set[str],
                    plans: dict[tuple, tuple]) -> tuple[ir.OpCall, ir.Expr | None]:
        """``expand(call, act, scope)`` for a node of a cell, whose ``scope`` is the cell's:
        ``plans`` keeps, per distinct call that names no preset and whose arguments are names
        or numbers (``ir.call_key``), how its arguments bind, so a cell of thousands of nodes
        checks each distinct call once; the objects made are the same as ``expand``'s."""
        sig = None if call.op in self.presets else ir.call_key(call, act)
        if sig is None:
            return self.expand(call, act, scope)
        plan = plans.get(sig)
        if plan is None:
            new, new_act = self.expand(call, act, scope)
            index = {id(a.value): i for i, a in enumerate(call.args)}
            if len(index) == len(call.args):  # each kept argument is one of the call's
                plans[sig] = (new.op, tuple((index[id(a.value)], a.name) for a in new.args))
            return new, new_act
        op, bound = plan
        args = call.args
        return ir.OpCall(op=op, args=tuple([ir.Arg(name=name, value=args[i].value, loc=args[i].loc)
                                            for i, name in bound]), loc=call.loc), act

    def check_names(self, expr: ir.Expr, scope: set[str]) -> None:
        if isinstance(expr, ir.Ref):
            if expr.name not in scope and expr.name not in ACTIVATIONS and \
                    expr.name not in CONSTANTS:
                raise ShrinkError(f"unknown name '{expr.name}'", expr.loc,
                                  did_you_mean(expr.name, scope | set(ACTIVATIONS)))
        elif isinstance(expr, ir.BinOp):
            self.check_names(expr.left, scope)
            self.check_names(expr.right, scope)
        elif isinstance(expr, ir.Neg):
            self.check_names(expr.operand, scope)
        elif isinstance(expr, ir.Call):
            raise ShrinkError(f"function call '{expr.func}(...)' outside a search score", expr.loc,
                              "functions such as log10() may be used in `score` only")

    def check_act(self, act: ir.Expr, scope: set[str]) -> None:
        if not isinstance(act, ir.Ref):
            raise ShrinkError("an activation is a name", act.loc,
                              f"one of: {', '.join(ACTIVATIONS)}")
        if act.name not in ACTIVATIONS and act.name not in scope:
            acts = set(ACTIVATIONS) | (scope & self.act_params)  # int parameters are not acts
            hint = did_you_mean(act.name, acts, "activations")  # a list when none is close
            raise ShrinkError(f"unknown activation '{act.name}'", act.loc,
                              hint or "valid activations: " + ", ".join(sorted(acts)))

    def params(self, params: tuple[ir.Param, ...], scope: set[str]) -> tuple[ir.Param, ...]:
        out, names = [], set()
        self.act_params = set()
        for p in params:
            if p.name in names:
                raise ShrinkError(f"parameter '{p.name}' is declared twice", p.loc)
            if p.name in ACTIVATIONS:
                raise ShrinkError(f"parameter name '{p.name}' is an activation", p.loc,
                                  "choose another name")
            if p.name in CONSTANTS:
                raise ShrinkError(f"parameter name '{p.name}' is a constant (true or false)",
                                  p.loc, "choose another name")
            names.add(p.name)
            typ = p.type
            if p.default is not None:
                self.check_names(p.default, scope)
                if typ is None:
                    d = p.default
                    if isinstance(d, ir.Ref) and d.name in ACTIVATIONS:
                        typ = "act"
                    elif isinstance(d, ir.Ref) and d.name in CONSTANTS:
                        typ = "bool"
                    elif isinstance(d, ir.Num) and isinstance(d.value, float):
                        typ = "float"
                    else:
                        typ = "int"
            elif typ is None:
                raise ShrinkError(f"parameter '{p.name}' needs a type or a default", p.loc,
                                  f"write {p.name}: int")
            out.append(p.model_copy(update={"type": typ}))
            if typ == "act":
                self.act_params.add(p.name)
        return tuple(out)

    # ------------------------------------------------------------------ cells

    def recurrent_cell(self, cell: ir.CellDef) -> ir.CellDef:
        """A highway recurrent cell: node 0 takes ``x, h``; every other node takes nodes;
        ops are the nodes' activations; the output is the mean of nodes (or of the leaves)."""
        if cell.params:
            raise ShrinkError("a recurrent cell takes no parameters", cell.params[0].loc,
                              "its sizes come from the network (embed, recurrent ... hidden)")
        inputs = [s for s in cell.body if isinstance(s, ir.InputStmt)]
        outputs = [s for s in cell.body if isinstance(s, ir.OutputStmt)]
        nodes = [s for s in cell.body if isinstance(s, ir.NodeStmt)]
        if len(inputs) != 1 or inputs[0].state is None or cell.body[0] is not inputs[0]:
            raise ShrinkError(f"recurrent cell '{cell.name}' starts with 'input x, h'",
                              (inputs[0] if inputs else cell).loc,
                              "x is the step's input x_t, h the previous hidden state")
        if len(outputs) != 1 or cell.body[-1] is not outputs[0]:
            raise ShrinkError(f"recurrent cell '{cell.name}' ends with one 'output mean(...)'",
                              cell.loc)
        inp, out = inputs[0], outputs[0]
        if inp.channels is not None:
            raise ShrinkError("a recurrent cell's input binds no channel count", inp.loc)
        if not nodes:
            raise ShrinkError(f"recurrent cell '{cell.name}' has no nodes", cell.loc)
        known = {inp.name: inp.loc, inp.state: inp.loc}
        for i, n in enumerate(nodes):
            if n.name in known or n.name in RESERVED:
                raise ShrinkError(f"node '{n.name}' is defined twice or reserved", n.loc)
            if n.op.op not in RECURRENT_ACTS or n.op.args or n.act is not None:
                raise ShrinkError(f"a recurrent node is one of {', '.join(RECURRENT_ACTS)}",
                                  n.op.loc, did_you_mean(n.op.op, RECURRENT_ACTS, "activations"))
            if i == 0:
                if set(n.inputs) != {inp.name, inp.state} or len(n.inputs) != 2:
                    raise ShrinkError("node 0 of a recurrent cell mixes the input and the state",
                                      n.inputs_loc if n.inputs else n.loc,
                                      f"write {n.name} = {n.op.op} <- {inp.name}, {inp.state}")
            else:
                if not n.inputs:
                    raise ShrinkError(f"recurrent node '{n.name}' needs its inputs", n.loc,
                                      f"write {n.name} = {n.op.op} <- {nodes[0].name}")
                bad = [s for s in n.inputs if s in (inp.name, inp.state)]
                if bad:
                    raise ShrinkError(f"only node 0 takes '{bad[0]}'", n.inputs_loc,
                                      f"connect it to {nodes[0].name} instead")
                self.sources_ok(n.inputs, {m.name: m.loc for m in nodes[:i]} | known,
                                n.name, n.inputs_loc)
                if n.merge != "concat" or n.explicit_merge:
                    raise ShrinkError("a recurrent node averages its inputs; list them plainly",
                                      n.inputs_loc, f"write {n.name} = {n.op.op} <- a, b")
            known[n.name] = n.loc
        if out.merge != "mean" or out.residual is not None:
            raise ShrinkError("the new hidden state is a mean: write output mean(leaves)", out.loc)
        if out.nodes != ("leaves",):
            self.sources_ok(out.nodes, {n.name: n.loc for n in nodes}, "the output", out.loc)
        return cell

    def cell(self, cell: ir.CellDef) -> ir.CellDef:
        if cell.recurrent:
            return self.recurrent_cell(cell)
        params = self.params(cell.params, set())
        inputs = [s for s in cell.body if isinstance(s, ir.InputStmt)]
        outputs = [s for s in cell.body if isinstance(s, ir.OutputStmt)]
        if not inputs:
            raise ShrinkError(f"cell '{cell.name}' has no input", cell.loc,
                              "its first statement is 'input x'")
        if len(inputs) > 1:
            raise ShrinkError("a cell has exactly one input", inputs[1].loc)
        if cell.body[0] is not inputs[0]:
            raise ShrinkError("'input' must be the first statement of a cell", inputs[0].loc)
        if not outputs:
            raise ShrinkError(f"cell '{cell.name}' has no output", cell.loc,
                              "its last statement is 'output ...'")
        if len(outputs) > 1:
            raise ShrinkError("a cell has exactly one output", outputs[1].loc)
        if cell.body[-1] is not outputs[0]:
            raise ShrinkError("'output' must be the last statement of a cell", outputs[0].loc)
        inp = inputs[0]
        if inp.state is not None and inp.state == inp.name:
            raise ShrinkError(f"the two inputs of cell '{cell.name}' need two names", inp.loc,
                              "write 'input s0, s1': s0 is the output of the cell two back, "
                              "s1 the previous cell's")
        scope = {p.name for p in params}
        if inp.channels is not None:
            if inp.channels in scope:
                raise ShrinkError(f"'{inp.channels}' is already a parameter", inp.loc)
            scope.add(inp.channels)
        known = {inp.name: inp.loc}
        if inp.state is not None:
            known[inp.state] = inp.loc
        for stmt in cell.body:
            if isinstance(stmt, ir.NodeStmt):
                if stmt.name in RESERVED:
                    raise ShrinkError(f"'{stmt.name}' is reserved and cannot name a node", stmt.loc,
                                      "choose another name")
                if stmt.name in known:
                    raise ShrinkError(f"node '{stmt.name}' is defined twice", stmt.loc,
                                      f"first defined at {_where(known[stmt.name])}")
                known[stmt.name] = stmt.loc
        body: list = [inp]
        plans: dict[tuple, tuple] = {}  # expand_node's, for this cell's scope
        for stmt in cell.body:
            if isinstance(stmt, ir.NodeStmt):
                call, act = self.expand_node(stmt.op, stmt.act, scope, plans)
                if not stmt.inputs and body[-1] is inp and inp.state is not None:
                    raise ShrinkError(f"node '{stmt.name}' of a two-input cell does not say which "
                                      "input it takes", stmt.loc,
                                      f"write {stmt.name} = ... <- {inp.name} (the cell two back) "
                                      f"or <- {inp.state} (the previous cell)")
                inputs_ = stmt.inputs or ((body[-1].name),)
                self.sources_ok(inputs_, known, stmt.name, stmt.inputs_loc if stmt.inputs else stmt.loc)
                body.append(stmt.model_copy(update={"op": call, "act": act, "inputs": inputs_}))
        out = outputs[0]
        if out.nodes != ("leaves",):
            self.sources_ok(out.nodes, known, "the output", out.loc)
        if out.residual is not None and out.residual not in known:
            raise ShrinkError(f"the residual adds an unknown node '{out.residual}'", out.loc,
                              did_you_mean(out.residual, known, "nodes")
                              or f"write + {inp.name} (the cell input) or + a node")
        if out.residual is not None and inp.state is not None:
            raise ShrinkError("a two-input cell has no residual add", out.loc,
                              "add the inputs in a node: n = identity <- sum(a, b)")
        if out.residual is not None and out.residual in out.nodes:
            raise ShrinkError(f"the residual adds '{out.residual}', which the output already takes",
                              out.loc, f"a residual adds the cell input ({inp.name}) or another node")
        if out.act is not None:
            self.check_act(out.act, scope)
        body.append(out)
        return cell.model_copy(update={"params": params, "body": tuple(body)})

    def sources_ok(self, names: tuple[str, ...], known: dict[str, ir.Loc], who: str,
                   loc: ir.Loc) -> None:
        distinct = set(names)  # first the common case, as sets (once per node of a large cell)
        if len(distinct) == len(names) and "leaves" not in distinct and known.keys() >= distinct:
            return
        seen = set()  # then the first fault, in order
        for n in names:
            if n == "leaves":
                raise ShrinkError("'leaves' can only be used alone, in an output", loc,
                                  "write output concat(leaves)")
            if n not in known:
                raise ShrinkError(f"unknown node '{n}'", loc, did_you_mean(n, known, "nodes"))
            if n in seen:
                raise ShrinkError(f"{who} takes '{n}' twice", loc)
            seen.add(n)

    # ------------------------------------------------------------------ networks

    def language_model(self, net: ir.NetworkDef, params, scope) -> ir.NetworkDef:
        seen: dict[str, ir.LMStmt] = {}
        for stmt in net.body:
            if not isinstance(stmt, ir.LMStmt):
                raise ShrinkError("a language model has tokens, embed, recurrent, dropout and "
                                  "decoder statements only", stmt.loc)
            if stmt.kind in seen:
                raise ShrinkError(f"'{stmt.kind}' is given twice", stmt.loc)
            seen[stmt.kind] = stmt
            if stmt.value is not None:
                self.check_names(stmt.value, scope)
        for kind in ("tokens", "embed", "recurrent"):
            if kind not in seen:
                raise ShrinkError(f"language model '{net.name}' has no '{kind}'", net.loc,
                                  {"tokens": "write tokens 10000 (the vocabulary size)",
                                   "embed": "write embed 400 (the embedding size)",
                                   "recurrent": "write recurrent CELL hidden 400"}[kind])
        rec = seen["recurrent"]
        cell = self.cells.get(rec.name)  # type: ignore[arg-type]
        if cell is None or not cell.recurrent:
            raise ShrinkError(f"unknown recurrent cell '{rec.name}'", rec.loc,
                              did_you_mean(rec.name, [c for c, d in self.cells.items() if d.recurrent],  # type: ignore[arg-type]
                                           "recurrent cells"))
        if "dropout" in seen:
            for a in seen["dropout"].args:
                if a.name not in LM_DROPOUTS:
                    raise ShrinkError(f"unknown dropout '{a.name}'" if a.name else
                                      "dropouts are named", a.loc,
                                      did_you_mean(a.name or "", LM_DROPOUTS, "dropouts"))
                self.check_names(a.value, scope)
        if "decoder" in seen and seen["decoder"].name not in ("tied", "untied"):
            raise ShrinkError(f"a decoder is tied or untied, not '{seen['decoder'].name}'",
                              seen["decoder"].loc)
        return net.model_copy(update={"params": params})

    def network(self, net: ir.NetworkDef) -> ir.NetworkDef:
        params = self.params(net.params, set())
        scope = {p.name for p in params}
        if net.is_lm:
            return self.language_model(net, params, scope)
        body: list = []
        inputs = [s for s in net.body if isinstance(s, ir.NetInput)]
        if not inputs:
            raise ShrinkError(f"network '{net.name}' has no input", net.loc,
                              "write e.g. input image[3, 224, 224]")
        if len(inputs) > 1:
            raise ShrinkError("a network has exactly one input", inputs[1].loc)
        if net.body[0] is not inputs[0]:
            raise ShrinkError("'input' must be the first statement of a network", inputs[0].loc)
        if len(inputs[0].shape) not in (1, 3):
            raise ShrinkError("a network input is [channels, height, width] or [features]",
                              inputs[0].loc)
        phase = 0  # 0 input, 1 stem, 2 stages, 3 head
        drops = [s for s in net.body if isinstance(s, ir.StochasticDepthStmt)]
        if len(drops) > 1:
            raise ShrinkError("'stochastic_depth' is given twice", drops[1].loc)
        for stmt in net.body:
            if isinstance(stmt, ir.StochasticDepthStmt):
                self.check_names(stmt.value, scope)
                body.append(stmt)
                continue
            if isinstance(stmt, ir.NetInput):
                for e in stmt.shape:
                    self.check_names(e, scope)
                body.append(stmt)
                continue
            if isinstance(stmt, ir.Chain):
                order = 1 if stmt.kind == "stem" else 3
                if phase >= order:
                    raise ShrinkError(
                        f"'{stmt.kind}' {'is given twice' if phase == order else 'must come ' + ('before the stages' if order == 1 else 'last')}",
                        stmt.loc)
                phase = order
                layers = []
                for layer in stmt.layers:
                    call, act = self.expand(layer.op, layer.act, scope)
                    layers.append(layer.model_copy(update={"op": call, "act": act}))
                body.append(stmt.model_copy(update={"layers": tuple(layers)}))
                continue
            if phase > 2:
                raise ShrinkError("stages must come before the head", stmt.loc)
            phase = 2
            body.append(self.stage(stmt, scope))
        return net.model_copy(update={"params": params, "body": tuple(body)})

    def stage(self, stage: ir.StageStmt, scope: set[str]) -> ir.StageStmt:
        name = stage.cell.op
        if name not in self.cells:
            if name in OPS or name in self.presets:
                raise ShrinkError(f"'{name}' is an op; a stage repeats a cell", stage.cell.loc,
                                  "use stem or head for single ops")
            raise ShrinkError(f"unknown cell '{name}'", stage.cell.loc,
                              did_you_mean(name, self.cells, "cells"))
        cell = self.cells[name]
        names = [p.name for p in cell.params]
        required = {p.name for p in cell.params if p.default is None}
        bound = self.bind(stage.cell.args, names, required, name, stage.cell.loc)
        for a in bound.values():
            self.check_names(a.value, scope)
        self.check_names(stage.repeat, scope)
        first = self.bind(stage.first, names, set(), f"first cell of {name}", stage.loc)
        for a in first.values():
            self.check_names(a.value, scope)
        down = None
        if stage.downsample is not None and not cell.recurrent and any(
                isinstance(b, ir.InputStmt) and b.state is not None for b in cell.body):
            raise ShrinkError(f"'{name}' takes two inputs; a stage of it cannot downsample",
                              stage.downsample.loc,
                              "put strides in the cell's ops on its inputs, as DARTS's reduction "
                              "cells do")
        if stage.downsample is not None:
            down, _ = self.expand(stage.downsample, None, scope, allow=DOWNSAMPLE_OPS)
        return stage.model_copy(update={
            "cell": ir.OpCall(op=name, args=tuple(bound.values()), loc=stage.cell.loc),
            "downsample": down, "first": tuple(first.values()),
        })

    def variant(self, var: ir.VariantDef, stack: tuple[str, ...] = ()) -> ir.NetworkDef:
        if var.base not in self.networks:
            raise ShrinkError(f"unknown network '{var.base}'", var.loc,
                              did_you_mean(var.base, self.networks, "networks"))
        if var.base in stack or var.base == var.name:
            raise ShrinkError(f"network '{var.name}' is defined in terms of itself", var.loc)
        base = self.networks[var.base]
        if isinstance(base, ir.VariantDef):
            base = self.variant(base, stack + (var.name,))
        names = [p.name for p in base.params]
        bound = self.bind(var.args, names, set(), var.base, var.loc)
        for a in bound.values():
            self.check_names(a.value, set())
        # a variant keeps its base's parameter types (``classes = 10`` is an int whatever a
        # variant passes), and a value it passes is located at the variant
        params = tuple(
            p.model_copy(update={"default": bound[p.name].value, "loc": bound[p.name].loc})
            if p.name in bound else p
            for p in self.params(base.params, set())
        )
        return base.model_copy(update={"name": var.name, "params": params, "loc": var.loc,
                                       "comments": var.comments})


def resolve(sources: Sources) -> ir.Program:
    """Merge ``sources`` into one program and resolve every name in it."""
    r = _Resolver(sources)
    for prog in sources.programs:
        for item in prog.items:
            if not isinstance(item, ir.Include):
                r.declare(item)
    items: list = []
    for cell in r.cells.values():
        items.append(r.cell(cell))
    nets: dict[str, ir.NetworkDef] = {}
    for net in r.networks.values():
        done = r.network(net if isinstance(net, ir.NetworkDef) else r.variant(net))
        nets[done.name] = done
        items.append(done)
    for search in r.searches.values():
        items.append(r.search(search, nets))
    return ir.Program(version=sources.main.version, items=tuple(items), file=sources.main.file)


def resolve_space(sources: Sources, space: ir.SpaceDef) -> ir.CellDef:
    """``space`` (perhaps with other edges than ``sources`` give it) expanded into a cell and
    resolved among ``sources``' definitions, as :func:`resolve` resolves it, alone."""
    r = _Resolver(sources)
    for prog in sources.programs:
        for item in prog.items:
            if not isinstance(item, ir.Include):
                r.declare(item)
    return r.cell(expand_space(space))


def main_networks(sources: Sources) -> list[str]:
    """Networks defined in the main file itself (not in its includes), in order."""
    return [i.name for i in sources.main.items if isinstance(i, (ir.NetworkDef, ir.VariantDef))]

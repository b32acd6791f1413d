"""The IR of a parse tree: lark's parse tree (with positions) turned, bottom up, into
``compiler.ir`` objects by a lark ``Transformer``, one method per rule or alias.

Each method takes the rule's ``meta`` (its span) and its children, already IR. Errors come
in the order of that walk: the first in bottom-up, left-to-right order (lark's syntax errors
come before any of them, as the whole text parses first).
"""

from __future__ import annotations

import math
from typing import Any

from lark import Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import VisitError

from .. import ir
from ..errors import ShrinkError
from .diagnostics import MAX_EXPR_DEPTH
from .spans import span, token_span


def to_ir(tree: Tree, file: str, comments: dict[Any, Any]) -> Any:
    """The IR of ``tree`` (what its ``start`` rule gives); an error of a method is raised as
    it is, not as lark's ``VisitError``."""
    try:
        return ToIR(file, comments).transform(tree)
    except VisitError as e:
        raise e.orig_exc from None


@v_args(meta=True)
class ToIR(Transformer_NonRecursive):
    """The IR of each rule (or alias), bottom up (without recursion: lark's
    ``Transformer_NonRecursive``). ``comments``: id(meta) -> the comments of that statement,
    ("end", id(meta)) -> those before a block's closing brace (``comments.attach``)."""

    def __init__(self, file: str, comments: dict[Any, Any]):
        super().__init__(visit_tokens=False)
        self.file = file
        self.comments = comments
        self._depth: dict[int, tuple[int, ir.Expr]] = {}  # id(operator node) -> its depth, node

    def _deep(self, node: ir.Expr, *operands: ir.Expr) -> ir.Expr:
        """``node`` (an operator over ``operands``), refused when operators nest more than
        ``MAX_EXPR_DEPTH`` deep: ``1 + 1 + ... + 1`` is a chain as deep as it is long, and the
        IR's JSON (``compile --target ir``) and its readers recurse through it."""
        depth = 1 + max((self._depth[id(o)][0] for o in operands if id(o) in self._depth),
                        default=0)
        if depth > MAX_EXPR_DEPTH:
            raise ShrinkError(f"the expression nests operators more than {MAX_EXPR_DEPTH} deep",
                              node.loc, "simplify it (a long sum is a product, e.g. 400 * 1)")
        self._depth[id(node)] = (depth, node)  # the node kept: its id stays its own
        return node

    def _c(self, meta: Any) -> ir.Comments:
        return self.comments.get(id(meta), ir.NO_COMMENTS)

    # expressions
    def _int(self, tok: Token) -> int:
        try:
            return int(tok.replace("_", ""))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise ShrinkError("integer literal is too long", token_span(self.file, tok)) from None

    def int(self, meta, children):
        (tok,) = children
        return ir.Num(value=self._int(tok), loc=token_span(self.file, tok))

    def float(self, meta, children):
        (tok,) = children
        value = float(tok)
        if not math.isfinite(value) or (value == 0 and any(c in "123456789" for c in
                                                           tok.lower().split("e")[0])):
            raise ShrinkError(f"number {tok} is out of range: a float holds about 1e-308 to "
                              "1.8e308", token_span(self.file, tok),
                              "write a number a float can hold", quote=False)
        return ir.Num(value=value, loc=token_span(self.file, tok))

    def ref(self, meta, children):
        (tok,) = children
        return ir.Ref(name=str(tok), loc=token_span(self.file, tok))

    def _bin(op):  # noqa: N805 - a factory used in the class body
        def method(self, meta, children):
            left, right = children
            return self._deep(ir.BinOp(op=op, left=left, right=right,
                                       loc=span(self.file, meta)), left, right)

        return method

    add, sub, mul = _bin("+"), _bin("-"), _bin("*")
    floordiv, truediv, mod = _bin("//"), _bin("/"), _bin("%")

    def neg(self, meta, children):
        (operand,) = children
        if isinstance(operand, ir.Num):
            return ir.Num(value=-operand.value, loc=span(self.file, meta))
        return self._deep(ir.Neg(operand=operand, loc=span(self.file, meta)), operand)

    # calls
    def kwarg(self, meta, children):
        name, value = children
        return ir.Arg(name=str(name), value=value, loc=span(self.file, meta))

    def posarg(self, meta, children):
        (value,) = children
        return ir.Arg(name=None, value=value, loc=span(self.file, meta))

    def args(self, meta, children):
        return tuple(children)

    def opcall(self, meta, children):
        name, args = children
        return ir.OpCall(op=str(name), args=tuple(args or ()), loc=span(self.file, meta))

    def _act(self, tok: Token | None) -> ir.Expr | None:
        return None if tok is None else ir.Ref(name=str(tok), loc=token_span(self.file, tok))

    # top level
    def version(self, meta, children):
        (tok,) = children
        return ("version", self._int(tok), token_span(self.file, tok), self._c(meta).trailing)

    def include(self, meta, children):
        (tok,) = children
        return ir.Include(path=str(tok)[1:-1], comments=self._c(meta), loc=token_span(self.file, tok))

    def preset(self, meta, children):
        name, call, act = children
        return ir.OpPreset(
            name=str(name), call=call, act=self._act(act), comments=self._c(meta),
            loc=token_span(self.file, name),
        )

    def params(self, meta, children):
        return tuple(p for p in children if p is not None)

    def param(self, meta, children):
        name, typ, default = children
        if typ is not None and str(typ) not in ("int", "float", "act", "bool"):
            raise ShrinkError(
                f"unknown parameter type '{typ}'",
                token_span(self.file, typ),
                "parameter types are int, float, act and bool",
            )
        return ir.Param(
            name=str(name),
            type=None if typ is None else str(typ),
            default=default,
            loc=token_span(self.file, name),
        )

    def names(self, meta, children):
        return tuple(children)

    def merge(self, meta, children):
        (tok,) = children
        return str(tok)

    def merged_sources(self, meta, children):
        merge, names = children
        return merge, tuple(str(n) for n in names), True, span(self.file, meta)

    def plain_sources(self, meta, children):
        (names,) = children
        if isinstance(names, Token):
            names = (names,)
        return "concat", tuple(str(n) for n in names), False, span(self.file, meta)

    def input_stmt(self, meta, children):
        name, channels, state = children
        return ir.InputStmt(
            name=str(name), channels=None if channels is None else str(channels),
            state=None if state is None else str(state),
            comments=self._c(meta), loc=token_span(self.file, name),
        )

    def node_stmt(self, meta, children):
        name, call, act, sources = children
        merge, inputs, explicit, sloc = sources if sources is not None else ("concat", (), False, ir.NOWHERE)
        return ir.NodeStmt(
            name=str(name), op=call, act=self._act(act), inputs=inputs, merge=merge,
            explicit_merge=explicit, comments=self._c(meta), loc=token_span(self.file, name),
            inputs_loc=sloc,
        )

    def residual(self, meta, children):
        name, if_match = children
        return str(name), "if_match" if if_match is not None else "project"

    def if_match(self, meta, children):
        return True

    def output_stmt(self, meta, children):
        sources, residual, act = children
        merge, nodes, explicit, _ = sources
        res, mode = residual if residual is not None else (None, "project")
        return ir.OutputStmt(
            nodes=nodes, merge=merge, explicit_merge=explicit, residual=res, residual_mode=mode,
            act=self._act(act), comments=self._c(meta), loc=span(self.file, meta),
        )

    def recurrent(self, meta, children):
        return True

    def cell(self, meta, children):
        recurrent, name, params, *body = children
        return ir.CellDef(
            name=str(name), recurrent=bool(recurrent), params=params or (), body=tuple(body),
            end_comments=self.comments.get(("end", id(meta)), ()),
            comments=self._c(meta), loc=token_span(self.file, name),
        )

    def net_input(self, meta, children):
        name, *shape = children
        return ir.NetInput(
            name=str(name), shape=tuple(shape), comments=self._c(meta),
            loc=token_span(self.file, name),
        )

    def _lm(self, kind, meta, **fields):
        return ir.LMStmt(kind=kind, comments=self._c(meta), loc=span(self.file, meta), **fields)

    def net_tokens(self, meta, children):
        return self._lm("tokens", meta, value=children[0])

    def net_embed(self, meta, children):
        return self._lm("embed", meta, value=children[0])

    def net_recurrent(self, meta, children):
        name, hidden = children
        return self._lm("recurrent", meta, name=str(name), value=hidden)

    def net_dropout(self, meta, children):
        return self._lm("dropout", meta, args=tuple(children[0] or ()))

    def net_stochastic(self, meta, children):
        return ir.StochasticDepthStmt(value=children[0], comments=self._c(meta),
                                      loc=span(self.file, meta))

    def net_decoder(self, meta, children):
        return self._lm("decoder", meta, name=str(children[0]))

    def layer(self, meta, children):
        call, act = children
        return ir.Layer(op=call, act=self._act(act), loc=span(self.file, meta))

    def chain(self, meta, children):
        return tuple(children)

    def stem(self, meta, children):
        (layers,) = children
        return ir.Chain(kind="stem", layers=layers, comments=self._c(meta), loc=span(self.file, meta))

    def head(self, meta, children):
        (layers,) = children
        return ir.Chain(kind="head", layers=layers, comments=self._c(meta), loc=span(self.file, meta))

    def downsample(self, meta, children):
        (call,) = children
        return call

    def first(self, meta, children):
        (args,) = children
        return tuple(args or ())

    def stage(self, meta, children):
        name, call, repeat, down, first = children
        return ir.StageStmt(
            name=None if name is None else str(name), cell=call, repeat=repeat, downsample=down,
            first=first or (), comments=self._c(meta), loc=span(self.file, meta),
        )

    def network(self, meta, children):
        name, params, *body = children
        return ir.NetworkDef(
            name=str(name), params=params or (), body=tuple(body),
            end_comments=self.comments.get(("end", id(meta)), ()),
            comments=self._c(meta), loc=token_span(self.file, name),
        )

    def variant(self, meta, children):
        name, base, args = children
        return ir.VariantDef(
            name=str(name), base=str(base), args=tuple(args or ()), comments=self._c(meta),
            loc=token_span(self.file, name),
        )

    # search spaces
    def space_nodes(self, meta, children):
        (n,) = children
        return "nodes", n, meta

    def ops_list(self, meta, children):
        return "ops", ("list", tuple(children), None), meta

    def ops_cycle(self, meta, children):
        *calls, seed = children
        return "ops", ("cycle", tuple(calls), seed), meta

    def shuffle(self, meta, children):
        (tok,) = children
        return self._int(tok)

    def space_act(self, meta, children):
        (tok,) = children
        return "act", self._act(tok), meta

    def edge(self, meta, children):
        a, b = children
        return self._int(a), self._int(b)

    def space_edges(self, meta, children):
        return "edges", tuple(e for e in children if e is not None), meta

    def space(self, meta, children):
        recurrent, name, params, *body = children
        fields: dict[str, Any] = {}
        locs: dict[str, ir.Loc] = {}
        comments: dict[str, ir.Comments] = {}
        for stmt in body:
            if isinstance(stmt, ir.InputStmt):
                key, value, loc, c = "input", stmt.name, stmt.loc, stmt.comments
            elif isinstance(stmt, ir.OutputStmt):
                key, value, loc, c = "output", stmt, stmt.loc, None
            else:
                key, value, smeta = stmt
                loc, c = span(self.file, smeta), self._c(smeta)
            if key in fields:
                raise ShrinkError(f"'{key}' is given twice in space '{name}'", loc)
            fields[key], locs[key] = value, loc
            if c is not None and c != ir.NO_COMMENTS:
                comments[key] = c
        where = token_span(self.file, name)
        for key in ("nodes", "ops", "output"):
            if key not in fields:
                raise ShrinkError(f"space '{name}' has no '{key}'", where,
                                  {"nodes": "write e.g. nodes 8", "ops": "write e.g. ops conv(w)",
                                   "output": "write e.g. output concat(leaves) + x"}[key])
        rule, ops, seed = fields["ops"]
        return ir.SpaceDef(
            name=str(name), recurrent=bool(recurrent), params=params or (), input_name=fields.get("input", "x"),
            nodes=fields["nodes"], ops=ops, rule=rule, shuffle=seed, act=fields.get("act"),
            edges=fields.get("edges"), output=fields["output"], stmt_comments=comments,
            end_comments=self.comments.get(("end", id(meta)), ()), comments=self._c(meta),
            loc=where, locs=ir.LocMap(at=locs),
        )

    def search_space(self, meta, children):
        return "space", str(children[0]), meta

    def search_network(self, meta, children):
        return "network", str(children[0]), meta

    def search_deploy(self, meta, children):
        name, shape = children
        if shape is None:
            return "deploy", (str(name), None, None), meta
        loc = token_span(self.file, shape)
        try:
            dims = tuple(int(d) for d in str(shape).split("x"))
        except ValueError:  # more digits than Python converts
            raise ShrinkError("input shape has too long a number", loc) from None
        return "deploy", (str(name), dims, loc), meta

    def search_train(self, meta, children):
        return "train", tuple(children[0] or ()), meta

    def search_shrink(self, meta, children):
        return "shrink", tuple(children[0] or ()), meta

    def search_score(self, meta, children):
        return "score", children[0], meta

    def search(self, meta, children):
        name, *body = children
        fields: dict[str, Any] = {}
        locs: dict[str, ir.Loc] = {}
        comments: dict[str, ir.Comments] = {}
        for key, value, smeta in body:
            loc = span(self.file, smeta)
            if key in fields:
                raise ShrinkError(f"'{key}' is given twice in search '{name}'", loc)
            fields[key], locs[key] = value, loc
            c = self._c(smeta)
            if c != ir.NO_COMMENTS:
                comments[key] = c
        if "deploy" in fields:  # deploy NAME [input CxHxW]
            fields["deploy"], fields["deploy_input"], shape_loc = fields["deploy"]
            if shape_loc is not None:
                locs["deploy_input"] = shape_loc
        return ir.SearchDef(
            name=str(name), **fields, stmt_comments=comments,
            end_comments=self.comments.get(("end", id(meta)), ()), comments=self._c(meta),
            loc=token_span(self.file, name), locs=ir.LocMap(at=locs),
        )

    def call(self, meta, children):
        name, *args = children
        return ir.Call(func=str(name), args=tuple(args), loc=span(self.file, meta))

    def start(self, meta, children):
        (_, version, vloc, comment), *items = children
        return version, vloc, comment, tuple(items)

"""The program level of the IR: what a ``.shrink`` file says.

Definitions (``CellDef``, ``NetworkDef``, ``SpaceDef``, ...) with parameters and unevaluated
expressions. The parser produces it, the printer turns it back into text, and ``resolve``
normalises it (presets expanded, arguments bound by name, variants expanded, includes merged).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .ir_expr import NOWHERE, Expr, IRModel, Loc, LocMap, Num, Ref


class Comments(IRModel):
    """Comments attached to a statement, so that ``shrinkc fmt`` keeps them."""

    leading: tuple[str, ...] = ()
    trailing: str | None = None


NO_COMMENTS = Comments()


class Arg(IRModel):
    name: str | None  # None: positional
    value: Expr
    loc: Loc = NOWHERE


class OpCall(IRModel):
    """``sepconv(w, k=3)``: an op (primitive, preset or cell) applied to arguments."""

    op: str
    args: tuple[Arg, ...] = ()
    loc: Loc = NOWHERE

    def arg(self, name: str) -> Expr | None:
        for a in self.args:
            if a.name == name:
                return a.value
        return None


def _expr_key(e: Expr) -> tuple | None:
    """What an expression's value depends on, for a name or a number (None for anything
    else)."""
    t = type(e)
    if t is Ref:
        return ("ref", e.name)  # type: ignore[union-attr]
    if t is Num:
        v = e.value  # type: ignore[union-attr]
        return ("num", type(v), repr(v) if type(v) is float else v)  # -0.0 is not 0.0
    return None


def call_key(call: OpCall, act: Expr | None) -> tuple | None:
    """What checking or evaluating the call ``call`` with activation ``act`` depends on
    besides its scope, without locations (which only say where an error is): the op, each
    argument's name and value, the activation; None when an argument or the activation is
    an expression other than a name or a number. ``resolve`` and ``elaborate`` work out a
    call once per key: a cell of thousands of nodes has a few distinct calls."""
    parts: list = [call.op]
    for a in call.args:
        v = _expr_key(a.value)
        if v is None:
            return None
        parts.append((a.name, v))
    if act is None:
        parts.append(None)
    else:
        v = _expr_key(act)
        if v is None:
            return None
        parts.append(v)
    return tuple(parts)


class Param(IRModel):
    name: str
    type: Literal["int", "float", "act", "bool"] | None = None
    default: Expr | None = None
    loc: Loc = NOWHERE


Merge = Literal["concat", "sum", "mean"]


class InputStmt(IRModel):
    kind: Literal["input"] = "input"
    name: str
    channels: str | None = None  # ``input x[c]`` binds the input's channel count to ``c``
    # the second name: in a recurrent cell ``input x, h`` names x_t and h_{t-1}; in any other
    # cell ``input s0, s1`` makes a two-input cell (DARTS, NASNet): s0 is the output of the
    # cell two back, s1 the previous cell's
    state: str | None = None
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class NodeStmt(IRModel):
    kind: Literal["node"] = "node"
    name: str
    op: OpCall
    act: Expr | None = None
    inputs: tuple[str, ...] = ()
    merge: Merge = "concat"
    explicit_merge: bool = False  # ``<- concat(a, b)`` rather than ``<- a, b``
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE
    inputs_loc: Loc = NOWHERE


class OutputStmt(IRModel):
    kind: Literal["output"] = "output"
    nodes: tuple[str, ...]
    merge: Merge = "concat"
    explicit_merge: bool = False
    residual: str | None = None  # the name added back: the cell input, or a node
    residual_mode: Literal["project", "if_match"] = "project"
    # ``output a + x relu``: an activation after the merge and the residual add (ResNet);
    # absent from the JSON when there is none
    act: Expr | None = Field(default=None, exclude_if=lambda v: v is None)
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


CellStmt = Annotated[InputStmt | NodeStmt | OutputStmt, Field(discriminator="kind")]


class CellDef(IRModel):
    kind: Literal["cell"] = "cell"
    name: str
    recurrent: bool = False  # a highway recurrent cell (DARTS / ShrinkRNN semantics)
    params: tuple[Param, ...] = ()
    body: tuple[CellStmt, ...] = ()
    end_comments: tuple[str, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE

    @property
    def input(self) -> InputStmt:
        return next(s for s in self.body if isinstance(s, InputStmt))

    @property
    def nodes(self) -> tuple[NodeStmt, ...]:
        return tuple(s for s in self.body if isinstance(s, NodeStmt))

    @property
    def two_inputs(self) -> bool:
        """A cell that takes the outputs of the two cells before it (``input s0, s1``)."""
        return not self.recurrent and self.input.state is not None

    @property
    def node_count(self) -> int:
        """The nodes and the input (the two inputs of a two-input cell)."""
        return len(self.nodes) + (2 if self.two_inputs else 1)

    @property
    def output(self) -> OutputStmt:
        return next(s for s in self.body if isinstance(s, OutputStmt))

    @property
    def edges(self) -> int:
        """Live edges: one per (source, destination) pair of the DAG, output excluded; in a
        recurrent cell, node 0's two inputs (x_t, h_{t-1}) are not edges of the DAG."""
        if self.recurrent:
            return sum(len(n.inputs) for n in self.nodes[1:])
        return sum(len(n.inputs) for n in self.nodes)


class Layer(IRModel):
    op: OpCall
    act: Expr | None = None
    loc: Loc = NOWHERE


class NetInput(IRModel):
    kind: Literal["input"] = "input"
    name: str
    shape: tuple[Expr, ...]
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class Chain(IRModel):
    """``stem ...`` or ``head ...``: layers applied one after another."""

    kind: Literal["stem", "head"]
    layers: tuple[Layer, ...]
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class StageStmt(IRModel):
    kind: Literal["stage"] = "stage"
    name: str | None = None
    cell: OpCall
    repeat: Expr
    downsample: OpCall | None = None
    first: tuple[Arg, ...] = ()  # argument overrides for the first cell of the stage
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class LMStmt(IRModel):
    """A language model's statements: ``tokens``, ``embed``, ``recurrent``, ``dropout``,
    ``decoder``; ``value`` holds the expression, name or dropout arguments."""

    kind: Literal["tokens", "embed", "recurrent", "dropout", "decoder"]
    value: Expr | None = None
    name: str | None = None  # recurrent: the cell; decoder: tied or untied
    args: tuple[Arg, ...] = ()  # dropout(embedding=..., input=..., hidden=..., output=...)
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class StochasticDepthStmt(IRModel):
    """``stochastic_depth 0.2``: in training, each residual cell drops its branch for a whole
    sample with a probability that rises linearly with the cell's index over the network
    (torchvision's rule: ``p * i / cells``, i from 0); identity at inference."""

    kind: Literal["stochastic_depth"] = "stochastic_depth"
    value: Expr
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


NetStmt = Annotated[NetInput | Chain | StageStmt | LMStmt | StochasticDepthStmt,
                    Field(discriminator="kind")]


class NetworkDef(IRModel):
    kind: Literal["network"] = "network"
    name: str
    params: tuple[Param, ...] = ()
    body: tuple[NetStmt, ...] = ()
    end_comments: tuple[str, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE

    @property
    def input(self) -> NetInput:
        return next(s for s in self.body if isinstance(s, NetInput))

    @property
    def is_lm(self) -> bool:
        return any(isinstance(s, LMStmt) for s in self.body)

    def lm(self, kind: str) -> LMStmt | None:
        return next((s for s in self.body if isinstance(s, LMStmt) and s.kind == kind), None)

    def chain(self, kind: str) -> Chain | None:
        return next((s for s in self.body if isinstance(s, Chain) and s.kind == kind), None)

    @property
    def stages(self) -> tuple[StageStmt, ...]:
        return tuple(s for s in self.body if isinstance(s, StageStmt))

    @property
    def stochastic_depth(self) -> StochasticDepthStmt | None:
        return next((s for s in self.body if isinstance(s, StochasticDepthStmt)), None)


class VariantDef(IRModel):
    """``network B = A(act = swish)``: network A with other arguments."""

    kind: Literal["variant"] = "variant"
    name: str
    base: str
    args: tuple[Arg, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class SpaceDef(IRModel):
    """A search space: a cell template with N nodes, op assignment and live edges.

    ``resolve`` expands it into an ordinary ``CellDef`` of the same name (``passes/space.py``),
    so everything that takes a cell takes a space; the shrinker rewrites ``edges``.
    """

    kind: Literal["space"] = "space"
    name: str
    recurrent: bool = False  # a recurrent cell: node 0 (tanh) mixes x_t and h_{t-1}
    params: tuple[Param, ...] = ()
    input_name: str = "x"
    nodes: Expr
    ops: tuple[OpCall, ...]
    rule: Literal["list", "cycle"] = "list"
    shuffle: int | None = None  # seed of the shuffle after cycling
    act: Expr | None = None  # activation of nodes that feed others; leaves are linear
    edges: tuple[tuple[int, int], ...] | None = None  # None: complete (every i < j)
    output: OutputStmt
    stmt_comments: dict[str, Comments] = Field(default_factory=dict)
    end_comments: tuple[str, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE
    locs: LocMap = LocMap()


class SearchDef(IRModel):
    """``search NAME { space S  network P  deploy D input CxHxW  train(...)  shrink(...)
    score EXPR }``.

    ``network`` is the proxy the candidates are trained in; ``deploy`` the network the cell
    is deployed in (a candidate's latency is taken there, with its cell in place:
    ``compiler.deploy``), at ``deploy_input`` or, when that is None, the network's own input.
    Both deploy fields are absent from the JSON when not given.
    """

    kind: Literal["search"] = "search"
    name: str
    space: str | None = None
    network: str | None = None
    deploy: str | None = Field(default=None, exclude_if=lambda v: v is None)
    deploy_input: tuple[int, ...] | None = Field(default=None, exclude_if=lambda v: v is None)
    train: tuple[Arg, ...] = ()
    shrink: tuple[Arg, ...] = ()
    score: Expr | None = None
    stmt_comments: dict[str, Comments] = Field(default_factory=dict)
    end_comments: tuple[str, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE
    locs: LocMap = LocMap()


class OpPreset(IRModel):
    """``op sep3 = sepconv(k=3)``: a named partial application of an op."""

    kind: Literal["preset"] = "preset"
    name: str
    call: OpCall
    act: Expr | None = None
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class Include(IRModel):
    kind: Literal["include"] = "include"
    path: str
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


Item = Annotated[
    Include | OpPreset | CellDef | SpaceDef | NetworkDef | VariantDef | SearchDef,
    Field(discriminator="kind"),
]


class Program(IRModel):
    """One parsed ``.shrink`` file (or, after ``resolve``, a file with its includes merged)."""

    version: int = 1
    items: tuple[Item, ...] = ()
    end_comments: tuple[str, ...] = ()
    file: str = "<string>"
    header_comments: tuple[str, ...] = ()
    # the comment after ``shrink 1``, for fmt; not part of the IR JSON (whose shape is fixed)
    version_comment: str | None = Field(default=None, exclude=True)

    def defs(self, kind: type) -> dict[str, object]:
        return {i.name: i for i in self.items if isinstance(i, kind)}

    @property
    def cells(self) -> dict[str, CellDef]:
        return {i.name: i for i in self.items if isinstance(i, CellDef)}

    @property
    def networks(self) -> dict[str, NetworkDef]:
        return {i.name: i for i in self.items if isinstance(i, NetworkDef)}

"""The typed, immutable IR of shrinkc.

Two levels, both pydantic v2 models with ``frozen=True``:

* The **program** level (``Program``, ``CellDef``, ``NetworkDef``, ...) mirrors what a
  ``.shrink`` file says: definitions with parameters and unevaluated expressions. The parser
  produces it, the printer turns it back into text, and ``resolve`` normalises it (presets
  expanded, arguments bound by name, variants expanded, includes merged).
* The **graph** level (``Graph``, ``CellInst``, ``NodeInst``, ...) is one network instantiated
  with concrete numbers: every cell instance with its nodes, shapes, parameters and MACs.

Every object that came from text carries a ``Loc``. Locations are metadata: they never take
part in equality, so ``parse(print(ir)) == ir`` holds even though formatting moves things.
The invariants of the graph level are checked in one place, ``compiler.verify``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Loc(_Node):
    """A source span: 1-based line and column of its start and end."""

    file: str = "<string>"
    line: int = 1
    col: int = 1
    end_line: int = 1
    end_col: int = 1

    def __eq__(self, other: object) -> bool:  # locations never affect IR equality
        return isinstance(other, Loc)

    def __hash__(self) -> int:
        return 0


NOWHERE = Loc()


class LocMap(_Node):
    """Locations of a block's statements by key; like ``Loc``, never part of equality."""

    at: dict[str, Loc] = Field(default_factory=dict)

    def get(self, key: str, default: Loc | None = None) -> Loc | None:
        return self.at.get(key, default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocMap)

    def __hash__(self) -> int:
        return 0


# --------------------------------------------------------------------------- expressions


class Num(_Node):
    kind: Literal["num"] = "num"
    value: int | float
    loc: Loc = NOWHERE


class Ref(_Node):
    """A name: a parameter, an activation, or a bound input-channel count."""

    kind: Literal["ref"] = "ref"
    name: str
    loc: Loc = NOWHERE


class BinOp(_Node):
    kind: Literal["bin"] = "bin"
    op: Literal["+", "-", "*", "/", "//", "%"]
    left: Expr
    right: Expr
    loc: Loc = NOWHERE


class Neg(_Node):
    kind: Literal["neg"] = "neg"
    operand: Expr
    loc: Loc = NOWHERE


class Call(_Node):
    """``log10(macs)``: a function call, allowed in search scores only."""

    kind: Literal["call"] = "call"
    func: str
    args: tuple[Expr, ...]
    loc: Loc = NOWHERE


Expr = Annotated[Num | Ref | BinOp | Neg | Call, Field(discriminator="kind")]
BinOp.model_rebuild()
Neg.model_rebuild()
Call.model_rebuild()

Value = bool | int | float | str  # str values are activation names


# --------------------------------------------------------------------------- program level


class Comments(_Node):
    """Comments attached to a statement, so that ``shrinkc fmt`` keeps them."""

    leading: tuple[str, ...] = ()
    trailing: str | None = None


NO_COMMENTS = Comments()


class Arg(_Node):
    name: str | None  # None: positional
    value: Expr
    loc: Loc = NOWHERE


class OpCall(_Node):
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


class Param(_Node):
    name: str
    type: Literal["int", "float", "act", "bool"] | None = None
    default: Expr | None = None
    loc: Loc = NOWHERE


Merge = Literal["concat", "sum", "mean"]


class InputStmt(_Node):
    kind: Literal["input"] = "input"
    name: str
    channels: str | None = None  # ``input x[c]`` binds the input's channel count to ``c``
    # the second name: in a recurrent cell ``input x, h`` names x_t and h_{t-1}; in any other
    # cell ``input s0, s1`` makes a two-input cell (DARTS, NASNet): s0 is the output of the
    # cell two back, s1 the previous cell's
    state: str | None = None
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class NodeStmt(_Node):
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


class OutputStmt(_Node):
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


class CellDef(_Node):
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


class Layer(_Node):
    op: OpCall
    act: Expr | None = None
    loc: Loc = NOWHERE


class NetInput(_Node):
    kind: Literal["input"] = "input"
    name: str
    shape: tuple[Expr, ...]
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class Chain(_Node):
    """``stem ...`` or ``head ...``: layers applied one after another."""

    kind: Literal["stem", "head"]
    layers: tuple[Layer, ...]
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class StageStmt(_Node):
    kind: Literal["stage"] = "stage"
    name: str | None = None
    cell: OpCall
    repeat: Expr
    downsample: OpCall | None = None
    first: tuple[Arg, ...] = ()  # argument overrides for the first cell of the stage
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class LMStmt(_Node):
    """A language model's statements: ``tokens``, ``embed``, ``recurrent``, ``dropout``,
    ``decoder``; ``value`` holds the expression, name or dropout arguments."""

    kind: Literal["tokens", "embed", "recurrent", "dropout", "decoder"]
    value: Expr | None = None
    name: str | None = None  # recurrent: the cell; decoder: tied or untied
    args: tuple[Arg, ...] = ()  # dropout(embedding=..., input=..., hidden=..., output=...)
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class StochasticDepthStmt(_Node):
    """``stochastic_depth 0.2``: in training, each residual cell drops its branch for a whole
    sample with a probability that rises linearly with the cell's index over the network
    (torchvision's rule: ``p * i / cells``, i from 0); identity at inference."""

    kind: Literal["stochastic_depth"] = "stochastic_depth"
    value: Expr
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


NetStmt = Annotated[NetInput | Chain | StageStmt | LMStmt | StochasticDepthStmt,
                    Field(discriminator="kind")]


class NetworkDef(_Node):
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


class VariantDef(_Node):
    """``network B = A(act = swish)``: network A with other arguments."""

    kind: Literal["variant"] = "variant"
    name: str
    base: str
    args: tuple[Arg, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class SpaceDef(_Node):
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


class SearchDef(_Node):
    """``search NAME { space S  network P  train(...)  shrink(...)  score EXPR }``."""

    kind: Literal["search"] = "search"
    name: str
    space: str | None = None
    network: str | None = None
    train: tuple[Arg, ...] = ()
    shrink: tuple[Arg, ...] = ()
    score: Expr | None = None
    stmt_comments: dict[str, Comments] = Field(default_factory=dict)
    end_comments: tuple[str, ...] = ()
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE
    locs: LocMap = LocMap()


class OpPreset(_Node):
    """``op sep3 = sepconv(k=3)``: a named partial application of an op."""

    kind: Literal["preset"] = "preset"
    name: str
    call: OpCall
    act: Expr | None = None
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


class Include(_Node):
    kind: Literal["include"] = "include"
    path: str
    comments: Comments = NO_COMMENTS
    loc: Loc = NOWHERE


Item = Annotated[
    Include | OpPreset | CellDef | SpaceDef | NetworkDef | VariantDef | SearchDef,
    Field(discriminator="kind"),
]


class Program(_Node):
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


# --------------------------------------------------------------------------- graph level


class Shape(_Node):
    """A tensor shape without the batch dimension: ``[c, h, w]`` or flat ``[c]``."""

    c: int
    h: int | None = None
    w: int | None = None

    @property
    def flat(self) -> bool:
        return self.h is None

    def __str__(self) -> str:
        return f"{self.c}" if self.flat else f"{self.c}x{self.h}x{self.w}"

    def as_list(self) -> list[int]:
        return [self.c] if self.flat else [self.c, self.h, self.w]  # type: ignore[list-item]


class OpInst(_Node):
    """A primitive with concrete attributes, e.g. ``conv`` with ``out=24, k=3, stride=2``."""

    op: str
    attrs: dict[str, Value] = Field(default_factory=dict)
    act: str | None = None

    def __hash__(self) -> int:
        return hash((self.op, tuple(sorted(self.attrs.items())), self.act))


class Cost(_Node):
    params: int = 0
    macs: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(params=self.params + other.params, macs=self.macs + other.macs)


ZERO = Cost()


class NodeInst(_Node):
    """One node of a cell instance. Shapes come from ``passes.elaborate``; costs from
    ``passes.cost`` (``ZERO`` until that pass has run)."""

    name: str
    op: OpInst | None  # None for node 0 without downsampling
    inputs: tuple[str, ...] = ()
    merge: Merge = "concat"
    in_shape: Shape
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE


class CellInst(_Node):
    """One instance of a cell in a stage, with its arguments evaluated."""

    cell: str
    args: dict[str, Value] = Field(default_factory=dict)
    nodes: tuple[NodeInst, ...] = ()  # nodes[0] is the input (node 0)
    output: tuple[str, ...] = ()
    merge: Merge = "concat"
    residual: Literal["none", "identity", "project"] = "none"
    residual_op: OpInst | None = None
    # the node the residual adds, where it is not the input (node 0); absent from the JSON then
    residual_from: str | None = Field(default=None, exclude_if=lambda v: v is None)
    act: str | None = Field(default=None, exclude_if=lambda v: v is None)  # after the add
    # stochastic depth: the probability that training drops the residual branch of a sample
    drop_path: float = Field(default=0.0, exclude_if=lambda v: v == 0.0)
    in_shape: Shape
    # a two-input cell: the shape of its first input, the output of the cell two back
    # (DARTS's s0; ``in_shape`` is the previous cell's output, s1); nodes[0] and nodes[1] are
    # the two inputs. Absent from the JSON for one-input cells.
    prev_shape: Shape | None = Field(default=None, exclude_if=lambda v: v is None)
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE

    @property
    def n_inputs(self) -> int:
        """The input nodes at the head of ``nodes``: 2 for a two-input cell, else 1."""
        return 1 if self.prev_shape is None else 2

    @property
    def residual_shape(self) -> Shape:
        """The shape of what the residual adds: the cell input, or the node it names."""
        if self.residual_from is None:
            return self.in_shape
        return next(n.out_shape for n in self.nodes if n.name == self.residual_from)


class LayerInst(_Node):
    op: OpInst
    in_shape: Shape
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE


class StageInst(_Node):
    name: str
    cells: tuple[CellInst, ...]
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE


class LMInst(_Node):
    """A language model instantiated: sizes, dropouts and its recurrent cell's nodes.

    In the cell, ``nodes[0]`` is node 0 (it mixes x_t and h_{t-1}); each node's ``op`` is a
    ``highway`` whose ``act`` is the node's activation; ``output`` names the averaged nodes.
    """

    vocab: int
    embed: int
    hidden: int
    tied: bool = True
    dropout: dict[str, float] = Field(default_factory=dict)
    cell: CellInst
    flops: int = 0  # the paper's convention: live edges x hidden^2 per step


class _GraphBase(_Node):
    """What every instantiated network has. The JSON layout of both kinds is one: the fields
    in this order, then ``stem``, ``stages``, ``head``, ``out_shape``, ``cost``, ``program``
    and ``lm`` (null for an image network; the stem, stages and head of a language model are
    empty), so ``compile --target ir`` files keep one shape."""

    network: str
    source: str  # the spec file as given on the command line
    spec_hash: str  # sha256 of the spec text and every file it includes
    args: dict[str, Value] = Field(default_factory=dict)
    input_name: str = "input"
    input_shape: Shape


class CNNGraph(_GraphBase):
    """An image network: stem, stages of cell instances, head."""

    kind: ClassVar[Literal["cnn"]] = "cnn"
    stem: tuple[LayerInst, ...] = ()
    stages: tuple[StageInst, ...] = ()
    head: tuple[LayerInst, ...] = ()
    out_shape: Shape
    cost: Cost = ZERO  # filled in by passes.cost
    program: Program  # resolved definitions: the network and every cell it uses
    lm: None = None  # the shared JSON layout: always null here

    @property
    def cells_used(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for stage in self.stages:
            for c in stage.cells:
                seen.setdefault(c.cell, None)
        return tuple(seen)

    @property
    def edges(self) -> int:
        """Live edges of the distinct cells the network uses."""
        cells = self.program.cells
        return sum(cells[name].edges for name in self.cells_used)


class LMGraph(_GraphBase):
    """A language model: embedding, one recurrent cell over time, decoder (``lm``)."""

    kind: ClassVar[Literal["lm"]] = "lm"
    stem: tuple[()] = ()
    stages: tuple[()] = ()
    head: tuple[()] = ()
    out_shape: Shape
    cost: Cost = ZERO  # filled in by passes.cost
    program: Program
    lm: LMInst

    @property
    def cells_used(self) -> tuple[str, ...]:
        return (self.lm.cell.cell,)

    @property
    def edges(self) -> int:
        """Live edges of the recurrent cell (node 0's two inputs are not edges)."""
        return self.program.cells[self.lm.cell.cell].edges


def _graph_kind(value: object) -> str:
    lm = value.get("lm") if isinstance(value, dict) else getattr(value, "lm", None)
    return "cnn" if lm is None else "lm"


Graph = Annotated[
    Annotated[CNNGraph, Tag("cnn")] | Annotated[LMGraph, Tag("lm")],
    Discriminator(_graph_kind),
]
"""One network instantiated: the input of the backends and the cost model's result. Which
kind it is shows in ``graph.kind`` (``"cnn"`` or ``"lm"``)."""


@lru_cache(maxsize=1)
def graph_adapter() -> TypeAdapter:
    """Validation, JSON and JSON Schema of :data:`Graph` (built on first use)."""
    return TypeAdapter(Graph)

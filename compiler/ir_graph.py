"""The graph level of the IR: one network instantiated with concrete numbers.

Every cell instance with its nodes, shapes, parameters and MACs (``passes.elaborate`` makes
it, ``passes.cost`` costs it, the backends read it). Its invariants are checked in one place,
``compiler.verify``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter

from .ir_expr import NOWHERE, IRModel, Loc, Value
from .ir_program import Merge, Program


class Shape(IRModel):
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


class OpInst(IRModel):
    """A primitive with concrete attributes, e.g. ``conv`` with ``out=24, k=3, stride=2``."""

    op: str
    attrs: dict[str, Value] = Field(default_factory=dict)
    act: str | None = None

    def __hash__(self) -> int:
        return hash((self.op, tuple(sorted(self.attrs.items())), self.act))


class Cost(IRModel):
    params: int = 0
    macs: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(params=self.params + other.params, macs=self.macs + other.macs)


ZERO = Cost()


class NodeInst(IRModel):
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


class CellInst(IRModel):
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


class LayerInst(IRModel):
    op: OpInst
    in_shape: Shape
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE


class StageInst(IRModel):
    name: str
    cells: tuple[CellInst, ...]
    out_shape: Shape
    cost: Cost = ZERO
    loc: Loc = NOWHERE


class LMInst(IRModel):
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


class _GraphBase(IRModel):
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

"""The typed, immutable IR of shrinkc: one name for the three modules that define it.

Two levels, both pydantic v2 models with ``frozen=True``:

* The **program** level (``Program``, ``CellDef``, ``NetworkDef``, ...; :mod:`.ir_program`)
  mirrors what a ``.shrink`` file says: definitions with parameters and unevaluated
  expressions. The parser produces it, the printer turns it back into text, and ``resolve``
  normalises it (presets expanded, arguments bound by name, variants expanded, includes merged).
* The **graph** level (``Graph``, ``CellInst``, ``NodeInst``, ...; :mod:`.ir_graph`) is one
  network instantiated with concrete numbers: every cell instance with its nodes, shapes,
  parameters and MACs.

Both are built from :mod:`.ir_expr`: the base model, source locations and expressions.
Every object that came from text carries a ``Loc``. Locations are metadata: they never take
part in equality, so ``parse(print(ir)) == ir`` holds even though formatting moves things.
The invariants of the graph level are checked in one place, ``compiler.verify``.

Code reads the IR through this module (``from shrinkc.compiler import ir``; ``ir.CellDef``).
"""

from __future__ import annotations

from .ir_expr import NOWHERE, BinOp, Call, Expr, IRModel, Loc, LocMap, Neg, Num, Ref, Value
from .ir_graph import (
    ZERO,
    CellInst,
    CNNGraph,
    Cost,
    Graph,
    LayerInst,
    LMGraph,
    LMInst,
    NodeInst,
    OpInst,
    Shape,
    StageInst,
    graph_adapter,
)
from .ir_program import (
    NO_COMMENTS,
    Arg,
    CellDef,
    CellStmt,
    Chain,
    Comments,
    Include,
    InputStmt,
    Item,
    Layer,
    LMStmt,
    Merge,
    NetInput,
    NetStmt,
    NetworkDef,
    NodeStmt,
    OpCall,
    OpPreset,
    OutputStmt,
    Param,
    Program,
    SearchDef,
    SpaceDef,
    StageStmt,
    StochasticDepthStmt,
    VariantDef,
    call_key,
)

__all__ = [
    # base, locations and expressions (ir_expr)
    "IRModel", "Loc", "NOWHERE", "LocMap", "Num", "Ref", "BinOp", "Neg", "Call", "Expr", "Value",
    # program level (ir_program)
    "Comments", "NO_COMMENTS", "Arg", "OpCall", "call_key", "Param", "Merge", "InputStmt",
    "NodeStmt", "OutputStmt", "CellStmt", "CellDef", "Layer", "NetInput", "Chain", "StageStmt",
    "LMStmt", "StochasticDepthStmt", "NetStmt", "NetworkDef", "VariantDef", "SpaceDef",
    "SearchDef", "OpPreset", "Include", "Item", "Program",
    # graph level (ir_graph)
    "Shape", "OpInst", "Cost", "ZERO", "NodeInst", "CellInst", "LayerInst", "StageInst",
    "LMInst", "CNNGraph", "LMGraph", "Graph", "graph_adapter",
]

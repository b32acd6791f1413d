"""The IR's base model, source locations and expressions, shared by both levels of the IR
(:mod:`.ir_program` and :mod:`.ir_graph`; :mod:`.ir` gathers them).

Locations are metadata: they never take part in equality, so ``parse(print(ir)) == ir``
holds even though formatting moves things.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class IRModel(BaseModel):
    """The base of every IR model: immutable, no unknown fields, built on first use."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Loc(IRModel):
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


class LocMap(IRModel):
    """Locations of a block's statements by key; like ``Loc``, never part of equality."""

    at: dict[str, Loc] = Field(default_factory=dict)

    def get(self, key: str, default: Loc | None = None) -> Loc | None:
        return self.at.get(key, default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocMap)

    def __hash__(self) -> int:
        return 0


# --------------------------------------------------------------------------- expressions


class Num(IRModel):
    kind: Literal["num"] = "num"
    value: int | float
    loc: Loc = NOWHERE


class Ref(IRModel):
    """A name: a parameter, an activation, or a bound input-channel count."""

    kind: Literal["ref"] = "ref"
    name: str
    loc: Loc = NOWHERE


class BinOp(IRModel):
    kind: Literal["bin"] = "bin"
    op: Literal["+", "-", "*", "/", "//", "%"]
    left: Expr
    right: Expr
    loc: Loc = NOWHERE


class Neg(IRModel):
    kind: Literal["neg"] = "neg"
    operand: Expr
    loc: Loc = NOWHERE


class Call(IRModel):
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

"""A search's deployment network (``deploy NAME [input CxHxW]``), checked by ``resolve``.

A search block may name the network its cell is deployed in, where a candidate's latency is
taken (with the candidate's cell in place: :mod:`shrinkc.compiler.deploy`). The check here
needs no numbers: the network exists, some stage of it (or, for a language model, its
recurrent cell) is the search's space, and a given input shape has the network input's rank
and sizes a network can have. Whether the network's layers fit that size is elaboration's
question, asked when the graph is built.
"""

from __future__ import annotations

from .. import ir
from ..errors import ShrinkError, did_you_mean
from .elaborate import MAX_CHANNELS, MAX_SIZE


def space_cells(net: ir.NetworkDef) -> list[str]:
    """The cells ``net`` instantiates, in order, each once."""
    if net.is_lm:
        rec = net.lm("recurrent")
        return [rec.name] if rec is not None and rec.name else []
    return list(dict.fromkeys(s.cell.op for s in net.stages))


def check_deploy(s: ir.SearchDef, nets: dict[str, ir.NetworkDef],
                 cells: dict[str, ir.CellDef]) -> None:
    """Located errors for a search's ``deploy`` line; ``nets`` are the resolved networks
    (variants expanded), ``cells`` every cell and space by name."""
    where = s.locs.get("deploy", s.loc)
    name = s.deploy
    assert name is not None
    if name not in nets:
        users = [n for n, net in nets.items() if s.space in space_cells(net)]
        some = f" ({', '.join(users[:4])})" if users else ""
        if name in cells:
            hint = (f"'{name}' is a {'space' if name == s.space else 'cell'}; deploy names a "
                    f"network whose stages use space '{s.space}'{some}")
        else:
            hint = (did_you_mean(name, nets, "networks")
                    or f"deploy names a network whose stages use space '{s.space}'{some}")
        raise ShrinkError(f"unknown network '{name}'", where, hint)
    net = nets[name]
    used = space_cells(net)
    if s.space not in used:
        shown = ", ".join(used) if used else "no cell"
        raise ShrinkError(
            f"network '{name}' does not use space '{s.space}', so it cannot deploy the "
            "search's cell", where,
            f"{name} uses {shown}; the deployment network puts the space in its stages "
            f"(stage {s.space}(...) x N), where each candidate's cell takes its place",
        )
    dims = s.deploy_input
    if dims is None:
        return
    at = s.locs.get("deploy_input", where)
    shown = "x".join(map(str, dims))
    if net.is_lm:
        raise ShrinkError(f"input {shown}: {name} is a language model, whose input is tokens",
                          at, f"leave the input out: deploy {name}")
    rank = len(net.input.shape)
    if len(dims) != rank:
        want = "CxHxW, such as 3x224x224" if rank == 3 else "C"
        raise ShrinkError(f"input {shown} has {len(dims)} dimension{'s' if len(dims) != 1 else ''}"
                          f", but the input '{net.input.name}' of {name} has {rank}", at,
                          f"write it as {want}")
    if 0 in dims:
        raise ShrinkError(f"input {shown} has a zero dimension", at,
                          "every dimension is at least 1")
    limits = (MAX_CHANNELS,) + (MAX_SIZE,) * (rank - 1)
    for d, limit in zip(dims, limits):
        if d > limit:
            raise ShrinkError(f"input {shown}: {d:,} is too large (at most {limit:,})", at)


__all__ = ["check_deploy", "space_cells"]

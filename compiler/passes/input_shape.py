"""Overriding a network's input shape (``--input 3x160x160``): program -> program.

The override replaces the expressions of the network's ``input`` statement with numbers, each
keeping the location of the expression it replaces, before ``elaborate`` infers the shapes. So
everything downstream (shape inference and its located errors, the cost model, every backend)
sees one consistent network, as if the spec had said that size: a size the network cannot take
(a pooling window larger than what reaches it, residual shapes that stop matching) is the same
located error as in a spec that says it.
"""

from __future__ import annotations

from .. import ir
from ..errors import ShrinkError


def shape_text(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims))


def override_input(program: ir.Program, network: str, dims: tuple[int, ...],
                   origin: str = "--input") -> ir.Program:
    """``program`` with ``network``'s input shape set to ``dims`` (``C`` or ``C, H, W``);
    ``origin`` names where the override came from, for errors."""
    net = program.networks[network]
    shown = f"{origin} {shape_text(dims)}"
    if net.is_lm:
        raise ShrinkError(f"{shown}: {net.name} is a language model, whose input is tokens",
                          net.loc, f"{origin} sets the input of image networks (CxHxW)")
    inp = net.input
    if len(dims) != len(inp.shape):
        want = "CxHxW" if len(inp.shape) == 3 else "C"
        raise ShrinkError(f"{shown} has {len(dims)} dimension(s), but the input '{inp.name}' of "
                          f"{net.name} has {len(inp.shape)}", inp.loc,
                          f"give {origin} as {want}")
    shape = tuple(ir.Num(value=d, loc=e.loc) for d, e in zip(dims, inp.shape))
    new_inp = inp.model_copy(update={"shape": shape})
    body = tuple(new_inp if s is inp else s for s in net.body)
    new_net = net.model_copy(update={"body": body})
    items = tuple(new_net if i is net else i for i in program.items)
    return program.model_copy(update={"items": items})


__all__ = ["override_input", "shape_text"]

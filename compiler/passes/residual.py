"""Residual legality: which residual adds every backend can build.

A residual is decided twice over. The compiler decides from shapes, per instance
(``passes.elaborate``: identity where the residual's source and the output have one shape,
else a projection or, with ``if shapes match``, nothing). The generated PyTorch serves every
instance of a cell with one class, so it decides from the cell's strides and channels (an
identity where no stride lies between the two and the channels agree). The two rules here
make those decisions one, so that a spec ``check`` accepts compiles to every target:

* :func:`check_residual_paths` (``pipeline.check``, on the cell's definition): a residual
  that adds a node must find that node's strides at the start of the path of first inputs to
  the output, so that the stride between them can be written down;
* :func:`check_residual_instance` (``passes.elaborate``, on each instance): between the
  residual's source and the output, the resolution changes exactly where a stride is.
"""

from __future__ import annotations

from .. import ir
from ..errors import ShrinkError
from ..ops import op_stride, stride_expr


def chain_stride(nodes: list[ir.NodeInst] | tuple[ir.NodeInst, ...], last: str,
                 first: str | None = None) -> int | None:
    """The product of the strides on the path of first inputs from node 0 (or from the node
    ``first``, exclusive) to ``last``: the stride a projecting residual takes, as the generated
    PyTorch computes it (7x7 to 4x4 is a stride of 2, which ``7 // 4`` would miss). None when
    ``first`` is not on that path."""
    by_name = {n.name: n for n in nodes}
    stride, name = 1, last
    while True:
        if name == first:
            return stride
        node = by_name[name]
        if node.op is not None:
            stride *= op_stride(node.op)
        if not node.inputs:
            return stride if first is None else None
        name = node.inputs[0]


def _strides_to(name: str, nodes: dict[str, ir.NodeStmt]) -> list[ir.Expr]:
    """The strides (as written, a plain 1 left out) on the path of first inputs from the
    cell's input to the node ``name``, in order."""
    out: list[ir.Expr] = []
    while name in nodes:
        node = nodes[name]
        e = stride_expr(node.op)
        if e is not None:
            out.append(e)
        name = node.inputs[0] if node.inputs else ""
    return out[::-1]


def residual_path_error(cell: ir.CellDef) -> ShrinkError | None:
    """The error of a cell whose residual adds a node whose strides are not where the path of
    first inputs to the output's first node has them (None when there is none)."""
    out = cell.output
    res = out.residual
    if res is None or res == cell.input.name or cell.recurrent or cell.two_inputs:
        return None
    nodes = {n.name: n for n in cell.nodes}
    prefix, path = _strides_to(res, nodes), _strides_to(out.nodes[0], nodes)
    if path[:len(prefix)] == prefix:  # (expressions compare without their locations)
        return None
    return ShrinkError(
        f"the residual adds '{res}', which does not lie on the path of first inputs to "
        f"'{out.nodes[0]}': the stride between them cannot be known", out.loc,
        "add a node on that path, or the cell input")


def check_residual_paths(program: ir.Program) -> ir.Program:
    """:func:`residual_path_error` for every cell of a resolved, DAG-checked program."""
    for cell in program.cells.values():
        err = residual_path_error(cell)
        if err is not None:
            raise err
    return program


def _stride_between(inst: ir.CellInst) -> int:
    """The stride the generated PyTorch finds between the residual's source and the output:
    that of the path of first inputs from the source (from node 0 where the source is not on
    it) to the output's first node."""
    stride = chain_stride(inst.nodes, inst.output[0], inst.residual_from)
    if stride is None:
        stride = chain_stride(inst.nodes, inst.output[0])
    return stride  # type: ignore[return-value]


def strides_agree(inst: ir.CellInst) -> bool:
    """Whether the residual of ``inst`` (a cell instance with a residual add) is one the
    decision by strides and channels takes as the shapes do: an identity exactly where no
    stride lies between its source and the output and the channels agree."""
    src = inst.residual_shape
    by_strides = _stride_between(inst) == 1 and src.c == inst.out_shape.c
    return by_strides == (src == inst.out_shape)


def check_residual_instance(cell: ir.CellDef, inst: ir.CellInst) -> None:
    """An error unless the residual of ``inst``, an instance of ``cell``, passes
    :func:`strides_agree`."""
    if cell.output.residual is None or strides_agree(inst):
        return
    src, y = inst.residual_shape, inst.out_shape
    what = f"'{inst.residual_from}'" if inst.residual_from else "the cell input"
    if src == y:
        raise ShrinkError(
            f"the residual from {what} keeps its shape ({y}) across a stride of "
            f"{_stride_between(inst)}: "
            f"cell '{cell.name}' may change resolution only by its strides", cell.output.loc,
            "give the network a larger input, or take the stride out of this cell")
    raise ShrinkError(
        f"the residual from {what} ({src}) and the output ({y}) differ in resolution, but no "
        f"stride lies between them: cell '{cell.name}' may change resolution only by its "
        "strides", cell.output.loc,
        "use strides (not unpadded windows) to change resolution in a residual cell")


__all__ = ["chain_stride", "check_residual_instance", "check_residual_paths",
           "residual_path_error", "strides_agree"]

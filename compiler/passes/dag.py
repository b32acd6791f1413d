"""DAG checks on cells: acyclic, and every node on a path from the input to the output.

Nodes may be written in any order; this pass puts them in topological order (stable: the
written order where it already is one), expands ``leaves`` in outputs to the nodes that feed
no other node, and prunes nodes that are not on an input -> output path, with a warning, as
NAS-Bench-101 does. A cell whose output does not depend on its input is an error.
"""

from __future__ import annotations

from .. import ir
from ..errors import Diagnostic, ShrinkError, warning


def _toposort(cell: ir.CellDef) -> list[ir.NodeStmt]:
    stmts = cell.nodes  # (a property that walks the body: once)
    nodes = {n.name: n for n in stmts}
    order: list[ir.NodeStmt] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for n in stmts:
        if state.get(n.name) != 2:  # a node written after its inputs is placed already
            _visit(n.name, [], cell, nodes, state, order)
    return order


def _visit(name: str, path: list[str], cell: ir.CellDef, nodes: dict[str, ir.NodeStmt],
           state: dict[str, int], order: list[ir.NodeStmt]) -> None:
    """``_toposort``'s depth-first walk (a module-level function, as a nested one that calls
    itself would be a reference cycle holding the cell until the garbage collector runs)."""
    if name not in nodes or state.get(name) == 2:
        return
    if state.get(name) == 1:
        cycle = path[path.index(name):] + [name]
        raise ShrinkError(f"cycle in cell '{cell.name}': {' -> '.join(cycle)}",
                          nodes[name].loc, "a cell is a DAG: an edge may not lead back")
    state[name] = 1
    for src in nodes[name].inputs:
        if state.get(src) != 2:  # (the call would return at once: most inputs come first)
            _visit(src, path + [name], cell, nodes, state, order)
    state[name] = 2
    order.append(nodes[name])


def check_cell(cell: ir.CellDef, diags: list[Diagnostic]) -> ir.CellDef:
    order = _toposort(cell)
    inp, out = cell.input, cell.output
    out_nodes = out.nodes
    if out_nodes == ("leaves",):
        consumed = {src for n in order for src in n.inputs}  # the nodes that feed a node
        out_nodes = tuple(n.name for n in order if n.name not in consumed)
        if not out_nodes:
            raise ShrinkError(f"cell '{cell.name}' has no nodes for 'leaves'", out.loc)
    # forward: reachable from the input (and, in a recurrent cell, the state)
    reach = {inp.name} | ({inp.state} if inp.state else set())
    for n in order:
        if not reach.isdisjoint(n.inputs):
            reach.add(n.name)
    # backward: reaching the output
    live = set(out_nodes) | ({out.residual} if out.residual else set())
    for n in reversed(order):
        if n.name in live:
            live.update(n.inputs)
    if not any(n in reach for n in out_nodes):
        raise ShrinkError(f"the output of cell '{cell.name}' does not depend on its input '{inp.name}'",
                          out.loc, "connect the output to nodes fed by the input")
    keep = []
    for n in order:
        if n.name in reach and n.name in live:
            if reach.issuperset(n.inputs):  # (most nodes: no input pruned)
                keep.append(n)
            else:
                inputs = tuple(s for s in n.inputs if s in reach)
                keep.append(n.model_copy(update={"inputs": inputs}))
        else:
            why = "is not reachable from the input" if n.name not in reach else "does not reach the output"
            diags.append(warning(f"node '{n.name}' {why}; it is pruned", n.loc,
                                 "connect it or delete it"))
    out_nodes = tuple(n for n in out_nodes if n in reach)
    if out.residual is not None and out.residual not in reach:
        raise ShrinkError(f"the residual adds '{out.residual}', which does not depend on the input "
                          f"'{inp.name}'", out.loc, "add the input or a node fed by it")
    new_out = out.model_copy(update={"nodes": out_nodes})
    return cell.model_copy(update={"body": (inp, *keep, new_out)})


def check_dags(program: ir.Program, diags: list[Diagnostic]) -> ir.Program:
    """Check and prune every cell of a resolved program; warnings are appended to ``diags``."""
    items = tuple(check_cell(i, diags) if isinstance(i, ir.CellDef) else i for i in program.items)
    return program.model_copy(update={"items": items})

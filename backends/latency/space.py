"""Every piece a search space can put into a network: the table a search needs, built once
per device and space before it starts (``shrinkc latency SPEC --space``).

A candidate of an AutoShrink space is its cell with some edges removed. The pieces it
produces differ from the complete cell's only in their channel counts (a node concatenates
a subset of its predecessors), in whether a node has the space's activation (a node that
feeds no other is a leaf, linear), in which nodes the output concatenates (any non-empty
set of leaves) and in the residual (an add, or a projection where the shapes differ); and
every cell after it sees the channel counts the one before it can output. So the
enumeration carries, cell after cell, the set of shapes each node can have, over every subset
of each node's predecessors: every piece of every candidate is in it (and some pieces no
valid candidate has, which only cost measuring time). Spatial sizes do not change with the
edges. :data:`MAX_PIECES` bounds it: a space whose ops' widths vary with their inputs could
otherwise produce a great many.
"""

from __future__ import annotations

from collections.abc import Callable

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ops import ShapeError, infer, projection

from .pieces import Piece, act_piece, cell_pieces, merge_piece, op_piece

MAX_PIECES = 50_000
Add = Callable[[Piece | None], None]


def _subsets(options: list[set[ir.Shape]], limit: int) -> set[tuple[ir.Shape, ...]]:
    """Every non-empty sub-sequence of the inputs, each input taking any of its shapes."""
    lists: set[tuple[ir.Shape, ...]] = {()}
    for opts in options:
        lists |= {lst + (s,) for lst in lists for s in opts}
        if len(lists) > limit:
            raise ShrinkError(f"the space's cells have more than {limit:,} distinct input "
                              "combinations: too many pieces to measure", None,
                              "a space whose ops' output widths do not depend on their "
                              "inputs (conv, sepconv with a width) has few")
    lists.discard(())
    return lists


def _merged(kind: str, shapes: tuple[ir.Shape, ...]) -> ir.Shape | None:
    if kind == "concat":
        first = shapes[0]
        if any((s.h, s.w) != (first.h, first.w) for s in shapes):
            return None
        return first.model_copy(update={"c": sum(s.c for s in shapes)})
    return shapes[0] if all(s == shapes[0] for s in shapes) else None


def _apply(op: ir.OpInst, x: ir.Shape) -> ir.Shape | None:
    try:
        return infer(op, x)
    except ShapeError:
        return None


def _space_cell(inst: ir.CellInst, inputs: set[ir.Shape], space: ir.SpaceDef, add: Add,
                limit: int) -> set[ir.Shape]:
    """Add the pieces of every candidate of ``inst``'s cell on any of ``inputs``; return the
    shapes its output can have."""
    n0 = inst.nodes[0]
    options: dict[str, set[ir.Shape]] = {n0.name: set()}
    for x in inputs:
        y = x if n0.op is None else _apply(n0.op, x)
        if y is not None:
            if n0.op is not None:
                add(op_piece(n0.op, x, y))
            options[n0.name].add(y)
    for n in inst.nodes[1:]:
        outs: set[ir.Shape] = set()
        for lst in _subsets([options[s] for s in n.inputs], limit):
            xin = _merged(n.merge, lst)
            if xin is None:
                continue
            add(merge_piece(n.merge, lst))
            for act in {n.op.act, None}:  # type: ignore[union-attr]
                op = n.op.model_copy(update={"act": act})  # type: ignore[union-attr]
                y = _apply(op, xin)
                if y is not None:
                    add(op_piece(op, xin, y))
                    outs.add(y)
        options[n.name] = outs
    out = space.output
    names = ([n.name for n in inst.nodes[1:]] if out.nodes == ("leaves",) else list(out.nodes))
    if out.nodes == ("leaves",):
        lists = _subsets([options[s] for s in names], limit)
    else:  # the named nodes, each in any of its shapes
        lists = {lst for lst in _subsets([options[s] for s in names], limit)
                 if len(lst) == len(names)}
    result: set[ir.Shape] = set()
    for lst in lists:
        y = _merged(inst.merge, lst)
        if y is None:
            continue
        add(merge_piece(inst.merge, lst))
        if out.residual is not None:
            sources = inputs if out.residual == space.input_name else options.get(out.residual, set())
            for src in sources:
                if src == y:
                    add(Piece("add", (y, y), y))
                elif out.residual_mode == "project" and not (src.flat or y.flat):
                    stride = (int(inst.residual_op.attrs["stride"]) if inst.residual_op
                              else max(1, src.h // y.h))  # type: ignore[operator]
                    proj = projection(src.c, y.c, stride)
                    if _apply(proj, src) == y:
                        add(op_piece(proj, src, y))
                        add(Piece("add", (y, y), y))
        add(act_piece(inst.act, y))
        result.add(y)
    return result


def space_pieces(graph: ir.Graph, space: ir.SpaceDef, limit: int = MAX_PIECES
                 ) -> dict[str, Piece]:
    """Every piece (by key) of ``graph``'s network with ``space``'s cell (its stages' cells
    named as the space) replaced by any candidate of the space. ``graph`` is the network
    built with the space's complete cell (every edge), where its ops and spatial sizes are
    all there."""
    if graph.kind != "cnn" or space.recurrent:
        raise ShrinkError(f"{graph.network}: latency tables are for image networks", None,
                          "a recurrent space's language model is measured with shrinkc bench")
    found: dict[str, Piece] = {}

    def add(piece: Piece | None) -> None:
        if piece is not None:
            found.setdefault(piece.key, piece)
            if len(found) > limit:
                raise ShrinkError(f"space '{space.name}' in {graph.network} has more than "
                                  f"{limit:,} distinct pieces: too many to measure")

    for layer in graph.stem:
        add(op_piece(layer.op, layer.in_shape, layer.out_shape))
    shapes = {graph.stem[-1].out_shape if graph.stem else graph.input_shape}
    uses = False
    for stage in graph.stages:
        for inst in stage.cells:
            if inst.cell == space.name:
                if inst.n_inputs != 1:
                    raise ShrinkError(f"space '{space.name}' is used as a two-input cell")
                uses = True
                shapes = _space_cell(inst, shapes, space, add, limit)
                continue
            if shapes != {inst.in_shape}:
                raise ShrinkError(f"{graph.network}: the cell {inst.cell} in {stage.name} follows "
                                  f"a cell of space '{space.name}', so its input's width varies "
                                  "with the candidate; a table is built for networks whose "
                                  "other cells come before the space's", None)
            for piece in cell_pieces(inst):
                add(piece)
            shapes = {inst.out_shape}
    if not uses:
        raise ShrinkError(f"{graph.network} has no cell of space '{space.name}'", None,
                          "name a network whose stages use the space's cell (--network)")
    for layer in graph.head:
        new = set()
        for x in shapes:
            y = _apply(layer.op, x)
            if y is not None:
                add(op_piece(layer.op, x, y))
                new.add(y)
        shapes = new
    return found


def space_keys(graph: ir.Graph, space: ir.SpaceDef) -> set[str]:
    """The table keys a search over ``space`` in ``graph``'s network needs (see
    :func:`space_pieces`)."""
    return set(space_pieces(graph, space))



__all__ = ["MAX_PIECES", "space_keys", "space_pieces"]

"""The cost model: parameters and MACs per node, cell, stage and network, from the IR alone.

Convention (see ``compiler.ops``): MACs count convolution and linear multiply-accumulates;
parameters count every trainable tensor, so they equal the generated module's exactly.
"""

from __future__ import annotations

from .. import ir
from ..ops import cost as op_cost


def _node(node: ir.NodeInst, costs: dict[tuple, ir.Cost]) -> ir.NodeInst:
    """``node`` with its cost; ``costs``: the costs already worked out in this cell, by op
    object and shapes (elaborate gives the nodes with one call one op object)."""
    op, x, y = node.op, node.in_shape, node.out_shape
    if op is None:
        c = ir.ZERO
    else:
        key = (id(op), x.c, x.h, x.w, y.c, y.h, y.w)  # the op is alive while the cell is
        c = costs.get(key)  # type: ignore[assignment]
        if c is None:
            c = costs[key] = op_cost(op, x, y)
    return node.model_copy(update={"cost": c})


def _total(costs: list[ir.Cost]) -> ir.Cost:
    """``sum(costs, ir.ZERO)``, adding the numbers rather than ``Cost`` objects: a cell of
    10,000 nodes would make 10,000 of them. The same object that sum makes (``ZERO`` when
    ``costs`` is empty)."""
    if not costs:
        return ir.ZERO
    return ir.Cost(params=sum([c.params for c in costs]), macs=sum([c.macs for c in costs]))


def _cell(cell: ir.CellInst) -> ir.CellInst:
    costs: dict[tuple, ir.Cost] = {}
    nodes = tuple(_node(n, costs) for n in cell.nodes)
    total = _total([n.cost for n in nodes])
    if cell.residual_op is not None:
        total = total + op_cost(cell.residual_op, cell.residual_shape, cell.out_shape)
    return cell.model_copy(update={"nodes": nodes, "cost": total})


def _layers(layers: tuple[ir.LayerInst, ...]) -> tuple[ir.LayerInst, ...]:
    return tuple(
        layer.model_copy(update={"cost": op_cost(layer.op, layer.in_shape, layer.out_shape)})
        for layer in layers
    )


def _language_model(graph: ir.LMGraph) -> ir.LMGraph:
    """Embedding, node 0's W0 ((embed + hidden) x 2 hidden), one hidden x 2 hidden matrix
    per live edge, decoder bias (and weights when untied). MACs are per token; ``flops`` is
    the paper's live edges x hidden^2."""
    lm = graph.lm
    h = lm.hidden
    nodes = []
    for n in lm.cell.nodes:
        fan_in = n.in_shape.c if n is lm.cell.nodes[0] else h * len(n.inputs)
        w = fan_in * 2 * h
        nodes.append(n.model_copy(update={"cost": ir.Cost(params=w, macs=w)}))
    cell_cost = sum((n.cost for n in nodes), ir.ZERO)
    cell = lm.cell.model_copy(update={"nodes": tuple(nodes), "cost": cell_cost})
    decoder = ir.Cost(params=lm.vocab + (0 if lm.tied else h * lm.vocab), macs=h * lm.vocab)
    total = ir.Cost(params=lm.vocab * lm.embed, macs=0) + cell_cost + decoder
    edges = graph.program.cells[cell.cell].edges
    new_lm = lm.model_copy(update={"cell": cell, "flops": edges * h * h})
    return graph.model_copy(update={"lm": new_lm, "cost": total})


def cost(graph: ir.Graph) -> ir.Graph:
    """``graph`` with the cost of every node, cell, layer and stage, and the total."""
    if isinstance(graph, ir.LMGraph):
        return _language_model(graph)
    stages = []
    for stage in graph.stages:
        cells = tuple(_cell(c) for c in stage.cells)
        stages.append(stage.model_copy(update={
            "cells": cells, "cost": sum((c.cost for c in cells), ir.ZERO)}))
    stem, head = _layers(graph.stem), _layers(graph.head)
    total = sum((x.cost for x in (*stem, *stages, *head)), ir.ZERO)
    return graph.model_copy(update={"stem": stem, "stages": tuple(stages), "head": head,
                                    "cost": total})

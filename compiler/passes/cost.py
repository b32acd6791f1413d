"""The cost model: parameters and MACs per node, cell, stage and network, from the IR alone.

Convention (see ``compiler.ops``): MACs count convolution and linear multiply-accumulates;
parameters count every trainable tensor, so they equal the generated module's exactly.
"""

from __future__ import annotations

from .. import ir
from ..ops import cost as op_cost


def _node(node: ir.NodeInst) -> ir.NodeInst:
    c = ir.ZERO if node.op is None else op_cost(node.op, node.in_shape, node.out_shape)  # type: ignore[arg-type]
    return node.model_copy(update={"cost": c})


def _cell(cell: ir.CellInst) -> ir.CellInst:
    nodes = tuple(_node(n) for n in cell.nodes)
    total = sum((n.cost for n in nodes), ir.ZERO)  # type: ignore[misc]
    if cell.residual_op is not None:
        total = total + op_cost(cell.residual_op, cell.in_shape, cell.out_shape)  # type: ignore[arg-type]
    return cell.model_copy(update={"nodes": nodes, "cost": total})


def _layers(layers: tuple[ir.LayerInst, ...]) -> tuple[ir.LayerInst, ...]:
    return tuple(
        layer.model_copy(update={"cost": op_cost(layer.op, layer.in_shape, layer.out_shape)})  # type: ignore[arg-type]
        for layer in layers
    )


def cost(graph: ir.Graph) -> ir.Graph:
    stages = []
    for stage in graph.stages:
        cells = tuple(_cell(c) for c in stage.cells)
        stages.append(stage.model_copy(update={
            "cells": cells, "cost": sum((c.cost for c in cells), ir.ZERO)}))  # type: ignore[misc]
    stem, head = _layers(graph.stem), _layers(graph.head)
    total = sum((x.cost for x in (*stem, *stages, *head)), ir.ZERO)  # type: ignore[misc]
    return graph.model_copy(update={"stem": stem, "stages": tuple(stages), "head": head,
                                    "cost": total})

"""The graph IR's invariants, written down once and checked between passes.

A violation here is a bug in shrinkc, not in a user's spec: it raises ``AssertionError``
naming the invariant, so a pass that breaks the IR fails loudly in tests.
"""

from __future__ import annotations

from . import ir


class IRInvariantError(AssertionError):
    pass


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise IRInvariantError(what)


def verify_program(program: ir.Program, *, ordered: bool = True) -> ir.Program:
    """``ordered``: nodes are in topological order (true once the DAG pass has run)."""
    names = [getattr(i, "name", None) for i in program.items if not isinstance(i, ir.Include)]
    _require(len(names) == len(set(names)), "definition names are unique")
    for cell in program.cells.values():
        seen = {cell.input.name, cell.input.state}
        for n in cell.nodes:  # the messages are made only on failure: a cell may have 10,000 nodes
            if n.name in seen:
                _require(False, f"{cell.name}: node names are unique")
            if ordered and not seen.issuperset(n.inputs):
                _require(False, f"{cell.name}.{n.name}: inputs come first")
            seen.add(n.name)
        _require(all(s in seen or s == "leaves" for s in cell.output.nodes),
                 f"{cell.name}: output names known nodes")
    return program


def verify_graph(graph: ir.Graph, *, costed: bool = False) -> ir.Graph:
    x = graph.input_shape
    for layer in graph.stem:
        _require(layer.in_shape == x, "stem layers chain")
        x = layer.out_shape
    prev = x  # the output two back, which a two-input cell takes first (the stem's: twice)
    for stage in graph.stages:
        _require(len(stage.cells) >= 1, f"{stage.name}: a stage has cells")
        for cell in stage.cells:
            _require(cell.in_shape == x, f"{stage.name}: cells chain")
            if cell.prev_shape is not None:
                _require(cell.prev_shape == prev and len(cell.nodes) > 2 and
                         cell.nodes[0].out_shape == prev and cell.nodes[1].out_shape == x and
                         not cell.nodes[1].inputs and cell.nodes[1].op is None and
                         cell.nodes[0].op is None and cell.residual == "none",
                         f"{cell.cell}: a two-input cell takes the outputs two back and one back")
            names = [n.name for n in cell.nodes]
            _require(len(names) == len(set(names)), f"{cell.cell}: node names are unique")
            shapes = {}
            n_inputs = cell.n_inputs
            for i, n in enumerate(cell.nodes):  # the message made only on failure, as above
                if not (i < n_inputs or (n.inputs and shapes.keys() >= set(n.inputs))):
                    _require(False, f"{cell.cell}.{n.name}: topological order")
                shapes[n.name] = n.out_shape
            _require(all(s in shapes for s in cell.output), f"{cell.cell}: output nodes exist")
            _require((cell.residual == "project") == (cell.residual_op is not None),
                     f"{cell.cell}: a projection exists iff the residual projects")
            _require(cell.residual_from is None or cell.residual_from in shapes and
                     cell.residual_from != names[0], f"{cell.cell}: a residual node is a node")
            _require(0.0 <= cell.drop_path < 1.0 and (cell.drop_path == 0.0 or cell.residual != "none"),
                     f"{cell.cell}: stochastic depth drops a residual branch, p in [0, 1)")
            _require(cell.residual == "none" or cell.residual_shape == cell.out_shape or
                     cell.residual == "project", f"{cell.cell}: an identity residual keeps the shape")
            if costed:
                own = sum(n.cost.params for n in cell.nodes)
                _require(cell.cost.params >= own, f"{cell.cell}: cost covers its nodes")
            prev, x = x, cell.out_shape
        _require(stage.out_shape == x, f"{stage.name}: out shape is its last cell's")
    for layer in graph.head:
        _require(layer.in_shape == x, "head layers chain")
        x = layer.out_shape
    _require(graph.out_shape == x, "network out shape is the last layer's")
    if isinstance(graph, ir.LMGraph):
        if costed:
            cell = graph.lm.cell
            _require(cell.cost.params == sum(n.cost.params for n in cell.nodes) > 0,
                     "the recurrent cell's cost is the sum of its nodes'")
            _require(graph.cost.params > cell.cost.params, "network costed")
        return graph
    if costed:
        parts = [*graph.stem, *graph.stages, *graph.head]
        _require(sum(p.cost.params for p in parts) == graph.cost.params,
                 "network cost is the sum of its parts")
        _require(sum(p.cost.macs for p in parts) == graph.cost.macs,
                 "network MACs are the sum of its parts'")
        for stage in graph.stages:
            _require(stage.cost == sum((c.cost for c in stage.cells), ir.ZERO),
                     f"{stage.name}: cost is the sum of its cells'")
    return graph

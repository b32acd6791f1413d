"""Search spaces -> cells: a ``space`` is a template that expands into an ordinary cell.

Node 0 is the input; nodes 1..N-1 get their ops from the list (one per node) or by the
AutoShrink rule (cycle through the list, then shuffle with a seed). Live edges are all
``i -> j`` with ``i < j`` unless ``edges`` lists them. Edges out of nodes that node 0 no longer
reaches are dropped (the paper's clean-up), such nodes vanish, and a node's activation is the
space's ``act`` when it feeds another node and linear when it is a leaf.
"""

from __future__ import annotations

import random

from .. import ir
from ..errors import ShrinkError

MAX_NODES = 256


def node_count(space: ir.SpaceDef) -> int:
    from .elaborate import evaluate

    n = evaluate(space.nodes, {})
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ShrinkError(f"nodes must be an integer of at least 2, got {n!r}", space.nodes.loc,
                          "node 0 is the input, so a space has at least 2 nodes")
    if n > MAX_NODES:  # a complete DAG has n(n-1)/2 edges: more would take minutes to expand
        raise ShrinkError(f"a space has at most {MAX_NODES} nodes, got {n}", space.nodes.loc)
    return n


def node_ops(space: ir.SpaceDef) -> list[ir.OpCall]:
    """The op of each of nodes 1..N-1."""
    n = node_count(space)
    ops = list(space.ops)
    if space.rule == "list":
        if len(ops) != n - 1:
            raise ShrinkError(f"space '{space.name}' has {n} nodes, so it needs {n - 1} ops "
                              f"(node 0 is the input), got {len(ops)}",
                              space.locs.get("ops", space.loc),
                              "list one op per node, or write ops cycle(...)")
        return ops
    assigned = [ops[k % len(ops)] for k in range(n - 1)]
    if space.shuffle is not None:
        random.Random(space.shuffle).shuffle(assigned)
    return assigned


def complete_edges(n: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, j) for j in range(1, n) for i in range(j))


def all_edges(space: ir.SpaceDef) -> tuple[tuple[int, int], ...]:
    """The space's edges as written (complete when not given), checked."""
    n = node_count(space)
    if space.edges is None:
        return complete_edges(n)
    seen = set()
    for i, j in space.edges:
        if not 0 <= i < j < n:
            raise ShrinkError(f"edge {i}->{j} is not an edge of a {n}-node DAG",
                              space.locs.get("edges", space.loc),
                              f"edges go from a lower to a higher node, 0 to {n - 1}")
        if (i, j) in seen:
            raise ShrinkError(f"edge {i}->{j} is listed twice", space.locs.get("edges", space.loc))
        seen.add((i, j))
    return tuple(sorted(space.edges, key=lambda e: (e[1], e[0])))


def cleanup(edges, n: int) -> tuple[tuple[int, int], ...]:
    """Drop edges out of nodes that node 0 cannot reach."""
    reach = {0}
    for i, j in sorted(edges, key=lambda e: (e[1], e[0])):
        if i in reach:
            reach.add(j)
    return tuple(sorted(((i, j) for i, j in edges if i in reach), key=lambda e: (e[1], e[0])))


def node_name(space: ir.SpaceDef, i: int) -> str:
    if space.recurrent:
        return f"n{i}"
    return space.input_name if i == 0 else f"n{i}"


def _expand_recurrent(space: ir.SpaceDef) -> ir.CellDef:
    """Node 0 mixes x_t and h_{t-1} (tanh, as in DARTS); nodes 1..N-1 take the listed ops
    (activations); the output is the space's (``mean(leaves)``)."""
    n = node_count(space)
    ops = node_ops(space)
    edges = cleanup(all_edges(space), n)
    where = space.locs.get("edges", space.loc)
    body: list = [ir.InputStmt(name="x", state="h", loc=space.loc),
                  ir.NodeStmt(name="n0", op=ir.OpCall(op="tanh", loc=space.loc),
                              inputs=("x", "h"), loc=space.loc, inputs_loc=where)]
    for j in sorted({j for _, j in edges}):
        body.append(ir.NodeStmt(name=f"n{j}", op=ops[j - 1],
                                inputs=tuple(f"n{i}" for i, jj in edges if jj == j),
                                loc=space.loc, inputs_loc=where))
    body.append(space.output)
    return ir.CellDef(name=space.name, recurrent=True, body=tuple(body), comments=space.comments,
                      loc=space.loc)


def expand(space: ir.SpaceDef) -> ir.CellDef:
    if space.recurrent:
        return _expand_recurrent(space)
    n = node_count(space)
    ops = node_ops(space)
    edges = cleanup(all_edges(space), n)
    live_nodes = sorted({j for _, j in edges})
    feeds = {i for i, _ in edges}
    body: list = [ir.InputStmt(name=space.input_name, loc=space.loc)]
    for j in live_nodes:
        body.append(ir.NodeStmt(
            name=node_name(space, j), op=ops[j - 1],
            act=space.act if j in feeds else None,
            inputs=tuple(node_name(space, i) for i, jj in edges if jj == j),
            loc=space.loc, inputs_loc=space.locs.get("edges", space.loc),
        ))
    if not live_nodes:
        raise ShrinkError(f"space '{space.name}' has no live edge out of its input",
                          space.locs.get("edges", space.loc))
    body.append(space.output)
    return ir.CellDef(name=space.name, params=space.params, body=tuple(body),
                      comments=space.comments, loc=space.loc)

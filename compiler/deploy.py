"""A search's deployment network with a candidate's cell in place: what a search's latency
score is taken on (issue 25, item 3).

A search block names the network its cell is deployed in, ``deploy NAME [input CxHxW]``
(``resolve`` checks it: ``passes/deploy.py``). :func:`deployment_graph` builds that network,
costed, with the search's space cut down to a candidate's live edges: the graph that
``shrinkc compile`` would give for the search's snapshot with those edges, ``--network NAME``
and ``--input CxHxW``. The spec is parsed once (``check``); each call re-resolves the parsed
files with the new edges and elaborates the one network, so it costs tens of milliseconds for
ShrinkCNN at 224x224, none of it parsing.

A search with no ``deploy`` line is deployed in its proxy network, at the proxy's own input
(:func:`deploy_target`); callers that want to say so can test ``search.deploy is None``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from . import ir
from .errors import ShrinkError
from .loader import Sources
from .passes.cost import cost
from .passes.dag import check_cell
from .passes.elaborate import elaborate
from .passes.input_shape import override_input, shape_text
from .passes.residual import residual_path_error
from .passes.resolve import resolve_space
from .pipeline import Checked
from .verify import verify_graph, verify_program

Edge = tuple[int, int]


def find_search(checked: Checked, search: ir.SearchDef | str | None = None) -> ir.SearchDef:
    """The resolved search block ``search`` (a name, or a block), or the main file's last."""
    found = checked.program.defs(ir.SearchDef)
    if isinstance(search, ir.SearchDef):
        search = search.name
    if search is None:
        mine = [i.name for i in checked.sources.main.items if isinstance(i, ir.SearchDef)]
        if not mine:
            raise ShrinkError(f"{checked.sources.main.file} has no search block", None,
                              "a search-space file ends with: search NAME { space S  network P"
                              "  deploy D ... }")
        search = mine[-1]
    if search not in found:
        from .errors import did_you_mean

        raise ShrinkError(f"no search '{search}' in {checked.sources.main.file}", None,
                          did_you_mean(search, found, "searches"))
    return found[search]  # type: ignore[return-value]


def deploy_target(search: ir.SearchDef) -> tuple[str, tuple[int, ...] | None]:
    """The network a search's cell is deployed in and its input shape (None: the network's
    own): the ``deploy`` line's, or the proxy network at its own input when there is none."""
    if search.deploy is not None:
        return search.deploy, search.deploy_input
    assert search.network is not None  # resolve requires one
    return search.network, None


def _space_program(sources: Sources, space: str) -> tuple[int, ir.SpaceDef]:
    for k, prog in enumerate(sources.programs):
        for item in prog.items:
            if isinstance(item, ir.SpaceDef) and item.name == space:
                return k, item
    raise ShrinkError(f"no space '{space}' in {sources.main.file} or its includes")


def _edges(raw: Iterable) -> tuple[Edge, ...]:
    try:
        edges = tuple((int(i), int(j)) for i, j in raw)
    except (TypeError, ValueError):
        raise ShrinkError("edges are pairs of node numbers, such as (0, 1)") from None
    return tuple(sorted(edges, key=lambda e: (e[1], e[0])))


def with_space_edges(checked: Checked, space: str, edges: Iterable[Edge]) -> tuple[ir.Program,
                                                                                 str]:
    """``checked``'s resolved, DAG-checked program with ``space``'s live edges replaced by
    ``edges``, and a spec hash for it (the spec's and the edges'). Only the space's cell is
    resolved and checked again: the rest of the program does not depend on its edges."""
    edges = _edges(edges)
    _, old = _space_program(checked.sources, space)
    cell = resolve_space(checked.sources, old.model_copy(update={"edges": edges}))
    cell = check_cell(cell, [])
    err = residual_path_error(cell)
    if err is not None:
        raise err
    program = checked.program
    items = tuple(cell if isinstance(i, ir.CellDef) and i.name == space else i
                  for i in program.items)
    program = verify_program(program.model_copy(update={"items": items}))
    text = f"{checked.sources.spec_hash}\0{space}\0" + ",".join(f"{i}-{j}" for i, j in edges)
    return program, hashlib.sha256(text.encode()).hexdigest()


def deployment_graph(checked: Checked, search: ir.SearchDef | str | None = None,
                     edges: Iterable[Edge] | None = None,
                     overrides: dict[str, ir.Value] | None = None) -> ir.Graph:
    """The costed graph of ``search``'s deployment network (:func:`deploy_target`) at its
    deployment input, with the search's space cut down to ``edges`` (node pairs ``(i, j)``,
    ``i < j``; None: the edges the spec gives, every edge when it lists none; pass
    ``passes.space.complete_edges(n)`` for the complete cell). ``search`` is a search block
    or its name (None: the main file's last); ``overrides`` sets the network's parameters.

    Errors are located: edges that are not a DAG's of the space, or a cell or input size
    the network's layers cannot take (noted as the deployment's)."""
    s = find_search(checked, search)
    network, dims = deploy_target(s)
    if edges is None:
        program, spec_hash = checked.program, checked.sources.spec_hash
    else:
        assert s.space is not None  # resolve requires one
        program, spec_hash = with_space_edges(checked, s.space, edges)
    origin = f"deploy {network} input"
    if dims is not None:
        program = override_input(program, network, dims, origin)
    try:
        graph = elaborate(program, network, source=checked.sources.main.file,
                          spec_hash=spec_hash, overrides=overrides)
        graph = verify_graph(graph)
        return verify_graph(cost(graph), costed=True)
    except ShrinkError as e:
        if dims is None:
            raise
        d = e.diagnostic  # say that the shape behind the error is the deployment's
        where = s.locs.get("deploy_input")
        at = f" ({where.file}:{where.line})" if where is not None and where.line else ""
        note = f"with the input {shape_text(dims)} of search {s.name}'s deploy line{at}"
        raise ShrinkError(d.message, d.loc, d.hint, f"{d.note}; {note}" if d.note else note,
                          quote=d.quote) from None


__all__ = ["deploy_target", "deployment_graph", "find_search", "with_space_edges"]

"""Weisfeiler-Lehman colouring of labelled directed graphs: the one colouring behind the cell
hash (:mod:`.cellhash`) and the node matching of ``shrinkc diff`` (:mod:`.semdiff`).

The algorithms (:func:`refine`, :func:`dag_colours`) are written once, over a *palette*:
what turns a node's key (its label and degrees, or its colour with its neighbours' sorted
colours) into a colour. Two palettes:

* :class:`Hashes`: sha256 hex digests of a text of the key, the same in every process and on
  every machine (``cellhash``'s hash is built from them, and stored by the shrinker);
* :class:`Ids`: small ints, a new one per distinct key, shared by every colouring made with
  one table (``diff`` compares the colours of two cells for equality only, so ints do, and
  they cost a dict lookup instead of a sha256).

Two nodes get equal colours under one palette exactly when they get equal colours under the
other (sha256 has no collisions in practice), so the partitions, rounds and stopping tests
are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

Preds = list[list[int]]


def adjacency(n: int, edges: Iterable[tuple[int, int]]) -> tuple[Preds, Preds]:
    """Each node's predecessors and successors (``edges`` as a set: repeats count once)."""
    preds: Preds = [[] for _ in range(n)]
    succs: Preds = [[] for _ in range(n)]
    for src, dst in set(edges):
        if not (0 <= src < n and 0 <= dst < n):
            raise ValueError(f"edge ({src}, {dst}) names a node outside 0..{n - 1}")
        succs[src].append(dst)
        preds[dst].append(src)
    return preds, succs


def topological(preds: Preds, succs: Preds) -> list[int] | None:
    """The nodes in a topological order (Kahn's), or None when the graph has a cycle."""
    indeg = [len(p) for p in preds]
    order = [v for v, d in enumerate(indeg) if d == 0]
    for v in order:  # grows while it is walked
        for w in succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                order.append(w)
    return order if len(order) == len(preds) else None


class Hashes:
    """Colours as sha256 hex digests (one palette per colouring: it remembers the keys it
    hashed, as a large cell repeats a few)."""

    def __init__(self) -> None:
        self._memo: dict[Any, str] = {}

    def _sha(self, text: str) -> str:
        color = self._memo.get(text)
        if color is None:
            color = self._memo[text] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return color

    def first(self, label: str, out_degree: int, in_degree: int) -> str:
        if label.isascii() and label.isalnum():  # a hash: json.dumps adds quotes only
            return self._sha(f'[{out_degree}, {in_degree}, "{label}"]')
        return self._sha(json.dumps([out_degree, in_degree, label]))

    def round(self, own: str, preds: Sequence[str], succs: Sequence[str]) -> str:
        return self._sha(",".join(preds) + "|" + ",".join(succs) + "|" + own)

    # a sweep's keys hold the colours of the whole graph above (below) a node: never repeated
    # along a chain, so not remembered
    def sweep(self, tag: str, own: str, near: Sequence[str]) -> str:
        return hashlib.sha256((own + tag + ",".join(near)).encode()).hexdigest()

    def join(self, down: str, up: str) -> str:
        return hashlib.sha256((down + up).encode()).hexdigest()


class Ids(dict):
    """Colours as ints: key -> a new int for each new key; colourings made with one table
    share it, so their colours compare."""

    def first(self, label: Any, out_degree: int, in_degree: int) -> int:
        return self.setdefault(("first", out_degree, in_degree, label), len(self))

    def round(self, own: int, preds: Sequence[int], succs: Sequence[int]) -> int:
        return self.setdefault(("wl", tuple(preds), tuple(succs), own), len(self))

    def sweep(self, tag: str, own: int, near: Sequence[int]) -> int:
        return self.setdefault((tag, own, tuple(near)), len(self))

    def join(self, down: int, up: int) -> int:
        return self.setdefault(("both", down, up), len(self))


def _near(colors: list, nodes: list[int]) -> list:
    """The colours of ``nodes``, sorted (most nodes have one or none)."""
    if len(nodes) == 1:
        return [colors[nodes[0]]]
    return sorted([colors[u] for u in nodes])


def first_colours(palette: Any, labels: Sequence, preds: Preds, succs: Preds) -> list:
    """Round 0: each node's label with its out- and in-degree."""
    first = palette.first
    return [first(label, len(s), len(p)) for label, p, s in zip(labels, preds, succs)]


def refine(palette: Any, labels: Sequence, preds: Preds, succs: Preds,
           rounds: int | None = None, limit: int | None = None) -> tuple[list, int]:
    """Weisfeiler-Lehman colours of the nodes, and the rounds run: ``rounds`` refinements, or
    (by default) as many as make the colouring stable: when a round splits no colour class,
    no later round would.

    Round 0 is :func:`first_colours`; each round colours a node's colour with the sorted
    colours of its in-neighbours and, separately, of its out-neighbours. A cell takes as many
    rounds as its longest chain of distinct colours needs (one or two for most cells, but one
    per two nodes along a chain: see :func:`dag_colours`). ``limit``: stop after that many
    rounds even if not stable (the rounds run then exceed ``limit`` by one, so a caller can
    tell)."""
    colors = first_colours(palette, labels, preds, succs)
    distinct = len(set(colors))
    done = 0
    colour = palette.round
    for _ in range(len(labels) if rounds is None else rounds):
        if limit is not None and done > limit:
            break
        done += 1
        colors = [colour(own, _near(colors, p), _near(colors, s))
                  for p, s, own in zip(preds, succs, colors)]
        if rounds is None:
            split = len(set(colors))
            if split == distinct:  # no class split: the colouring is stable
                break
            distinct = split
    return colors, done


def _sweep(palette: Any, tag: str, colors: list, near: Preds, order: Iterable[int]) -> list:
    """Each node, in ``order``, coloured with its tag, its colour and the sorted colours of
    its ``near`` nodes (swept before it)."""
    out: list = [None] * len(colors)
    colour = palette.sweep
    for v in order:  # _near written out: a sweep colours every node
        us = near[v]
        out[v] = colour(tag, colors[v], [out[us[0]]] if len(us) == 1
                        else sorted([out[u] for u in us]))
    return out


def dag_colours(palette: Any, labels: Sequence, preds: Preds, succs: Preds,
                order: list[int] | None, direction: str = "both",
                classes_only: bool = False) -> list:
    """Isomorphism-invariant node colours of a DAG (``order``: :func:`topological`), in time
    linear in its size.

    A sweep gives each node, in topological order, the colour of its colour and the sorted
    colours of its predecessors (the whole graph above it, as a Merkle tree does), and in the
    reverse order the same over its successors (the graph below it); its new colour joins
    the two. Sweeps repeat while they split colour classes (two or three do), then
    Weisfeiler-Lehman rounds (:func:`refine`) run until the colouring is stable. The classes
    that result are WL's stable classes (each sweep's colours are a function of WL's stable
    colour), found without the one round per node that WL alone needs along a chain: a
    10,000-node chain takes one sweep and a round, not 5,000 rounds.

    ``direction="down"`` (or ``"up"``): one sweep over the predecessors only (the successors
    only), no WL: two nodes then share a colour when the graphs above them (below them)
    agree, which ``diff`` uses to pair the nodes before (after) an edit. Not a DAG
    (``order`` None): WL alone. ``classes_only``: the caller looks at the classes only, so
    a sweep that tells every node apart ends it (what follows could split no class)."""
    colors = first_colours(palette, labels, preds, succs)
    if order is None:
        return colors if direction != "both" else refine(palette, colors, preds, succs)[0]
    if direction != "both":
        return _sweep(palette, direction, colors, preds if direction == "down" else succs,
                      order if direction == "down" else reversed(order))
    distinct = len(set(colors))
    join = palette.join
    while True:
        down = _sweep(palette, "<", colors, preds, order)
        up = _sweep(palette, ">", colors, succs, reversed(order))
        colors = [join(d, u) for d, u in zip(down, up)]
        split = len(set(colors))
        if classes_only and split == len(colors):
            return colors
        if split == distinct:
            break
        distinct = split
    return refine(palette, colors, preds, succs)[0]

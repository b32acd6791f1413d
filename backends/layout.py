"""The generated PyTorch module's ``state_dict`` contract, derived from the IR alone.

Every backend that names tensors uses this module: the ONNX backend names its initializers
after it, reads checkpoints against it and draws random weights by it; the search's weight
inheritance relies on the same names. It never imports torch or numpy.

* the stem and the head are ``stem.`` / ``head.`` when they hold one layer, else
  ``stem.<i>.`` / ``head.<i>.``; a stage is ``<stage>.<cell index>.`` and a cell node is
  ``<stage>.<i>.<node>.``, with node and stage names as the generated code spells them
  (``naming.cell_attr_names``, ``naming.stage_attr_names``);
* ``conv`` and ``dwconv`` are a ``ConvBN``: ``conv.weight`` then ``bn.weight``, ``bn.bias``,
  ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``; a ``conv`` with
  ``bias=true`` has ``conv.bias`` after ``conv.weight``, one with ``bn=false`` no ``bn.*``; ``sepconv`` is
  ``depthwise.weight``, ``pointwise.weight`` and the same ``bn.*``;
* ``se`` is ``fc1.weight``, ``fc1.bias``, ``fc2.weight``, ``fc2.bias`` (two 1x1 convolutions,
  as torchvision's ``SqueezeExcitation``);
* ``factorized_reduce`` is ``conv_1.weight``, ``conv_2.weight`` and ``bn.*`` (DARTS's names);
* ``linear`` is ``weight`` and ``bias``; pools, dropout, flatten, identity, chunk and shuffle
  hold nothing;
* an op other than conv-style and identity that has an activation is wrapped as
  ``nn.Sequential(op, act)``, so its tensors get a ``0.`` more (``head.3.0.weight``);
* a projecting residual is ``<stage>.<i>.residual.conv`` / ``.bn``; downsampling holds nothing;
* a language model (``graph.lm``) is ``embedding.weight``, ``cell.<node 0>.weight``,
  ``cell.<i>_to_<j>.weight`` per edge, ``decoder.weight`` and ``decoder.bias``; a tied
  decoder's weight is the embedding's and may be saved under either name
  (``lm_tensors`` here, ``onnx.checkpoint.tie_checkpoint``).

``num_batches_tracked`` may be present or missing in a checkpoint; it is never used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from shrinkc.compiler import ir
from shrinkc.compiler.ops import attr

from .naming import act_module, cell_attr_names, edge_key, recurrent_cell_names, stage_attr_names

BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
UNUSED = "num_batches_tracked"


# --------------------------------------------------------------------------- module layout


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def wrapped(op: str, act: ir.Expr | None) -> bool:
    """Whether the generated code wraps ``op`` as ``nn.Sequential(op, act)``."""
    return OP_LAYOUT[op].act == "wrap" and act_module(act)


def chain_prefixes(graph: ir.Graph, kind: str) -> list[tuple[str, ir.Expr | None]]:
    """(module path, spec activation) of each layer of the stem or the head."""
    stmt = graph.program.networks[graph.network].chain(kind)
    if stmt is None:
        return []
    if len(stmt.layers) == 1:
        return [(kind, stmt.layers[0].act)]
    return [(f"{kind}.{i}", layer.act) for i, layer in enumerate(stmt.layers)]


def cell_prefixes(graph: ir.Graph) -> list[list[str]]:
    """Module path of every cell instance, stage by stage: ``stage2.0``."""
    return [[f"{attr}.{i}" for i in range(len(stage.cells))]
            for attr, stage in zip(stage_attr_names(graph.stages), graph.stages)]


@dataclass(frozen=True)
class Site:
    """One op of the network at its module path (``stage2.0.n1``, ``head.2.0``)."""

    path: str
    op: ir.OpInst
    x: ir.Shape
    y: ir.Shape


def sites(graph: ir.Graph) -> Iterator[Site]:
    """Every op of ``graph`` with its module path, in the generated module's order."""

    def chain(kind: str, layers: tuple[ir.LayerInst, ...]) -> Iterator[Site]:
        for (prefix, act), layer in zip(chain_prefixes(graph, kind), layers):
            path = join(prefix, "0") if wrapped(layer.op.op, act) else prefix
            yield Site(path, layer.op, layer.in_shape, layer.out_shape)

    yield from chain("stem", graph.stem)
    cells = graph.program.cells
    for stage, prefixes in zip(graph.stages, cell_prefixes(graph)):
        for inst, prefix in zip(stage.cells, prefixes):
            cell = cells[inst.cell]
            attrs = cell_attr_names(cell)
            acts = {n.name: n.act for n in cell.nodes}
            n0 = inst.nodes[0]
            if n0.op is not None:
                yield Site(join(prefix, "downsample"), n0.op, n0.in_shape, n0.out_shape)
            for n in inst.nodes[inst.n_inputs:]:
                path = join(prefix, attrs[n.name])
                if wrapped(n.op.op, acts[n.name]):  # type: ignore[union-attr]
                    path = join(path, "0")
                yield Site(path, n.op, n.in_shape, n.out_shape)  # type: ignore[arg-type]
            if inst.residual == "project":
                yield Site(join(prefix, "residual"), inst.residual_op,  # type: ignore[arg-type]
                           inst.residual_shape, inst.out_shape)
    yield from chain("head", graph.head)


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    role: str  # "conv.weight", "bn.running_var", "linear.bias", ...
    fan_in: int = 1

    def __str__(self) -> str:
        return shape_text(self.shape)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


F32 = "float32"


def _bn(site: Site) -> list[tuple[str, TensorSpec]]:
    return [(f"{site.path}.bn.{t}",
             TensorSpec((), "int64", f"bn.{t}") if t == UNUSED
             else TensorSpec((site.y.c,), F32, f"bn.{t}"))
            for t in BN_TENSORS]


def _conv_bn(site: Site, groups: int) -> list[tuple[str, TensorSpec]]:
    k, cin, cout = int(site.op.attrs["k"]), site.x.c, site.y.c
    fan_in = cin // groups * k * k
    out = [(f"{site.path}.conv.weight",
            TensorSpec((cout, cin // groups, k, k), F32, "conv.weight", fan_in))]
    if attr(site.op, "bias"):  # conv(..., bias=true)
        out.append((f"{site.path}.conv.bias", TensorSpec((cout,), F32, "conv.bias", fan_in)))
    return out + (_bn(site) if attr(site.op, "bn") is not False else [])


def _sepconv(site: Site) -> list[tuple[str, TensorSpec]]:
    k, cin, cout = int(site.op.attrs["k"]), site.x.c, site.y.c
    return [(f"{site.path}.depthwise.weight", TensorSpec((cin, 1, k, k), F32, "conv.weight", k * k)),
            (f"{site.path}.pointwise.weight", TensorSpec((cout, cin, 1, 1), F32, "conv.weight", cin)),
            *_bn(site)]


def _factorized_reduce(site: Site) -> list[tuple[str, TensorSpec]]:
    cin, half = site.x.c, site.y.c // 2
    return [(f"{site.path}.conv_{i}.weight", TensorSpec((half, cin, 1, 1), F32, "conv.weight", cin))
            for i in (1, 2)] + _bn(site)


def _linear(site: Site) -> list[tuple[str, TensorSpec]]:
    cin, cout = site.x.c, site.y.c
    return [(f"{site.path}.weight", TensorSpec((cout, cin), F32, "linear.weight", cin)),
            (f"{site.path}.bias", TensorSpec((cout,), F32, "linear.bias", cin))]


def _se(site: Site) -> list[tuple[str, TensorSpec]]:
    c, sq = site.x.c, int(site.op.attrs["squeeze"])
    return [(f"{site.path}.fc1.weight", TensorSpec((sq, c, 1, 1), F32, "conv.weight", c)),
            (f"{site.path}.fc1.bias", TensorSpec((sq,), F32, "conv.bias", c)),
            (f"{site.path}.fc2.weight", TensorSpec((c, sq, 1, 1), F32, "conv.weight", sq)),
            (f"{site.path}.fc2.bias", TensorSpec((c,), F32, "conv.bias", sq))]


def _none(site: Site) -> list[tuple[str, TensorSpec]]:
    return []


@dataclass(frozen=True)
class OpLayout:
    """How the generated module holds one op: its tensors, and where its activation goes:
    ``inside`` (the module takes ``act=``: ``ConvBN``, ``SepConv``), ``replace`` (the
    activation module stands for the op: ``identity``) or ``wrap`` (``nn.Sequential(op, act)``,
    so the op's tensors get a ``0.`` more)."""

    tensors: Callable[[Site], list[tuple[str, TensorSpec]]]
    act: Literal["inside", "replace", "wrap"] = "wrap"


OP_LAYOUT: dict[str, OpLayout] = {
    "conv": OpLayout(lambda site: _conv_bn(site, int(site.op.attrs.get("groups", 1))), "inside"),
    "sepconv": OpLayout(_sepconv, "inside"),
    "dwconv": OpLayout(lambda site: _conv_bn(site, site.x.c), "inside"),
    "maxpool": OpLayout(_none),
    "avgpool": OpLayout(_none),
    "global_avgpool": OpLayout(_none),
    "flatten": OpLayout(_none),
    "linear": OpLayout(_linear),
    "dropout": OpLayout(_none),
    "identity": OpLayout(_none, "replace"),
    "se": OpLayout(_se),
    "chunk": OpLayout(_none),
    "shuffle": OpLayout(_none),
    "factorized_reduce": OpLayout(_factorized_reduce, "inside"),
}
"""Op name -> its state_dict layout in the generated module."""


def op_tensors(site: Site) -> list[tuple[str, TensorSpec]]:
    """The tensors of one op, named as in the generated module's ``state_dict``."""
    return OP_LAYOUT[site.op.op].tensors(site)


def expected_tensors(graph: ir.Graph) -> dict[str, TensorSpec]:
    """Name -> shape and dtype of every tensor of the generated module's ``state_dict``."""
    if isinstance(graph, ir.LMGraph):  # a language model: embedding, cell, decoder
        return lm_tensors(graph)
    return {name: spec for site in sites(graph) for name, spec in op_tensors(site)}



# --------------------------------------------------------------------------- language models


def cell_names(cell: ir.CellInst) -> dict:
    """Spec name -> attribute of the generated cell class for every node, and
    ``edge_key(src, dst)`` -> the edge's attribute (``n0_to_n3``): the PyTorch backend's names."""
    return recurrent_cell_names(cell.nodes, cell.output)


def lm_tensors(graph: ir.LMGraph) -> dict[str, TensorSpec]:
    """Name -> shape and dtype of every tensor of the generated language model's
    ``state_dict``, in its order. A tied ``decoder.weight`` has the role ``"tied"``."""
    lm = graph.lm
    cell, names = lm.cell, cell_names(lm.cell)
    f32 = "float32"
    out = {"embedding.weight": TensorSpec((lm.vocab, lm.embed), f32, "embedding")}
    n0 = cell.nodes[0]
    out[f"cell.{names[n0.name]}.weight"] = TensorSpec(
        (2 * lm.hidden, lm.embed + lm.hidden), f32, "cell", lm.embed + lm.hidden)
    for n in cell.nodes[1:]:
        for s in n.inputs:
            out[f"cell.{names[edge_key(s, n.name)]}.weight"] = TensorSpec(
                (2 * lm.hidden, lm.hidden), f32, "cell", lm.hidden)
    out["decoder.weight"] = TensorSpec((lm.vocab, lm.hidden), f32,
                                       "tied" if lm.tied else "decoder.weight", lm.hidden)
    out["decoder.bias"] = TensorSpec((lm.vocab,), f32, "decoder.bias", lm.hidden)
    return out

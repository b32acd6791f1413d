"""Weights for the ONNX backend: the tensors a network holds, random ones, or a checkpoint's.

The tensors are those of the ``state_dict`` of the module the PyTorch backend generates, with
the same names, shapes and order, derived from the IR alone (this module never imports torch,
except lazily to read a ``.pt`` file):

* the stem and the head are ``stem.`` / ``head.`` when they hold one layer, else
  ``stem.<i>.`` / ``head.<i>.``; a stage is ``<stage>.<cell index>.`` and a cell node is
  ``<stage>.<i>.<node>.``, with node and stage names as the generated code spells them
  (``naming.cell_attr_names``, ``naming.stage_attr_names``);
* ``conv`` and ``dwconv`` are a ``ConvBN``: ``conv.weight`` then ``bn.weight``, ``bn.bias``,
  ``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``; ``sepconv`` is
  ``depthwise.weight``, ``pointwise.weight`` and the same ``bn.*``;
* ``linear`` is ``weight`` and ``bias``; pools, dropout, flatten and identity hold nothing;
* an op other than conv-style and identity that has an activation is wrapped as
  ``nn.Sequential(op, act)``, so its tensors get a ``0.`` more (``head.3.0.weight``);
* a projecting residual is ``<stage>.<i>.residual.conv`` / ``.bn``; downsampling holds nothing;
* a language model (``graph.lm``) is ``embedding.weight``, ``cell.<node 0>.weight``,
  ``cell.<i>_to_<j>.weight`` per edge, ``decoder.weight`` and ``decoder.bias``; a tied
  decoder's weight is the embedding's and may be saved under either name
  (``onnx_lm.lm_tensors``, ``onnx_lm.tie_checkpoint``).

``num_batches_tracked`` may be present or missing in a checkpoint; it is never used.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, closest

from ..naming import act_module, cell_attr_names, stage_attr_names

CONV_OPS = ("conv", "sepconv", "dwconv")
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
UNUSED = "num_batches_tracked"
SEED = 0


# --------------------------------------------------------------------------- module layout


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def wrapped(op: str, act: ir.Expr | None) -> bool:
    """Whether the generated code wraps ``op`` as ``nn.Sequential(op, act)``."""
    return op not in CONV_OPS and op != "identity" and act_module(act)


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
            yield Site(path, layer.op, layer.in_shape, layer.out_shape)  # type: ignore[arg-type]

    yield from chain("stem", graph.stem)
    cells = graph.program.cells
    for stage, prefixes in zip(graph.stages, cell_prefixes(graph)):
        for inst, prefix in zip(stage.cells, prefixes):
            cell = cells[inst.cell]
            attrs = cell_attr_names(cell)
            acts = {n.name: n.act for n in cell.nodes}
            n0 = inst.nodes[0]
            if n0.op is not None:
                yield Site(join(prefix, "downsample"), n0.op, n0.in_shape, n0.out_shape)  # type: ignore[arg-type]
            for n in inst.nodes[1:]:
                path = join(prefix, attrs[n.name])
                if wrapped(n.op.op, acts[n.name]):  # type: ignore[union-attr]
                    path = join(path, "0")
                yield Site(path, n.op, n.in_shape, n.out_shape)  # type: ignore[arg-type]
            if inst.residual == "project":
                yield Site(join(prefix, "residual"), inst.residual_op,  # type: ignore[arg-type]
                           inst.in_shape, inst.out_shape)  # type: ignore[arg-type]
    yield from chain("head", graph.head)


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    role: str  # "conv.weight", "bn.running_var", "linear.bias", ...
    fan_in: int = 1

    def __str__(self) -> str:
        return _shape(self.shape)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def op_tensors(site: Site) -> list[tuple[str, TensorSpec]]:
    """The tensors of one op, named as in the generated module's ``state_dict``."""
    op, a, cin, cout = site.op.op, site.op.attrs, site.x.c, site.y.c
    f32 = "float32"

    def bn(prefix: str) -> list[tuple[str, TensorSpec]]:
        return [(f"{prefix}.bn.{t}",
                 TensorSpec((), "int64", f"bn.{t}") if t == UNUSED
                 else TensorSpec((cout,), f32, f"bn.{t}"))
                for t in BN_TENSORS]

    if op in ("conv", "dwconv"):
        k = int(a["k"])
        groups = cin if op == "dwconv" else int(a.get("groups", 1))
        fan_in = cin // groups * k * k
        return [(f"{site.path}.conv.weight",
                 TensorSpec((cout, cin // groups, k, k), f32, "conv.weight", fan_in)),
                *bn(site.path)]
    if op == "sepconv":
        k = int(a["k"])
        return [(f"{site.path}.depthwise.weight", TensorSpec((cin, 1, k, k), f32, "conv.weight", k * k)),
                (f"{site.path}.pointwise.weight", TensorSpec((cout, cin, 1, 1), f32, "conv.weight", cin)),
                *bn(site.path)]
    if op == "linear":
        return [(f"{site.path}.weight", TensorSpec((cout, cin), f32, "linear.weight", cin)),
                (f"{site.path}.bias", TensorSpec((cout,), f32, "linear.bias", cin))]
    return []


def expected_tensors(graph: ir.Graph) -> dict[str, TensorSpec]:
    """Name -> shape and dtype of every tensor of the generated module's ``state_dict``."""
    if graph.lm is not None:  # a language model: embedding, cell, decoder
        from .lm import lm_tensors

        return lm_tensors(graph)
    return {name: spec for site in sites(graph) for name, spec in op_tensors(site)}


# --------------------------------------------------------------------------- random weights


def random_weights(graph: ir.Graph, seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic random weights at plausible scales, all drawn uniformly in float32 (fast):
    He-uniform convolutions (``+-sqrt(6 / fan_in)``, the variance of He-normal), PyTorch-style
    linear layers (``+-1 / sqrt(fan_in)``), batch norms with weight in [0.5, 1.5], bias and
    running mean in [-0.1, 0.1] and running variance in [0.5, 2]. Each tensor has its own
    generator seeded by ``seed`` and its name, so a tensor does not change when others are
    added or removed. ``num_batches_tracked`` is left out (it is never used). Language models:
    ``onnx_lm.random_lm_weights``."""
    if graph.lm is not None:
        from .lm import random_lm_weights

        return random_lm_weights(graph, seed)
    bounds = {"bn.weight": (0.5, 1.5), "bn.bias": (-0.1, 0.1), "bn.running_mean": (-0.1, 0.1),
              "bn.running_var": (0.5, 2.0)}
    out: dict[str, np.ndarray] = {}
    for name, spec in expected_tensors(graph).items():
        if spec.role == "bn." + UNUSED:
            continue
        if spec.role == "conv.weight":
            hi = float(np.sqrt(6.0 / spec.fan_in))
            lo = -hi
        elif spec.role.startswith("linear."):
            hi = float(1.0 / np.sqrt(spec.fan_in))
            lo = -hi
        else:
            lo, hi = bounds[spec.role]
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        arr = rng.random(spec.shape, dtype=np.float32)
        arr *= np.float32(hi - lo)
        arr += np.float32(lo)
        out[name] = arr
    return out


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Found:
    """A tensor as a checkpoint holds it; ``array`` is None where numpy cannot hold it."""

    shape: tuple[int, ...]
    dtype: str
    array: np.ndarray | None


def _not_a_checkpoint(path: Path, what: str, why: str) -> ShrinkError:
    why = why.strip().splitlines()[0] if why.strip() else "unreadable"
    return ShrinkError(f"cannot read {path.as_posix()} as {what}: {why}", None,
                       "--weights takes model.state_dict() saved with torch.save (.pt) or "
                       "with safetensors (.safetensors)")


def _read_safetensors(path: Path) -> dict[str, Found]:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise ShrinkError(f"reading {path.as_posix()} needs the safetensors package", None,
                          "pip install safetensors") from None

    out: dict[str, Found] = {}
    try:
        with safe_open(str(path), framework="numpy") as f:  # safetensors' numpy reader
            for key in f.keys():  # noqa: SIM118 - a safe_open handle, not a dict
                sl = f.get_slice(key)
                dtype = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16",
                         "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
                         "U8": "uint8", "BOOL": "bool"}.get(sl.get_dtype(), sl.get_dtype().lower())
                shape = tuple(int(d) for d in sl.get_shape())
                array = f.get_tensor(key) if dtype in ("float32", "int64") else None
                out[key] = Found(shape, dtype, array)
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise _not_a_checkpoint(path, "a safetensors file", str(e)) from None
    return out


def _read_torch(path: Path) -> dict[str, Found]:
    try:
        import torch
    except ImportError:
        raise ShrinkError(f"reading {path.as_posix()} needs torch, which is not installed", None,
                          "install torch, or save the weights with safetensors "
                          "(safetensors.torch.save_file(model.state_dict(), 'w.safetensors'))"
                          ) from None
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise _not_a_checkpoint(path, "a PyTorch checkpoint", str(e)) from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ShrinkError(f"{path.as_posix()} holds a value of type {type(obj).__name__}, "
                          "not a state_dict",
                          None, "save model.state_dict() with torch.save")
    out: dict[str, Found] = {}
    for key, t in obj.items():
        if not isinstance(t, torch.Tensor):
            inner = isinstance(t, Mapping)
            what = "a nested dict" if inner else f"a value of type {type(t).__name__}"
            raise ShrinkError(
                f"{path.as_posix()} is not a state_dict: '{key}' holds {what}, not a tensor",
                None,
                f"pass the state_dict under '{key}' on its own (torch.save(ckpt['{key}'], ...))"
                if inner else "save model.state_dict() with torch.save")
        dtype = str(t.dtype).removeprefix("torch.")
        shape = tuple(int(d) for d in t.shape)
        array = None
        if dtype in ("float32", "int64"):
            array = t.detach().cpu().contiguous().numpy().copy()
        out[key] = Found(shape, dtype, array)
    return out


def read_checkpoint(path: str | Path) -> dict[str, Found]:
    """Every tensor of a ``.pt`` or ``.safetensors`` file, unchecked."""
    path = Path(path)
    if not path.is_file():
        why = "no such file" if not path.exists() else "not a file"
        raise ShrinkError(f"cannot read weights {path.as_posix()}: {why}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch(path)


def check_weights(found: Mapping[str, Found], graph: ir.Graph, source: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float32 arrays, or an error naming the first tensor that
    does not fit ``graph`` (missing, wrong shape or dtype, then unexpected ones)."""
    if graph.lm is not None:  # a tied decoder may be saved under either name, or both
        from .lm import tie_checkpoint

        found = tie_checkpoint(found, graph, source)
    expected = expected_tensors(graph)
    problems: list[tuple[str, str | None]] = []
    for name, spec in expected.items():
        got = found.get(name)
        unused = spec.role == "bn." + UNUSED
        if got is None:
            if unused:
                continue
            hint = None
            prefixed = [k for k in found if k.endswith("." + name)]
            if prefixed:
                pre = prefixed[0][: -len(name)]
                hint = (f"the checkpoint's names start with '{pre}'; save the state_dict of "
                        "the unwrapped module")
            problems.append((f"missing tensor '{name}' (expected shape {spec}, found none)", hint))
        elif got.shape != spec.shape:
            problems.append((f"tensor '{name}' has shape {_shape(got.shape)}, expected {spec}",
                             "was it saved from another network, or with other arguments?"))
        elif got.dtype != spec.dtype and not unused:
            problems.append((f"tensor '{name}' (shape {spec}) has dtype {got.dtype}, expected "
                             + spec.dtype,
                             "save the weights in float32 (model.float().state_dict())"))
    for name, got in found.items():
        if name not in expected:
            near = None if problems else closest(name, expected)  # only the first is shown
            problems.append((
                (f"unexpected tensor '{name}' (shape {_shape(got.shape)}, expected none): "
                 f"{graph.network} has no such tensor"),
                f"did you mean '{near}' (shape {expected[near]})?" if near else None))
    if problems:
        message, hint = problems[0]
        more = len(problems) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ShrinkError(f"weights {source} do not fit {graph.network}: {message}", None, hint)
    return {name: found[name].array for name, spec in expected.items()  # type: ignore[misc]
            if spec.role != "bn." + UNUSED}


def load_weights(path: str | Path, graph: ir.Graph) -> dict[str, np.ndarray]:
    """The checked tensors of a state_dict file for ``graph``, by name."""
    return check_weights(read_checkpoint(path), graph, Path(path).as_posix())


__all__ = ["expected_tensors", "load_weights", "random_weights", "sites"]

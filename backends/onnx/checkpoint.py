"""Weights for the ONNX backend: random ones, or a checkpoint's, checked against the layout.

The tensors are those of the ``state_dict`` of the module the PyTorch backend generates
(``backends.layout``). A ``.safetensors`` file is read with safetensors' numpy reader; a
``.pt`` file with ``torch.load(weights_only=True)``, torch imported for that alone (at least
:data:`TORCH_FLOOR`). A tied language model's checkpoint may hold ``embedding.weight``,
``decoder.weight`` or both (equal), as ``safetensors.torch.save_model`` keeps only one of
shared tensors.
``num_batches_tracked`` may be present or missing in a checkpoint; it is never used.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, closest

from ..layout import UNUSED, expected_tensors, lm_tensors, shape_text

SEED = 0


# --------------------------------------------------------------------------- random weights


def random_weights(graph: ir.Graph, seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic random weights at plausible scales, all drawn uniformly in float32 (fast):
    He-uniform convolutions (``+-sqrt(6 / fan_in)``, the variance of He-normal), PyTorch-style
    linear layers (``+-1 / sqrt(fan_in)``), batch norms with weight in [0.5, 1.5], bias and
    running mean in [-0.1, 0.1] and running variance in [0.5, 2]. Each tensor has its own
    generator seeded by ``seed`` and its name, so a tensor does not change when others are
    added or removed. ``num_batches_tracked`` is left out (it is never used). Language models:
    ``random_lm_weights``."""
    if isinstance(graph, ir.LMGraph):
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
        elif spec.role.startswith("linear.") or spec.role == "conv.bias":
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


# a language model's reset_parameters(): embedding and an untied decoder U(-0.1, 0.1), the cell
# U(-0.04, 0.04), decoder bias 0
INIT_BOUNDS = {"embedding": 0.1, "cell": 0.04, "decoder.weight": 0.1, "decoder.bias": 0.0}


def random_lm_weights(graph: ir.LMGraph, seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic random weights in the ranges of the module's ``reset_parameters``
    (float32, uniform; each tensor from a generator seeded by ``seed`` and its name); a tied
    ``decoder.weight`` is the embedding array itself."""
    out: dict[str, np.ndarray] = {}
    specs = lm_tensors(graph)
    for name, spec in specs.items():
        if spec.role == "tied":
            continue
        bound = np.float32(INIT_BOUNDS[spec.role])
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        arr = rng.random(spec.shape, dtype=np.float32)
        arr *= 2 * bound
        arr -= bound
        out[name] = arr
    if specs["decoder.weight"].role == "tied":
        out["decoder.weight"] = out["embedding.weight"]
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
    if "weights_only" in why or "pickl" in why:  # torch's advice to unpickle: never relayed
        why = "not a file torch.save wrote (or it holds more than tensors)"
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


TORCH_FLOOR = (2, 6)
"""The oldest torch that reads a checkpoint here: before 2.6, ``torch.load(weights_only=True)``
could be made to run code by a crafted file (CVE-2025-32434)."""


def _read_torch(path: Path) -> dict[str, Found]:
    """A ``.pt`` file's tensors by ``torch.load(weights_only=True)`` (torch is imported here
    only: compiling without ``--weights``, or with a .safetensors file, never imports it)."""
    safetensors_hint = ("save the weights with safetensors "
                        "(safetensors.torch.save_file(model.state_dict(), 'w.safetensors'))")
    try:
        import torch
    except ImportError:
        raise ShrinkError(f"reading {path.as_posix()} needs torch, which is not installed", None,
                          f"install torch, or {safetensors_hint}") from None
    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < TORCH_FLOOR:
        raise ShrinkError(f"reading {path.as_posix()} needs torch 2.6 or newer (torch "
                          f"{torch.__version__} is installed, whose torch.load can be made to "
                          "run code by a crafted file)", None,
                          f"upgrade torch (pip install 'torch>=2.6'), or {safetensors_hint}")
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


def tie_checkpoint(found: Mapping[str, Found], graph: ir.LMGraph, source: str) -> Mapping[str, Found]:
    """A tied model's checkpoint with both ``embedding.weight`` and ``decoder.weight`` where it
    holds one of them; an error where it holds two different ones."""
    lm = graph.lm
    if not lm.tied:
        return found
    emb, dec = found.get("embedding.weight"), found.get("decoder.weight")
    if emb is None and dec is not None:
        return {"embedding.weight": dec, **found}
    if dec is None and emb is not None:
        return {**found, "decoder.weight": emb}
    if (emb is not None and dec is not None and emb.array is not None and dec.array is not None
            and emb.shape == dec.shape and emb.dtype == dec.dtype
            and not np.array_equal(emb.array, dec.array, equal_nan=True)):
        raise ShrinkError(
            f"weights {source} do not fit {graph.network}: tensors 'embedding.weight' and "
            f"'decoder.weight' differ, but {graph.network} ties its decoder to its embedding",
            None, "were they saved from a model with an untied decoder ('decoder untied')?")
    return found


def check_weights(found: Mapping[str, Found], graph: ir.Graph, source: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float32 arrays, or an error naming the first tensor that
    does not fit ``graph`` (missing, wrong shape or dtype, then unexpected ones)."""
    if isinstance(graph, ir.LMGraph):  # a tied decoder may be saved under either name, or both
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
            problems.append((f"tensor '{name}' has shape {shape_text(got.shape)}, expected {spec}",
                             "was it saved from another network, or with other arguments?"))
        elif got.dtype != spec.dtype and not unused:
            problems.append((f"tensor '{name}' (shape {spec}) has dtype {got.dtype}, expected "
                             + spec.dtype,
                             "save the weights in float32 (model.float().state_dict())"))
    for name, got in found.items():
        if name not in expected:
            near = None if problems else closest(name, expected)  # only the first is shown
            problems.append((
                (f"unexpected tensor '{name}' (shape {shape_text(got.shape)}, expected none): "
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


__all__ = ["load_weights", "random_weights", "read_checkpoint"]

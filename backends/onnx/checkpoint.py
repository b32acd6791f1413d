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
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, partial
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
    """A tensor as a checkpoint holds it: its shape and dtype, known without reading it, and
    ``array``, read on first use (None where numpy cannot hold it, or the dtype is not one
    a network takes)."""

    shape: tuple[int, ...]
    dtype: str
    read: Callable[[], np.ndarray | None] = field(repr=False, compare=False)

    @cached_property
    def array(self) -> np.ndarray | None:
        return self.read()


def _none() -> None:
    return None


def _not_a_checkpoint(path: Path, what: str, why: str) -> ShrinkError:
    why = why.strip().splitlines()[0] if why.strip() else "unreadable"
    if "weights_only" in why or "pickl" in why:  # torch's advice to unpickle: never relayed
        why = "not a file torch.save wrote (or it holds more than tensors)"
    return ShrinkError(f"cannot read {path.as_posix()} as {what}: {why}", None,
                       "--weights takes model.state_dict() saved with torch.save (.pt) or "
                       "with safetensors (.safetensors)")


def network_bytes(graph: ir.Graph) -> int:
    """The bytes of the tensors of ``graph``'s ``state_dict``."""
    return sum(int(np.prod(spec.shape, dtype=object)) * np.dtype(spec.dtype).itemsize
               for spec in expected_tensors(graph).values())


def read_budget(graph: ir.Graph) -> int:
    """What reading a checkpoint for ``graph`` may unpack into memory before its tensors
    are checked: the network's tensors twice over (float64 weights are read, then refused
    with a message saying so) and 16 MiB for the rest (the pickle of names and shapes)."""
    return 2 * network_bytes(graph) + (16 << 20)


SAFETENSORS_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16",
                      "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
                      "U8": "uint8", "BOOL": "bool"}


@contextmanager
def _safetensors(path: Path) -> Iterator[dict[str, Found]]:
    """A ``.safetensors`` file's tensors, from its header (safetensors checks that each
    tensor's bytes lie in the file, apart from the others); each read on first use."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise ShrinkError(f"reading {path.as_posix()} needs the safetensors package", None,
                          "pip install safetensors") from None
    errors = (SafetensorError, OSError, ValueError, TypeError)

    def reader(f, key: str) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            try:
                return f.get_tensor(key)
            except errors as e:
                raise _not_a_checkpoint(path, "a safetensors file", str(e)) from None
        return read

    try:
        handle = safe_open(str(path), framework="numpy")  # safetensors' numpy reader
    except errors as e:
        raise _not_a_checkpoint(path, "a safetensors file", str(e)) from None
    with handle as f:
        out: dict[str, Found] = {}
        try:
            for key in f.keys():  # noqa: SIM118 - a safe_open handle, not a dict
                sl = f.get_slice(key)
                dtype = SAFETENSORS_DTYPES.get(sl.get_dtype(), sl.get_dtype().lower())
                shape = tuple(int(d) for d in sl.get_shape())
                out[key] = Found(shape, dtype,
                                 reader(f, key) if dtype in ("float32", "int64") else _none)
        except errors as e:
            raise _not_a_checkpoint(path, "a safetensors file", str(e)) from None
        yield out


TORCH_FLOOR = (2, 6)
"""The oldest torch that reads a checkpoint here: before 2.6, ``torch.load(weights_only=True)``
could be made to run code by a crafted file (CVE-2025-32434)."""

# the opcodes torch's weights-only unpickler runs (torch/_weights_only_unpickler.py): any
# other ends its load with an error, so a pickle is followed up to the first
PICKLE_OPS = frozenset({
    "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE",
    "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT",
    "BINUNICODE", "SHORT_BINSTRING", "BINPERSID", "BINGET", "LONG_BINGET", "BINPUT",
    "LONG_BINPUT", "LONG1", "PROTO", "STOP"})
# of the globals torch's unpickler allows, those a state_dict of tensors names (and a few
# that build nothing of a size their arguments do not have): not bytearray(n), a tensor
# class called with sizes, or the rebuilders of quantized, sparse, nested and wrapped
# tensors, which allocate what a number in the pickle says
STATE_DICT_GLOBALS = frozenset({
    "collections OrderedDict", "collections Counter", "builtins set", "builtins complex",
    "_codecs encode", "torch Size", "torch.serialization _get_layout",
    "torch.nn.parameter Parameter", "torch._utils _rebuild_tensor",
    "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_tensor_v3",
    "torch._utils _rebuild_parameter", "torch._utils _rebuild_parameter_with_state"})
STATE_DICT_GLOBAL = re.compile(r"torch ([A-Za-z0-9]*Storage|[a-z][a-z0-9_]*)")  # dtypes, device


class _Obj:
    """What ``pickle_problem`` knows of one object: its size (characters, or elements)
    and, for a tuple, its items."""

    __slots__ = ("items", "size")

    def __init__(self, size: int, items: tuple = ()):
        self.size, self.items = size, items


def pickle_problem(data: bytes, budget: int) -> str | None:
    """What is wrong with unpickling ``data`` as torch's weights-only unpickler would, before
    it runs: a global that a state_dict of tensors does not name (``STATE_DICT_GLOBALS``),
    or more than ``budget`` characters and elements built beyond the pickle's own. Each
    call (REDUCE, NEWOBJ) and each BUILD is charged the size of its arguments and of their
    items, which it may copy (``_codecs.encode`` of a string, ``OrderedDict`` of a list): a
    pickle names an object once and refers to it again in two bytes (BINGET), so a small
    one could otherwise build gigabytes by encoding one string again and again. None where
    nothing is wrong (or the pickle is damaged: torch then says so)."""
    import pickletools

    stack: list[_Obj] = []
    marks: list[int] = []
    memo: dict[int, _Obj] = {}
    spent = 0
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name not in PICKLE_OPS or name == "STOP":
                break  # torch stops there too
            if name == "MARK":
                marks.append(len(stack))
            elif name == "GLOBAL":
                if arg not in STATE_DICT_GLOBALS and not STATE_DICT_GLOBAL.fullmatch(arg):
                    shown = ".".join(arg.split(" ", 1))[:80]
                    return f"its data.pkl names {shown}, which a state_dict of tensors does not"
                stack.append(_Obj(1))
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name in ("BINUNICODE", "SHORT_BINSTRING"):
                stack.append(_Obj(len(arg)))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3", "TUPLE"):
                n = int(name[-1]) if name != "TUPLE" else len(stack) - marks.pop()
                items = tuple(stack[len(stack) - n:])
                del stack[len(stack) - n:]
                stack.append(_Obj(n, items))
            elif name in ("APPEND", "SETITEM"):
                del stack[-(1 if name == "APPEND" else 2):]
                stack[-1].size += 1
            elif name in ("APPENDS", "SETITEMS"):
                n = len(stack) - marks.pop()
                del stack[len(stack) - n:]
                stack[-1].size += n
            elif name in ("REDUCE", "NEWOBJ", "BUILD"):
                args = stack.pop()
                cost = args.size + sum(item.size for item in args.items)
                spent += cost
                if spent > budget:
                    return ("its data.pkl builds far more than it holds (the same "
                            "string or list copied over and over)")
                if name != "BUILD":
                    stack[-1] = _Obj(cost)
            elif name == "BINPERSID":
                stack[-1] = _Obj(1)
            elif name != "PROTO":  # a number, None, True, False, or an empty one
                stack.append(_Obj(0 if name.startswith("EMPTY") else 1))
    except (ValueError, IndexError, KeyError, UnicodeError):  # torch refuses it there too
        pass
    return None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _torch_records(path: Path, budget: int) -> bool:
    """Check a ``.pt`` file's zip archive before torch reads it: every record it will unpack
    into memory (the pickle, and the tensors' data where compressed) declares at most
    ``budget`` bytes in all, and its pickle builds at most about its own size. True where
    torch may map the tensors' data from the file instead of reading it (all of it stored
    uncompressed, as torch.save writes it)."""
    what = "a PyTorch checkpoint"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ShrinkError(f"cannot read weights {path.as_posix()}: {e.strerror}") from None
    if head != b"PK\x03\x04":  # torch's own test; older files (before torch 1.6) are pickles
        raise _not_a_checkpoint(path, what, "not a file torch.save wrote (since torch 1.6, a "
                                "zip archive; save older ones again)")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename.lower() for i in infos]  # torch's zip reader ignores case
            if not infos or len(set(names)) != len(names):
                raise ValueError("records missing or repeated")
            if any(i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
                   for i in infos):  # torch's zip reader knows these two only
                raise ValueError("a record compressed with a method torch does not read")
            prefix = infos[0].filename.split("/", 1)[0].lower()  # as torch finds it
            if f"{prefix}/data.pkl" not in names:
                raise ValueError("no data.pkl")
            pkl = infos[names.index(f"{prefix}/data.pkl")]
            data = [i for i, n in zip(infos, names) if n.startswith(f"{prefix}/data/")]
            mapped = all(i.compress_type == zipfile.ZIP_STORED for i in data)
            unpacked = sum(i.file_size for i in infos if not (mapped and i in data))
            if unpacked > budget:
                raise ShrinkError(
                    f"cannot read {path.as_posix()} as {what}: its records unpack to "
                    f"{_mib(unpacked)} in memory, more than reading weights for this network "
                    f"may take ({_mib(budget)}: its tensors twice over, and 16 MiB)", None,
                    "save the network's model.state_dict() with torch.save (which stores "
                    "tensors uncompressed), or with safetensors")
            pickled = z.read(pkl)
    except ShrinkError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile raises many kinds on a damaged archive
        raise _not_a_checkpoint(path, what, f"a damaged zip archive ({e})") from None
    problem = pickle_problem(pickled, len(pickled) + (1 << 20))
    if problem:
        raise _not_a_checkpoint(path, what, problem)
    return mapped


def _torch_array(t, key: str, path: Path) -> np.ndarray:
    """One tensor as a numpy array of its own (its shape's bytes copied once, never its
    storage's)."""
    try:
        t = t.detach().cpu()
        return t.numpy().copy() if t.is_contiguous() else t.contiguous().numpy()
    except Exception as e:  # noqa: BLE001 - a sparse or otherwise unusual tensor
        raise ShrinkError(f"cannot read tensor '{key}' of {path.as_posix()}: {e}", None,
                          "save model.state_dict() with torch.save") from None


def _read_torch(path: Path, budget: int) -> dict[str, Found]:
    """A ``.pt`` file's tensors by ``torch.load(weights_only=True)`` (torch is imported here
    only: compiling without ``--weights``, or with a .safetensors file, never imports it),
    their data mapped from the file where torch.save stored it, and copied only when the
    checked tensors are taken (``Found.array``)."""
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
    mapped = _torch_records(path, budget)
    try:
        obj = torch.load(str(path), weights_only=True, map_location="cpu", mmap=mapped)
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
        read = (partial(_torch_array, t, key, path) if dtype in ("float32", "int64")
                else _none)
        out[key] = Found(shape, dtype, read)
    return out


@contextmanager
def open_checkpoint(path: str | Path, budget: int) -> Iterator[dict[str, Found]]:
    """Every tensor of a ``.pt`` or ``.safetensors`` file, unchecked, its data read only
    when asked for (``Found.array``); ``budget``: the most a ``.pt`` may unpack into
    memory before that (``read_budget``)."""
    path = Path(path)
    if not path.is_file():
        why = "no such file" if not path.exists() else "not a file"
        raise ShrinkError(f"cannot read weights {path.as_posix()}: {why}")
    if path.suffix == ".safetensors":
        with _safetensors(path) as found:
            yield found
    else:
        yield _read_torch(path, budget)


def tie_checkpoint(found: Mapping[str, Found], graph: ir.LMGraph) -> Mapping[str, Found]:
    """A tied model's checkpoint with both ``embedding.weight`` and ``decoder.weight`` where it
    holds one of them."""
    if not graph.lm.tied:
        return found
    emb, dec = found.get("embedding.weight"), found.get("decoder.weight")
    if emb is None and dec is not None:
        return {"embedding.weight": dec, **found}
    if dec is None and emb is not None:
        return {**found, "decoder.weight": emb}
    return found


def _check_tied(found: Mapping[str, Found], graph: ir.Graph, source: str) -> None:
    """An error where a tied model's checkpoint holds two different decoder and embedding
    weights (both checked against the network already)."""
    if not isinstance(graph, ir.LMGraph) or not graph.lm.tied:
        return
    emb, dec = found["embedding.weight"], found["decoder.weight"]
    if emb is not dec and emb.array is not None and dec.array is not None \
            and not np.array_equal(emb.array, dec.array, equal_nan=True):
        raise ShrinkError(
            f"weights {source} do not fit {graph.network}: tensors 'embedding.weight' and "
            f"'decoder.weight' differ, but {graph.network} ties its decoder to its embedding",
            None, "were they saved from a model with an untied decoder ('decoder untied')?")


def check_weights(found: Mapping[str, Found], graph: ir.Graph, source: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float32 arrays, or an error naming the first tensor that
    does not fit ``graph`` (missing, wrong shape or dtype, then unexpected ones). Names,
    shapes and dtypes are checked before any tensor is read; then each expected one is read
    once, with its own shape."""
    if isinstance(graph, ir.LMGraph):  # a tied decoder may be saved under either name, or both
        found = tie_checkpoint(found, graph)
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
    _check_tied(found, graph, source)
    return {name: found[name].array for name, spec in expected.items()  # type: ignore[misc]
            if spec.role != "bn." + UNUSED}


def load_weights(path: str | Path, graph: ir.Graph) -> dict[str, np.ndarray]:
    """The checked tensors of a state_dict file for ``graph``, by name."""
    with open_checkpoint(path, read_budget(graph)) as found:
        return check_weights(found, graph, Path(path).as_posix())


__all__ = ["load_weights", "open_checkpoint", "random_weights"]

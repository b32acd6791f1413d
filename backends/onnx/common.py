"""What every ONNX model shrinkc writes shares: the opset, the IR version, serialization, and
weights without subnormal values (:func:`flush_subnormals`).

Which opset has which op, and which IR version carries an opset, are read from the onnx
package itself (``onnx.defs``, ``onnx.helper.find_min_ir_version_for``)."""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ir import Loc

OPSET = 28
"""The default opset, and the newest one shrinkc writes: the newest that both the onnx package
and onnxruntime here support (onnxruntime 1.32 rejects 29; ``tests/test_onnx.py`` checks that
it runs). :func:`newest_opset` lowers it to what an older installed onnx package knows."""
MIN_OPSET = 13
"""The oldest opset shrinkc writes (``--opset``): the first with ``Split``'s sizes as an
input, and what deployment toolchains commonly still accept."""
FUNCTION_DOMAIN = "shrinkc.cells"
FUNCTIONS_IR_VERSION = 8  # model-local functions came with IR version 8


def newest_opset() -> int:
    """The newest opset shrinkc writes with the onnx package installed here."""
    return min(OPSET, onnx.defs.onnx_opset_version())


def ir_version(opset: int = OPSET, functions: bool = False) -> int:
    """The lowest ONNX IR version that carries ``opset`` (and model-local functions)."""
    v = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    return max(v, FUNCTIONS_IR_VERSION) if functions else v


@cache
def has_op(op_type: str, opset: int) -> bool:
    """Whether the default domain has ``op_type`` at ``opset``."""
    return onnx.defs.has(op_type, opset, "")


def first_opset(op_type: str) -> int | None:
    """The oldest opset that has ``op_type`` (None: no opset onnx knows has it)."""
    if not onnx.defs.has(op_type, ""):
        return None
    return next((v for v in range(1, onnx.defs.onnx_opset_version() + 1)
                 if has_op(op_type, v)), None)


def require_op(op_type: str, opset: int, what: str, loc: Loc | None) -> None:
    """A located error unless opset ``opset`` has ``op_type``; ``what`` is the spec's name
    for what needs it (``the activation 'hswish'``)."""
    if has_op(op_type, opset):
        return
    first = first_opset(op_type)
    since = f"since opset {first}" if first else "in no opset the installed onnx knows"
    hint = f"compile with --opset {first} or newer" if first else None
    if first and first > newest_opset():
        hint = None
    raise ShrinkError(f"{what} needs the ONNX op {op_type}, which opset {opset} does not have "
                      f"(it exists {since})", loc, hint or "use another op in the spec")


FLOAT32_TINY = np.float32(np.finfo(np.float32).tiny)
"""The smallest normal float32 (2**-126); nonzero values below it are subnormal."""


def flush_subnormals(array: np.ndarray) -> np.ndarray:
    """``array`` (float32) with its subnormal values (nonzero, magnitude below 2**-126) replaced
    by zeros: ``array`` itself when it has none, else a copy (a checkpoint's tensor is never
    changed in place).

    A subnormal costs time, not accuracy: on x86 a multiply or fused multiply-add that reads
    or yields one takes a microcode assist (for the whole vector instruction).
    onnxruntime leaves the CPU's flush-to-zero mode off, and its ``session.set_denormal_as_zero``
    reaches only its pool threads, not the calling thread that runs a one-thread session. A
    checkpoint can hold subnormals: terms that decay geometrically with nothing to push them
    back, such as the running statistics of a channel whose input stopped varying (by
    ``1 - momentum`` a step); folding a batch norm carries them into the convolution's weights
    and bias, and the channel's output, and every node that reads it, follows. ShrinkCNN-A
    with a tenth of its batch-norm channels' terms decayed into that range ran about 30 times
    slower in onnxruntime than with clean weights, the graph of ``torch.onnx.export`` alike;
    flushed, 17 times faster than that (``benchmarks/onnx_trained_weights.py``). A flushed
    weight ``w`` moves an output by at most ``|w| * sum |x|``: below 2**-126 times the input's
    size, nothing next to any normal term in float32. ``cnn`` passes the batch-norm terms
    through this before folding them and every initializer it writes after, as the CPU's
    denormals-are-zero and flush-to-zero modes would."""
    magnitude = np.abs(array)
    small = magnitude < FLOAT32_TINY
    if not small.any() or not (small & (magnitude > 0)).any():
        return array
    return np.where(small, np.float32(0), array)


def serialize(model: onnx.ModelProto) -> bytes:
    """The bytes of ``model`` (deterministic serialization), or an error past protobuf's
    2 GiB."""
    try:
        data = model.SerializeToString(deterministic=True)
    except ValueError as e:  # protobuf's 2 GiB limit
        raise ShrinkError(f"cannot serialize the ONNX model: {e}", None,
                          "models over 2 GiB need external data, which shrinkc does not write yet"
                          ) from None
    if len(data) >= 2**31:  # what protobuf refuses to write (and to read)
        raise ShrinkError(f"cannot serialize the ONNX model: {len(data):,} bytes is more than "
                          "protobuf's 2 GiB", None,
                          "models over 2 GiB need external data, which shrinkc does not write yet")
    return data

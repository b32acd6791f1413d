"""What every ONNX model shrinkc writes shares: the opset, the IR version, serialization."""

from __future__ import annotations

import onnx
from onnx import helper

from shrinkc.compiler.errors import ShrinkError

OPSET = 28
FUNCTION_DOMAIN = "shrinkc.cells"


def ir_version() -> int:
    """The lowest ONNX IR version that carries :data:`OPSET`."""
    return helper.find_min_ir_version_for([helper.make_opsetid("", OPSET)])


def serialize(model: onnx.ModelProto) -> bytes:
    try:
        return model.SerializeToString(deterministic=True)
    except ValueError as e:  # protobuf's 2 GiB limit
        raise ShrinkError(f"cannot serialize the ONNX model: {e}", None,
                          "models over 2 GiB need external data, which shrinkc does not write yet"
                          ) from None

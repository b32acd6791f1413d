"""The ONNX backend: a built graph (and optionally trained weights) -> an ONNX model.

Built straight from the IR with ``onnx.helper`` (:func:`generate`; torch is imported only to
read a ``.pt`` checkpoint). ``cnn`` writes image networks, ``lm`` language models (the time
loop as a Scan), ``checkpoint`` draws random weights and reads and checks trained ones against
the module layout (``backends.layout``), ``precision`` converts to fp16 and int8 with
onnxconverter-common and onnxruntime, ``common`` holds the opset and serialization.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from .cnn import generate_cnn
from .common import FUNCTION_DOMAIN, MIN_OPSET, OPSET, ir_version, newest_opset, serialize
from .lm import generate_lm

MAX_BYTES = 2**31  # protobuf's limit on one serialized message


def generate(graph: ir.Graph, weights: Mapping[str, np.ndarray] | None = None, *,
             fold_bn: bool = True, functions: bool = False,
             weights_source: str | None = None, opset: int = OPSET,
             dynamic_hw: bool = False) -> onnx.ModelProto:
    """The ONNX model of ``graph``'s network, in opset ``opset`` (:data:`MIN_OPSET` to
    :data:`OPSET`, the default, or the newest the installed onnx package knows:
    :func:`newest_opset`); :func:`serialize` writes it.

    ``weights`` maps state_dict names to float32 arrays (checked by
    ``checkpoint.load_weights``); without them the weights are ``checkpoint.random_weights``.
    ``fold_bn`` folds batch norms into convolutions (image networks); ``functions`` emits
    each cell as an ONNX local function (image networks; a language model's cell is already
    one subgraph, the body of its Scan). ``dynamic_hw``: the input's height and width are
    symbolic (image networks whose head pools globally).
    """
    check_opset(opset, newest_opset())
    if graph.cost.params * 4 >= MAX_BYTES:  # checked before a weight is drawn or read
        net = graph.program.networks[graph.network]
        raise ShrinkError(f"{graph.network} has {graph.cost.params:,} parameters: more than an "
                          f"ONNX file holds ({MAX_BYTES // 2**30} GiB, about "
                          f"{MAX_BYTES // 4 // 10**6:,}M float32 parameters)", net.loc,
                          "shrinkc does not write ONNX external data yet")
    if isinstance(graph, ir.LMGraph):
        if dynamic_hw:
            raise ShrinkError(f"{graph.network} is a language model: its input has no height "
                              "and width", None, "leave --input out")
        return generate_lm(graph, weights, functions=functions, weights_source=weights_source,
                           opset=opset)
    return generate_cnn(graph, weights, fold_bn=fold_bn, functions=functions,
                        weights_source=weights_source, opset=opset, dynamic_hw=dynamic_hw)


def check_opset(opset: int, newest: int = OPSET) -> None:
    """An error unless shrinkc writes opset ``opset`` (up to ``newest``: :data:`OPSET`, or
    what the onnx package installed here knows, :func:`newest_opset`)."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ShrinkError(f"opset {opset!r} is out of range: shrinkc writes opsets {MIN_OPSET} to "
                          f"{newest}", None,
                          f"leave the opset out for the newest, {newest}")


__all__ = ["FUNCTION_DOMAIN", "MIN_OPSET", "OPSET", "check_opset", "generate",
           "ir_version", "newest_opset", "serialize"]

"""What the ONNX backend exports: the rules for precision, opset and functions, in one place.

``compile --target onnx`` asks :func:`export_opset` before it reads the spec (a refusal is an
:class:`OptionError`, which the command line reports as a usage error), then :func:`export`
builds the model (``generate``) and converts it (``precision``), refusing what a network
cannot be written as (a language model in reduced precision); :func:`serialize` writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from . import generate
from .checkpoint import load_weights
from .common import OPSET, newest_opset, serialize
from .precision import INT8_OPSET, PRECISIONS, quantize_int8, to_fp16


class OptionError(ValueError):
    """Export options that do not go together (the message names the command line's flags)."""


def export_opset(precision: str = "fp32", opset: int | None = None, *, weights: bool = False,
                 functions: bool = False) -> int:
    """The opset a model with these options is written in (``opset``, or the default for the
    precision), or an :class:`OptionError`. ``weights``: trained weights are given."""
    if precision not in PRECISIONS:
        raise OptionError(f"unknown precision '{precision}' (choose from "
                          f"{', '.join(PRECISIONS)})")
    if precision == "int8" and not weights:
        raise OptionError("--precision int8 needs the trained weights (--weights FILE): "
                          "calibrating random weights measures nothing")
    if precision != "fp32" and functions:
        raise OptionError(f"--precision {precision} writes a flat graph: leave out --functions "
                          "(the converters do not enter ONNX local functions)")
    default = INT8_OPSET if precision == "int8" else OPSET
    opset = default if opset is None else opset
    newest = newest_opset()
    if opset > newest:  # an onnx package older than the one shrinkc was built against
        raise OptionError(f"--opset {opset}: the installed onnx package writes opsets up to "
                          f"{newest}")
    if precision == "int8" and opset > INT8_OPSET:
        raise OptionError(f"--precision int8 --opset {opset}: onnxruntime runs the int8 ops "
                          f"(QuantizeLinear) up to opset {INT8_OPSET}; leave --opset out for "
                          f"{INT8_OPSET}")
    return opset


def export(graph: ir.Graph, weights: Mapping[str, np.ndarray] | str | Path | None = None, *,
           precision: str = "fp32", opset: int | None = None, fold_bn: bool = True,
           functions: bool = False, weights_source: str | None = None,
           dynamic_hw: bool = False,
           calibration: Callable[[], tuple[np.ndarray, str]] | None = None) -> onnx.ModelProto:
    """``graph``'s ONNX model at ``precision`` (fp32, fp16 or int8).

    ``weights``: state_dict arrays, or a checkpoint file (read and checked here, once the
    options are: its name is the ``weights_source``), or None for random weights.
    ``calibration`` gives the images that calibrate an int8 model and their name; it is
    called once the weights are read."""
    opset = export_opset(precision, opset, weights=weights is not None, functions=functions)
    if precision != "fp32" and isinstance(graph, ir.LMGraph):
        raise ShrinkError(f"--precision {precision} is for image networks; {graph.network} is a "
                          "language model, written in fp32 only", None,
                          "leave --precision out")
    if isinstance(weights, (str, Path)):
        weights_source = weights_source or Path(weights).name
        weights = load_weights(weights, graph)
    images, data_name = None, ""
    if precision == "int8":
        if calibration is None:
            raise OptionError("--precision int8 needs calibration images")
        images, data_name = calibration()
    model = generate(graph, weights, fold_bn=fold_bn, functions=functions,
                     weights_source=weights_source, opset=opset, dynamic_hw=dynamic_hw)
    if precision == "fp16":
        return to_fp16(model)
    if precision == "int8":
        return quantize_int8(model, images, data_name)
    return model


__all__ = ["OptionError", "export", "export_opset", "serialize"]

"""Reduced precision for a generated ONNX model: fp16 and int8, by other projects' tools.

``to_fp16``: weights and activations in float16 by onnxconverter-common's
``float16.convert_float_to_float16``, with ``keep_io_types``: the model's inputs and outputs
stay float32 (a Cast after the input and before each output), so a caller feeds and reads
the same arrays as for fp32. ``disable_shape_infer``: the converter does not run onnx's shape
inference first, so the model carries no inferred ``value_info``, as the fp32 model carries
none (onnxruntime infers the types itself; its outputs are the same bit for bit, and the
conversion of ShrinkCNN-A takes 57 ms instead of 101 ms).

``quantize_int8``: onnxruntime's own static quantization (``quantize_static``): QDQ format,
weights int8 per output channel (symmetric), activations uint8 (asymmetric) with MinMax ranges
calibrated on the images given. Not a quantizer of our own. ``reduce_range`` (7-bit weights)
is on, as onnxruntime advises for x86 CPUs without VNNI: there its uint8 x int8 kernels
(``VPMADDUBSW``) saturate on full-range weights, and a proxy network trained on digits fell
from 0.98 to 0.62 validation accuracy without it (0.98 with it). 7-bit weights give up a
little precision everywhere but saturate nowhere, so one file is right on any CPU.

Both are imported only when asked for: compiling at fp32 never loads them.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

from shrinkc.compiler.errors import ShrinkError

PRECISIONS = ("fp32", "fp16", "int8")
INT8_OPSET = 25
"""The newest opset in which onnxruntime (1.32) runs ``QuantizeLinear`` and
``DequantizeLinear`` (opset 28's versions have no kernel yet): int8 models are written at
this opset unless an older one is asked for."""
CALIBRATION_IMAGES = 64
"""At most this many images calibrate the activations' ranges (a fixed, seeded subset). It was
256: calibrating is most of an int8 compile (onnxruntime runs the network, unoptimised, on
every image), and on the digits proxy network of tests/test_onnx_precision.py, trained with
two seeds, 16, 32, 64, 128 and 256 images all gave int8 validation accuracies within 0.3
points (one image) of fp32."""
CALIBRATION_BATCH = 8
"""Images per calibration run. The ranges (minima and maxima over the batches) and so the
model are the same at any batch size; onnxruntime's calibrator runs the network with every
intermediate tensor kept, and at 32 ShrinkCNN-A's calibration held 4.9 GB (1.5 GB at 8)
and spent 2.7 s of CPU in the kernel (0.9 s at 8) of about 10 s."""
INSTALL_HINT = "pip install 'shrinkc[onnx]'"


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with float16 weights and activations, float32 inputs and outputs."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ShrinkError("--precision fp16 needs the 'onnxconverter-common' package", None,
                          INSTALL_HINT) from None
    meta = _metadata(model)
    with warnings.catch_warnings():  # one warning per weight below float16's smallest normal
        warnings.simplefilter("ignore")
        out = float16.convert_float_to_float16(model, keep_io_types=True,
                                               disable_shape_infer=True)
    _restore_metadata(out, meta, {"precision": "fp16", "io_types": "float32"})
    return out


def quantize_int8(model: onnx.ModelProto, images: np.ndarray, calibration: str) -> onnx.ModelProto:
    """``model`` quantized to int8 by onnxruntime's ``quantize_static`` (QDQ, per-channel int8
    weights in 7 bits, uint8 activations), its activation ranges calibrated on ``images``
    (N x C x H x W float32, as the network takes them). ``calibration`` names the data, for
    the metadata."""
    try:
        from onnxruntime import quantization as q
    except ImportError:
        raise ShrinkError("--precision int8 needs the 'onnxruntime' package", None,
                          INSTALL_HINT) from None
    inits = {t.name for t in model.graph.initializer}
    (name,) = [i.name for i in model.graph.input if i.name not in inits]
    images = np.ascontiguousarray(images, dtype=np.float32)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(images), CALIBRATION_BATCH))

        def get_next(self):
            i = next(self.batches, None)
            return None if i is None else {name: images[i:i + CALIBRATION_BATCH]}

    meta = _metadata(model)
    with tempfile.TemporaryDirectory(prefix="shrinkc-int8-") as tmp, _quiet():
        path = Path(tmp) / "int8.onnx"
        try:
            q.quantize_static(
                model, path, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                reduce_range=True, calibrate_method=q.CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": True})
        except MemoryError:
            raise ShrinkError("out of memory while calibrating the int8 model", None,
                              "calibrate on fewer or smaller images") from None
        except Exception as e:  # onnxruntime's own errors, as a message, not a traceback
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ShrinkError(f"onnxruntime's quantizer failed: {first[:300]}") from None
        out = onnx.load(path)
    _restore_metadata(out, meta, {"precision": "int8", "quantization":
                                  "onnxruntime quantize_static, QDQ, per-channel int8 weights "
                                  "(reduce_range), uint8 activations, MinMax",
                                  "calibration": f"{calibration} ({len(images)} images)"})
    return out


def calibration_subset(x: np.ndarray, limit: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """At most ``limit`` images of ``x``: a seeded random subset, in their original order."""
    idx = calibration_indices(len(x), limit, seed)
    return x if idx is None else x[idx]


def calibration_indices(n: int, limit: int = CALIBRATION_IMAGES,
                        seed: int = 0) -> np.ndarray | None:
    """Which of ``n`` images :func:`calibration_subset` keeps (sorted), or None for all."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _metadata(model: onnx.ModelProto) -> tuple[str, str, str, dict[str, str]]:
    return (model.producer_name, model.producer_version, model.doc_string,
            {p.key: p.value for p in model.metadata_props})


def _restore_metadata(model: onnx.ModelProto, meta, extra: dict[str, str]) -> None:
    """What shrinkc wrote about the model (the tools replace or drop some of it), and
    ``extra``."""
    model.producer_name, model.producer_version, model.doc_string, props = meta
    onnx.helper.set_model_props(model, {**props, **extra})


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantizer logs advice and warnings through ``logging`` and
    ``warnings``; the command line says what matters itself."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)

"""fp16 without the onnx package: a model built with ``proto`` -> its float16 version.

What onnxconverter-common's ``float16.convert_float_to_float16(model, keep_io_types=True)``
does to the graphs shrinkc writes (image networks, flat: no functions, no subgraphs), done on
``proto``'s messages so that ``--precision fp16`` imports neither onnx nor the converter
(together about 0.6 s of CPU, most of a cold compile):

* every FLOAT initializer and every FLOAT tensor attribute (the ``Constant`` nodes of the
  activations) becomes FLOAT16, its values clamped as the converter clamps them
  (:func:`to_float16`: magnitudes below 1e-7 to 1e-7, above 1e4 to 1e4; 0, inf and NaN
  kept) and written the way it writes them (``raw_data`` stays ``raw_data``,
  ``float_data`` becomes the half-floats' bits in ``int32_data``);
* the graph's float inputs and outputs stay float32: a ``Cast`` to float16 named
  ``{input}_cast_to_{node}`` before each node that reads an input, and a ``Cast`` to float32
  named ``{node}_cast_to_{output}`` after each node that writes an output, as the converter
  names them.

The converter also writes ``value_info`` from onnx's shape inference; these models carry none,
as shrinkc's fp32 models carry none (onnxruntime infers the types itself). A graph holding an
op the converter keeps in float32 (:data:`CONVERTER_BLOCK_LIST`: none that shrinkc writes
today) is refused here; ``precision.to_fp16`` converts with the converter itself.
``tests/test_onnx_precision.py`` checks that both give the same weights and the same outputs.
"""

from __future__ import annotations

import numpy as np

from .proto import ModelProto, NodeProto, StringStringEntryProto, TensorProto, helper

METADATA = {"precision": "fp16", "io_types": "float32"}
"""What an fp16 model's metadata says besides the fp32 model's (as ``precision.to_fp16``)."""
MIN_POSITIVE = 1e-7
MAX_FINITE = 1e4

CONVERTER_BLOCK_LIST = frozenset({
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
    "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
    "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor",
    "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap",
    "NonMaxSuppression", "TopK", "RoiAlign", "Resize", "Range", "CumSum", "Min", "Max",
    "Upsample"})
"""onnxconverter-common's ``DEFAULT_OP_BLOCK_LIST`` (1.16): ops it leaves in float32 between
Casts."""


def to_float16(x: np.ndarray) -> np.ndarray:
    """``x`` in float16 as the converter's ``convert_np_to_float16`` makes it: positive values
    below 1e-7 become 1e-7, finite ones above 1e4 become 1e4, the same for negative ones;
    0, inf and NaN are kept."""
    x = np.where((x > 0) & (x < MIN_POSITIVE), MIN_POSITIVE, x)
    x = np.where((x > -MIN_POSITIVE) & (x < 0), -MIN_POSITIVE, x)
    x = np.where((x > MAX_FINITE) & (x < np.inf), MAX_FINITE, x)
    x = np.where((x > -np.inf) & (x < -MAX_FINITE), -MAX_FINITE, x)
    return np.float16(x)


def _tensor_to_fp16(t: TensorProto) -> None:
    if t.data_type != TensorProto.FLOAT:
        return
    t.data_type = TensorProto.FLOAT16
    if t.float_data:
        half = to_float16(np.array(t.float_data))
        t.int32_data = half.view(np.uint16).astype(np.int64).tolist()
        t.float_data = []
    if t.raw_data:
        t.raw_data = to_float16(np.frombuffer(t.raw_data, dtype="<f4")).astype("<f2").tobytes()


def to_fp16(model: ModelProto) -> ModelProto:
    """``model`` (built by ``proto``, flat) with float16 weights and activations and float32
    inputs and outputs, and :data:`METADATA` in its metadata; in place (the model is
    returned)."""
    graph = model.graph
    if model.functions:
        raise ValueError("fp16: a model with local functions (the converter does not enter "
                         "them)")
    blocked = sorted({n.op_type for n in graph.node if n.op_type in CONVERTER_BLOCK_LIST})
    if blocked:
        raise ValueError(f"fp16: {', '.join(blocked)} stays float32 in the converter; "
                         "convert with precision.to_fp16")
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None:
                raise ValueError(f"fp16: node {node.name} has a subgraph")
            if attr.t is not None:
                _tensor_to_fp16(attr.t)
    for t in graph.initializer:
        _tensor_to_fp16(t)
    inits = {t.name for t in graph.initializer}
    first: list[NodeProto] = []
    for inp in graph.input:
        if inp.name in inits or inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        for node in graph.node:
            if inp.name not in node.input:
                continue
            cast = f"{inp.name}_cast_to_{node.name}"
            first.append(helper.make_node("Cast", [inp.name], [cast], name=cast,
                                          to=TensorProto.FLOAT16))
            node.input = [cast if i == inp.name else i for i in node.input]
    last: list[NodeProto] = []
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        for node in graph.node:
            if out.name not in node.output:
                continue
            cast = f"{node.name}_cast_to_{out.name}"
            node.output = [cast if o == out.name else o for o in node.output]
            last.append(helper.make_node("Cast", [cast], [out.name], name=cast,
                                         to=TensorProto.FLOAT))
    graph.node = [*first, *graph.node, *last]
    props = {p.key: p.value for p in model.metadata_props}
    model.metadata_props = [StringStringEntryProto(key=k, value=v)
                            for k, v in {**props, **METADATA}.items()]
    return model


__all__ = ["CONVERTER_BLOCK_LIST", "METADATA", "to_float16", "to_fp16"]

"""What every ONNX model shrinkc writes shares: the opset, the IR version, serialization.

Writing a model never imports ``onnx`` (see ``proto``): which opset has which op, and which IR
version carries an opset, are facts of the ONNX standard, kept here in tables taken from
onnx 1.23 (``tests/test_onnx_deploy.py`` checks them against the installed onnx). An op the
table does not know is looked up in ``onnx.defs``."""

from __future__ import annotations

from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ir import Loc

OPSET = 28
"""The default opset, and the newest one shrinkc writes: the newest that both the onnx package
and onnxruntime here support (onnxruntime 1.32 rejects 29; ``tests/test_onnx.py`` checks that
it runs). Compiling never imports onnxruntime, so this bound is a constant;
:func:`newest_opset` lowers it to what an older installed onnx package knows."""
MIN_OPSET = 13
"""The oldest opset shrinkc writes (``--opset``): the first with ``Split``'s sizes as an
input, and what deployment toolchains commonly still accept."""
FUNCTION_DOMAIN = "shrinkc.cells"
FUNCTIONS_IR_VERSION = 8  # model-local functions came with IR version 8


def newest_opset() -> int:
    """The newest opset shrinkc writes with the onnx package installed here (imports onnx:
    for what reads or converts models with it; writing one needs only :data:`OPSET`)."""
    import onnx

    return min(OPSET, onnx.defs.onnx_opset_version())


# The lowest IR version that carries each opset of the default domain (onnx.helper's
# VERSION_TABLE, as find_min_ir_version_for reads it).
IR_VERSIONS = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11,
               24: 12, 25: 13, 26: 13, 27: 13, 28: 14}


def ir_version(opset: int = OPSET, functions: bool = False) -> int:
    """The lowest ONNX IR version that carries ``opset`` (and model-local functions)."""
    if opset in IR_VERSIONS:
        v = IR_VERSIONS[opset]
    else:  # pragma: no cover - opsets outside MIN_OPSET..OPSET are refused before
        from onnx import helper

        v = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    return max(v, FUNCTIONS_IR_VERSION) if functions else v


# The opset in which each op of the default domain first appeared (onnx.defs, opsets 1 to 28).
_FIRST_OPSET_TEXT = {
    1: ("Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat "
        "Constant Conv ConvTranspose DepthToSpace Div Dropout Elu Equal Exp Flatten Floor GRU "
        "Gather Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater HardSigmoid Hardmax "
        "Identity If InstanceNormalization LRN LSTM LeakyRelu Less Log LogSoftmax Loop "
        "LpNormalization LpPool MatMul Max MaxPool MaxRoiPool Mean Min Mul Neg Not Or PRelu "
        "Pad Pow RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Reciprocal "
        "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin "
        "ReduceProd ReduceSum ReduceSumSquare Relu Reshape Selu Shape Sigmoid Size Slice "
        "Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile TopK "
        "Transpose Unsqueeze Upsample Xor"),
    7: "Acos Asin Atan Cos Multinomial Sin Tan",
    8: "Expand Scan",
    9: ("Acosh Asinh Atanh Compress ConstantOfShape Cosh Erf EyeLike IsNaN MaxUnpool "
        "MeanVarianceNormalization NonZero OneHot Scatter Shrink Sign Sinh TfIdfVectorizer "
        "Where"),
    10: ("ConvInteger DequantizeLinear IsInf MatMulInteger Mod NonMaxSuppression QLinearConv "
        "QLinearMatMul QuantizeLinear Resize ReverseSequence RoiAlign StringNormalizer "
        "ThresholdedRelu"),
    11: ("BitShift ConcatFromSequence CumSum Det DynamicQuantizeLinear GatherElements GatherND "
        "Range Round ScatterElements ScatterND SequenceAt SequenceConstruct SequenceEmpty "
        "SequenceErase SequenceInsert SequenceLength SplitToSequence Unique"),
    12: ("Celu Einsum GreaterOrEqual LessOrEqual NegativeLogLikelihoodLoss "
        "SoftmaxCrossEntropyLoss"),
    14: "HardSwish Trilu",
    15: "Bernoulli CastLike Optional OptionalGetElement OptionalHasElement",
    16: "GridSample",
    17: ("BlackmanWindow DFT HammingWindow HannWindow LayerNormalization MelWeightMatrix STFT "
        "SequenceMap"),
    18: ("BitwiseAnd BitwiseNot BitwiseOr BitwiseXor CenterCropPad Col2Im GroupNormalization "
        "Mish"),
    19: "DeformConv",
    20: "AffineGrid Gelu ImageDecoder RegexFullMatch StringConcat StringSplit",
    23: "Attention RMSNormalization RotaryEmbedding",
    24: "Swish TensorScatter",
    26: "BitCast CumProd",
    27: "CausalConvWithState LinearAttention",
    28: "SwiGLU",
}
FIRST_OPSET: dict[str, int] = {op: v for v, ops in _FIRST_OPSET_TEXT.items() for op in ops.split()}


def first_opset(op_type: str) -> int | None:
    """The oldest opset that has ``op_type`` (None: no opset onnx knows has it)."""
    if op_type in FIRST_OPSET:
        return FIRST_OPSET[op_type]
    import onnx

    return next((v for v in range(1, onnx.defs.onnx_opset_version() + 1)
                 if _schema_exists(op_type, v)), None)


def _schema_exists(op_type: str, opset: int) -> bool:
    import onnx

    try:
        onnx.defs.get_schema(op_type, opset, "")
        return True
    except onnx.defs.SchemaError:
        return False


def has_op(op_type: str, opset: int) -> bool:
    """Whether the default domain has ``op_type`` at ``opset``."""
    if op_type in FIRST_OPSET and opset <= OPSET:
        return opset >= FIRST_OPSET[op_type]
    return _schema_exists(op_type, opset)


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


def serialize(model) -> bytes:
    """The bytes of an ``onnx.ModelProto`` or of a model built with ``proto``."""
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

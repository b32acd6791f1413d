"""The primitive ops and activations of the language, each defined once, in a table.

:data:`OPS` holds one :class:`OpSig` per op: its parameters, shape rule, cost formula, input
requirement, BatchNorm, title and family for pictures, and stride parameter. :data:`ACTS`
holds one :class:`ActSig` per activation. The passes, ``shrinkc viz`` and the syntax
highlighter read these tables; :func:`infer` and :func:`cost` look an op up and call its rule.

Adding an op
    1. its :class:`OpSig` entry in :data:`OPS` below;
    2. one entry, keyed by the op's name, in each backend's table:
       ``OP_MODULES`` in ``backends/pytorch/cnn.py`` (the module constructor's source),
       ``OP_NODES`` in ``backends/onnx/cnn.py`` (the ONNX nodes it emits) and
       ``OP_LAYOUT`` in ``backends/layout.py`` (its state_dict tensors, and whether the
       generated module takes the activation inside).
    Nothing else (a new helper class of generated code goes in the PyTorch backend's
    template, ``backends/pytorch/templates/cnn.py.j2``). ``tests/test_ops.py`` fails while a
    backend table lacks an op of :data:`OPS`. An activation is an :class:`ActSig` in
    :data:`ACTS` plus ``ACT_MODULES`` (``backends/pytorch/source.py``) and ``ACT_NODES``
    (``backends/onnx/cnn.py``); one usable in recurrent cells also goes in
    :data:`RECURRENT_ACTS` and the language-model tables ``ACT_FUNCTIONS``
    (``backends/pytorch/lm.py``) and ``ACT_OPS`` (``backends/onnx/lm.py``).

Pure Python: the compiler never imports torch. Conventions:

* conv-style ops (``conv``, ``sepconv``, ``dwconv``) have no bias and carry a BatchNorm
  (``conv(..., bias=true, bn=false)`` says otherwise; such optional parameters are absent from
  an op's attributes, and so from its hash, unless given a value other than the implied one);
  ``sepconv`` is depthwise k x k then pointwise 1 x 1 with one BatchNorm after both;
  ``factorized_reduce`` (DARTS) is two 1 x 1 stride-2 convolutions, the second on the input
  shifted by one pixel, concatenated, with one BatchNorm after them.
* padding of convolutions is "same": ``dilation * (k - 1) // 2`` (``conv(..., padding=P)``).
* MACs count multiply-accumulates of convolutions and linear layers only; parameters count
  every trainable tensor (BatchNorm's weight and bias included, running statistics not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from .ir import Cost, Expr, Num, OpCall, OpInst, Shape, Value


@dataclass(frozen=True)
class P:
    name: str
    type: str  # "int", "float", "bool" or "act"
    default: Value | None = None  # None: required
    minimum: float | None = None
    doc: str = ""
    below: float | None = None  # an exclusive upper bound (dropout's p)
    optional: bool = False  # may be left out: then absent from the op's attributes
    implied: Value | None = None  # what an optional parameter left out stands for

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional


class ShapeError(ValueError):
    """Raised by :func:`infer` with a message; the pass adds the location."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


ShapeRule = Callable[[OpInst, Shape], Shape]
CostRule = Callable[[OpInst, Shape, Shape], Cost]


def _no_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    return Cost()


@dataclass(frozen=True)
class OpSig:
    """One primitive op: everything the compiler, the pictures and the backends' generic code
    know about it. How each backend emits it lives in that backend's table."""

    name: str
    params: tuple[P, ...]
    doc: str
    shape: ShapeRule  # output shape of the op on an input shape (the requirement checked)
    cost: CostRule = _no_cost  # parameters and MACs
    needs: Literal["spatial", "flat", "any"] = "any"  # the input it takes
    carries_bn: bool = False
    title: str = ""  # as papers and pictures write it: "SepConv", "Global AvgPool"
    family: Literal["conv", "sepconv", "dwconv", "pool", "linear", "other"] = "other"
    stride: str | None = None  # the parameter that is its spatial stride
    stride_zero: str | None = None  # the parameter a stride of 0 stands for (a pool's window)
    downsample: bool = False  # may downsample a stage (``downsample maxpool(2)``)
    label_param: str | None = None  # a parameter pictures write after the title (dropout's p)

    @property
    def needs_spatial(self) -> bool:
        return self.needs == "spatial"

    @property
    def needs_flat(self) -> bool:
        return self.needs == "flat"

    def param(self, name: str) -> P | None:
        return self._params_by_name.get(name)

    @cached_property
    def bind_lists(self) -> tuple[list[str], set[str], dict[str, str]]:
        """The parameters' names, the required ones and their docs (what ``resolve`` binds a
        call's arguments against), made once per op. Not to be changed by the caller."""
        return ([p.name for p in self.params], {p.name for p in self.params if p.required},
                {p.name: p.doc for p in self.params})

    @cached_property
    def _params_by_name(self) -> dict[str, P]:
        """``param``'s table: the first parameter of each name (looked up per node)."""
        by_name: dict[str, P] = {}
        for p in self.params:
            by_name.setdefault(p.name, p)
        return by_name


@dataclass(frozen=True)
class ActSig:
    """One activation: its name in specs and its title in pictures."""

    name: str
    title: str
    doc: str = ""


# --------------------------------------------------------------------------- shape rules


def pool_stride(attrs: dict[str, Value]) -> int:
    return int(attrs.get("stride") or attrs["k"])


def attr(op: OpInst, name: str) -> Value | None:
    """The value of ``op``'s parameter ``name``: its attribute, or what an optional parameter
    left out stands for (None for ``conv``'s padding: "same")."""
    if name in op.attrs:
        return op.attrs[name]
    p = OPS[op.op].param(name)
    return None if p is None else p.implied


def conv_padding(op: OpInst) -> int:
    """The padding of a convolution: ``padding=`` where given, else "same"."""
    p = attr(op, "padding")
    if p is not None:
        return int(p)
    return int(op.attrs.get("dilation", 1)) * (int(op.attrs["k"]) - 1) // 2


def _conv_out(size: int, k: int, stride: int, dilation: int, padding: int | None = None,
              ceil: bool = False) -> int:
    pad = dilation * (k - 1) // 2 if padding is None else padding
    span = size + 2 * pad - dilation * (k - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    # PyTorch's rule: the last window must start inside the input or its left padding
    return out - 1 if (out - 1) * stride >= size + pad else out


def _windowed(op: OpInst, x: Shape, out: int, k: int, s: int, d: int,
              padding: int | None = None, ceil: bool = False) -> Shape:
    """The output of a sliding window (a convolution or a pool) over ``x``."""
    assert x.h is not None and x.w is not None  # the op needs a spatial input
    h, w = _conv_out(x.h, k, s, d, padding, ceil), _conv_out(x.w, k, s, d, padding, ceil)
    if h < 1 or w < 1:
        raise ShapeError(f"input {x} is too small for {op.op} (the output would be {h}x{w})")
    return Shape(c=out, h=h, w=w)


def _conv_shape(op: OpInst, x: Shape) -> Shape:
    a = op.attrs
    g, out = int(a["groups"]), int(a["out"])
    if x.c % g or out % g:
        raise ShapeError(
            f"groups={g} must divide both input channels ({x.c}) and output channels ({out})"
        )
    return _windowed(op, x, out, int(a["k"]), int(a["stride"]), int(a["dilation"]),
                     conv_padding(op))


def _sepconv_shape(op: OpInst, x: Shape) -> Shape:
    a = op.attrs
    return _windowed(op, x, int(a["out"]), int(a["k"]), int(a["stride"]), int(a["dilation"]))


def _dwconv_shape(op: OpInst, x: Shape) -> Shape:
    a = op.attrs
    return _windowed(op, x, x.c, int(a["k"]), int(a["stride"]), int(a["dilation"]))


def _pool_shape(op: OpInst, x: Shape) -> Shape:
    a = op.attrs
    k, s, p = int(a["k"]), pool_stride(a), int(a["padding"])
    if p * 2 > k:
        raise ShapeError(f"padding {p} must be at most half the window {k}")
    return _windowed(op, x, x.c, k, s, 1, p, bool(attr(op, "ceil_mode")))


def _global_pool_shape(op: OpInst, x: Shape) -> Shape:
    return Shape(c=x.c)


def _flatten_shape(op: OpInst, x: Shape) -> Shape:
    if x.h is None or x.w is None:
        return Shape(c=x.c)
    return Shape(c=x.c * x.h * x.w)


def _linear_shape(op: OpInst, x: Shape) -> Shape:
    return Shape(c=int(op.attrs["out"]))


def _same_shape(op: OpInst, x: Shape) -> Shape:
    return x


def _chunk_shape(op: OpInst, x: Shape) -> Shape:
    parts, index = int(op.attrs["parts"]), int(op.attrs["index"])
    if index >= parts:
        raise ShapeError(f"index {index} of chunk must be below parts ({parts})",
                         "chunks are numbered from 0")
    if x.c % parts:
        raise ShapeError(f"chunk cannot split {x.c} channels into {parts} equal parts")
    return x.model_copy(update={"c": x.c // parts})


def _factorized_reduce_shape(op: OpInst, x: Shape) -> Shape:
    out = int(op.attrs["out"])
    if out % 2:
        raise ShapeError(f"factorized_reduce needs an even number of output channels, got {out}",
                         "its two convolutions give half the channels each")
    assert x.h is not None and x.w is not None  # the op needs a spatial input
    if x.h % 2 or x.w % 2:
        raise ShapeError(f"factorized_reduce halves the resolution: input {x} needs an even "
                         "height and width", "its two strided halves would differ in size")
    return Shape(c=out, h=x.h // 2, w=x.w // 2)


def _shuffle_shape(op: OpInst, x: Shape) -> Shape:
    g = int(op.attrs["groups"])
    if x.c % g:
        raise ShapeError(f"shuffle cannot split {x.c} channels into {g} groups",
                         "the channels must be a multiple of groups")
    return x


# --------------------------------------------------------------------------- cost formulas


def _hw(y: Shape) -> int:
    return 1 if y.h is None or y.w is None else y.h * y.w


def _conv_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    k, g = int(op.attrs["k"]), int(op.attrs["groups"])
    weights = x.c // g * y.c * k * k
    extra = (y.c if attr(op, "bias") else 0) + (2 * y.c if attr(op, "bn") else 0)
    return Cost(params=weights + extra, macs=weights * _hw(y))


def _sepconv_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    k = int(op.attrs["k"])
    weights = x.c * k * k + x.c * y.c
    return Cost(params=weights + 2 * y.c, macs=weights * _hw(y))


def _dwconv_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    k = int(op.attrs["k"])
    weights = x.c * k * k
    return Cost(params=weights + 2 * y.c, macs=weights * _hw(y))


def _factorized_reduce_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    """Two 1x1 convolutions, c_in -> c_out / 2 each, and one batch norm over c_out."""
    weights = 2 * x.c * (y.c // 2)
    return Cost(params=weights + 2 * y.c, macs=weights * _hw(y))


def _se_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    """Two biased 1x1 convolutions on the pooled vector: c -> squeeze -> c. Their
    multiply-accumulates count (2 * c * squeeze), as any convolution's; the pool, the
    activations and the channel-wise product are free."""
    s = int(op.attrs["squeeze"])
    return Cost(params=x.c * s + s + s * x.c + x.c, macs=2 * x.c * s)


def _linear_cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    return Cost(params=x.c * y.c + y.c, macs=x.c * y.c)


# --------------------------------------------------------------------------- the tables


_K = P("k", "int", 3, 1, "kernel size")
# batch norm's epsilon and momentum (PyTorch's defaults unless given: MobileNetV3 and
# EfficientNet use eps=0.001, MnasNet momentum=0.0003)
_BN = (P("eps", "float", None, 0.0, "batch norm's epsilon (default 1e-5)", optional=True,
         implied=1e-5),
       P("momentum", "float", None, 0.0, "batch norm's momentum (default 0.1)", optional=True,
         implied=0.1))
_S = P("stride", "int", 1, 1, "stride")
_D = P("dilation", "int", 1, 1, "dilation")
_POOL = (P("k", "int", None, 1, "window"), P("stride", "int", 0, 0, "stride (0: k)"),
         P("padding", "int", 0, 0, "padding"),
         P("ceil_mode", "bool", None, doc="round the output size up (PyTorch's ceil_mode)",
           optional=True, implied=False))

OPS: dict[str, OpSig] = {
    s.name: s
    for s in (
        OpSig(
            "conv",
            (P("out", "int", None, 1, "output channels"), P("k", "int", 1, 1, "kernel size"), _S,
             P("groups", "int", 1, 1, "groups"), _D,
             P("padding", "int", None, 0, "padding (default: same)", optional=True),
             P("bias", "bool", None, doc="a bias on the convolution", optional=True,
               implied=False),
             P("bn", "bool", None, doc="a batch norm after it", optional=True, implied=True),
             *_BN),
            "convolution + batch norm", _conv_shape, _conv_cost,
            needs="spatial", carries_bn=True, title="Conv", family="conv", stride="stride",
        ),
        OpSig("sepconv", (P("out", "int", None, 1, "output channels"), _K, _S, _D, *_BN),
              "depthwise k x k + pointwise 1 x 1 + batch norm", _sepconv_shape, _sepconv_cost,
              needs="spatial", carries_bn=True, title="SepConv", family="sepconv",
              stride="stride"),
        OpSig("dwconv", (_K, _S, _D, *_BN), "depthwise convolution + batch norm", _dwconv_shape,
              _dwconv_cost, needs="spatial", carries_bn=True, title="DWConv", family="dwconv",
              stride="stride"),
        OpSig("maxpool", _POOL, "max pooling", _pool_shape, needs="spatial", title="MaxPool",
              family="pool", stride="stride", stride_zero="k", downsample=True),
        OpSig("avgpool", _POOL, "average pooling", _pool_shape, needs="spatial",
              title="AvgPool", family="pool", stride="stride", stride_zero="k", downsample=True),
        OpSig("global_avgpool", (), "global average pool to a flat vector", _global_pool_shape,
              needs="spatial", title="Global AvgPool", family="pool"),
        OpSig("flatten", (), "flatten to a vector", _flatten_shape, title="Flatten"),
        OpSig("linear", (P("out", "int", None, 1, "output features"),), "fully connected, with bias",
              _linear_shape, _linear_cost, needs="flat", title="Linear", family="linear"),
        OpSig("dropout", (P("p", "float", 0.5, 0.0, "drop probability", below=1),), "dropout",
              _same_shape, title="Dropout", label_param="p"),
        OpSig("identity", (), "no-op", _same_shape, title="Identity"),
        OpSig("se", (P("squeeze", "int", None, 1, "channels of the squeezed vector"),
                     P("act", "act", "relu", doc="activation after the first 1x1 conv"),
                     P("gate", "act", "sigmoid", doc="activation of the channel gate")),
              "squeeze-and-excitation: global average pool, 1x1 conv (bias), act, 1x1 conv "
              "(bias), gate; the input scaled channel-wise by the gate", _same_shape, _se_cost,
              needs="spatial", title="SE", label_param="squeeze"),
        OpSig("chunk", (P("parts", "int", None, 1, "equal parts of the channels"),
                        P("index", "int", None, 0, "the part taken, from 0")),
              "one of `parts` equal slices of the channels (ShuffleNetV2's channel split)",
              _chunk_shape, title="Chunk", label_param="index"),
        OpSig("factorized_reduce", (P("out", "int", None, 1, "output channels (even)"),),
              "DARTS's FactorizedReduce: two 1x1 convolutions with stride 2, the second on the "
              "input shifted by one pixel, concatenated, then batch norm; halves the resolution",
              _factorized_reduce_shape, _factorized_reduce_cost, needs="spatial",
              carries_bn=True, title="FactorizedReduce", family="conv"),
        OpSig("shuffle", (P("groups", "int", None, 1, "groups whose channels interleave"),),
              "channel shuffle: the channels of `groups` groups interleaved (ShuffleNet)",
              _shuffle_shape, needs="spatial", title="Channel Shuffle"),
    )
}

ACTS: dict[str, ActSig] = {
    a.name: a
    for a in (
        ActSig("relu", "ReLU", "max(x, 0)"),
        ActSig("relu6", "ReLU6", "min(max(x, 0), 6)"),
        ActSig("swish", "Swish", "x * sigmoid(x)"),
        ActSig("silu", "SiLU", "x * sigmoid(x)"),
        ActSig("hswish", "h-swish", "x * relu6(x + 3) / 6"),
        ActSig("sigmoid", "Sigmoid", "1 / (1 + exp(-x))"),
        ActSig("tanh", "Tanh", "tanh(x)"),
        ActSig("hsigmoid", "h-sigmoid", "relu6(x + 3) / 6"),
        ActSig("gelu", "GELU", "x * Phi(x) (the exact, erf form)"),
        ActSig("mish", "Mish", "x * tanh(softplus(x))"),
        ActSig("elu", "ELU", "x if x > 0 else exp(x) - 1"),
        ActSig("selu", "SELU", "scale * elu(x, alpha) with SELU's constants"),
        ActSig("celu", "CELU", "max(x, 0) + min(exp(x) - 1, 0)"),
        ActSig("leaky_relu", "LeakyReLU", "x if x > 0 else 0.01 * x"),
        ActSig("hardtanh", "Hardtanh", "min(max(x, -1), 1)"),
        ActSig("softplus", "Softplus", "log(1 + exp(x))"),
        ActSig("softsign", "Softsign", "x / (1 + |x|)"),
        ActSig("identity", "Identity", "x (no activation)"),
    )
}

ACTIVATIONS = tuple(ACTS)
CONSTANTS: dict[str, Value] = {"true": True, "false": False}  # names for the bool values
RECURRENT_ACTS = ("tanh", "relu", "sigmoid", "identity")  # a recurrent cell's nodes, in this order
DOWNSAMPLE_OPS = tuple(name for name, s in OPS.items() if s.downsample)


# --------------------------------------------------------------------------- lookups


def infer(op: OpInst, x: Shape) -> Shape:
    """Output shape of ``op`` applied to an input of shape ``x``."""
    sig = OPS[op.op]
    if sig.needs_spatial and x.flat:
        raise ShapeError(f"{op.op} needs an image-shaped input (CxHxW), got a flat vector of {x.c}")
    if sig.needs_flat and not x.flat:
        raise ShapeError(
            f"{op.op} needs a flat input, got {x}", "add global_avgpool or flatten before it"
        )
    return sig.shape(op, x)


def cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    """Parameters and MACs of ``op`` mapping ``x`` to ``y``."""
    return OPS[op.op].cost(op, x, y)


def op_stride(op: OpInst) -> int:
    """The spatial stride of ``op``: its stride parameter (a 0 standing for the parameter
    ``stride_zero`` names), or 1 for an op without one."""
    sig = OPS[op.op]
    if sig.stride is None:
        return 1
    s = int(op.attrs[sig.stride])
    return s if s or sig.stride_zero is None else int(op.attrs[sig.stride_zero])


def stride_expr(call: OpCall | None) -> Expr | None:
    """The spatial stride of a (resolved) call as the spec writes it, before any argument is
    known: the expression of its stride parameter (of ``stride_zero``'s where that is absent
    or 0), or None where it is plainly 1 (absent, a literal 1, or an op without a stride). A
    cell's strides as the generated PyTorch computes them (``passes.residual``)."""
    sig = OPS.get(call.op) if call is not None else None
    if call is None or sig is None or sig.stride is None:
        return None
    e = call.arg(sig.stride)
    if sig.stride_zero is not None and (e is None or (isinstance(e, Num) and e.value == 0)):
        e = call.arg(sig.stride_zero)
    if e is None or (isinstance(e, Num) and e.value == 1):
        return None
    return e


def projection(in_c: int, out_c: int, stride: int) -> OpInst:
    """The 1x1 conv + BN that a projecting residual inserts."""
    return OpInst(op="conv", attrs={"out": out_c, "k": 1, "stride": stride, "groups": 1, "dilation": 1})


Checker = Callable[[Value], str | None]

"""The primitive ops of the language: their signatures, shape rules and cost formulas.

Pure Python: the compiler never imports torch. Backends map the same op names to modules
(PyTorch) or nodes (ONNX). Conventions:

* conv-style ops (``conv``, ``sepconv``, ``dwconv``) have no bias and carry a BatchNorm;
  ``sepconv`` is depthwise k x k then pointwise 1 x 1 with one BatchNorm after both.
* padding of convolutions is "same": ``dilation * (k - 1) // 2``.
* MACs count multiply-accumulates of convolutions and linear layers only; parameters count
  every trainable tensor (BatchNorm's weight and bias included, running statistics not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ir import Cost, OpInst, Shape, Value

ACTIVATIONS = ("relu", "relu6", "swish", "silu", "hswish", "sigmoid", "tanh", "identity")


@dataclass(frozen=True)
class P:
    name: str
    type: str  # "int", "float" or "bool"
    default: Value | None = None  # None: required
    minimum: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class OpSig:
    name: str
    params: tuple[P, ...]
    doc: str
    needs_spatial: bool = False
    needs_flat: bool = False
    carries_bn: bool = False

    def param(self, name: str) -> P | None:
        return next((p for p in self.params if p.name == name), None)


_K = P("k", "int", 3, 1, "kernel size")
_S = P("stride", "int", 1, 1, "stride")
_D = P("dilation", "int", 1, 1, "dilation")

OPS: dict[str, OpSig] = {
    s.name: s
    for s in (
        OpSig(
            "conv",
            (P("out", "int", None, 1, "output channels"), P("k", "int", 1, 1, "kernel size"), _S,
             P("groups", "int", 1, 1, "groups"), _D),
            "convolution + batch norm",
            needs_spatial=True, carries_bn=True,
        ),
        OpSig("sepconv", (P("out", "int", None, 1, "output channels"), _K, _S, _D),
              "depthwise k x k + pointwise 1 x 1 + batch norm", needs_spatial=True, carries_bn=True),
        OpSig("dwconv", (_K, _S, _D), "depthwise convolution + batch norm",
              needs_spatial=True, carries_bn=True),
        OpSig("maxpool", (P("k", "int", None, 1, "window"), P("stride", "int", 0, 0, "stride (0: k)"),
                          P("padding", "int", 0, 0, "padding")), "max pooling", needs_spatial=True),
        OpSig("avgpool", (P("k", "int", None, 1, "window"), P("stride", "int", 0, 0, "stride (0: k)"),
                          P("padding", "int", 0, 0, "padding")), "average pooling", needs_spatial=True),
        OpSig("global_avgpool", (), "global average pool to a flat vector", needs_spatial=True),
        OpSig("flatten", (), "flatten to a vector"),
        OpSig("linear", (P("out", "int", None, 1, "output features"),), "fully connected, with bias",
              needs_flat=True),
        OpSig("dropout", (P("p", "float", 0.5, 0.0, "drop probability"),), "dropout"),
        OpSig("identity", (), "no-op"),
    )
}

DOWNSAMPLE_OPS = ("maxpool", "avgpool")


def pool_stride(attrs: dict[str, Value]) -> int:
    return int(attrs.get("stride") or attrs["k"])


def _conv_out(size: int, k: int, stride: int, dilation: int, padding: int | None = None) -> int:
    pad = dilation * (k - 1) // 2 if padding is None else padding
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


class ShapeError(ValueError):
    """Raised by :func:`infer` with a message; the pass adds the location."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def infer(op: OpInst, x: Shape) -> Shape:
    """Output shape of ``op`` applied to an input of shape ``x``."""
    sig = OPS[op.op]
    a = op.attrs
    if sig.needs_spatial and x.flat:
        raise ShapeError(f"{op.op} needs an image-shaped input (CxHxW), got a flat vector of {x.c}")
    if sig.needs_flat and not x.flat:
        raise ShapeError(
            f"{op.op} needs a flat input, got {x}", "add global_avgpool or flatten before it"
        )
    name = op.op
    if name in ("conv", "sepconv", "dwconv"):
        k, s, d = int(a["k"]), int(a["stride"]), int(a["dilation"])
        if name == "conv":
            g, out = int(a["groups"]), int(a["out"])
            if x.c % g or out % g:
                raise ShapeError(
                    f"groups={g} must divide both input channels ({x.c}) and output channels ({out})"
                )
        out = x.c if name == "dwconv" else int(a["out"])
        h, w = _conv_out(x.h, k, s, d), _conv_out(x.w, k, s, d)  # type: ignore[arg-type]
    elif name in ("maxpool", "avgpool"):
        k, s, p = int(a["k"]), pool_stride(a), int(a["padding"])
        if p * 2 > k:
            raise ShapeError(f"padding {p} must be at most half the window {k}")
        h, w = _conv_out(x.h, k, s, 1, p), _conv_out(x.w, k, s, 1, p)  # type: ignore[arg-type]
        out = x.c
    elif name == "global_avgpool":
        return Shape(c=x.c)
    elif name == "flatten":
        return Shape(c=x.c if x.flat else x.c * x.h * x.w)  # type: ignore[operator]
    elif name == "linear":
        return Shape(c=int(a["out"]))
    else:  # dropout, identity
        return x
    if h < 1 or w < 1:
        raise ShapeError(f"input {x} is too small for {name} (the output would be {h}x{w})")
    return Shape(c=out, h=h, w=w)


def cost(op: OpInst, x: Shape, y: Shape) -> Cost:
    """Parameters and MACs of ``op`` mapping ``x`` to ``y``."""
    a = op.attrs
    hw = 1 if y.flat else y.h * y.w  # type: ignore[operator]
    if op.op == "conv":
        k, g = int(a["k"]), int(a["groups"])
        weights = x.c // g * y.c * k * k
        return Cost(params=weights + 2 * y.c, macs=weights * hw)
    if op.op == "sepconv":
        k = int(a["k"])
        weights = x.c * k * k + x.c * y.c
        return Cost(params=weights + 2 * y.c, macs=weights * hw)
    if op.op == "dwconv":
        k = int(a["k"])
        weights = x.c * k * k
        return Cost(params=weights + 2 * y.c, macs=weights * hw)
    if op.op == "linear":
        return Cost(params=x.c * y.c + y.c, macs=x.c * y.c)
    return Cost()


def projection(in_c: int, out_c: int, stride: int) -> OpInst:
    """The 1x1 conv + BN that a projecting residual inserts."""
    return OpInst(op="conv", attrs={"out": out_c, "k": 1, "stride": stride, "groups": 1, "dilation": 1})


Checker = Callable[[Value], str | None]

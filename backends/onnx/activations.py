"""Activations as ONNX nodes, for image networks (``cnn``): the nodes each activation of the
spec emits, in the opset being written.

Activations: relu -> Relu, relu6 -> Clip(0, 6), swish/silu -> Mul(x, Sigmoid(x)) (the
opset's Swish has no onnxruntime kernel at opset 28), hswish -> HardSwish (opset >= 14, else
Mul(x, HardSigmoid(x))), sigmoid -> Sigmoid, tanh -> Tanh, hsigmoid -> HardSigmoid (alpha 1/6,
beta 1/2), gelu -> Gelu (opset >= 20, else x * 0.5 * (1 + Erf(x / sqrt 2))), mish -> Mish
(opset >= 18, else x * Tanh(Softplus(x))), elu -> Elu, selu -> Selu, celu -> Celu, leaky_relu
-> LeakyRelu (alpha 0.01), hardtanh -> Clip(-1, 1), softplus -> Softplus, softsign -> Softsign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from shrinkc.compiler import ir

from ..layout import join


class Body(Protocol):
    """Where nodes are emitted (``cnn``'s graph or function bodies)."""

    opset: int

    def at(self, what: str, loc: ir.Loc | None) -> None: ...

    def node(self, op_type: str, inputs: list[str], name: str, domain: str = "",
             **attrs) -> str: ...

    def const(self, value: float) -> str: ...


def _unary(op_type: str) -> Callable[[Body, str, str], str]:
    return lambda b, x, name: b.node(op_type, [x], name)


def _swish(b: Body, x: str, name: str) -> str:
    return b.node("Mul", [x, b.node("Sigmoid", [x], join(name, "sigmoid"))], name)


def _hswish(b: Body, x: str, name: str) -> str:
    """``HardSwish`` (opset 14), or before it ``x * HardSigmoid(x)`` with alpha 1/6 and beta
    1/2: ``x * clip(x / 6 + 1/2, 0, 1) == x * relu6(x + 3) / 6``."""
    if b.opset >= 14:
        return b.node("HardSwish", [x], name)
    gate = b.node("HardSigmoid", [x], join(name, "gate"), alpha=1.0 / 6.0, beta=0.5)
    return b.node("Mul", [x, gate], name)


def _gelu(b: Body, x: str, name: str) -> str:
    """``Gelu`` (opset 20; exact, erf form as PyTorch's default), or before it the same
    formula in older ops: ``x * 0.5 * (1 + Erf(x / sqrt(2)))``."""
    if b.opset >= 20:
        return b.node("Gelu", [x], name)
    erf = b.node("Erf", [b.node("Mul", [x, b.const(0.5 ** 0.5)], join(name, "scale"))],
                 join(name, "erf"))
    half = b.node("Mul", [b.node("Add", [erf, b.const(1.0)], join(name, "one_plus")),
                          b.const(0.5)], join(name, "half"))
    return b.node("Mul", [x, half], name)


def _mish(b: Body, x: str, name: str) -> str:
    """``Mish`` (opset 18), or before it ``x * Tanh(Softplus(x))``, its definition."""
    if b.opset >= 18:
        return b.node("Mish", [x], name)
    soft = b.node("Softplus", [x], join(name, "softplus"))
    return b.node("Mul", [x, b.node("Tanh", [soft], join(name, "tanh"))], name)


def _clip(low: float, high: float) -> Callable[[Body, str, str], str]:
    return lambda b, x, name: b.node("Clip", [x, b.const(low), b.const(high)], name)


ACT_NODES: dict[str, Callable[[Body, str, str], str]] = {
    "relu": _unary("Relu"),
    "relu6": _clip(0.0, 6.0),
    # x * Sigmoid(x): onnxruntime 1.32 has no kernel for the Swish op of opset 24 in models
    # stamped with a newer opset
    "swish": _swish,
    "silu": _swish,
    "hswish": _hswish,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "identity": lambda b, x, name: x,
    # relu6(x + 3) / 6 == clip(x / 6 + 1/2, 0, 1)
    "hsigmoid": lambda b, x, name: b.node("HardSigmoid", [x], name, alpha=1.0 / 6.0, beta=0.5),
    "gelu": _gelu,
    "mish": _mish,
    "elu": lambda b, x, name: b.node("Elu", [x], name, alpha=1.0),
    "selu": _unary("Selu"),  # ONNX's default alpha and gamma are PyTorch's constants
    "celu": lambda b, x, name: b.node("Celu", [x], name, alpha=1.0),
    "leaky_relu": lambda b, x, name: b.node("LeakyRelu", [x], name, alpha=0.01),
    "hardtanh": _clip(-1.0, 1.0),
    "softplus": _unary("Softplus"),  # PyTorch's threshold 20 is within float32 rounding
    "softsign": _unary("Softsign"),
}
"""Activation name -> the nodes computing it (``body, input, node name -> output``)."""


def activation(b: Body, x: str, act: str | None, name: str, loc: ir.Loc | None = None) -> str:
    """Emit ``act`` (None: nothing) of ``x`` as the nodes named ``name``, for the spec
    statement at ``loc``; return its output."""
    if act is None:
        return x
    b.at(f"the activation '{act}'", loc)
    return ACT_NODES[act](b, x, name)


__all__ = ["ACT_NODES", "activation"]

"""Writing Python source: expressions with spec names mapped, channel counts as linear
combinations, calls wrapped to the line length, and the jinja2 templates. Shared by the
image-network (``cnn``) and language-model (``lm``) halves of the PyTorch backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import jinja2

from shrinkc.compiler import ir
from shrinkc.compiler.ops import CONSTANTS
from shrinkc.compiler.syntax.printer import expr as print_expr

ACT_MODULES = {
    "relu": "nn.ReLU", "relu6": "nn.ReLU6", "swish": "nn.SiLU", "silu": "nn.SiLU",
    "hswish": "nn.Hardswish", "sigmoid": "nn.Sigmoid", "tanh": "nn.Tanh", "identity": "nn.Identity",
    "hsigmoid": "nn.Hardsigmoid", "gelu": "nn.GELU", "mish": "nn.Mish", "elu": "nn.ELU",
    "selu": "nn.SELU", "celu": "nn.CELU", "leaky_relu": "nn.LeakyReLU", "hardtanh": "nn.Hardtanh",
    "softplus": "nn.Softplus", "softsign": "nn.Softsign",
}
"""Activation name -> its PyTorch module, constructed without arguments (PyTorch's defaults:
LeakyReLU's slope 0.01, ELU's and CELU's alpha 1, Hardtanh's -1..1, Softplus's beta 1)."""
MAX_LINE = 99


# --------------------------------------------------------------------------- expressions


def render(e: ir.Expr, names: dict[str, str]) -> str:
    """An expression as Python source, with spec names mapped to Python names."""

    def rename(x: ir.Expr) -> ir.Expr:
        if isinstance(x, ir.Ref):
            if x.name in names:
                return x.model_copy(update={"name": names[x.name]})
            if x.name in CONSTANTS:
                return x.model_copy(update={"name": str(CONSTANTS[x.name])})
            return x.model_copy(update={"name": ACT_MODULES[x.name]})
        if isinstance(x, ir.BinOp):
            return x.model_copy(update={"left": rename(x.left), "right": rename(x.right)})
        if isinstance(x, ir.Neg):
            return x.model_copy(update={"operand": rename(x.operand)})
        return x

    return print_expr(rename(e))


@dataclass
class Lin:
    """A channel count as a linear combination of terms: ``in_channels + 2 * w``."""

    terms: dict[str, int] = field(default_factory=dict)
    const: int = 0

    @staticmethod
    def of(e: ir.Expr, names: dict[str, str]) -> Lin:
        if isinstance(e, ir.Num) and isinstance(e.value, int):
            return Lin(const=e.value)
        if isinstance(e, ir.BinOp) and e.op in ("+", "-"):
            left, right = Lin.of(e.left, names), Lin.of(e.right, names)
            return left + (right if e.op == "+" else right.scale(-1))
        return Lin.term(render(e, names))

    @staticmethod
    def term(t: str) -> Lin:
        return Lin(terms={t: 1})

    def scale(self, k: int) -> Lin:
        return Lin({t: c * k for t, c in self.terms.items()}, self.const * k)

    def __add__(self, other: Lin) -> Lin:
        terms = dict(self.terms)
        for t, c in other.terms.items():
            terms[t] = terms.get(t, 0) + c
        return Lin({t: c for t, c in terms.items() if c}, self.const + other.const)

    def __str__(self) -> str:
        parts: list[str] = []
        for t, c in self.terms.items():
            if c != 1 and any(op in t for op in ("//", "/", "%", "+", "-")):
                t = f"({t})"
            mag = abs(c)
            s = t if mag == 1 else f"{mag} * {t}"
            parts.append(("- " if c < 0 else "+ ") + s)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        out = " ".join(parts)
        return out[2:] if out.startswith("+ ") else "-" + out[2:]


def value(v: ir.Value) -> str:
    if isinstance(v, str):
        return ACT_MODULES[v]
    if isinstance(v, float):
        return repr(v)
    return str(v)


def call_source(func: str, args: list[str], indent: str, lead: str = "") -> str:
    """A call on one line when it fits, else its arguments on one line, else one per line;
    ``lead`` is what comes before the call on its first line (``self.stage1 = ``)."""
    one = f"{func}({', '.join(args)})"
    if len(indent) + len(lead) + len(one) <= MAX_LINE or not args:
        return one
    inner = indent + "    "
    if len(inner) + len(", ".join(args)) + 1 <= MAX_LINE:  # (+1: the trailing comma)
        return f"{func}(\n{inner}{', '.join(args)},\n{indent})"
    return f"{func}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


def docstring(s: str, indent: str = "    ") -> str:
    """``s`` as a docstring at ``indent``, quotes included, wrapped at spaces to lines of at
    most MAX_LINE characters (a word longer than a line, a long file name, stays whole)."""
    import textwrap

    lines = textwrap.wrap(f'"""{s}"""', MAX_LINE - len(indent), break_long_words=False,
                          break_on_hyphens=False)
    return f"\n{indent}".join(lines)


def text(s: str) -> str:
    """User text (file names) made safe inside a comment, docstring or string literal."""
    return s.encode("unicode_escape").decode("ascii").replace('"', '\\"')




def network_signature(net: ir.NetworkDef, args: dict[str, ir.Value]
                      ) -> tuple[dict[str, str], list[str]]:
    """(spec name -> Python name, the ``__init__`` parameters with their annotations and the
    values the graph was built with) of a network's parameters."""
    from ..naming import Namer

    pnames = Namer({"super"})
    names = {p.name: pnames(p.name) for p in net.params}
    sig = []
    for p in net.params:
        ann = {"int": "int", "float": "float", "act": "type[nn.Module]", "bool": "bool"}[p.type or "int"]
        sig.append(f"{names[p.name]}: {ann} = {value(args[p.name])}")
    return names, sig


@lru_cache(maxsize=2)
def template(name: str) -> jinja2.Template:
    """One of the backend's templates (``cnn.py.j2``, ``lm.py.j2``)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("shrinkc.backends.pytorch", "templates"),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["docstring"] = docstring
    return env.get_template(name)

"""Safe Python names for whatever a spec calls things.

Spec names are user input. The grammar admits only ``[A-Za-z_][A-Za-z0-9_]*``, so no quotes
or other characters can reach generated code; what remains is names that mean something to
Python or to ``nn.Module``: keywords, builtins, ``self``, ``torch``, module methods such as
``forward`` or ``training``, and double-underscore names (mangled inside a class). Such a name
gets a trailing underscore (again, until it is free); every other name is kept as written, so
generated code reads like the spec.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Iterable

from shrinkc.compiler import ir

MODULE_ATTRS = frozenset(
    ["T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad", "training", "append", "extend", "insert", "pop"]
)

PYTHON = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
# every name a generated file defines or imports at module level (tests/test_pytorch_backend.py
# checks this against the templates): a spec name that equals one gets a trailing underscore
GENERATED = frozenset({"self", "torch", "nn", "F", "build", "ConvBN", "SepConv", "GlobalAvgPool",
                       "Stage", "TwoInputStage", "FactorizedReduce", "identity", "highway",
                       "masked", "dropout_mask"})


class Namer:
    """Maps spec names to unique, safe Python identifiers within one scope."""

    def __init__(self, reserved: frozenset[str] | set[str] = frozenset()):
        self.reserved = set(PYTHON | GENERATED | set(reserved))
        self.taken: set[str] = set()
        self.names: dict[str, str] = {}

    def __call__(self, name: str, key: object = None) -> str:
        """The Python name for ``name``; ``key`` (default: the name) tells apart things that
        want the same spelling, e.g. an edge ``n0_to_n1`` and a node called ``n0_to_n1``."""
        key = name if key is None else key
        if key in self.names:
            return self.names[key]
        safe = name
        while (
            safe in self.reserved
            or safe in self.taken
            or safe.startswith("__")
            or safe.startswith("_")
            and safe.lstrip("_") in MODULE_ATTRS | {"modules", "parameters", "buffers"}
        ):
            safe = ("n" + safe) if safe.startswith("__") else safe + "_"
        self.taken.add(safe)
        self.names[key] = safe
        return safe


CELL_ATTRS = MODULE_ATTRS | {"downsample", "residual", "use_residual", "out_channels", "inputs",
                             "drop_path"}
# a cell's parameters are locals of its __init__ and keywords of Stage(...)
CELL_LOCALS = {"in_channels", "prev_channels", "downsample", "down_stride", "super", "cell", "depth", "first",
               "drop_path"}
NETWORK_ATTRS = MODULE_ATTRS | {"stem", "head", "out_channels"}


def act_module(act: ir.Expr | None) -> bool:
    """Whether a spec activation (an expression, or None) becomes a module in generated code:
    any activation except a literal ``identity`` (a parameter that is ``identity`` still does)."""
    return act is not None and not (isinstance(act, ir.Ref) and act.name == "identity")


OUTPUT_ACT = ("output", "act")  # key of the output activation's attribute in cell_attr_names


def cell_attr_names(cell: ir.CellDef) -> dict[str, str]:
    """Spec name -> attribute of the generated cell class, for the input and every node of
    ``cell`` (a resolved ``ir.CellDef``). The PyTorch backend names its attributes with this,
    and the ONNX backend names its initializers after them."""
    nodes = Namer(CELL_ATTRS)
    nodes(cell.input.name)
    if cell.input.state is not None:  # a two-input cell's second input
        nodes(cell.input.state)
    for n in cell.nodes:
        for s in n.inputs:
            nodes(s)
        nodes(n.name)
    for s in cell.output.nodes:
        nodes(s)
    if cell.output.act is not None:  # the activation after the output's add: ``self.act``
        nodes("act", OUTPUT_ACT)
    return dict(nodes.names)


def stage_attr_names(stages: Iterable[ir.StageInst]) -> list[str]:
    """Attribute names of the stages (``ir.StageInst``) of the generated network class."""
    attrs = Namer(NETWORK_ATTRS)
    return [attrs(s.name) for s in stages]


# locals and helpers of a generated recurrent cell's forward(), which attributes must avoid
RECURRENT_LOCALS = {"x", "h", "xh", "x_mask", "h_mask", "hidden_size", "highway", "masked",
                    "identity", "dropout_mask"}


def edge_key(src: str, dst: str) -> tuple[str, str, str]:
    return ("edge", src, dst)


def recurrent_cell_names(nodes, outputs) -> dict:
    """Attributes of a generated recurrent cell: spec node name -> attribute, and
    ``edge_key(src, dst)`` -> the edge's attribute (``n0_to_n3``). ``nodes`` are the cell's
    nodes in order (node 0 first; anything with ``.name`` and ``.inputs``), ``outputs`` the
    averaged nodes. The PyTorch and ONNX backends both name with this."""
    names = Namer(CELL_ATTRS | RECURRENT_LOCALS)
    names(nodes[0].name)
    for n in nodes[1:]:
        for s in n.inputs:
            names(f"{s}_to_{n.name}", edge_key(s, n.name))
            names(s)
        names(n.name)
    for s in outputs:
        names(s)
    return dict(names.names)


def fresh_name(taken: set[str], name: str) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is not taken yet (then taken): unique
    node and value names in generated graphs."""
    out, i = name, 1
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    taken.add(out)
    return out

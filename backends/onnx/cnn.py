"""Graph IR -> ONNX inference model, built node by node with ``onnx.helper``.

No tracing and no exporter: the graph comes straight from the IR, so compiling to ONNX needs
neither torch nor a PyTorch module (torch is imported only to read a ``.pt`` checkpoint).

The model
    * opset :data:`OPSET` (28) by default: the newest opset that both the onnx package and
      onnxruntime here support (onnxruntime 1.32 rejects 29; ``tests/test_onnx.py`` checks that
      it runs); any opset from :data:`MIN_OPSET` (13) with ``opset=``. The graph uses only what
      its opset has: ``hswish`` is ``HardSwish`` from opset 14 and ``x * HardSigmoid(x)``
      (alpha 1/6, beta 1/2) before; every other op the backend emits exists in opset 13 with
      the attributes it uses. Every node is checked against the opset as it is emitted
      (:func:`common.require_op`), so an op missing from the opset is an error located at the
      spec statement that needs it, naming the op and the opset that brought it. The IR
      version is the lowest that carries the opset (and, with ``functions=True``, model-local
      functions: 8).
    * one input, named as the spec's input (``image``), shape ``[batch, C, H, W]`` (or
      ``[batch, C]``) with a dynamic ``batch``; one output, ``logits`` when the head has a
      ``linear`` layer, else ``output``.
    * weights from a checked state_dict (``checkpoint.load_weights``), or else deterministic
      random ones (``checkpoint.random_weights``: numpy, seed 0, He-scaled convolutions, random
      batch-norm statistics); the model's metadata says which (``weights``).
    * inference semantics: dropout is dropped, batch norm uses its running statistics.
    * by default a flat graph; with ``functions=True`` every cell instance is a call of an
      ONNX model-local function (domain :data:`FUNCTION_DOMAIN`) named after the cell
      (``ShrinkA``; instances with another structure, such as the first cell of a stage with
      downsampling and a projection, get ``ShrinkA_2``, ...). A function takes the cell's
      input and then its weights as inputs, so viewers such as Netron show one box per cell;
      depthwise group counts (channel counts) are function attributes (``n1_depthwise_group``),
      so cells of one structure share a function whatever their width.

Names
    * Initializers carry the names of the generated PyTorch module's ``state_dict``
      (``stem.conv.weight``, ``stage2.0.n1.depthwise.weight``, ``head.2.bias``; see
      ``backends/layout.py`` for the layout). Without folding every tensor but
      ``num_batches_tracked`` is an initializer under its own name (``...bn.running_var``).
      With folding the batch norm disappears and the convolution before it keeps its name
      and gains a bias: ``...conv.weight`` / ``...conv.bias``, or for ``sepconv``
      ``...pointwise.weight`` / ``...pointwise.bias`` (the depthwise half is unchanged).
      Scalar constants (``Clip`` bounds, the divisor of ``mean``) are ``const.<value>``.
    * Nodes, and the values they produce, are named by module path with a suffix for the
      part: ``stage2.0.n1.depthwise``, ``stage2.0.n1.pointwise``, ``stage2.0.n1.bn``,
      ``stage2.0.n1.act``; merges are ``<node>.concat`` / ``.sum`` / ``.mean``, a cell's
      output merge ``stage2.0.concat`` and its residual sum ``stage2.0.add``.

Folding (``fold_bn=True``), computed in float64 and stored as float32, with the op's
``eps`` (PyTorch's ``1e-5`` unless the spec gives one)::

    scale  = gamma / sqrt(running_var + eps)          # per output channel
    W'     = W * scale[:, None, None, None]
    b'     = beta - running_mean * scale

so ``Conv(x, W', b') == BatchNorm(Conv(x, W))`` in eval mode. Subnormal values are flushed to
zero in the batch-norm terms (and a bias) before folding and in every initializer written,
folded or not, as a CPU's denormals-are-zero and flush-to-zero modes would
(``common.flush_subnormals``: they slow onnxruntime on x86 by tens of times and move no output).

Op mapping: conv/dwconv -> Conv (+ BatchNormalization); sepconv -> depthwise Conv, pointwise
Conv (+ BatchNormalization); maxpool/avgpool -> MaxPool/AveragePool (``count_include_pad=1``
as PyTorch's default); global_avgpool -> GlobalAveragePool + Flatten; flatten -> Flatten;
linear -> Gemm (``transB=1``); se -> GlobalAveragePool, Conv, act, Conv, gate, Mul with the
input; chunk -> Slice of the channels; shuffle -> Reshape, Transpose, Reshape; dropout,
identity -> nothing; concat -> Concat(axis=1);
sum -> Sum; mean -> Sum then Div; residuals -> Add (with a strided 1x1 Conv where the IR
projects). Activations: ``activations``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ops import attr, conv_padding

from ..layout import OP_LAYOUT, cell_prefixes, chain_prefixes, join, wrapped
from ..naming import OUTPUT_ACT, cell_attr_names, fresh_name
from .activations import ACT_NODES, activation
from .checkpoint import random_weights
from .common import FUNCTION_DOMAIN, OPSET, flush_subnormals, ir_version, require_op

BN_EPS = 1e-5


# --------------------------------------------------------------------------- node bodies


class _Body:
    """A list of nodes under construction (the main graph, or one function body), with the
    weights it reads and a namespace of value names."""

    def __init__(self, weights: Mapping[str, np.ndarray], fold: bool, prefix: str = "",
                 opset: int = OPSET):
        self.weights = weights
        self.fold = fold
        self.prefix = prefix  # module path of the body inside the network, with a dot
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.taken: set[str] = set()
        # what in the spec the nodes being emitted are for, and where: for errors
        self.what: str = "the network"
        self.loc: ir.Loc | None = None

    def at(self, what: str, loc: ir.Loc | None) -> None:
        """The nodes emitted next are for ``what`` at ``loc`` in the spec."""
        self.what, self.loc = what, loc

    def fresh(self, name: str) -> str:
        return fresh_name(self.taken, name)

    def node(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs) -> str:
        if not domain:
            require_op(op_type, self.opset, self.what, self.loc)
        out = self.fresh(name)
        refs = [a for a in attrs.values() if isinstance(a, onnx.AttributeProto)]
        plain = {k: v for k, v in attrs.items() if not isinstance(v, onnx.AttributeProto)}
        node = helper.make_node(op_type, inputs, [out], name=out, domain=domain, **plain)
        node.attribute.extend(refs)
        self.nodes.append(node)
        return out

    def channels(self, name: str, key: str, value: int) -> int | onnx.AttributeProto:
        """An integer attribute ``key`` that is a channel count (a depthwise ``group``)."""
        return value

    def weight(self, name: str) -> np.ndarray:
        """The checkpoint tensor ``name`` (relative to this body)."""
        return self.weights[self.prefix + name]

    def tensor(self, name: str, array: np.ndarray) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def const(self, value: float) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class _GraphBody(_Body):
    def __init__(self, weights: Mapping[str, np.ndarray], fold: bool, opset: int = OPSET):
        super().__init__(weights, fold, opset=opset)
        self.initializers: dict[str, np.ndarray] = {}
        self.consts: dict[float, str] = {}

    def tensor(self, name: str, array: np.ndarray) -> str:
        if name in self.taken:  # pragma: no cover - module paths never collide
            raise AssertionError(f"initializer {name} emitted twice")
        self.initializers[name] = flush_subnormals(np.require(array, np.float32, "C"))
        self.taken.add(name)
        return name

    def const(self, value: float) -> str:
        if value not in self.consts:
            name = self.fresh(f"const.{value:g}")
            self.initializers[name] = np.array(value, np.float32)
            self.consts[value] = name
        return self.consts[value]


class _FunctionBody(_Body):
    """A function body: weights become formal inputs (relative names), their initializers go
    to the main graph under full names; constants are Constant nodes."""

    def __init__(self, graph: _GraphBody, prefix: str):
        super().__init__(graph.weights, graph.fold, prefix, graph.opset)
        self.graph = graph
        self.formals: list[str] = []
        self.actuals: list[str] = []
        self.consts: dict[float, str] = {}
        self.attrs: dict[str, int] = {}  # function attribute -> value at this call

    def channels(self, name: str, key: str, value: int) -> int | onnx.AttributeProto:
        """Channel counts are attributes of the function, so one function serves every
        instance of a cell with the same structure, whatever its width."""
        attr = base = f"{name}.{key}".replace(".", "_")
        i = 1
        while attr in self.attrs:
            i += 1
            attr = f"{base}_{i}"
        self.attrs[attr] = value
        ref = onnx.AttributeProto(name=key, ref_attr_name=attr, type=onnx.AttributeProto.INT)
        return ref

    def tensor(self, name: str, array: np.ndarray) -> str:
        self.actuals.append(self.graph.tensor(self.prefix + name, array))
        self.formals.append(name)
        self.taken.add(name)
        return name

    def const(self, value: float) -> str:
        if value not in self.consts:
            self.consts[value] = self.node(
                "Constant", [], f"const.{value:g}",
                value=helper.make_tensor("", TensorProto.FLOAT, [], [value]))
        return self.consts[value]


# --------------------------------------------------------------------------- ops


def _conv_attrs(k: int, stride: int, dilation: int, groups: int | onnx.AttributeProto,
                pad: int | None = None) -> dict:
    pad = dilation * (k - 1) // 2 if pad is None else pad
    return {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [pad] * 4,
            "dilations": [dilation, dilation], "group": groups}


def _op_conv_attrs(op: ir.OpInst, groups: int | onnx.AttributeProto) -> dict:
    a = op.attrs
    return _conv_attrs(int(a["k"]), int(a["stride"]), int(a["dilation"]), groups,
                       conv_padding(op) if op.op == "conv" else None)


def _conv_bn(b: _Body, x: str, conv: str, bn: str, attrs: dict, *, bias: bool = False,
             norm: bool = True, eps: float = BN_EPS) -> str:
    """``Conv`` (with a bias where the op has one) then ``BatchNormalization`` (unless
    ``norm`` is false), or one ``Conv`` with BN folded in."""
    w = b.weight(f"{conv}.weight")
    if not norm:
        inputs = [x, b.tensor(f"{conv}.weight", w)]
        if bias:
            inputs.append(b.tensor(f"{conv}.bias", b.weight(f"{conv}.bias")))
        return b.node("Conv", inputs, conv, **attrs)
    stats = [b.weight(f"{bn}.{t}") for t in ("weight", "bias", "running_mean", "running_var")]
    if b.fold:
        gamma, beta, mean, var = (flush_subnormals(s).astype(np.float64) for s in stats)
        scale = gamma / np.sqrt(var + eps)
        # w * scale in float64, each product rounded to float32 as it is stored (the same
        # numbers as a float64 array cast afterwards, without its 8 bytes a weight)
        w = np.multiply(w, scale.reshape(-1, *([1] * (w.ndim - 1))), dtype=np.float64,
                        out=np.empty(w.shape, np.float32))
        b0 = flush_subnormals(b.weight(f"{conv}.bias")).astype(np.float64) if bias else 0.0
        shift = beta + (b0 - mean) * scale
        return b.node("Conv", [x, b.tensor(f"{conv}.weight", w), b.tensor(f"{conv}.bias", shift)],
                      conv, **attrs)
    conv_in = [x, b.tensor(f"{conv}.weight", w)]
    if bias:
        conv_in.append(b.tensor(f"{conv}.bias", b.weight(f"{conv}.bias")))
    y = b.node("Conv", conv_in, conv, **attrs)
    names = [b.tensor(f"{bn}.{t}", s)
             for t, s in zip(("weight", "bias", "running_mean", "running_var"), stats)]
    return b.node("BatchNormalization", [y, *names], bn, epsilon=eps)


OpEmitter = Callable[[_Body, str, ir.OpInst, str, ir.Shape], str]
"""``(body, input, op, module path, input shape) -> output``: the op's nodes, without its
activation."""


def _conv(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    return _conv_bn(b, x, join(path, "conv"), join(path, "bn"),
                    _op_conv_attrs(op, int(op.attrs["groups"])), bias=bool(attr(op, "bias")),
                    norm=attr(op, "bn") is not False, eps=float(attr(op, "eps")))  # type: ignore[arg-type]


def _dwconv(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    conv = join(path, "conv")
    return _conv_bn(b, x, conv, join(path, "bn"),
                    _op_conv_attrs(op, b.channels(conv, "group", xs.c)),
                    eps=float(attr(op, "eps")))  # type: ignore[arg-type]


def _se(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    """GlobalAveragePool, Conv (1x1, bias), act, Conv (1x1, bias), gate, then Mul with the
    input (broadcast over height and width)."""
    y = b.node("GlobalAveragePool", [x], join(path, "pool"))
    for i, act in ((1, str(op.attrs["act"])), (2, str(op.attrs["gate"]))):
        fc = join(path, f"fc{i}")
        y = b.node("Conv", [y, b.tensor(f"{fc}.weight", b.weight(f"{fc}.weight")),
                            b.tensor(f"{fc}.bias", b.weight(f"{fc}.bias"))], fc,
                   **_conv_attrs(1, 1, 1, 1))
        y = ACT_NODES[act](b, y, join(path, "act" if i == 1 else "gate"))
    return b.node("Mul", [x, y], path)


def _sepconv(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    dw = join(path, "depthwise")
    y = b.node("Conv", [x, b.tensor(f"{dw}.weight", b.weight(f"{dw}.weight"))], dw,
               **_op_conv_attrs(op, b.channels(dw, "group", xs.c)))
    return _conv_bn(b, y, join(path, "pointwise"), join(path, "bn"), _conv_attrs(1, 1, 1, 1),
                    eps=float(attr(op, "eps")))  # type: ignore[arg-type]


def _pool(op_type: str, **extra) -> OpEmitter:
    def pool(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
        k, p = int(op.attrs["k"]), int(op.attrs.get("padding", 0))
        s = int(op.attrs.get("stride") or k)
        ceil = {"ceil_mode": 1} if attr(op, "ceil_mode") else {}
        return b.node(op_type, [x], path, **extra, **ceil, kernel_shape=[k, k], strides=[s, s],
                      pads=[p] * 4)
    return pool


def _global_avgpool(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    return b.node("Flatten", [b.node("GlobalAveragePool", [x], join(path, "pool"))], path, axis=1)


def _linear(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    return b.node("Gemm", [x, b.tensor(f"{path}.weight", b.weight(f"{path}.weight")),
                           b.tensor(f"{path}.bias", b.weight(f"{path}.bias"))], path, transB=1)


def _ints(b: _Body, values: list[int], name: str) -> str:
    """A constant int64 vector (Slice's and Reshape's operands), as a Constant node."""
    return b.node("Constant", [], name,
                  value=helper.make_tensor("", TensorProto.INT64, [len(values)], values))


def _chunk(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    """Slice of the channel axis: [index * c / parts, (index + 1) * c / parts)."""
    size = xs.c // int(op.attrs["parts"])
    start = int(op.attrs["index"]) * size
    return b.node("Slice", [x, _ints(b, [start], join(path, "starts")),
                            _ints(b, [start + size], join(path, "ends")),
                            _ints(b, [1], join(path, "axes"))], path)


def _shuffle(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    """Reshape to (N, groups, C / groups, H * W), swap the two channel axes, reshape back to
    the input's own shape (any height and width)."""
    g = int(op.attrs["groups"])
    shape = b.node("Shape", [x], join(path, "shape"))
    y = b.node("Reshape", [x, _ints(b, [0, g, xs.c // g, -1], join(path, "groups"))],
               join(path, "split"))
    y = b.node("Transpose", [y], join(path, "transpose"), perm=[0, 2, 1, 3])
    return b.node("Reshape", [y, shape], path)


def _nothing(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    return x


def _factorized_reduce(b: _Body, x: str, op: ir.OpInst, path: str, xs: ir.Shape) -> str:
    """Two 1x1 stride-2 Convs, the second on the input without its first row and column
    (Slice), concatenated, then BatchNormalization (or with BN folded into each half)."""
    shifted = b.node("Slice", [x, _ints(b, [1, 1], join(path, "starts")),
                               _ints(b, [1 << 62, 1 << 62], join(path, "ends")),
                               _ints(b, [2, 3], join(path, "axes"))], join(path, "shift"))
    stride2 = _conv_attrs(1, 2, 1, 1)
    bn = join(path, "bn")
    if not b.fold:
        halves = [b.node("Conv", [src, b.tensor(f"{conv}.weight", b.weight(f"{conv}.weight"))],
                         conv, **stride2)
                  for src, conv in ((x, join(path, "conv_1")), (shifted, join(path, "conv_2")))]
        y = b.node("Concat", halves, join(path, "concat"), axis=1)
        stats = [b.tensor(f"{bn}.{t}", b.weight(f"{bn}.{t}"))
                 for t in ("weight", "bias", "running_mean", "running_var")]
        return b.node("BatchNormalization", [y, *stats], bn, epsilon=BN_EPS)
    # folded: each half's output channels take their slice of the batch norm
    gamma, beta, mean, var = (flush_subnormals(b.weight(f"{bn}.{t}")).astype(np.float64)
                              for t in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + BN_EPS)
    shift = beta - mean * scale
    half = len(scale) // 2
    halves = []
    for i, src in ((0, x), (1, shifted)):
        conv = join(path, f"conv_{i + 1}")
        part = slice(i * half, (i + 1) * half)
        w = b.weight(f"{conv}.weight") * scale[part].reshape(-1, 1, 1, 1)
        halves.append(b.node("Conv", [src, b.tensor(f"{conv}.weight", w.astype(np.float32)),
                                      b.tensor(f"{conv}.bias", shift[part])], conv, **stride2))
    return b.node("Concat", halves, path, axis=1)


OP_NODES: dict[str, OpEmitter] = {
    "conv": _conv,
    "sepconv": _sepconv,
    "dwconv": _dwconv,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool", count_include_pad=1),
    "global_avgpool": _global_avgpool,
    "flatten": lambda b, x, op, path, xs: b.node("Flatten", [x], path, axis=1),
    "linear": _linear,
    "dropout": _nothing,  # inference: dropout is dropped
    "identity": _nothing,
    "se": _se,
    "chunk": _chunk,
    "shuffle": _shuffle,
    "factorized_reduce": _factorized_reduce,
}
"""Op name -> the nodes it emits at its module path (``layout.OP_LAYOUT`` says where the
activation goes)."""


def _op(b: _Body, x: str, op: ir.OpInst, prefix: str, act: ir.Expr | None,
        xs: ir.Shape, loc: ir.Loc | None = None) -> str:
    """Emit ``op`` (with its activation) whose module sits at ``prefix``, for the spec
    statement at ``loc``; return its output."""
    if op.op not in OP_NODES:  # pragma: no cover - the op table and this one are kept in step
        raise ShrinkError(f"the ONNX backend has no mapping for op '{op.op}'")
    b.at(f"the op '{op.op}'", loc)
    wrap = wrapped(op.op, act)
    y = OP_NODES[op.op](b, x, op, join(prefix, "0") if wrap else prefix, xs)
    if wrap:
        return activation(b, y, op.act, join(prefix, "1"), loc)
    return activation(b, y, op.act, prefix if OP_LAYOUT[op.op].act == "replace" else join(prefix, "act"),
                loc)


def _merge(b: _Body, xs: list[str], merge: str, name: str) -> str:
    if len(xs) == 1:
        return xs[0]
    if merge == "concat":
        return b.node("Concat", xs, name, axis=1)
    total = b.node("Sum", xs, name if merge == "sum" else join(name, "sum"))
    if merge == "sum":
        return total
    return b.node("Div", [total, b.const(float(len(xs)))], name)


def _cell(b: _Body, graph: ir.Graph, inst: ir.CellInst, prefix: str, x: str,
          prev: str | None = None) -> str:
    """Emit one cell instance whose module sits at ``prefix``, reading ``x`` (and, for a
    two-input cell, ``prev``: the output of the cell two back, its first input)."""
    cell = graph.program.cells[inst.cell]
    attrs = cell_attr_names(cell)
    acts = {n.name: n.act for n in cell.nodes}
    n0 = inst.nodes[0]
    values = {n0.name: x}
    if inst.n_inputs == 2:
        values = {n0.name: prev, inst.nodes[1].name: x}  # type: ignore[dict-item]
    elif n0.op is not None:
        values[n0.name] = _op(b, x, n0.op, join(prefix, "downsample"), None, n0.in_shape,
                              inst.loc)
    for n in inst.nodes[inst.n_inputs:]:
        path = join(prefix, attrs[n.name])
        b.at(f"the {n.merge} of node '{n.name}'", n.loc)
        xin = _merge(b, [values[s] for s in n.inputs], n.merge, join(path, n.merge))
        values[n.name] = _op(b, xin, n.op, path, acts[n.name], n.in_shape, n.loc)  # type: ignore[arg-type]
    out_loc = cell.output.loc
    b.at(f"the output of cell {inst.cell}", out_loc)
    y = _merge(b, [values[s] for s in inst.output], inst.merge, join(prefix, inst.merge))
    src = x if inst.residual_from is None else values[inst.residual_from]  # the input, or a node
    src_shape = inst.residual_shape
    if inst.residual == "identity":
        b.at(f"the residual of cell {inst.cell}", out_loc)
        y = b.node("Add", [y, src], join(prefix, "add"))
    elif inst.residual == "project":
        r = _op(b, src, inst.residual_op, join(prefix, "residual"), None, src_shape, out_loc)  # type: ignore[arg-type]
        b.at(f"the residual of cell {inst.cell}", out_loc)
        y = b.node("Add", [y, r], join(prefix, "add"))
    if inst.act is not None:
        y = activation(b, y, inst.act, join(prefix, attrs[OUTPUT_ACT]), out_loc)
    return y


# --------------------------------------------------------------------------- model


def _value_info(name: str, shape: ir.Shape, dynamic_hw: bool = False) -> onnx.ValueInfoProto:
    dims: list = shape.as_list()
    if dynamic_hw and len(dims) == 3:
        dims = [dims[0], "height", "width"]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])


def _check_dynamic_hw(graph: ir.CNNGraph) -> None:
    """Any height and width need a network whose output does not depend on them: a head that
    pools globally before anything that counts positions."""
    head = [layer.op.op for layer in graph.head]
    pooled = next((i for i, op in enumerate(head) if op.startswith("global_")), None)
    if pooled is None or len(graph.out_shape.as_list()) != 1:
        net = graph.program.networks[graph.network]
        raise ShrinkError(f"{graph.network} cannot take any height and width: its head does not "
                          "pool globally, so its output depends on the input size", net.loc,
                          "compile for one size with --input CxHxW (such as 3x160x160)")


def output_name(graph: ir.Graph) -> str:
    name = "logits" if any(layer.op.op == "linear" for layer in graph.head) else "output"
    return name + "_" if name == graph.input_name else name


class _Functions:
    """The model-local functions of a model, one per distinct cell structure."""

    def __init__(self) -> None:
        self.funcs: dict[bytes, onnx.FunctionProto] = {}
        self.names: set[str] = set()

    def call(self, b: _GraphBody, graph: ir.CNNGraph, inst: ir.CellInst, prefix: str,
             x: str, prev: str | None = None) -> str:
        """Emit ``inst`` as a call of its cell's function (made on first use); a two-input
        cell's function takes ``prev`` then ``x``."""
        fb = _FunctionBody(b, prefix + ".")
        inp = graph.program.cells[inst.cell].input
        ins = [inp.name, inp.state] if inst.n_inputs == 2 else [inp.name]
        fb.taken.update(ins)  # type: ignore[arg-type]
        y = _cell(fb, graph, inst, "", ins[-1], ins[0] if inst.n_inputs == 2 else None)
        cell_in = "\0".join(ins)
        if y in ins:
            fb.at(f"cell {inst.cell}", inst.loc)
            y = fb.node("Identity", [y], "output")
        key = b"\0".join([*(n.SerializeToString(deterministic=True) for n in fb.nodes),
                          "\0".join(fb.formals).encode(), cell_in.encode(), y.encode(),
                          "\0".join(fb.attrs).encode()])
        if key not in self.funcs:
            name, i = inst.cell, 1
            while name in self.names:
                i += 1
                name = f"{inst.cell}_{i}"
            self.names.add(name)
            self.funcs[key] = helper.make_function(
                FUNCTION_DOMAIN, name, [*ins, *fb.formals], [y], fb.nodes,
                [helper.make_opsetid("", b.opset)], attributes=list(fb.attrs),
                doc_string=f"cell {inst.cell}")
        actual_ins = [x] if inst.n_inputs == 1 else [prev, x]
        return b.node(self.funcs[key].name, [*actual_ins, *fb.actuals], prefix,  # type: ignore[list-item]
                      domain=FUNCTION_DOMAIN, **fb.attrs)


def _network(b: _GraphBody, graph: ir.CNNGraph, funcs: _Functions | None) -> str:
    """Emit stem, stages and head; return the last value."""
    x = graph.input_name
    for (prefix, act), layer in zip(chain_prefixes(graph, "stem"), graph.stem):
        x = _op(b, x, layer.op, prefix, act, layer.in_shape, layer.loc)
    prev = x  # the output two back, for two-input cells (the stem's counts twice)
    for stage, prefixes in zip(graph.stages, cell_prefixes(graph)):
        for inst, prefix in zip(stage.cells, prefixes):
            two = prev if inst.n_inputs == 2 else None
            prev, x = x, (_cell(b, graph, inst, prefix, x, two) if funcs is None else
                          funcs.call(b, graph, inst, prefix, x, two))
    for (prefix, act), layer in zip(chain_prefixes(graph, "head"), graph.head):
        x = _op(b, x, layer.op, prefix, act, layer.in_shape, layer.loc)
    return x


def _name_output(b: _GraphBody, x: str, input_name: str, out_name: str) -> None:
    """Give the last value ``x`` the graph output's name (an Identity if it is the input)."""
    if x == input_name:
        b.at("the network's output", None)
        b.node("Identity", [x], out_name)
        x = out_name
    for node in b.nodes:
        node.input[:] = [out_name if i == x else i for i in node.input]
        node.output[:] = [out_name if o == x else o for o in node.output]


def _add_initializers(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray]) -> None:
    """The weights, added to the model itself (not to the graph ``make_model`` copies)."""
    model.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in arrays.items())


def generate_cnn(graph: ir.CNNGraph, weights: Mapping[str, np.ndarray] | None = None, *,
                 fold_bn: bool = True, functions: bool = False,
                 weights_source: str | None = None, opset: int = OPSET,
                 dynamic_hw: bool = False) -> onnx.ModelProto:
    """The ONNX model of ``graph``'s network, in the default domain's opset ``opset``; with
    ``dynamic_hw`` its input's height and width are symbolic (``height``, ``width``).

    ``weights`` maps state_dict names to float32 arrays (checked by
    ``checkpoint.load_weights``); without them the weights are ``checkpoint.random_weights``.
    """
    if dynamic_hw:
        _check_dynamic_hw(graph)
    if weights is None:
        weights = random_weights(graph)
        weights_source = weights_source or "random (numpy, seed 0)"
    b = _GraphBody(weights, fold_bn, opset)
    b.taken.add(graph.input_name)
    out_name = output_name(graph)
    b.taken.add(out_name)
    funcs = _Functions() if functions else None
    x = _network(b, graph, funcs)
    _name_output(b, x, graph.input_name, out_name)

    g = helper.make_graph(
        b.nodes, graph.network,
        [_value_info(graph.input_name, graph.input_shape, dynamic_hw)],
        [_value_info(out_name, graph.out_shape)],
    )
    opsets = [helper.make_opsetid("", opset)]
    if functions:
        opsets.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
    from shrinkc.compiler.version import __version__

    model = helper.make_model(
        g, opset_imports=opsets, producer_name="shrinkc", producer_version=__version__,
        functions=list(funcs.funcs.values()) if funcs else [],
        ir_version=ir_version(opset, functions),
        doc_string=f"{graph.network} from {graph.source}",
    )
    _add_initializers(model, b.initializers)
    meta = {"network": graph.network, "source": graph.source, "spec_sha256": graph.spec_hash,
            "batch_norm": "folded" if fold_bn else "kept", "weights": weights_source or ""}
    if dynamic_hw:
        meta["input"] = "any height and width"
    helper.set_model_props(model, meta)
    return model

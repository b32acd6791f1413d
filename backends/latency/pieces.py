"""The pieces of a network whose latencies add up to its own, each a tiny ONNX model in the
form the ONNX backend emits it (batch norm folded).

A piece (:class:`Piece`) is one of

* ``op``: an op of the IR with its attributes, its activation and its input shape: the nodes
  ``backends/onnx/cnn.py`` emits for it (``conv`` is one Conv with the batch norm folded in,
  then its activation; ``sepconv`` two Convs; ``se`` its pool, two Convs, gates and Mul...).
  Its model is built by the ONNX backend itself (:func:`piece_model`: a one-layer network
  through ``generate``), so it is the same form as in the full graph;
* ``concat``, ``sum``, ``mean``: a merge of a node's inputs or of a cell's outputs (Concat on
  the channels; Sum; Sum then Div), with the shapes merged in order;
* ``add``: a residual add.

Its key (:attr:`Piece.key`) is a canonical string of what decides its latency besides the
fingerprint, e.g. ``conv(dilation=1,groups=1,k=3,out=44,stride=2)+relu 3x224x224->44x112x112``
or ``concat 12x56x56,24x56x56``. Attributes that change the weights' values but not the
computation (batch norm's ``eps`` and ``momentum``, dropout's ``p``) are left out of it.
:func:`network_pieces` lists the pieces of a network in the order the backend emits them,
with where each one's inputs come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.ops import infer

VALUE_ONLY = frozenset({"eps", "momentum", "p"})
"""Op attributes that change no shape and no amount of work: not in a piece's key."""
MERGES = ("concat", "sum", "mean", "add")


def _value(v: ir.Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _shape(s: ir.Shape) -> str:
    return str(s)


@dataclass(frozen=True)
class Piece:
    """One measurable piece of a network (see the module's documentation)."""

    kind: str  # "op" or one of MERGES
    ins: tuple[ir.Shape, ...]
    out: ir.Shape
    op: ir.OpInst | None = None  # kind "op": the op, with its activation in op.act

    @cached_property
    def key(self) -> str:
        if self.op is not None:
            attrs = ",".join(f"{k}={_value(v)}" for k, v in sorted(self.op.attrs.items())
                             if k not in VALUE_ONLY)
            act = f"+{self.op.act}" if self.op.act not in (None, "identity") else ""
            return f"{self.op.op}({attrs}){act} {_shape(self.ins[0])}->{_shape(self.out)}"
        return f"{self.kind} {','.join(map(_shape, self.ins))}"


def op_piece(op: ir.OpInst, x: ir.Shape, y: ir.Shape | None = None) -> Piece | None:
    """The piece of ``op`` (with its activation) on an input of shape ``x``; None for an op
    the backend emits no node for (identity or dropout without an activation)."""
    if op.op in ("identity", "dropout") and op.act in (None, "identity"):
        return None
    return Piece("op", (x,), infer(op, x) if y is None else y, op)


def merge_piece(kind: str, shapes: list[ir.Shape] | tuple[ir.Shape, ...]) -> Piece | None:
    """The piece merging ``shapes`` (None for one input, which is not merged)."""
    if len(shapes) < 2:
        return None
    if kind == "concat":
        first = shapes[0]
        out = first.model_copy(update={"c": sum(s.c for s in shapes)})
    else:
        out = shapes[0]
    return Piece(kind, tuple(shapes), out)


def act_piece(act: str | None, x: ir.Shape) -> Piece | None:
    """An activation alone (a cell's activation after its residual add)."""
    if act in (None, "identity"):
        return None
    return Piece("op", (x,), x, ir.OpInst(op="identity", act=act))


@dataclass(frozen=True)
class Part:
    """A piece of a network where it sits (``part``: ``stem``, a stage's name or ``head``) and
    which parts produce its inputs (indices into :attr:`Pieces.parts`; -1 is the network's
    input)."""

    part: str
    piece: Piece
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class Pieces:
    """The pieces of a network as a dataflow graph, in the order the backend emits them."""

    parts: tuple[Part, ...]
    output: int  # the part whose output is the network's (-1: the input itself)

    def keys(self) -> set[str]:
        return {p.piece.key for p in self.parts}


class _Flow:
    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.part = "stem"

    def emit(self, piece: Piece | None, inputs: tuple[int, ...]) -> int:
        """The part producing ``piece``'s output (its only input's where it emits nothing)."""
        if piece is None:
            return inputs[0]
        self.parts.append(Part(self.part, piece, inputs))
        return len(self.parts) - 1


def network_pieces(graph: ir.Graph) -> Pieces:
    """Every piece of ``graph``'s network in the order the ONNX backend emits its nodes (a
    piece that occurs twice is listed twice), with where its inputs come from."""
    if graph.kind != "cnn":
        raise ShrinkError(f"{graph.network} is a language model: latency tables and "
                          "predictions are for image networks", None,
                          "measure it as a whole with shrinkc bench")
    flow = _Flow()
    x = -1
    for layer in graph.stem:
        x = flow.emit(op_piece(layer.op, layer.in_shape, layer.out_shape), (x,))
    prev = x  # the output two back, for two-input cells (the stem's counts twice)
    for stage in graph.stages:
        flow.part = stage.name
        for inst in stage.cells:
            two = prev if inst.n_inputs == 2 else None
            prev, x = x, _cell(flow, inst, x, two)
    flow.part = "head"
    for layer in graph.head:
        x = flow.emit(op_piece(layer.op, layer.in_shape, layer.out_shape), (x,))
    return Pieces(tuple(flow.parts), x)


def cell_pieces(inst: ir.CellInst) -> list[Piece]:
    """The pieces of one cell instance alone, in the order the backend emits them."""
    flow = _Flow()
    _cell(flow, inst, -1, -1 if inst.n_inputs == 2 else None)
    return [p.piece for p in flow.parts]


def _cell(flow: _Flow, inst: ir.CellInst, x: int, prev: int | None) -> int:
    """Emit the pieces of one cell instance as ``cnn._cell`` emits its nodes; return the part
    producing its output."""
    shapes = {n.name: n.out_shape for n in inst.nodes}
    n0 = inst.nodes[0]
    values = {n0.name: x}
    if inst.n_inputs == 2:
        values = {n0.name: prev, inst.nodes[1].name: x}  # type: ignore[dict-item]
    elif n0.op is not None:
        values[n0.name] = flow.emit(op_piece(n0.op, n0.in_shape, n0.out_shape), (x,))
    for n in inst.nodes[inst.n_inputs:]:
        xin = flow.emit(merge_piece(n.merge, [shapes[s] for s in n.inputs]),
                        tuple(values[s] for s in n.inputs))
        values[n.name] = flow.emit(op_piece(n.op, n.in_shape, n.out_shape), (xin,))  # type: ignore[arg-type]
    y = flow.emit(merge_piece(inst.merge, [shapes[s] for s in inst.output]),
                  tuple(values[s] for s in inst.output))
    src = x if inst.residual_from is None else values[inst.residual_from]
    if inst.residual == "project":
        src = flow.emit(op_piece(inst.residual_op, inst.residual_shape, inst.out_shape),  # type: ignore[arg-type]
                        (src,))
    if inst.residual != "none":
        y = flow.emit(Piece("add", (inst.out_shape, inst.out_shape), inst.out_shape), (y, src))
    return flow.emit(act_piece(inst.act, inst.out_shape), (y,))


# --------------------------------------------------------------------------- models


def _one_layer_graph(piece: Piece) -> ir.CNNGraph:
    """A network whose stem is the piece's op alone, for the ONNX backend to emit."""
    op = piece.op
    assert op is not None
    act = ir.Ref(name=op.act) if op.act is not None else None
    layer = ir.Layer(op=ir.OpCall(op=op.op), act=act)
    net = ir.NetworkDef(name="piece", body=(
        ir.NetInput(name="x", shape=()), ir.Chain(kind="stem", layers=(layer,))))
    return ir.CNNGraph(network="piece", source="<piece>", spec_hash="", input_name="x",
                       input_shape=piece.ins[0], out_shape=piece.out,
                       stem=(ir.LayerInst(op=op, in_shape=piece.ins[0], out_shape=piece.out),),
                       program=ir.Program(items=(net,)))


def _dims(s: ir.Shape) -> list:
    return ["batch", *s.as_list()]


def _merge_model(piece: Piece, opset: int):
    from onnx import TensorProto, helper

    names = [f"x{i}" for i in range(len(piece.ins))]
    inits = []
    if piece.kind == "concat":
        nodes = [helper.make_node("Concat", names, ["y"], axis=1)]
    elif piece.kind in ("sum", "add"):
        nodes = [helper.make_node("Sum" if piece.kind == "sum" else "Add", names, ["y"])]
    else:  # mean: Sum then Div by the count, as the backend writes it
        inits.append(helper.make_tensor("n", TensorProto.FLOAT, [], [float(len(names))]))
        nodes = [helper.make_node("Sum", names, ["s"]), helper.make_node("Div", ["s", "n"], ["y"])]
    g = helper.make_graph(
        nodes, piece.kind,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, _dims(s))
         for n, s in zip(names, piece.ins)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, _dims(piece.out))],
        initializer=inits)
    from shrinkc.backends.onnx import ir_version

    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir_version(opset), producer_name="shrinkc")


def piece_model(piece: Piece, opset: int | None = None):
    """The ONNX model of ``piece`` alone, with an open batch dimension: an op through the ONNX
    backend (batch norm folded, random weights as ``compile`` draws them), a merge as the
    backend writes it."""
    from shrinkc.backends.onnx import OPSET, generate

    opset = OPSET if opset is None else opset
    if piece.op is None:
        return _merge_model(piece, opset)
    return generate(_one_layer_graph(piece), opset=opset)


NCHWC_DOMAIN = "com.microsoft.nchwc"


def reorder_model(direction: str, shape: ir.Shape, block: int, opset: int | None = None):
    """onnxruntime's layout reorder of a ``shape`` tensor alone: ``in`` (ReorderInput, NCHW to
    the blocked NCHWc layout of ``block`` channels) or ``out`` (ReorderOutput, back): what a
    piece measured alone pays at an edge that a whole network may not have."""
    from onnx import TensorProto, helper

    from shrinkc.backends.onnx import OPSET, ir_version

    opset = OPSET if opset is None else opset
    padded = -(-shape.c // block) * block
    plain, blocked = _dims(shape), ["batch", padded, shape.h, shape.w]
    if direction == "in":
        node = helper.make_node("ReorderInput", ["x"], ["y"], domain=NCHWC_DOMAIN,
                                channels_last=0)
        ins, outs = plain, blocked
    else:
        node = helper.make_node("ReorderOutput", ["x"], ["y"], domain=NCHWC_DOMAIN,
                                channels=shape.c, channels_last=0)
        ins, outs = blocked, plain
    g = helper.make_graph([node], f"reorder_{direction}",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ins)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, outs)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                               helper.make_opsetid(NCHWC_DOMAIN, 1)],
                             ir_version=ir_version(opset), producer_name="shrinkc")


def chain_model(nodes: int, opset: int | None = None):
    """``nodes`` Relu nodes one after another on a single float per batch item: what a run
    and a node cost beyond the work (the overhead terms of a table)."""
    from onnx import TensorProto, helper

    from shrinkc.backends.onnx import OPSET, ir_version

    opset = OPSET if opset is None else opset
    names = ["x", *(f"r{i}" for i in range(nodes))]
    g = helper.make_graph(
        [helper.make_node("Relu", [a], [b]) for a, b in zip(names, names[1:])], "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, ["batch", 1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir_version(opset), producer_name="shrinkc")


__all__ = ["MERGES", "NCHWC_DOMAIN", "Part", "Piece", "Pieces", "act_piece", "cell_pieces",
           "chain_model",
           "merge_piece", "network_pieces", "op_piece", "piece_model", "reorder_model"]

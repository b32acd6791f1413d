"""Graph IR -> ONNX inference model of a language model (a recurrent cell), with ``onnx.helper``.

The whole sequence is one graph, and the time loop is an ONNX ``Scan``, so a model built
once runs on any sequence length (and any batch size). As for image networks
(``backends/onnx/cnn.py``) the graph comes straight from the IR: no torch, no tracing.

The model (opset :data:`~shrinkc.backends.onnx.OPSET` by default, any from
:data:`~shrinkc.backends.onnx.MIN_OPSET` (13) with ``opset=``; before opset 18 ``Split`` takes
no ``num_outputs`` (it splits evenly into its outputs), and before opset 15 ``Shape`` takes no
``start``/``end``: the batch is ``Gather(Shape(tokens), [0])``)
    * inputs: ``tokens``, int64 ``[batch, time]`` (required), and ``hidden``, float
      ``[batch, hidden]``, the initial state h_0 (optional, see below).
    * outputs: ``logits``, float ``[batch, time, vocab]``, then ``last_hidden``, float
      ``[batch, hidden]``: h_T, to feed back as ``hidden`` for the next chunk of a sequence.
      This is what the generated module's ``model(tokens, hidden)`` returns, in eval mode.
    * dropouts are training-only and have no node.

Graph layout::

    embedding    Gather(embedding.weight, tokens)                  [batch, time, embed]
    hidden.init  If(Size(hidden) == 0, zeros [batch, hidden], hidden)
    cell         Scan(hidden.init, embedding; scan_input_axes=[1], scan_output_axes=[1])
                   -> last_hidden [batch, hidden], cell [batch, time, hidden]
    decoder      MatMul(cell, Transpose(decoder.weight)) + decoder.bias  -> logits

The ``Scan`` body is the cell (graph name: the cell's name), one step from
``(h_{t-1}, x_t)`` to ``h_t``, reading the weights from the outer graph. Its state is h and
its one scan input x, both on axis 1 (time), so the batch-major tensors need no transposes.
Node 0 is ``Concat(x_t, h_{t-1})`` then ``Gemm(transB=1)`` with ``cell.n0.weight``; every
edge i->j is a ``Gemm`` of s_i with its own weight; each such [c, h] product makes a highway
update::

    Split -> c, h;  s_i + Sigmoid(c) * (f_j(h) - s_i)      (f_j: Tanh, Relu, Sigmoid or none)

(node 0's update starts from h_{t-1}); a node with several inputs averages them (``Sum`` then
``Div``); h_t is the mean of the output nodes, and is both the new state and the step's scan
output.

The optional initial state
    ``hidden`` is a graph input that also has an initializer, which makes it an *overridable
    initializer*: onnxruntime runs without it (``session.get_inputs()`` lists only
    ``tokens``; ``get_overridable_initializers()`` lists ``hidden``) and takes it when fed. Its
    default is an empty ``[0, hidden]`` tensor, which the ``If`` ``hidden.init`` reads as
    "zeros": the then-branch builds ``zeros(batch, hidden)`` with ``ConstantOfShape`` from the
    batch of ``tokens``, the else-branch passes the given state through. A given state whose
    batch differs from the tokens' fails in the cell's first ``Concat``. (Optional-typed inputs
    with ``OptionalHasElement`` would say the same more directly, but onnxruntime 1.32 has no
    kernel for that op at opset 28.) onnxruntime logs a warning on loading that the
    initializer ``hidden`` is a graph input and will not be constant-folded: that is intended,
    it is what makes the state overridable. The empty default holds no numbers, so the
    initializers hold exactly the module's parameters.

Names
    * initializers are named as the generated module's ``state_dict`` (``embedding.weight``,
      ``cell.n0.weight``, ``cell.n0_to_n3.weight``, ``decoder.weight``, ``decoder.bias``),
      cell attributes spelled as the PyTorch backend spells them (see :func:`cell_names`).
      With a tied decoder the embedding matrix is one initializer, ``embedding.weight``, that
      both the ``Gather`` and the decoder read; ``decoder.weight`` is then no initializer.
    * nodes and their values are named by module path: ``embedding``, ``cell`` (the ``Scan``),
      ``decoder``; in the body ``cell.n0.concat``, ``cell.n0`` (the ``Gemm`` of node 0) and
      ``cell.n0_to_n3`` (an edge's), with the highway's parts as suffixes (``.split`` ->
      ``.c``, ``.h``; ``.gate``, ``.act``, ``.sub``, ``.mul``, ``.highway``); a node's mean is
      ``cell.n3.mean`` (after ``cell.n3.sum``), the output mean ``cell.mean``; shape helpers
      and constants are Constant nodes (``const.*``), never initializers.

Weights come from a checkpoint checked as for image networks (``checkpoint.load_weights``; the
layout is :func:`lm_tensors`), where a tied model's checkpoint may hold ``embedding.weight``,
``decoder.weight`` or both (equal), as ``safetensors.torch.save_model`` keeps only one of
shared tensors. Without a checkpoint the weights are deterministic random ones
(``checkpoint.random_lm_weights``: numpy, seed 0, the module's own initialisation ranges).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError

from ..layout import cell_names, lm_tensors
from ..naming import edge_key, fresh_name
from .checkpoint import random_lm_weights
from .common import OPSET, flush_subnormals, ir_version, require_op

ACT_OPS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "identity": None}
TOKENS, HIDDEN, LOGITS, LAST_HIDDEN = "tokens", "hidden", "logits", "last_hidden"


# --------------------------------------------------------------------------- graph building


class _Builder:
    """Nodes of one graph (the main graph or a subgraph); value names are unique in the model
    (``taken`` is shared), as ONNX wants across subgraphs."""

    def __init__(self, taken: set[str], opset: int = OPSET):
        self.taken = taken
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.consts: dict[str, str] = {}

    def fresh(self, name: str) -> str:
        return fresh_name(self.taken, name)

    def node(self, op_type: str, inputs: list[str], name: str, outputs: list[str] | None = None,
             **attrs) -> str:
        """Append a node named ``name`` (made unique); its one output is named as the node,
        or its outputs are ``outputs`` (made unique). Returns the first output."""
        require_op(op_type, self.opset, "the language model", None)
        node_name = self.fresh(name)
        outs = [node_name] if outputs is None else [self.fresh(o) for o in outputs]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs[0]

    def const(self, name: str, value: np.ndarray) -> str:
        """A ``Constant`` node, one per name in this graph."""
        if name not in self.consts:
            self.consts[name] = self.node("Constant", [], name,
                                          value=numpy_helper.from_array(value, ""))
        return self.consts[name]


def _highway(b: _Builder, s: str, ch: str, act: str, path: str) -> str:
    """``s + sigmoid(c) * (act(h) - s)`` with ``[c, h] = ch``."""
    if act not in ACT_OPS:
        raise ShrinkError(f"the ONNX backend has no mapping for the activation '{act}' of a "
                          "recurrent cell")
    # two equal halves: num_outputs from opset 18, the number of outputs before
    even = {"num_outputs": 2} if b.opset >= 18 else {}
    b.node("Split", [ch], f"{path}.split", outputs=[f"{path}.c", f"{path}.h"], axis=-1, **even)
    c, h = b.nodes[-1].output
    gate = b.node("Sigmoid", [c], f"{path}.gate")
    if ACT_OPS[act] is not None:
        h = b.node(ACT_OPS[act], [h], f"{path}.act")
    diff = b.node("Sub", [h, s], f"{path}.sub")
    return b.node("Add", [s, b.node("Mul", [gate, diff], f"{path}.mul")], f"{path}.highway")


def _mean(b: _Builder, xs: list[str], name: str) -> str:
    if len(xs) == 1:
        return xs[0]
    total = b.node("Sum", xs, f"{name}.sum")
    n = b.const(f"const.{len(xs)}", np.array(len(xs), np.float32))
    return b.node("Div", [total, n], f"{name}.mean")


def _cell_body(graph: ir.LMGraph, taken: set[str], opset: int) -> onnx.GraphProto:
    """The Scan body: one step (h_{t-1}, x_t) -> (h_t, h_t)."""
    lm = graph.lm
    cell, names = lm.cell, cell_names(lm.cell)
    spec_input = graph.program.cells[cell.cell].input
    b = _Builder(taken, opset)
    h_in = b.fresh(f"cell.{spec_input.state or 'h'}")
    x_in = b.fresh(f"cell.{spec_input.name}")
    n0 = cell.nodes[0]
    p0 = f"cell.{names[n0.name]}"
    xh = b.node("Concat", [x_in, h_in], f"{p0}.concat", axis=-1)
    ch = b.node("Gemm", [xh, f"{p0}.weight"], p0, transB=1)
    values = {n0.name: _highway(b, h_in, ch, n0.op.act, p0)}  # type: ignore[union-attr, arg-type]
    for n in cell.nodes[1:]:
        terms = []
        for s in n.inputs:
            path = f"cell.{names[edge_key(s, n.name)]}"
            ch = b.node("Gemm", [values[s], f"{path}.weight"], path, transB=1)
            terms.append(_highway(b, values[s], ch, n.op.act, path))  # type: ignore[union-attr, arg-type]
        values[n.name] = _mean(b, terms, f"cell.{names[n.name]}")
    h_out = _mean(b, [values[o] for o in cell.output], "cell")
    y_out = b.node("Identity", [h_out], "cell.output")

    def vi(name: str, size: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", size])

    return helper.make_graph(
        b.nodes, cell.cell, [vi(h_in, lm.hidden), vi(x_in, lm.embed)],
        [vi(h_out, lm.hidden), vi(y_out, lm.hidden)],
        doc_string=f"recurrent cell {cell.cell}: one step (h_t-1, x_t) -> h_t, twice "
                   "(the new state, and the step's output)")


def _initial_state(b: _Builder, hidden: int) -> str:
    """``hidden`` if it has rows, else zeros of shape [batch of tokens, hidden]."""
    size = b.node("Size", [HIDDEN], "hidden.size")
    empty = b.node("Equal", [size, b.const("const.0", np.array(0, np.int64))], "hidden.empty")
    zb = _Builder(b.taken, b.opset)
    if b.opset >= 15:
        batch = zb.node("Shape", [TOKENS], "tokens.batch", start=0, end=1)
    else:  # no start and end before opset 15
        batch = zb.node("Gather", [zb.node("Shape", [TOKENS], "tokens.shape"),
                                   zb.const("const.first", np.array([0], np.int64))],
                        "tokens.batch", axis=0)
    shape = zb.node("Concat", [batch, zb.const("const.hidden_size",
                                                np.array([hidden], np.int64))],
                    "hidden.zeros_shape", axis=0)
    zeros = zb.node("ConstantOfShape", [shape], "hidden.zeros",
                    value=helper.make_tensor("", TensorProto.FLOAT, [1], [0.0]))
    gb = _Builder(b.taken, b.opset)
    given = gb.node("Identity", [HIDDEN], "hidden.given")

    def branch(body: _Builder, out: str, name: str) -> onnx.GraphProto:
        return helper.make_graph(body.nodes, name, [], [helper.make_tensor_value_info(
            out, TensorProto.FLOAT, ["batch", hidden])])

    return b.node("If", [empty], "hidden.init",
                  then_branch=branch(zb, zeros, "zeros"), else_branch=branch(gb, given, "given"))


def _main_nodes(b: _Builder, graph: ir.LMGraph, taken: set[str]) -> None:
    """Embedding, initial state, the Scan of the cell, and the decoder."""
    lm = graph.lm
    x = b.node("Gather", ["embedding.weight", TOKENS], "embedding", axis=0)
    h0 = _initial_state(b, lm.hidden)
    body = _cell_body(graph, taken, b.opset)
    hs = b.fresh("cell")
    b.nodes.append(helper.make_node("Scan", [h0, x], [LAST_HIDDEN, hs], name=hs, body=body,
                                    num_scan_inputs=1, scan_input_axes=[1],
                                    scan_output_axes=[1]))
    dec_w = "embedding.weight" if lm.tied else "decoder.weight"
    w_t = b.node("Transpose", [dec_w], "decoder.transpose", perm=[1, 0])
    y = b.node("MatMul", [hs, w_t], "decoder.matmul")
    b.nodes.append(helper.make_node("Add", [y, "decoder.bias"], [LOGITS], name=b.fresh("decoder")))


def _graph(b: _Builder, graph: ir.LMGraph) -> onnx.GraphProto:
    """The main graph of ``b``'s nodes, with its documented inputs and outputs."""
    lm = graph.lm
    tied = " (tied to the embedding)" if lm.tied else ""
    return helper.make_graph(
        b.nodes, graph.network,
        [helper.make_tensor_value_info(TOKENS, TensorProto.INT64, ["batch", "time"],
                                       doc_string=f"token ids in [0, {lm.vocab})"),
         helper.make_tensor_value_info(
             HIDDEN, TensorProto.FLOAT, ["batch", lm.hidden],
             doc_string="optional initial state h_0 (an overridable initializer whose empty "
                        "default means zeros)")],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", "time", lm.vocab],
                                       doc_string=f"decoder output{tied}, before softmax"),
         helper.make_tensor_value_info(LAST_HIDDEN, TensorProto.FLOAT, ["batch", lm.hidden],
                                       doc_string="h_T, the state after the last step")],
    )


def generate_lm(graph: ir.LMGraph, weights: Mapping[str, np.ndarray] | None = None, *,
                functions: bool = False, weights_source: str | None = None,
                opset: int = OPSET) -> onnx.ModelProto:
    """The ONNX model of the language model ``graph``, in the default domain's opset ``opset``.

    ``weights`` maps state_dict names to float32 arrays (checked by
    ``checkpoint.load_weights``); without them the weights are ``checkpoint.random_lm_weights``.
    """
    lm = graph.lm
    if functions:
        raise ShrinkError(f"--functions is for image networks: {graph.network} is a language "
                          "model, whose cell is already one subgraph (the body of the Scan)")
    if weights is None:
        weights = random_lm_weights(graph)
        weights_source = weights_source or "random (numpy, seed 0)"
    specs = lm_tensors(graph)
    params = {k: v for k, v in weights.items() if specs[k].role != "tied"}
    taken = {TOKENS, HIDDEN, LOGITS, LAST_HIDDEN, *params}
    b = _Builder(taken, opset)
    _main_nodes(b, graph, taken)
    from shrinkc.compiler.version import __version__

    model = helper.make_model(
        _graph(b, graph), opset_imports=[helper.make_opsetid("", opset)], producer_name="shrinkc",
        producer_version=__version__, ir_version=ir_version(opset),
        doc_string=f"{graph.network} from {graph.source}: tokens [batch, time] (and optionally "
                   f"hidden [batch, {lm.hidden}], default zeros) -> logits [batch, time, "
                   f"{lm.vocab}], last_hidden [batch, {lm.hidden}]; the time loop is a Scan",
    )
    # subnormal weights flushed to zero, as for image networks (common.flush_subnormals)
    arrays = [(name, flush_subnormals(np.require(a, np.float32, "C")))
              for name, a in params.items()]
    arrays.append((HIDDEN, np.zeros((0, lm.hidden), np.float32)))
    # added to the model itself, not to the graph make_model copies
    model.graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in arrays)
    meta = {"network": graph.network, "source": graph.source, "spec_sha256": graph.spec_hash,
            "kind": "language model", "time_loop": "Scan",
            "decoder": "tied" if lm.tied else "untied", "weights": weights_source or ""}
    helper.set_model_props(model, meta)
    return model


__all__ = ["generate_lm"]

"""Graph IR -> standalone PyTorch source for a language model with a recurrent cell.

The cell class has one ``nn.Linear`` (no bias) for node 0, which mixes x_t and h_{t-1}, and
one per live edge (``n0_to_n3``), each producing [c, h] for a highway update whose activation
is the destination node's; a node averages its incoming updates and h_t is the mean of the
output nodes. The network wraps it: embedding, the cell unrolled over time with variational
dropout, and a decoder tied to the embedding (or not).
"""

from __future__ import annotations

from dataclasses import dataclass

from shrinkc.compiler import ir

from ..naming import RECURRENT_LOCALS, Namer, edge_key, recurrent_cell_names
from .source import network_signature, render, template, text

ACT_FUNCTIONS = {"tanh": "torch.tanh", "relu": "torch.relu", "sigmoid": "torch.sigmoid",
                 "identity": "identity"}


@dataclass
class _Cell:
    name: str
    doc: str
    init: list[str]
    forward: list[str]


@dataclass
class _Net:
    name: str
    doc: str
    signature: list[str]
    vocab: str
    embed: str
    hidden: str


def _cell(cell: ir.CellDef, class_name: str) -> _Cell:
    feeds = {s for n in cell.nodes[1:] for s in n.inputs}
    outs = cell.output.nodes
    if outs == ("leaves",):
        outs = tuple(n.name for n in cell.nodes if n.name not in feeds)
    attr = recurrent_cell_names(cell.nodes, outs)
    # the masked copies of node states are locals too: keep them clear of every other name
    local = Namer(set(attr.values()) | RECURRENT_LOCALS)
    node0 = cell.nodes[0]
    init = [f"self.{attr[node0.name]} = nn.Linear(input_size + hidden_size, 2 * hidden_size, "
            "bias=False)"]
    fwd = ["xh = torch.cat([masked(x, x_mask), masked(h, h_mask)], dim=-1)",
           f"{attr[node0.name]} = highway(h, self.{attr[node0.name]}(xh), "
           f"{ACT_FUNCTIONS[node0.op.op]})"]
    seen_masked: dict[str, str] = {}

    def src(s: str) -> str:
        if s not in seen_masked:
            seen_masked[s] = local(f"{attr[s]}_in")
            fwd.append(f"{seen_masked[s]} = masked({attr[s]}, h_mask)")
        return seen_masked[s]

    for n in cell.nodes[1:]:
        act = ACT_FUNCTIONS[n.op.op]
        terms = []
        for s in n.inputs:
            edge = attr[edge_key(s, n.name)]
            init.append(f"self.{edge} = nn.Linear(hidden_size, 2 * hidden_size, bias=False)")
            terms.append(f"highway({attr[s]}, self.{edge}({src(s)}), {act})")
        if len(terms) == 1:
            fwd.append(f"{attr[n.name]} = {terms[0]}")
        else:
            fwd.append(f"{attr[n.name]} = (")
            fwd += [f"    {t}{' +' if k < len(terms) - 1 else ''}" for k, t in enumerate(terms)]
            fwd.append(f") / {len(terms)}")
    joined = " + ".join(attr[o] for o in outs)
    fwd.append(f"return ({joined}) / {len(outs)}" if len(outs) > 1 else f"return {joined}")
    doc = (f"Recurrent cell {cell.name} ({cell.loc.file}:{cell.loc.line}): "
           f"{len(cell.nodes)} nodes, {cell.edges} edges.")
    return _Cell(class_name, doc, init, fwd)


def generate_lm(graph: ir.LMGraph) -> str:
    """The standalone PyTorch source of a language-model ``graph``."""
    lm = graph.lm
    net = graph.program.networks[graph.network]
    classes = Namer({"Module", "identity", "highway", "masked", "dropout_mask"})
    cell_class = classes(lm.cell.cell)
    net_class = classes(graph.network)
    names, sig = network_signature(net, graph.args)
    size = {k: render(net.lm(k).value, names) for k in ("tokens", "embed")}  # type: ignore[union-attr]
    hidden = render(net.lm("recurrent").value, names)  # type: ignore[union-attr]
    doc = (f"Language model {net.name} ({text(net.loc.file)}:{net.loc.line}): "
           f"{graph.cost.params:,} parameters.")  # type: ignore[union-attr]
    cell = _cell(graph.program.cells[lm.cell.cell], cell_class)
    cell.doc = text(cell.doc)
    dropout = {k: lm.dropout.get(k, 0.0) for k in ("embedding", "input", "hidden", "output")}
    return template("lm.py.j2").render(
        graph=graph, source=text(graph.source), params=f"{graph.cost.params:,}",  # type: ignore[union-attr]
        flops=f"{lm.flops:,}", cell=cell, tied=lm.tied, dropout=dropout,
        net=_Net(net_class, doc, sig, size["tokens"], size["embed"], hidden),
    )

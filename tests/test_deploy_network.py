"""A search's deployment network (issue 25, item 3): ``deploy NAME [input CxHxW]`` in a search
block, its checks, and ``compiler.deploy.deployment_graph``, the network with a candidate's
cell in place, against the same network written out by hand."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shrinkc.compiler import ir
from shrinkc.compiler.deploy import deploy_target, deployment_graph, find_search
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.passes.space import complete_edges
from shrinkc.compiler.pipeline import build_graph, check
from shrinkc.compiler.syntax.parser import parse
from shrinkc.compiler.syntax.printer import print_program

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "shrinkcnn_space.shrink"
TEXT = SPEC.read_text()
DEPLOY_LINE = "    deploy ShrinkCNN_ImageNet input 3x224x224\n"

# the ops of the shipped space's nodes 1..7 (ops cycle(sepconv, conv) shuffle 0)
OPS = ["sepconv(w, k=3)", "sepconv(w, k=3)", "conv(w, k=1)", "sepconv(w, k=3)", "conv(w, k=1)",
       "conv(w, k=1)", "sepconv(w, k=3)"]

# ShrinkCNN at 224x224 (benchmarks/found_cell.py's NETWORK) around a cell written out
NETWORK = """\
network Deployed(classes = 1001, act = relu) {
    input image[3, 224, 224]
    stem conv(44, k=3, stride=2) act
    stage Written(12, act) x 1
    stage Written(24, act) x 3 downsample maxpool(2)
    stage Written(44, act) x 4 downsample maxpool(2)
    stage Written(88, act) x 6 downsample maxpool(2)
    stage Written(180, act) x 4 downsample maxpool(2)
    head conv(1280, k=1) act -> global_avgpool -> linear(classes)
}
"""

# two candidates (already cleaned up: every node reached from the input) and the complete cell
CHAIN = ((0, 1), (0, 2), (1, 3), (2, 3), (0, 4), (3, 5), (4, 5), (1, 6), (5, 7), (6, 7))
TWO_LEAVES = ((0, 1), (0, 2), (1, 3), (0, 5), (2, 6), (3, 6))
COMPLETE = complete_edges(8)


def written_cell(edges) -> str:
    """The space's cell for ``edges``, written by hand: a node feeding another has the act,
    a leaf is linear, the output concatenates the leaves and adds the input back."""
    live = sorted({j for _, j in edges})
    feeds = {i for i, _ in edges}
    lines = ["cell Written(w: int, act = relu) {", "    input x"]
    for j in live:
        srcs = ", ".join("x" if i == 0 else f"n{i}" for i, jj in sorted(edges) if jj == j)
        act = " act" if j in feeds else ""
        lines.append(f"    n{j} = {OPS[j - 1]}{act} <- {srcs}")
    lines += ["    output concat(leaves) + x", "}"]
    return "\n".join(lines) + "\n"


def nodes(graph: ir.Graph) -> int:
    return (len(graph.stem) + len(graph.head)
            + sum(len(c.nodes) for s in graph.stages for c in s.cells))


def located(text: str, file: str = "t.shrink") -> ShrinkError:
    with pytest.raises(ShrinkError) as e:
        check(file, text)
    return e.value


def line_of(text: str, needle: str) -> int:
    return next(k for k, line in enumerate(text.splitlines(), 1) if needle in line)


# --------------------------------------------------------------------------- the language


def test_the_shipped_space_deploys_in_shrinkcnn_at_224():
    assert DEPLOY_LINE in TEXT
    checked = check(SPEC)
    search = find_search(checked)
    assert (search.deploy, search.deploy_input) == ("ShrinkCNN_ImageNet", (3, 224, 224))
    assert deploy_target(search) == ("ShrinkCNN_ImageNet", (3, 224, 224))
    # the proxy stays the file's last network: what commands build by default
    assert checked.networks[-1] == "Proxy" and build_graph(checked).network == "Proxy"


def test_fmt_is_idempotent_on_the_shipped_space():
    once = print_program(parse(TEXT, str(SPEC)))
    assert once == TEXT  # the shipped file is formatted
    assert print_program(parse(once)) == once


@pytest.mark.parametrize("line", ["deploy ShrinkCNN_ImageNet", "deploy ShrinkCNN_ImageNet input 3x160x160",
                                  "deploy Proxy input 3x64x64  # a comment stays"])
def test_deploy_round_trips(line):
    text = TEXT.replace(DEPLOY_LINE, f"    {line}\n")
    program = parse(text)
    assert print_program(program) == text
    again = parse(print_program(program))
    s1, s2 = (next(i for i in p.items if isinstance(i, ir.SearchDef)) for p in (program, again))
    assert s1 == s2 and s1.deploy == line.split()[1]
    check("t.shrink", text)


def test_the_ir_json_has_deploy_fields_only_when_given():
    search = next(i for i in parse(TEXT).items if isinstance(i, ir.SearchDef))
    dumped = search.model_dump(mode="json")
    assert dumped["deploy"] == "ShrinkCNN_ImageNet" and dumped["deploy_input"] == [3, 224, 224]
    bare = parse(TEXT.replace(DEPLOY_LINE, ""))
    dumped = next(i for i in bare.items if isinstance(i, ir.SearchDef)).model_dump(mode="json")
    assert "deploy" not in dumped and "deploy_input" not in dumped


def test_without_a_deploy_line_the_proxy_is_the_deployment():
    checked = check("t.shrink", TEXT.replace(DEPLOY_LINE, ""))
    search = find_search(checked)
    assert search.deploy is None and deploy_target(search) == ("Proxy", None)
    graph = deployment_graph(checked, search, TWO_LEAVES)
    assert graph.network == "Proxy" and graph.input_shape.as_list() == [3, 32, 32]


# --------------------------------------------------------------------------- located errors


def test_an_unknown_network_is_located_with_a_suggestion():
    text = TEXT.replace(DEPLOY_LINE, "    deploy ShrinkCNN_Imagenet\n")
    d = located(text).diagnostic
    assert "unknown network 'ShrinkCNN_Imagenet'" in d.message
    assert d.loc.line == line_of(text, "deploy ") and d.loc.col == 5
    assert "ShrinkCNN_ImageNet" in d.hint


def test_deploying_the_space_itself_says_to_name_a_network():
    text = TEXT.replace(DEPLOY_LINE, "    deploy ShrinkSearch\n")
    d = located(text).diagnostic
    assert "unknown network 'ShrinkSearch'" in d.message and "is a space" in d.hint
    assert "(ShrinkCNN_ImageNet, Proxy)" in d.hint


def test_a_network_without_the_space_is_located():
    other = ("cell Plain(w: int) {\n    input x\n    a = conv(w, k=3) relu <- x\n    output a\n}\n\n"
             "network Other {\n    input image[3, 32, 32]\n    stage Plain(8) x 2\n"
             "    head global_avgpool -> linear(10)\n}\n\n")
    text = TEXT.replace("search ShrinkCNN", other + "search ShrinkCNN").replace(
        DEPLOY_LINE, "    deploy Other\n")
    d = located(text).diagnostic
    assert "network 'Other' does not use space 'ShrinkSearch'" in d.message
    assert d.loc.line == line_of(text, "deploy Other")
    assert "Other uses Plain" in d.hint and "stage ShrinkSearch(" in d.hint


@pytest.mark.parametrize("shape, message", [
    ("3x224", "has 2 dimensions, but the input 'image' of ShrinkCNN_ImageNet has 3"),
    ("224", "has 1 dimension, but"),
    ("3x0x224", "has a zero dimension"),
    ("3x224x9999999", "9,999,999 is too large"),
])
def test_a_bad_input_is_located_at_the_shape(shape, message):
    text = TEXT.replace(DEPLOY_LINE, f"    deploy ShrinkCNN_ImageNet input {shape}\n")
    d = located(text).diagnostic
    assert message in d.message, d.message
    line = line_of(text, "deploy ")
    assert (d.loc.line, d.loc.col) == (line, text.splitlines()[line - 1].index(shape) + 1)


def test_an_input_written_as_a_list_is_a_syntax_error_that_names_the_form():
    text = TEXT.replace(DEPLOY_LINE, "    deploy ShrinkCNN_ImageNet input [3, 224, 224]\n")
    d = located(text).diagnostic
    assert d.loc.line == line_of(text, "deploy ") and "3x224x224" in str(d.message) + str(d.hint)


def test_deploy_given_twice_is_located():
    text = TEXT.replace(DEPLOY_LINE, DEPLOY_LINE + "    deploy Proxy\n")
    d = located(text).diagnostic
    assert "'deploy' is given twice" in d.message and d.loc.line == line_of(text, "deploy Proxy")


def test_an_input_too_small_for_the_network_is_noted_as_the_deployments():
    text = TEXT.replace(DEPLOY_LINE, "    deploy ShrinkCNN_ImageNet input 3x8x8\n")
    checked = check("t.shrink", text)  # the size is the network's question, at build time
    with pytest.raises(ShrinkError) as e:
        deployment_graph(checked, None, CHAIN)
    d = e.value.diagnostic
    assert d.loc is not None and d.loc.file == "t.shrink"
    assert "input 3x8x8 of search ShrinkCNN's deploy line" in d.note
    assert f"t.shrink:{line_of(text, 'deploy ')}" in d.note


def test_edges_outside_the_space_are_located_at_the_space():
    checked = check(SPEC)
    with pytest.raises(ShrinkError) as e:
        deployment_graph(checked, None, ((0, 1), (1, 9)))
    assert "edge 1->9 is not an edge of a 8-node DAG" in e.value.diagnostic.message
    assert e.value.diagnostic.loc.line == line_of(TEXT, "space ShrinkSearch")


# --------------------------------------------------------------------------- the graph


@pytest.mark.parametrize("edges", [CHAIN, TWO_LEAVES, COMPLETE], ids=["chain", "two_leaves", "complete"])
def test_the_deployment_graph_is_the_network_with_the_cell_written_out(edges):
    checked = check(SPEC)
    got = deployment_graph(checked, "ShrinkCNN", edges)
    want = build_graph(check("w.shrink", "shrink 1\n\n" + written_cell(edges) + "\n" + NETWORK))
    assert got.network == "ShrinkCNN_ImageNet" and got.input_shape == want.input_shape
    assert (got.cost.params, got.cost.macs) == (want.cost.params, want.cost.macs)
    assert nodes(got) == nodes(want) and got.edges == want.edges == len(edges)
    assert got.out_shape == want.out_shape
    assert [[c.out_shape for c in s.cells] for s in got.stages] == \
           [[c.out_shape for c in s.cells] for s in want.stages]


def test_the_complete_cell_in_shrinkcnn_has_the_known_cost():
    graph = deployment_graph(check(SPEC), None, COMPLETE)
    assert (graph.cost.params, graph.cost.macs) == (6_795_549, 948_394_048)
    assert deployment_graph(check(SPEC)).cost == graph.cost  # no edges line: complete


def test_candidates_differ_and_the_spec_hash_follows_the_edges():
    checked = check(SPEC)
    a, b = (deployment_graph(checked, None, e) for e in (CHAIN, TWO_LEAVES))
    assert a.cost.macs != b.cost.macs and a.spec_hash != b.spec_hash
    assert deployment_graph(checked, None, reversed(CHAIN)).spec_hash == a.spec_hash
    # the checked program is left as it was
    assert build_graph(checked, "ShrinkCNN_ImageNet").edges == 28


def test_the_deployment_graph_is_fast_enough_per_candidate():
    checked = check(SPEC)
    deployment_graph(checked, None, CHAIN)
    start = time.process_time()
    for edges in (CHAIN, TWO_LEAVES, COMPLETE):
        deployment_graph(checked, None, edges)
    assert (time.process_time() - start) / 3 < 1.0  # tens of ms; generous when busy

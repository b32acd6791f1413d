"""Architectures under version control: diff, viz, schema, cell hashes, lexer, pre-commit."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkc.cli import main
from shrinkc.commands.vcs import _Forked as _FORKED
from shrinkc.commands.vcs import _side as _SIDE
from shrinkc.compiler.analysis.cellhash import (
    cell_hash,
    cell_hashes,
    dag_colors,
    dag_hash,
    wl_refine,
)
from shrinkc.compiler.pipeline import build_graph, check

from conftest import ROOT, SPECS, TEST_SPECS

A = "specs/shrinkcnn_a.shrink"
B = "specs/shrinkcnn_b.shrink"
HAVE_DOT = shutil.which("dot") is not None

# ShrinkCNN-A with its nodes renamed, its statements reordered and its text reformatted.
RENAMED = """shrink 1
# the same network, written differently
cell ShrinkA(w: int, act = relu) {
    input inp
    right = conv(w, k=1) <- inp, b
    b = sepconv(w, k=3) act <- inp
    left = sepconv(w,
                   k=3) <- n1x, inp
    n1x = sepconv(out=w, k=3, stride=1) act <- inp  # defaults spelled out
    output concat(right, left) + inp
}

network ShrinkCNN_A(classes = 1001, act = relu) {
    input image[3, 224, 224]
    stem conv(44, k=3, stride=2) act
    stage ShrinkA(12, act) x 1
    stage ShrinkA(24, act) x 3 downsample maxpool(2)
    stage ShrinkA(44, act) x 4 downsample maxpool(2)
    stage ShrinkA(88, act) x 6 downsample maxpool(2)
    stage ShrinkA(180, act) x 4 downsample maxpool(2)
    head conv(1280, k=1) act -> global_avgpool -> linear(classes)
}
"""


def _variant(tmp_path: Path, name: str, *subs: tuple[str, str]) -> str:
    text = (ROOT / A).read_text()
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _cell(text: str, name: str = "C"):
    from shrinkc.compiler.pipeline import check as check_text

    return check_text("<test>.shrink", "shrink 1\n" + text).program.cells[name]


# --------------------------------------------------------------------------- cell_hash


DAG_OPS = ["input", "conv", "sepconv", "sepconv", "conv", "maxpool", "output"]
DAG_EDGES = {(0, 1), (0, 2), (1, 3), (2, 3), (0, 4), (3, 5), (4, 5), (5, 6), (2, 6)}


def _permute(ops, edges, perm):
    new_ops = [None] * len(ops)
    for old, new in enumerate(perm):
        new_ops[new] = ops[old]
    return new_ops, {(perm[s], perm[d]) for s, d in edges}


def test_dag_hash_is_invariant_under_relabelling():
    h = dag_hash(DAG_OPS, DAG_EDGES)
    rng = random.Random(0)
    for _ in range(20):
        perm = list(range(len(DAG_OPS)))
        rng.shuffle(perm)
        assert dag_hash(*_permute(DAG_OPS, DAG_EDGES, perm)) == h
    assert re.fullmatch(r"[0-9a-f]{64}", h)


def test_dag_hash_sees_a_changed_edge_or_op():
    h = dag_hash(DAG_OPS, DAG_EDGES)
    assert dag_hash(DAG_OPS, DAG_EDGES - {(2, 6)}) != h
    assert dag_hash(DAG_OPS, (DAG_EDGES - {(1, 3)}) | {(1, 5)}) != h
    assert dag_hash(DAG_OPS, DAG_EDGES | {(0, 6)}) != h
    ops = list(DAG_OPS)
    ops[4] = "sepconv"
    assert dag_hash(ops, DAG_EDGES) != h
    with pytest.raises(ValueError):
        dag_hash(DAG_OPS, {(0, 7)})


def _classes(colours: list[str]) -> set[frozenset[int]]:
    groups: dict[str, set[int]] = {}
    for i, c in enumerate(colours):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_dag_sweeps_find_the_stable_weisfeiler_lehman_classes():
    """``dag_colors`` (linear sweeps, then WL) splits random DAGs into exactly the classes
    that plain WL refinement to stability gives (the reference, run here round by round)."""
    rng = random.Random(7)
    for _ in range(150):
        n = rng.randint(2, 24)
        labels = [rng.choice("ab") for _ in range(n)]
        p = rng.choice((0.1, 0.2, 0.4))
        edges = {(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p}
        assert _classes(dag_colors(labels, edges)) == _classes(wl_refine(labels, edges)[0])
    # a chain: every node is told apart (WL needs a round per two nodes for that)
    chain = {(i, i + 1) for i in range(99)}
    assert len(set(dag_colors(["conv"] * 100, chain))) == 100


def test_hashing_a_long_chain_is_linear():
    """Issue 11, item 13: a 10,000-node chain took minutes (a WL round per two nodes, each over
    all nodes); its hash is now a few sweeps. The limit is loose for slow CI machines."""
    import time

    n = 10_000
    edges = {(i, i + 1) for i in range(n - 1)} | {(0, i) for i in range(3, n, 3)}
    t = time.perf_counter()
    h = dag_hash(["conv"] * n, edges)
    assert time.perf_counter() - t < 10
    perm = list(range(n))
    random.Random(1).shuffle(perm)
    assert dag_hash(*_permute(["conv"] * n, edges, perm)) == h


def test_diff_of_long_chains_finds_the_one_edit(tmp_path):
    """Two 3,000-node chains that differ in one node's op: diff names exactly that node,
    with every other node matched (so no edge is reported), in seconds."""
    import time

    def chain(op_at_1500: str) -> str:
        lines = ["shrink 1", "cell C(w: int) {", "    input x"]
        for i in range(1, 3001):
            op = op_at_1500 if i == 1500 else "conv(w, k=1)"
            lines.append(f"    n{i} = {op} relu <- {f'n{i - 1}' if i > 1 else 'x'}")
        return "\n".join([*lines, "    output n3000 + x", "}", ""])

    a, b = tmp_path / "a.shrink", tmp_path / "b.shrink"
    a.write_text(chain("conv(w, k=1)"))
    b.write_text(chain("sepconv(w, k=3)").replace(" n", " m"))  # and every node renamed
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "shrinkc", "diff", str(a), str(b), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert time.perf_counter() - t < 60
    cell = json.loads(r.stdout)["cells"]["C"]
    assert cell["nodes_changed"] == [{"a": "n1500", "b": "m1500",
                                      "op": ["conv(w, k=1)", "sepconv(w, k=3)"]}]
    assert not cell["nodes_added"] and not cell["nodes_removed"]
    assert not cell["edges_added"] and not cell["edges_removed"]
    assert cell["renamed"] == {f"n{i}": f"m{i}" for i in range(1, 3001)}


def test_dag_hash_is_the_same_in_every_process():
    # pinned: a change here changes every hash the shrinker has recorded (it changed when
    # refinement began to stop at the stable colouring, and in 0.2.0, when DAG sweeps came
    # first: run folders record shrinkc's version, so an older run is refused on --resume)
    assert dag_hash(["input", "conv", "output"], {(0, 1), (1, 2)}) == \
        "44129db9cd5f80369030581de9eb31e0a0404a7fc30a824f94d6225c2445912f"
    code = ("from shrinkc.compiler.analysis.cellhash import dag_hash; "
            f"print(dag_hash({DAG_OPS!r}, {sorted(DAG_EDGES)!r}))")
    outs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=True)
        outs.add(r.stdout.strip())
    assert outs == {dag_hash(DAG_OPS, DAG_EDGES)}


def test_cell_hash_ignores_names_order_and_formatting(tmp_path):
    spec = tmp_path / "renamed.shrink"
    spec.write_text(RENAMED)
    a = check(ROOT / A).program.cells["ShrinkA"]
    b = check(spec).program.cells["ShrinkA"]
    assert cell_hash(a) == cell_hash(b)
    assert cell_hash(check(ROOT / B).program.cells["ShrinkA"]) == cell_hash(a)


@pytest.mark.parametrize("changed", [
    "a = conv(w, k=3) relu <- x\n b = conv(w, k=3) relu <- x\n output concat(a, b) + x",  # edge
    "a = conv(w, k=3) relu <- x\n b = conv(w, k=1) relu <- a\n output concat(a, b) + x",  # op arg
    "a = conv(w, k=3) relu <- x\n b = sepconv(w, k=3) relu <- a\n output concat(a, b) + x",  # op
    "a = conv(w, k=3) relu6 <- x\n b = conv(w, k=3) relu <- a\n output concat(a, b) + x",  # act
    "a = conv(w, k=3) <- x\n b = conv(w, k=3) relu <- a\n output concat(a, b) + x",  # linear
    "a = conv(w, k=3) relu <- x\n b = conv(w, k=3) relu <- a\n output sum(a, b) + x",  # merge
    "a = conv(w, k=3) relu <- x\n b = conv(w, k=3) relu <- a\n output concat(a, b)",  # residual
    ("a = conv(w, k=3) relu <- x\n b = conv(w, k=3) relu <- a\n"
     " output concat(a, b) + x if shapes match"),  # residual mode
])
def test_cell_hash_sees_every_change(changed):
    base = "a = conv(w, k=3) relu <- x\n b = conv(w, k=3) relu <- a\n output concat(a, b) + x"
    cell = "cell C(w: int) {{\n input x\n {}\n}}\n"
    h = cell_hash(_cell(cell.format(base)))
    assert cell_hash(_cell(cell.format(changed))) != h
    # renaming and reordering (and the order of concatenated inputs) do not count
    same = "q = conv(w, k=3) relu <- p\n p = conv(w, k=3) relu <- y\n output concat(q, p) + y"
    assert cell_hash(_cell(cell.format(same).replace("input x", "input y"))) == h


def test_cell_hashes_of_a_graph():
    graph = build_graph(check(ROOT / A))
    hashes = cell_hashes(graph)
    assert list(hashes) == ["ShrinkA"]
    assert hashes["ShrinkA"] == cell_hash(graph.program.cells["ShrinkA"])


# --------------------------------------------------------------------------- diff


def test_diff_equal_after_renaming_and_reformatting(tmp_path, capsys, chdir_root):
    spec = tmp_path / "renamed.shrink"
    spec.write_text(RENAMED)
    assert main(["diff", A, str(spec)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["diff", A, A]) == 0
    assert main(["diff", str(spec), A, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["equal"] is True
    assert d["cells"]["ShrinkA"]["renamed"] == {"inp": "x", "n1x": "n1", "b": "n2", "left": "n3",
                                                "right": "n4"}


def test_diff_a_b_names_the_activation_change(capsys, chdir_root):
    assert main(["diff", A, B]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"--- {A}\n+++ {B}\n")
    assert "network ShrinkCNN_A -> ShrinkCNN_B" in out
    assert "args.act: relu -> swish" in out
    assert "stem[1]: conv(44, k=3, stride=2) relu -> conv(44, k=3, stride=2) swish" in out
    assert "total: params 3,617,085 -> 3,617,085 (+0)" in out
    assert "cell" not in out.replace("(", " ").split("network")[0]  # the cell itself is equal


def test_diff_reports_edges_ops_and_costs(tmp_path, capsys, chdir_root):
    changed = _variant(tmp_path, "changed.shrink",
                       ("n4 = conv(w, k=1) <- x, n2", "n4 = conv(w, k=1) <- n1, n2"),
                       ("n2 = sepconv(w, k=3) act <- x", "n2 = conv(w, k=3) act <- x"))
    assert main(["diff", A, changed]) == 1
    out = capsys.readouterr().out
    assert "~ cell ShrinkA" in out
    assert "~ n2: sepconv(w, k=3) -> conv(w, k=3)" in out
    assert "- edge input@x -> conv@n4" in out
    assert "+ edge sepconv@n1 -> conv@n4" in out
    assert re.search(r"total: params 3,617,085 -> [\d,]+ \(\+[\d,]+\), MACs", out)

    assert main(["diff", A, changed, "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    cell = d["cells"]["ShrinkA"]
    assert d["equal"] is False and cell["status"] == "changed"
    assert cell["edges_removed"] == [["input@x", "conv@n4"]]
    assert cell["edges_added"] == [["sepconv@n1", "conv@n4"]]
    assert cell["nodes_changed"] == [{"a": "n2", "b": "n2",
                                      "op": ["sepconv(w, k=3)", "conv(w, k=3)"]}]
    assert cell["hash_a"] != cell["hash_b"]
    assert d["network"]["params"]["delta"] > 0 and d["network"]["macs"]["delta"] > 0
    assert d["network"]["params"]["b"] - d["network"]["params"]["a"] == \
        d["network"]["params"]["delta"]


def test_diff_names_both_files_nodes_when_renamed(tmp_path, capsys):
    old = tmp_path / "old.shrink"
    old.write_text(RENAMED)
    new = _variant(tmp_path, "new.shrink", ("n4 = conv(w, k=1) <- x, n2", "n4 = conv(w, k=1) <- n2"))
    assert main(["diff", str(old), new]) == 1
    out = capsys.readouterr().out
    assert "- edge input@inp/x -> conv@right/n4" in out


def test_diff_act_merge_residual_nodes(tmp_path, capsys):
    a = tmp_path / "a.shrink"
    b = tmp_path / "b.shrink"
    a.write_text("shrink 1\ncell C(w: int) {\n    input x\n    p = conv(w, k=3) relu <- x\n"
                 "    q = conv(w, k=1) <- x, p\n    output q + x\n}\n")
    b.write_text("shrink 1\ncell C(w: int) {\n    input x\n    p = conv(w, k=3) swish <- x\n"
                 "    q = conv(w, k=1) <- sum(x, p)\n    r = dwconv(k=3) <- q\n    output r\n}\n")
    assert main(["diff", str(a), str(b), "--json"]) == 1
    c = json.loads(capsys.readouterr().out)["cells"]["C"]
    assert {"a": "p", "b": "p", "act": ["relu", "swish"]} in c["nodes_changed"]
    assert {"a": "q", "b": "q", "merge": ["concat", "sum"]} in c["nodes_changed"]
    assert c["nodes_added"] == [{"name": "r", "op": "dwconv(k=3)"}]
    assert c["residual"] == {"a": "project", "b": "none"}
    assert ["conv@q", "output"] in c["edges_removed"]
    assert ["conv@q", "dwconv@r"] in c["edges_added"]
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "~ p: act relu -> swish" in out and "+ node r = dwconv(k=3)" in out
    assert "~ residual: project -> none" in out


def test_diff_matches_symmetric_branches_by_structure(tmp_path):
    # two identical branches, written in another order with other names: still equal
    a = tmp_path / "a.shrink"
    b = tmp_path / "b.shrink"
    a.write_text("shrink 1\ncell C(w: int) {\n    input x\n    a1 = conv(w, k=3) relu <- x\n"
                 "    a2 = conv(w, k=1) <- a1\n    b1 = conv(w, k=3) relu <- x\n"
                 "    b2 = conv(w, k=1) <- b1\n    output concat(a2, b2) + x\n}\n")
    b.write_text("shrink 1\ncell C(w: int) {\n    input y\n    q2 = conv(w, k=1) <- q1\n"
                 "    p1 = conv(w, k=3) relu <- y\n    q1 = conv(w, k=3) relu <- y\n"
                 "    p2 = conv(w, k=1) <- p1\n    output concat(q2, p2) + y\n}\n")
    assert main(["diff", str(a), str(b), "-q"]) == 0


def test_diff_cells_added_removed_renamed(tmp_path, capsys):
    a = tmp_path / "a.shrink"
    b = tmp_path / "b.shrink"
    cell = "cell {}(w: int) {{\n    input x\n    p = conv(w, k=3) <- x\n    output p\n}}\n"
    a.write_text("shrink 1\n" + cell.format("Old") + cell.format("Gone").replace("k=3", "k=5"))
    b.write_text("shrink 1\n" + cell.format("New") + cell.format("Fresh").replace("k=3", "k=7"))
    assert main(["diff", str(a), str(b), "--json"]) == 1
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert cells["Old"]["status"] == "renamed" and cells["Old"]["b"] == "New"
    assert cells["Gone"]["status"] == "removed" and cells["Fresh"]["status"] == "added"
    assert main(["diff", str(a), str(b), "--brief"]) == 1
    assert capsys.readouterr().out == f"Specs {a.as_posix()} and {b.as_posix()} differ\n"


def test_diff_network_stages_and_layers(tmp_path, capsys, chdir_root):
    other = _variant(tmp_path, "other.shrink",
                     ("stage ShrinkA(88, act) x 6", "stage ShrinkA(96, act) x 5"),
                     ("-> linear(classes)", "-> dropout(0.2) -> linear(classes)"))
    assert main(["diff", A, other]) == 1
    out = capsys.readouterr().out
    assert "stage4.depth: 6 -> 5" in out
    assert "stage4.args.w: 88 -> 96" in out
    assert re.search(r"stage4: params 484,616 -> [\d,]+ \([-+][\d,]+\), MACs", out)
    assert "head[3]: linear(1001) -> dropout(p=0.2)" in out or "head[3]: (none) -> dropout" in out


@pytest.mark.parametrize("argv", [["diff"], ["diff", A], ["diff", A, B, "--nope"], []])
def test_diff_usage_errors_exit_2(argv, chdir_root):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_diff_trouble_exits_2_not_1(tmp_path, capsys, chdir_root):
    assert main(["diff", A, str(tmp_path / "missing.shrink")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.shrink"
    bad.write_text("shrink 1\ncell C {\n    input x\n    a = sepcnv(4) <- x\n    output a\n}\n")
    assert main(["diff", str(bad), A]) == 2
    assert f"{bad}:4:9: error: unknown op 'sepcnv'" in capsys.readouterr().err


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shrinkc", *args], capture_output=True,
                          text=True, cwd=ROOT, check=False, **kw)


def test_diff_exit_codes_as_a_user_sees_them(tmp_path):
    spec = tmp_path / "renamed.shrink"
    spec.write_text(RENAMED)
    assert _run("diff", A, str(spec)).returncode == 0
    r = _run("diff", A, B)
    assert r.returncode == 1 and "relu -> swish" in r.stdout
    assert _run("diff", A).returncode == 2
    r = _run("diff", A, "nope.shrink")
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- viz


def test_viz_cell_dot_always_works(tmp_path, capsys, chdir_root):
    out = tmp_path / "cell.dot"
    assert main(["viz", A, "--cell", "ShrinkA", "-o", str(out)]) == 0
    dot = out.read_text()
    assert dot.startswith('digraph "ShrinkA" {')
    assert "rankdir=TB" in dot
    assert dot.count("SepConv 3x3, 24") == 3 and dot.count("Conv 1x1, 24") == 1
    assert "ReLU" in dot and "Input" in dot and "Output" in dot and "Concat" in dot
    assert 'style="dashed"' in dot  # the residual
    assert [p.name for p in tmp_path.iterdir()] == ["cell.dot"]  # atomic: no temporaries left
    assert main(["viz", A, "--cell", "ShrinkA"]) == 0  # no -o: DOT on stdout
    assert capsys.readouterr().out.endswith(dot)


def test_viz_cell_stage_and_symbolic(tmp_path, capsys, chdir_root):
    assert main(["viz", A, "--cell", "ShrinkA", "--stage", "stage1"]) == 0
    dot = capsys.readouterr().out
    assert "SepConv 3x3, 12" in dot and "Conv 1x1, 24" in dot  # the projection on the skip
    assert main(["viz", A, "--cell", "ShrinkA", "--symbolic"]) == 0
    dot = capsys.readouterr().out
    assert "SepConv 3x3, w" in dot and "<I>act</I>" in dot
    assert main(["viz", A, "--cell", "ShrinkA", "--stage", "stage9"]) == 1
    assert "no stage 'stage9'" in capsys.readouterr().err


def test_viz_network_overview(tmp_path, chdir_root):
    out = tmp_path / "net.dot"
    assert main(["viz", "specs/mobilenetv2.shrink", "-o", str(out)]) == 0
    dot = out.read_text()
    for s in ("stage1: DepthwiseSeparable ×1", "stage7: InvertedResidual ×1", "Conv 3x3, 32",
              "Global AvgPool", "Linear, 1000", "cluster_cell0.", "cluster_cell1.",
              "cell InvertedResidual(c, t=6, stride=1)", "if shapes match", "first: stride=2"):
        assert s in dot, s


def test_viz_file_without_network_draws_its_cells(tmp_path):
    spec = tmp_path / "cells.shrink"
    spec.write_text("shrink 1\ncell C(w: int) {\n    input x\n    a = sepconv(w) relu <- x\n"
                    "    b = maxpool(3, stride=1, padding=1) <- x\n    output sum(a, b)\n}\n")
    out = tmp_path / "cells.dot"
    assert main(["viz", str(spec), "-o", str(out)]) == 0
    dot = out.read_text()
    assert "cell C(w)" in dot and "SepConv, w" in dot and "MaxPool 3x3" in dot
    assert main(["viz", str(spec), "--cell", "C", "-o", str(out)]) == 0


def test_viz_errors(tmp_path, capsys, chdir_root):
    assert main(["viz", A, "--cell", "ShrinkB"]) == 1
    assert "did you mean 'ShrinkA'?" in capsys.readouterr().err
    assert main(["viz", A, "--stage", "stage1"]) == 2
    assert main(["viz", A, "-o", str(tmp_path / "x.jpg")]) == 2
    assert not (tmp_path / "x.jpg").exists()


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("png", b"\x89PNG\r\n\x1a\n"),
                                       ("pdf", b"%PDF")])
def test_viz_renders_with_graphviz(tmp_path, fmt, magic, chdir_root):
    for argv in (["--cell", "ShrinkA"], []):
        out = tmp_path / f"pic.{fmt}"
        assert main(["viz", A, *argv, "-o", str(out)]) == 0
        data = out.read_bytes()
        assert data.startswith(magic) and len(data) > 1000
    if fmt == "svg":
        assert b"SepConv 3x3, w" in data and b"Helvetica" in data


def test_viz_without_graphviz_says_what_to_install(tmp_path, capsys, monkeypatch, chdir_root):
    from shrinkc.backends import viz

    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    assert main(["viz", A, "-o", str(tmp_path / "cell.svg")]) == 1
    err = capsys.readouterr().err
    assert "Graphviz's 'dot' program is not installed" in err
    assert "apt-get install graphviz" in err and "brew install graphviz" in err
    assert not (tmp_path / "cell.svg").exists()
    assert main(["viz", A, "-o", str(tmp_path / "cell.dot")]) == 0


RNN = ROOT / "specs" / "shrinkrnn.shrink"


@pytest.mark.skipif(not RNN.exists(), reason="no recurrent spec in this checkout")
def test_diff_and_viz_of_a_recurrent_cell(tmp_path, capsys, chdir_root):
    text = RNN.read_text()
    other = tmp_path / "rnn.shrink"
    other.write_text(text.replace("input x, h", "input x, state").replace("<- x, h", "<- x, state")
                     .replace("n3 = sigmoid <- n0, n1", "n3 = sigmoid <- n0, n2"))
    assert main(["diff", str(RNN), str(other), "--json"]) == 1
    cell = json.loads(capsys.readouterr().out)["cells"]["ShrinkRNNCell"]
    assert cell["renamed"] == {"h": "state"}
    assert cell["edges_removed"] == [["identity@n1", "sigmoid@n3"]]
    assert cell["edges_added"] == [["sigmoid@n2", "sigmoid@n3"]]
    renamed = tmp_path / "renamed.shrink"
    renamed.write_text(text.replace("input x, h", "input x, state").replace("<- x, h",
                                                                          "<- x, state"))
    assert main(["diff", str(RNN), str(renamed)]) == 0
    assert main(["viz", str(RNN), "--cell", "ShrinkRNNCell"]) == 0
    dot = capsys.readouterr().out
    assert "State" in dot and "Tanh" in dot and "Sigmoid" in dot and "highway" in dot
    assert main(["viz", str(RNN)]) == 0
    assert "Recurrent: ShrinkRNNCell" in capsys.readouterr().out


# --------------------------------------------------------------------------- schema


def test_schema_to_stdout_and_file(tmp_path, capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # one object schema per kind of network (image network, language model), each with the
    # fields of the IR JSON
    kinds = [schema["$defs"][v["$ref"].rsplit("/", 1)[1]] for v in schema["oneOf"]]
    assert [k["title"] for k in kinds] == ["CNNGraph", "LMGraph"]
    for kind in kinds:
        assert {"network", "stages", "program", "lm"} <= set(kind["properties"])
    out = tmp_path / "shrink-ir.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == schema


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.shrink")))
def test_schema_validates_real_ir(tmp_path, spec, chdir_root):
    jsonschema = pytest.importorskip("jsonschema")
    from shrinkc.cli import main as shrinkc_main
    from shrinkc.commands.vcs import ir_schema

    schema = ir_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert shrinkc_main(["compile", f"specs/{spec}", "--target", "ir", "-o", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / f"{Path(spec).stem}.ir.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(doc)) == []
    assert list(validator.iter_errors({**doc, "cost": {"params": "many", "macs": 0}}))
    assert list(validator.iter_errors({**doc, "surprise": 1}))


# --------------------------------------------------------------------------- highlighting


SHIPPED = sorted(SPECS.glob("*.shrink")) + sorted(TEST_SPECS.rglob("*.shrink"))


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.name)
def test_lexer_tokenizes_specs_without_errors(spec):
    pytest.importorskip("pygments")
    from pygments.token import Error

    from shrinkc.compiler.syntax.highlight import ShrinkLexer

    text = spec.read_text()
    tokens = list(ShrinkLexer().get_tokens(text))
    assert [t for t in tokens if t[0] is Error] == []
    assert "".join(v for _, v in tokens) == text


def test_lexer_token_kinds():
    pytest.importorskip("pygments")
    from pygments.token import Keyword, Name

    from shrinkc.compiler.syntax.highlight import ShrinkLexer

    toks = [(t, v) for t, v in ShrinkLexer().get_tokens(
        "stage ShrinkA(12, act) x 1 downsample maxpool(2)\n    n3 = sepconv(w) <- x, n1\n"
        "    output concat(a, b) + x if shapes match\n") if v.strip()]
    kinds = {v: t for t, v in toks}
    assert kinds["stage"] in Keyword and kinds["downsample"] in Keyword
    assert kinds["sepconv"] in Name.Builtin and kinds["maxpool"] in Name.Builtin
    xs = [t for t, v in toks if v == "x"]
    assert xs[0] in Keyword and xs[1] not in Keyword and xs[2] not in Keyword
    assert ShrinkLexer.aliases == ["shrink"] and ShrinkLexer.filenames == ["*.shrink"]


def test_lexer_entry_point_when_installed():
    pytest.importorskip("pygments")
    from importlib.metadata import entry_points

    if not any(ep.name == "shrink" for ep in entry_points(group="pygments.lexers")):
        pytest.skip("the pygments.lexers entry point is not installed (pip install -e . again)")
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    assert type(get_lexer_by_name("shrink")).__name__ == "ShrinkLexer"
    assert type(get_lexer_for_filename("net.shrink")).__name__ == "ShrinkLexer"


def test_highlight_line_colours_and_falls_back(monkeypatch):
    from shrinkc.compiler.syntax import highlight

    line = "    n1 = sepconv(w, k=3) act <- x  # comment"
    out = highlight.highlight_line(line)
    if importlib.util.find_spec("pygments") is not None:
        assert "\x1b[" in out
        assert re.sub(r"\x1b\[[0-9;]*m", "", out) == line
        assert highlight.highlight_line(line + "\n").endswith("\n")
    monkeypatch.setattr(highlight, "ShrinkLexer", None)
    assert highlight.highlight_line(line) == line


def test_compiler_does_not_import_pygments_or_graphviz():
    code = ("import sys; from shrinkc.compiler.pipeline import build_graph, check; "
            "import shrinkc.compiler.analysis.cellhash, shrinkc.compiler.analysis.semdiff, shrinkc.commands.vcs; "
            "build_graph(check('specs/shrinkcnn_a.shrink')); "
            "print(sorted(m for m in ('pygments', 'graphviz') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    assert r.stdout.strip() == "[]"


# --------------------------------------------------------------------------- pre-commit


def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def _snapshot(dest: Path) -> str:
    """A git repository holding this working tree as it is (uncommitted files too)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    _git("init", "-q", ".", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-qm", "snapshot", cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest)


def test_pre_commit_hooks_manifest():
    yaml = pytest.importorskip("yaml")
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["shrinkc-fmt"]["entry"] == "shrinkc fmt"
    assert hooks["shrinkc-check"]["entry"] == "shrinkc check"
    for h in hooks.values():
        assert h["language"] == "python" and h["files"] == r"\.shrink$"


@pytest.mark.skipif(importlib.util.find_spec("pre_commit") is None,
                    reason="pre-commit is not installed")
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and this repository's checkout")
def test_pre_commit_hooks_run(tmp_path):
    hook_repo = tmp_path / "hooks"
    hook_repo.mkdir()
    rev = _snapshot(hook_repo)
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", ".", cwd=work)
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo.as_posix()}\n    rev: {rev}\n    hooks:\n"
        "      - id: shrinkc-fmt\n      - id: shrinkc-check\n")
    ugly = work / "cell.shrink"
    ugly.write_text("shrink 1\ncell C(w: int) {\n  input x\n  a = conv(w,k=3) relu <- x\n"
                    "  output a + x\n}\n")
    (work / "notes.txt").write_text("not a spec\n")
    _git("add", "-A", cwd=work)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), PRE_COMMIT_COLOR="never")
    env.pop("VIRTUAL_ENV", None)

    def pre_commit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900, check=False)

    r = pre_commit("run", "--all-files")
    if "An unexpected error has occurred" in r.stdout + r.stderr:
        pytest.skip("pre-commit could not install the hook's environment (is PyPI reachable?): "
                    + (r.stdout + r.stderr).strip().splitlines()[-1])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"shrinkc fmt\.+Failed", r.stdout)
    assert "files were modified by this hook" in r.stdout
    assert re.search(r"shrinkc check\.+Passed", r.stdout)
    assert "    a = conv(w, k=3) relu <- x" in ugly.read_text()
    r = pre_commit("run", "--all-files")
    assert r.returncode == 0, r.stdout + r.stderr
    ugly.write_text("shrink 1\n\ncell C(w: int) {\n    input x\n    a = sepcnv(w) <- x\n"
                    "    output a\n}\n")
    r = pre_commit("run", "--all-files")
    assert r.returncode == 1
    assert re.search(r"shrinkc check\.+Failed", r.stdout)
    assert "cell.shrink:5:9: error: unknown op 'sepcnv'" in r.stdout


# --------------------------------------------------------------------------- diff in two processes

_DEAD = ("shrink 1\ncell C(w: int) {\n    input x\n    a = conv(w) relu <- x\n"
         "    dead = conv(w) <- x\n    output a\n}\nnetwork N {\n    input image[3, 8, 8]\n"
         "    stage C(4) x 1\n    head global_avgpool -> linear(10)\n}\n")


def _diff_both_ways(monkeypatch, capsys, *argv: str) -> tuple:
    """``shrinkc diff ARGV`` in one process, then with the second spec read in a forked child
    (``PARALLEL_BYTES`` 0): (exit code, stdout, stderr) of each."""
    from shrinkc.commands import vcs

    out = []
    for limit in (10**12, 0):
        monkeypatch.setattr(vcs, "PARALLEL_BYTES", limit)
        forks: list[str] = []
        read_here: list[str] = []  # _side in this process (the child counts in its own copy)
        monkeypatch.setattr(vcs, "_Forked", lambda spec, f=forks: f.append(spec) or _FORKED(spec))
        monkeypatch.setattr(vcs, "_side", lambda spec, report, r=read_here: r.append(spec)
                            or _SIDE(spec, report))
        rc = main(["diff", *argv])
        o, e = capsys.readouterr()
        out.append((rc, o, e))
        both = all(os.path.exists(f) for f in argv[-2:])  # else the reading says what is wrong
        forked = both and not limit and hasattr(os, "fork")
        assert forks == ([argv[-1]] if forked else [])
        if forked:  # the child's answer is used: this process read the first spec only
            assert read_here == [argv[-2]]
    return out[0], out[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_in_two_processes_says_what_one_process_says(tmp_path, monkeypatch, capsys,
                                                          chdir_root):
    """A spec of at least PARALLEL_BYTES is read in a forked child while this process reads
    the other: the same output, warnings (in order), errors and exit codes."""
    monkeypatch.setattr("shrinkc.commands.vcs._cores", lambda: 2)
    dead = tmp_path / "dead.shrink"
    dead.write_text(_DEAD)
    dead2 = tmp_path / "dead2.shrink"
    dead2.write_text(_DEAD.replace("dead", "unused").replace("relu", "swish"))
    bad = tmp_path / "bad.shrink"
    bad.write_text("shrink 1\ncell C {\n    input x\n    a = sepcnv(4) <- x\n    output a\n}\n")
    cases = [(A, B), (A, A), (dead, dead2), (dead, bad), (bad, dead), (bad, bad),
             (A, tmp_path / "missing.shrink"), ("specs/mobilenetv2.shrink", A), ("--json", A, B)]
    for case in cases:
        one, two = _diff_both_ways(monkeypatch, capsys, *map(str, case))
        assert one == two, case
    assert _diff_both_ways(monkeypatch, capsys, str(dead), str(dead2))[1][0] == 1
    rc, _, err = _diff_both_ways(monkeypatch, capsys, str(dead), str(dead2))[1]
    assert err.index("'dead' does not reach") < err.index("'unused' does not reach")
    rc, _, err = _diff_both_ways(monkeypatch, capsys, str(dead), str(bad))[1]
    assert rc == 2 and "'dead' does not reach" in err and "unknown op 'sepcnv'" in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_reads_the_spec_itself_when_the_child_fails(tmp_path, monkeypatch, capsys,
                                                         chdir_root):
    """A child that dies (a bug, a signal) is not an answer: this process reads the spec."""
    from shrinkc.commands import vcs

    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    monkeypatch.setattr(vcs, "PARALLEL_BYTES", 0)
    parent, real = os.getpid(), vcs._side

    def crashing(spec, report):
        if os.getpid() != parent:
            raise RuntimeError("a bug in the child")
        return real(spec, report)

    monkeypatch.setattr(vcs, "_side", crashing)
    assert main(["diff", A, B]) == 1
    assert "relu -> swish" in capsys.readouterr().out


def test_diff_of_large_specs_uses_a_second_process_only_with_two_cores(tmp_path, monkeypatch):
    from shrinkc.commands import vcs

    small, big = tmp_path / "small.shrink", tmp_path / "big.shrink"
    small.write_text(_DEAD)
    big.write_text(_DEAD + "#" * vcs.PARALLEL_BYTES)
    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    assert vcs._worth_a_process(str(big), str(big)) == hasattr(os, "fork")
    assert not vcs._worth_a_process(str(small), str(big))
    assert not vcs._worth_a_process(str(big), str(tmp_path / "missing.shrink"))
    monkeypatch.setattr(vcs, "_cores", lambda: 1)
    assert not vcs._worth_a_process(str(big), str(big))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_diff_without_a_process_to_be_had_reads_both_specs_itself(monkeypatch, capsys,
                                                                   chdir_root):
    from shrinkc.commands import vcs

    monkeypatch.setattr(vcs, "_cores", lambda: 2)
    monkeypatch.setattr(vcs, "PARALLEL_BYTES", 0)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(vcs.os, "fork", no_fork)
    assert main(["diff", A, B]) == 1
    out, err = capsys.readouterr()
    assert "relu -> swish" in out and not err

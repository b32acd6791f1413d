"""``shrinkc diff`` as a semantic diff (``compiler/analysis/semdiff.py``, nodes paired by
``compiler/analysis/matching.py``): specs equal up to names, statement order and formatting
are equal; changed edges, ops, activations, merges, residuals, cells, stages and head layers
are named, in text and in JSON, with the cost deltas; symmetric branches and long chains are
matched by structure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from shrinkc.cli import main

from conftest import ROOT
from vcs_helpers import RENAMED, A, B


def _variant(tmp_path: Path, name: str, *subs: tuple[str, str]) -> str:
    text = (ROOT / A).read_text()
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


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

"""``shrinkc viz`` (``backends/viz.py``): DOT for a cell (for one stage, symbolic), a network
overview and a file of cells only, located errors, SVG/PNG/PDF through Graphviz where it is
installed and a message saying what to install where not; and diff and viz of a recurrent
cell."""

from __future__ import annotations

import json
import shutil

import pytest

from shrinkc.cli import main

from conftest import ROOT
from vcs_helpers import A

HAVE_DOT = shutil.which("dot") is not None


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

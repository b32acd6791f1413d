"""What is legal is decided in the compiler: a spec that ``shrinkc check`` accepts compiles to
every backend (``compiler/passes/residual.py``).

The PyTorch backend once rejected residuals that ``check`` had accepted (so ``check`` said ok
and ``compile --target pytorch`` failed, while ``--target onnx`` wrote a model). Those rules are
compiler checks now, located at the spec's ``output`` statement; the backend keeps them only as
assertions. Each case below passed ``check`` before and failed ``compile --target pytorch``.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shrinkc.backends import onnx as onnx_backend
from shrinkc.backends.pytorch import generate as pytorch_source
from shrinkc.cli import main
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.pipeline import build_graph, check

from conftest import ROOT, SPECS, TEST_SPECS


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    where: str  # LINE:COL of the error
    message: str
    hint: str
    note: str | None = None  # instance-level rules name the stage behind the error


NETWORK = """
network Net {{
    input img[{c}, {h}, {h}]
    stage {cell}(8) x 1
    head global_avgpool -> linear(10)
}}
"""


def _spec(cell: str, body: str, c: int = 3, h: int = 16) -> str:
    return "shrink 1\n\n" + textwrap.dedent(body).strip() + "\n" + NETWORK.format(c=c, h=h, cell=cell)


CASES = [
    # the residual adds 'b', strided off the path of first inputs to 'c': the generated code
    # cannot know the stride between them (backends/pytorch/cnn.py 302, before)
    Case("off_path_if_match", _spec("OffPath", """
        cell OffPath(w: int) {
            input x
            a = conv(w, k=3) <- x
            b = conv(w, k=3, stride=2) <- x
            c = conv(w, k=3) <- a
            output c + b if shapes match
        }"""), "8:5", "does not lie on the path of first inputs to 'c'",
        "add a node on that path, or the cell input"),
    # the same with a projecting residual whose shapes match (the compiler adds an identity),
    # the strides written differently (1 + 1 and 2) on the two paths
    Case("off_path_project", _spec("SameShape", """
        cell SameShape(w: int) {
            input x
            a = conv(w, k=3, stride=1 + 1) <- x
            b = conv(w, k=3, stride=2) <- x
            c = conv(w, k=3) <- a
            output c + b
        }"""), "8:5", "the residual adds 'b'", "add a node on that path"),
    # a stride parameter off the path: rejected on the definition, whatever 's' is
    Case("off_path_symbolic_stride", _spec("Sym", """
        cell Sym(w: int, s: int = 1) {
            input x
            a = conv(w, k=3) <- x
            b = conv(w, k=3, stride=s) <- x
            c = conv(w, k=3) <- a
            output c + b if shapes match
        }"""), "8:5", "the stride between them cannot be known", "or the cell input"),
    # an unpadded window shrinks 16x16 to 14x14 with no stride: the shapes say no residual,
    # strides and channels say identity (backends/pytorch/cnn.py 412, before)
    Case("unpadded_window", _spec("Unpadded", """
        cell Unpadded(w: int) {
            input x
            a = conv(w, k=3, padding=0) <- x
            output a + x if shapes match
        }""", c=8), "6:5", "(8x16x16) and the output (8x14x14) differ in resolution",
        "use strides (not unpadded windows)", "instantiated by the stage at"),
    # a stride of 2 on a 1x1 input keeps the shape: the shapes say identity, strides say none
    Case("stride_keeps_shape_if_match", _spec("Strided", """
        cell Strided(w: int) {
            input x
            a = conv(w, k=3, stride=2) <- x
            output a + x if shapes match
        }""", c=8, h=1), "6:5", "keeps its shape (8x1x1) across a stride of 2",
        "give the network a larger input", "in Strided(w=8)"),
    # ... and with a projecting residual: shapes say identity, strides say project
    Case("stride_keeps_shape_project", _spec("StridedP", """
        cell StridedP(w: int) {
            input x
            a = conv(w, k=3, stride=2) <- x
            output a + x
        }""", c=8, h=1), "6:5", "across a stride of 2", "take the stride out of this cell"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_rejects_what_a_backend_cannot_build(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("spec.shrink").write_text(case.text)
    assert main(["check", "spec.shrink"]) == 1
    err = capsys.readouterr().err
    assert f"spec.shrink:{case.where}: error: " in err, err
    first = err.splitlines()[0]
    assert case.message in first, err
    assert re.search(r"hint: .*" + re.escape(case.hint), err), err
    if case.note:
        assert re.search(r"note: .*" + re.escape(case.note), err), err
    assert "Traceback" not in err
    # and compile stops at the same error, for every target, before anything is written
    for target in ("pytorch", "onnx"):
        assert main(["compile", "spec.shrink", "--target", target, "-o", "out"]) == 1
        assert f"spec.shrink:{case.where}: error: " in capsys.readouterr().err
    assert not Path("out").exists()


def test_a_residual_off_the_path_is_an_error_in_a_cell_no_network_uses(tmp_path, capsys):
    """The path rule reads the cell's definition: a file of cells is checked too."""
    spec = tmp_path / "cells.shrink"
    spec.write_text(CASES[0].text.split("\nnetwork")[0] + "\n")
    assert main(["check", str(spec)]) == 1
    assert f"{spec}:8:5: error: the residual adds 'b'" in capsys.readouterr().err


def test_the_pytorch_backend_and_layout_reject_nothing_themselves():
    """User-facing errors come from the compiler; the PyTorch backend only asserts."""
    files = [*sorted((ROOT / "backends" / "pytorch").glob("*.py")), ROOT / "backends" / "layout.py"]
    for path in files:
        assert "ShrinkError" not in path.read_text(), path


# --------------------------------------------------------------------------- the property


SHIPPED = sorted(SPECS.glob("**/*.shrink")) + sorted(TEST_SPECS.glob("**/*.shrink"))


def _compiles_everywhere(path: Path, text: str | None = None) -> int:
    """Check ``path``; if that passes, build every network and generate it with both
    backends (in-process, no file written); returns how many networks were built. An error
    after ``check`` passed fails the test."""
    try:
        checked = check(path, text)
        graphs = [build_graph(checked, name) for name in checked.networks]
    except ShrinkError:
        return -1  # check rejects it: nothing to hold
    for graph in graphs:
        source = pytorch_source(graph)
        compile(source, f"{graph.network}.py", "exec")  # valid Python
        onnx_backend.generate(graph)
    return len(graphs)


@pytest.mark.parametrize("spec", SHIPPED, ids=[p.relative_to(ROOT).as_posix() for p in SHIPPED])
def test_every_shipped_spec_that_checks_compiles_to_every_target(spec):
    assert _compiles_everywhere(spec) >= 1  # (every shipped spec checks and has a network)


def test_the_shipped_specs_are_many():
    assert len(SHIPPED) >= 20 and any("zoo" in p.parts for p in SHIPPED)


# random residual cells: strides, unpadded windows, off-path residual sources, small inputs

_OPS = st.sampled_from([
    "conv(w, k=3)", "conv(w, k=3, stride=2)", "conv(w, k=1)", "conv(w, k=3, padding=0)",
    "conv(w * 2, k=1)", "dwconv(k=3, stride=2)", "maxpool(3, stride=1, padding=1)",
    "maxpool(2)", "avgpool(3, stride=1)", "conv(w, k=3, stride=1 + 1)", "identity",
])


@st.composite
def residual_specs(draw) -> str:
    n = draw(st.integers(1, 4))
    lines = []
    for i in range(1, n + 1):
        src = draw(st.sampled_from(["x", *[f"n{j}" for j in range(1, i)]]))
        lines.append(f"    n{i} = {draw(_OPS)} <- {src}")
    res = draw(st.sampled_from(["x", *[f"n{j}" for j in range(1, n)]]))
    mode = draw(st.sampled_from(["", " if shapes match"]))
    h = draw(st.sampled_from([1, 2, 3, 5, 8]))
    c = draw(st.sampled_from([4, 8]))
    down = draw(st.sampled_from(["", " downsample maxpool(2)"]))
    repeat = draw(st.integers(1, 2))
    return ("shrink 1\n\ncell R(w: int) {\n    input x\n" + "\n".join(lines)
            + f"\n    output n{n} + {res}{mode}\n}}\n\nnetwork Net {{\n"
            f"    input img[{c}, {h}, {h}]\n    stage R(8) x {repeat}{down}\n"
            "    head global_avgpool -> linear(3)\n}\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(residual_specs())
def test_a_random_residual_cell_that_checks_compiles_to_every_target(text):
    """The backends' assertions (the strides they find agree with the compiler's residual
    decisions) hold for every cell ``check`` lets through."""
    _compiles_everywhere(Path("random.shrink"), text)

"""The language front end and passes: features, hand-computed costs, printer round trips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from shrinkc.compiler import check, compile_file, parse
from shrinkc.compiler.ir import graph_adapter
from shrinkc.compiler.pipeline import build_graph
from shrinkc.compiler.syntax.printer import print_program

from conftest import ALL_SHIPPED, CNN_SPECS, ROOT, TEST_SPECS, ZOO_SPECS

ALL = ALL_SHIPPED + ZOO_SPECS + sorted(TEST_SPECS.glob("*.shrink"))


def compile_text(tmp_path, text, name="spec.shrink", **files):
    for fname, content in files.items():
        (tmp_path / fname).write_text(textwrap.dedent(content))
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    checked = check(path)
    return build_graph(checked), checked


# ------------------------------------------------------------------ the numbers we must reproduce


def test_shrinkcnn_a_numbers():
    g = compile_file(ROOT / "specs" / "shrinkcnn_a.shrink")
    assert g.cost.params == 3_617_085
    assert abs(g.cost.macs - 383.7e6) / 383.7e6 < 0.005
    assert g.out_shape.as_list() == [1001]
    assert g.edges == 6


def test_shrinkcnn_b_is_a_with_swish():
    a = compile_file(ROOT / "specs" / "shrinkcnn_a.shrink")
    b = compile_file(ROOT / "specs" / "shrinkcnn_b.shrink")
    assert b.network == "ShrinkCNN_B" and b.args["act"] == "swish"
    assert (b.cost.params, b.cost.macs) == (a.cost.params, a.cost.macs)
    acts = {n.op.act for s in b.stages for c in s.cells for n in c.nodes if n.op}
    assert acts == {"swish", None}


def test_mobilenetv2_numbers():
    g = compile_file(ROOT / "specs" / "mobilenetv2.shrink")
    assert g.cost.params == 3_504_872
    assert round(g.cost.macs / 1e6, 1) == 300.8
    assert g.out_shape.as_list() == [1000]
    # the residual applies only where shapes match: 10 of the 17 blocks
    residuals = [c.residual for s in g.stages for c in s.cells]
    assert residuals.count("identity") == 10 and residuals.count("project") == 0


# ------------------------------------------------------------------ hand-computed costs


def test_conv_and_linear_costs_by_hand(tmp_path):
    g, _ = compile_text(tmp_path, """\
        shrink 1
        cell C(w: int) {
            input x
            a = sepconv(w) <- x
            output a
        }
        network N {
            input x[3, 8, 8]
            stem conv(4, k=3)
            stage C(6) x 1
            head global_avgpool -> linear(2)
        }
        """)
    stem, stage, head = g.stem[0].cost, g.stages[0].cost, g.head[1].cost
    assert (stem.params, stem.macs) == (3 * 4 * 9 + 2 * 4, 3 * 4 * 9 * 64)
    assert (stage.params, stage.macs) == (4 * 9 + 4 * 6 + 2 * 6, (4 * 9 + 4 * 6) * 64)
    assert (head.params, head.macs) == (6 * 2 + 2, 12)
    assert g.cost.params == 116 + 72 + 14


def test_projection_residual_costs_by_hand(tmp_path):
    g, _ = compile_text(tmp_path, """\
        shrink 1
        cell C(w: int) {
            input x
            a = conv(w, k=1) <- x
            output a + x
        }
        network N {
            input x[4, 8, 8]
            stage C(6) x 2 downsample maxpool(2)
        }
        """)
    first, second = g.stages[0].cells
    assert first.residual == "project" and second.residual == "identity"
    # 1x1 conv + BN (4 -> 6) for the node, and a stride-2 1x1 projection of the raw input
    assert first.cost.params == (4 * 6 + 12) * 2
    assert first.cost.macs == 4 * 6 * 16 * 2
    assert first.residual_op.attrs["stride"] == 2


# ------------------------------------------------------------------ language features


def test_presets_variants_includes_arithmetic(tmp_path):
    g, _ = compile_text(tmp_path, """\
        shrink 1
        include "lib.shrink"
        network Base(w = 8, act = relu) {
            input x[3, 16, 16]
            stem conv(w * 2 + 1, k=3) act
            stage Lib(w // 2 - 1) x (w - 6)
        }
        network Wide = Base(w=12, act=hswish)
        """, **{"lib.shrink": """\
        shrink 1
        op sep5 = sepconv(k=5)
        cell Lib(w: int) {
            input x
            a = sep5(w) <- x
            b = sep5(w, k=3) <- a
            output b
        }
        """})
    assert g.network == "Wide"
    assert g.stem[0].op.attrs["out"] == 25 and g.stem[0].op.act == "hswish"
    assert len(g.stages[0].cells) == 6
    nodes = {n.name: n for n in g.stages[0].cells[0].nodes}
    assert nodes["a"].op.attrs["k"] == 5 and nodes["b"].op.attrs["k"] == 3
    assert nodes["a"].op.attrs["out"] == 5


def test_forward_references_are_sorted_and_leaves_expanded(tmp_path):
    g, checked = compile_text(tmp_path, """\
        shrink 1
        cell C {
            input x
            b = conv(4) <- a
            a = conv(4) <- x
            dead = conv(4) <- x
            output concat(leaves)
        }
        network N {
            input x[3, 8, 8]
            stage C x 1
        }
        """)
    names = [n.name for n in g.stages[0].cells[0].nodes]
    assert names == ["x", "a", "b", "dead"]
    assert g.stages[0].cells[0].output == ("b", "dead")  # the leaves


def test_dead_node_is_pruned_with_a_warning(tmp_path):
    g, checked = compile_text(tmp_path, """\
        shrink 1
        cell C {
            input x
            a = conv(4) <- x
            dead = conv(4) <- x
            output a
        }
        network N {
            input x[3, 8, 8]
            stage C x 1
        }
        """)
    assert [n.name for n in g.stages[0].cells[0].nodes] == ["x", "a"]
    (w,) = checked.warnings
    assert w.severity == "warning" and "dead" in w.message and w.loc.line == 5


def test_merge_modes_and_shapes(tmp_path):
    g, _ = compile_text(tmp_path, """\
        shrink 1
        cell C(w: int) {
            input x
            a = conv(w) <- x
            b = conv(w) <- x
            s = identity <- sum(a, b)
            m = identity <- mean(a, b, s)
            c = identity <- a, b, m
            output c
        }
        network N {
            input x[3, 8, 8]
            stage C(5) x 1
        }
        """)
    shapes = {n.name: n.out_shape.c for n in g.stages[0].cells[0].nodes}
    assert shapes == {"x": 3, "a": 5, "b": 5, "s": 5, "m": 5, "c": 15}


def test_long_statements_may_break_inside_brackets_and_after_arrows(tmp_path):
    g, _ = compile_text(tmp_path, """\
        shrink 1
        network N(
            classes = 3,
        ) {
            input x[3,
                    8, 8]
            head conv(4,
                      k=3) relu ->
                global_avgpool -> linear(classes)
        }
        """)
    assert g.out_shape.as_list() == [3]


# ------------------------------------------------------------------ printer and IR round trips


@pytest.mark.parametrize("spec", ALL, ids=[p.stem for p in ALL])
def test_print_parse_round_trip(spec):
    text = spec.read_text()
    program = parse(text, str(spec))
    printed = print_program(program)
    assert parse(printed, str(spec)) == program
    assert print_program(parse(printed, str(spec))) == printed  # idempotent
    assert printed == text, "shipped specs are canonically formatted"


def test_formatting_keeps_comments_and_normalises_layout():
    messy = textwrap.dedent("""\
        # header
        shrink 1
        # about the cell

        # more about it
        cell   C( w:int ,act=relu ){   # header comment
          input x
            # before a
          a=conv( w,k = 3 )act<-x# trailing a
          output a+x
          # end of cell
        }
        # end of file
        """)
    out = print_program(parse(messy))
    assert out == textwrap.dedent("""\
        # header
        shrink 1

        # about the cell

        # more about it
        cell C(w: int, act = relu) {  # header comment
            input x
            # before a
            a = conv(w, k=3) act <- x  # trailing a
            output a + x
            # end of cell
        }

        # end of file
        """)
    assert print_program(parse(out)) == out


@pytest.mark.parametrize("spec", CNN_SPECS + ZOO_SPECS, ids=[p.stem for p in CNN_SPECS + ZOO_SPECS])
def test_ir_json_round_trip(spec, tmp_path, chdir_root):
    from shrinkc.cli import main

    assert main(["compile", str(spec.relative_to(ROOT)), "-o", str(tmp_path), "--target", "ir"]) == 0
    text = (tmp_path / f"{spec.stem}.ir.json").read_text()
    graph = graph_adapter().validate_json(text)
    assert graph == compile_file(spec.relative_to(ROOT))
    assert json.loads(graph.model_dump_json()) == json.loads(text)


def test_locations_do_not_affect_equality():
    a = parse("shrink 1\nop a = conv(3)\n")
    b = parse("shrink 1\n\n\nop   a = conv( 3 )\n")
    assert a == b
    assert a.items[0].loc.line == 2 and b.items[0].loc.line == 4


# ------------------------------------------------------------------ names from specs are user input

NASTY = """\
shrink 1
cell Module(self: int, torch = relu) {
    input nn
    forward = conv(self, k=3) torch <- nn
    training = conv(self) <- nn
    class_ = conv(self) <- forward, training
    __init__ = identity <- class_
    %s = identity <- __init__
    output concat(%s, forward) + nn
}
network int(super = 2, str = 3) {
    input self[3, 8, 8]
    stem conv(super * 4)
    stage Module(str) x 2 downsample maxpool(2)
    head global_avgpool -> linear(super)
}
"""


def test_hostile_names_generate_correct_code(tmp_path):
    torch = pytest.importorskip("torch")
    from conftest import generate_module

    long = "n" + "o" * 300
    spec = tmp_path / "nasty.shrink"
    spec.write_text(NASTY % (long, long))
    graph, module, path = generate_module(spec, tmp_path)
    model = module.build()
    assert sum(p.numel() for p in model.parameters()) == graph.cost.params
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_compiler_never_imports_torch(tmp_path, chdir_root):
    code = (
        "import sys\n"
        "from shrinkc.cli import main\n"
        f"rc = main(['compile', 'specs/shrinkcnn_a.shrink', '-o', {str(tmp_path)!r}])\n"
        "assert rc == 0, rc\n"
        "import shrinkc.compiler, shrinkc.backends.pytorch\n"
        "print('torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "False"

"""The PyTorch backend against PyTorch itself: every shipped spec (and a small spec that uses
every language feature) through parameter counting, forward, backward, FX and ruff."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from conftest import CNN_SPECS, ROOT, TEST_SPECS, check_golden, generate_module  # noqa: E402

ALL_SPECS = CNN_SPECS + [TEST_SPECS / "tiny.shrink"]
IDS = [p.stem for p in ALL_SPECS]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    return {p.stem: generate_module(p, out) for p in ALL_SPECS}


def _example(graph, batch):
    return torch.randn(batch, *graph.input_shape.as_list())


@pytest.mark.parametrize("name", IDS)
def test_parameter_count_matches_cost_model(generated, name):
    graph, module, _ = generated[name]
    model = module.build()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == graph.cost.params


@pytest.mark.parametrize("name", IDS)
def test_forward_backward_shapes(generated, name):
    graph, module, _ = generated[name]
    torch.manual_seed(0)
    model = module.build()
    x = _example(graph, 2)
    y = model(x)
    assert tuple(y.shape) == (2, *graph.out_shape.as_list())
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", IDS)
def test_fx_symbolic_trace_matches_eager(generated, name):
    graph, module, _ = generated[name]
    torch.manual_seed(1)
    model = module.build().eval()
    traced = torch.fx.symbolic_trace(model)
    x = _example(graph, 1)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("name", IDS)
def test_generated_source_passes_ruff_and_imports_only_torch(generated, name):
    _, _, path = generated[name]
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"torch"}
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_one_class_per_cell_named_after_it(generated):
    _, module, path = generated["shrinkcnn_a"]
    classes = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]
    assert "ShrinkA" in classes and "ShrinkCNN_A" in classes
    model = module.build()
    assert type(model.stage2[0]).__name__ == "ShrinkA"
    names = dict(model.named_parameters())
    assert "stage2.0.n1.depthwise.weight" in names
    assert "stage2.0.residual.conv.weight" in names


def test_build_overrides(generated):
    graph, module, _ = generated["shrinkcnn_b"]
    model = module.build(classes=10)
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    acts = {type(m).__name__ for m in module.build().modules()}
    assert "SiLU" in acts and "ReLU" not in acts


def test_torch_compile(generated):
    graph, module, _ = generated["tiny"]
    torch.manual_seed(0)
    model = module.build().eval()
    x = _example(graph, 2)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_running_generated_file_prints_summary(generated, tmp_path):
    _, _, path = generated["tiny"]
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "54,846 parameters" in r.stdout
    assert "-> (1, 10)" in r.stdout


@pytest.mark.parametrize("spec", ALL_SPECS, ids=IDS)
def test_golden(spec, monkeypatch):
    """Generated code is stable: an unintended change shows up as a diff here."""
    from shrinkc.backends.pytorch import generate
    from shrinkc.compiler import compile_file

    monkeypatch.chdir(ROOT)
    text = generate(compile_file(spec.relative_to(ROOT)))
    check_golden(ROOT / "tests" / "golden" / "pytorch" / f"{spec.stem}.py", text)


def test_output_is_deterministic_across_processes(tmp_path, chdir_root):
    outs = []
    for i in range(2):
        d = tmp_path / str(i)
        subprocess.run([sys.executable, "-m", "shrinkc", "compile", "specs/mobilenetv2.shrink",
                        "-o", str(d)], check=True, capture_output=True)
        outs.append((d / "mobilenetv2.py").read_bytes())
    assert outs[0] == outs[1]


# ------------------------------------------------------------------ language models


@pytest.fixture(scope="module")
def shrinkrnn(tmp_path_factory):
    from conftest import SPECS

    return generate_module(SPECS / "shrinkrnn.shrink", tmp_path_factory.mktemp("rnn"))


def test_shrinkrnn_parameters_and_shapes(shrinkrnn):
    graph, module, path = shrinkrnn
    assert graph.cost.params == 23_000_700
    model = module.build()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 23_000_700
    assert model.decoder.weight is model.embedding.weight
    tokens = torch.randint(0, 10_000, (3, 7))
    model.eval()
    logits, hidden = model(tokens)
    assert logits.shape == (3, 7, 10_000) and hidden.shape == (3, 745)
    # carrying the hidden state over equals running the whole sequence at once
    a, h = model(tokens[:, :4])
    b, _ = model(tokens[:, 4:], h)
    torch.testing.assert_close(torch.cat([a, b], dim=1), logits, rtol=1e-5, atol=1e-5)


def test_shrinkrnn_cell_matches_the_papers_formulas(shrinkrnn):
    """An independent reference: the ShrinkRNN equations written out by hand."""
    _, module, _ = shrinkrnn
    torch.manual_seed(0)
    cell = module.ShrinkRNNCell(5, 4)
    for p in cell.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x, h = torch.randn(2, 5), torch.randn(2, 4)

    def hw(s, w, f):
        c, hh = (s @ w.T).chunk(2, dim=-1)
        return s + torch.sigmoid(c) * (f(hh) - s)

    ident = lambda t: t  # noqa: E731
    c0, h0 = (torch.cat([x, h], -1) @ cell.n0.weight.T).chunk(2, dim=-1)
    s = {0: h + torch.sigmoid(c0) * (torch.tanh(h0) - h)}
    edges = {1: [0], 2: [0], 3: [0, 1], 4: [0, 1, 2, 3], 5: [0, 1, 2, 3]}
    acts = {1: ident, 2: torch.sigmoid, 3: torch.sigmoid, 4: torch.tanh, 5: ident}
    for j, srcs in edges.items():
        s[j] = sum(hw(s[i], getattr(cell, f"n{i}_to_n{j}").weight, acts[j]) for i in srcs) / len(srcs)
    torch.testing.assert_close(cell(x, h), (s[4] + s[5]) / 2)


def test_shrinkrnn_trains(shrinkrnn):
    """Ten Adam steps of next-token prediction on one fixed batch (4 sequences of 7 random
    tokens, dropout on) bring the cross-entropy below where it began and below the entropy of
    the targets, the least that an output the same for every token can reach."""
    import math
    from collections import Counter

    from conftest import losses_on_one_batch

    _, module, _ = shrinkrnn
    torch.manual_seed(0)
    model = module.build(vocab=50, size=16)
    tokens = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:].reshape(-1)
    counts = Counter(targets.tolist()).values()
    entropy = -sum(c / len(targets) * math.log(c / len(targets)) for c in counts)

    def loss_of(m):
        logits, _ = m(inputs)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 50), targets)

    losses = losses_on_one_batch(model, loss_of, steps=10, lr=3e-2)
    assert all(p.grad is not None for p in model.parameters())
    shown = ", ".join(f"{v:.3f}" for v in losses)
    assert losses[-1] < losses[0], shown
    assert losses[-1] < entropy, f"{shown} (targets' entropy {entropy:.3f})"


def test_shrinkrnn_golden(monkeypatch):
    from shrinkc.backends.pytorch import generate
    from shrinkc.compiler import compile_file

    monkeypatch.chdir(ROOT)
    text = generate(compile_file("specs/shrinkrnn.shrink"))
    golden = ROOT / "tests" / "golden" / "pytorch" / "shrinkrnn.py"
    check_golden(golden, text)
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache",
                        str(golden)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_recurrent_names_cannot_collide_with_generated_locals(tmp_path):
    """A node called like a generated local (``n0_in``, ``n0_to_n2``) computes what the same
    cell with plain names computes."""
    spec = """shrink 1
recurrent cell C {{
    input x, h
    {a} = tanh <- x, h
    {b} = sigmoid <- {a}
    {c} = relu <- {a}, {b}
    output mean(leaves)
}}
network N(vocab = 20) {{
    tokens vocab
    embed 6
    recurrent C hidden 6
    decoder tied
}}
"""
    odd, plain = tmp_path / "odd.shrink", tmp_path / "plain.shrink"
    odd.write_text(spec.format(a="n0", b="n0_in", c="n0_to_n0_in"))
    plain.write_text(spec.format(a="p", b="q", c="r"))
    _, m_odd, _ = generate_module(odd, tmp_path)
    _, m_plain, _ = generate_module(plain, tmp_path)
    torch.manual_seed(0)
    a, b = m_odd.build().eval(), m_plain.build().eval()
    b.load_state_dict(dict(zip(b.state_dict(), a.state_dict().values())))
    tokens = torch.randint(0, 20, (2, 5))
    torch.testing.assert_close(a(tokens)[0], b(tokens)[0])


def _module_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("spec", ["specs/shrinkcnn_a.shrink", "tests/specs/tiny.shrink",
                                  "specs/shrinkrnn.shrink"])
def test_every_internal_name_of_a_generated_file_is_protected(spec, chdir_root):
    """Names the generated file defines or imports itself (not after the spec) are reserved,
    so no cell, network or parameter can take one of them."""
    from shrinkc.backends.naming import GENERATED
    from shrinkc.backends.pytorch import generate
    from shrinkc.compiler import compile_file

    graph = compile_file(spec)
    spec_names = {*graph.cells_used, graph.network}
    internal = _module_level_names(generate(graph)) - spec_names
    assert internal and internal <= GENERATED


@pytest.mark.parametrize("name", ["F", "torch", "nn", "highway", "masked", "dropout_mask",
                                  "build"])  # (identity is an op: the language refuses it)
@pytest.mark.parametrize("what", ["cell", "network"])
def test_a_language_model_named_like_an_internal_name_runs(tmp_path, name, what):
    cell, net = (name, "N") if what == "cell" else ("C", name)
    spec = tmp_path / "lm.shrink"
    spec.write_text(f"""shrink 1
recurrent cell {cell} {{
    input x, h
    a = tanh <- x, h
    b = relu <- a
    output mean(leaves)
}}
network {net}(vocab = 30) {{
    tokens vocab
    embed 6
    recurrent {cell} hidden 6
    dropout(embedding=0.1, hidden=0.1)
    decoder tied
}}
""")
    _, module, _ = generate_module(spec, tmp_path, name=f"lm_{what}_{name}")
    model = module.build()
    logits, hidden = model(torch.randint(0, 30, (2, 5)))
    assert logits.shape == (2, 5, 30) and hidden.shape == (2, 6)


def test_a_projecting_residual_on_an_odd_resolution(tmp_path):
    """7x7 -> 4x4 through a stride-2 conv: the residual is a 1x1 conv with stride 2 (which maps
    7 to 4), not the rejected ``7 // 4 = 1``. Counted by hand: conv 64*128*9 + BN 256, the
    projection 64*128 + BN 256, the linear 128*10 + 10."""
    spec = tmp_path / "odd.shrink"
    spec.write_text("""shrink 1
cell Down(w: int) {
    input x
    a = conv(w, k=3, stride=2) relu <- x
    output a + x
}
network N {
    input image[64, 7, 7]
    stage Down(128) x 1
    head global_avgpool -> linear(10)
}
""")
    graph, module, _ = generate_module(spec, tmp_path)
    assert graph.stages[0].cells[0].out_shape.as_list() == [128, 4, 4]
    model = module.build().eval()
    assert sum(p.numel() for p in model.parameters()) == graph.cost.params == \
        64 * 128 * 9 + 256 + 64 * 128 + 256 + 128 * 10 + 10
    cell = model.stage1[0]
    assert cell.residual.conv.stride == (2, 2) and cell.residual.conv.kernel_size == (1, 1)
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        expected = cell.a(x) + cell.residual(x)  # the cell by hand, from its own parts
        torch.testing.assert_close(cell(x), expected)
    assert model(x).shape == (2, 10)


def test_generated_lines_fit_in_99_columns():
    """Generated code reads like code a person wrote: no line of any golden file (each is
    what the backend emits for a shipped spec) is longer than 99 characters, calls after
    ``self.x = `` and wrapped in nn.Sequential included."""
    files = sorted((ROOT / "tests" / "golden" / "pytorch").rglob("*.py"))
    assert len(files) > 15
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            assert len(line) <= 99, f"{f.name}:{n}: {len(line)} characters"


def test_call_source_counts_what_comes_before_the_call_and_the_trailing_comma():
    from shrinkc.backends.pytorch.source import MAX_LINE, call_source, docstring

    args = ["a" * 40, "b" * 40]  # "F(" + 84 + ")": 87 characters
    assert "\n" not in call_source("F", args, " " * 8)
    split = call_source("F", args, " " * 8, lead="self.stage1 = ")  # 8 + 14 + 87 > 99
    assert split == "F(\n" + " " * 12 + "a" * 40 + ", " + "b" * 40 + ",\n" + " " * 8 + ")"
    args = ["a" * 43, "b" * 42]  # the middle form would be 12 + 87 + 1 = 100 characters
    assert call_source("F", args, " " * 8, lead="x = ").count("\n") == 3
    doc = docstring("word " * 40 + "end", "    ")
    assert doc.startswith('"""word') and doc.endswith('end"""')
    first, *rest = doc.split("\n")  # the template puts the first line at the indent
    assert len("    " + first) <= MAX_LINE and all(len(line) <= MAX_LINE for line in rest)
    assert rest and all(line.startswith("    ") for line in rest)
    assert " ".join(line.strip() for line in doc.split("\n")) == '"""' + "word " * 40 + 'end"""'

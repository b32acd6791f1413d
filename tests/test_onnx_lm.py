"""The ONNX backend for language models: the whole sequence in one graph with the time loop as
a ``Scan``; parity with the generated PyTorch module on lengths the graph never saw, the
optional initial state, parameters, checkpoints, golden summaries, and compiling without torch.

Regenerate the golden summaries with ``SHRINKC_UPDATE_GOLDEN=1 pytest tests/test_onnx_lm.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
np = pytest.importorskip("numpy")

from shrinkc.backends import onnx as onnx_backend
from shrinkc.backends.layout import expected_tensors
from shrinkc.backends.onnx.checkpoint import random_weights
from shrinkc.backends.onnx.lm import generate_lm
from shrinkc.cli import main
from shrinkc.compiler import compile_file

from conftest import ROOT, SPECS, TEST_SPECS, check_golden, compile_fails, generate_module

SHRINKRNN = SPECS / "shrinkrnn.shrink"
PROXY = SPECS / "shrinkrnn_space.shrink"  # ProxyLM, the search's network (complete cell)
TINY = TEST_SPECS / "tiny_rnn_space.shrink"  # TinyLM: vocab 100, 16 wide
GOLDEN = ROOT / "tests" / "golden" / "onnx"
TOLERANCE = 1e-4
LENGTHS = (7, 23)  # nothing in the graph depends on a length
BATCHES = (1, 3)

# untied decoder, embed != hidden, and node names that Python or nn.Module would take
ODD = """shrink 1
recurrent cell Odd {
    input x, h
    forward = tanh <- x, h
    highway = relu <- forward
    forward_to_highway = sigmoid <- forward, highway
    x_mask = identity <- highway, forward_to_highway
    output mean(leaves)
}

network OddLM(vocab = 50) {
    tokens vocab
    embed 12
    recurrent Odd hidden 8
    dropout(embedding=0.1, input=0.2, hidden=0.1, output=0.2)
    decoder untied
}
"""


@pytest.fixture(scope="module")
def odd_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("odd") / "odd.shrink"
    path.write_text(ODD)
    return path


def _session(path_or_bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # not the (intended) warning that 'hidden' is overridable
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def _compile(spec: Path, out: Path, *extra: str) -> Path:
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(out), *extra]) == 0
    return out / f"{spec.stem}.onnx"


def _rel_err(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def torch():
    """torch, on one thread while this module runs: its small per-step matrix products are
    much slower on several threads of a busy machine."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(torch, tmp_path_factory, odd_spec):
    """Per spec: the generated module with random weights (cell weights at about twice the
    usual scale, a random decoder bias), its state_dict saved with torch.save, and its outputs
    for token sequences of batch 1 and 3 and each length, without and with an initial state."""
    cache: dict[str, dict] = {}
    specs = {"shrinkrnn": SHRINKRNN, "tiny_rnn_space": TINY, "odd": odd_spec}

    def get(name: str) -> dict:
        if name in cache:
            return cache[name]
        spec = specs[name]
        out = tmp_path_factory.mktemp(f"trained_{name}")
        graph, module, _ = generate_module(spec, out)
        torch.manual_seed(sum(map(ord, name)))
        model = module.build().eval()
        with torch.no_grad():
            model.embedding.weight.uniform_(-0.5, 0.5)
            if not graph.lm.tied:
                model.decoder.weight.uniform_(-0.2, 0.2)
            model.decoder.bias.normal_(0.0, 0.1)
            for w in model.cell.parameters():
                bound = 2.0 / w.shape[1] ** 0.5
                w.uniform_(-bound, bound)
        weights = out / "w.pt"
        torch.save(model.state_dict(), weights)
        cases = []
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for batch in BATCHES:
                for steps in LENGTHS:
                    tokens = torch.randint(0, graph.lm.vocab, (batch, steps), generator=gen)
                    hidden = torch.randn(batch, graph.lm.hidden, generator=gen) * 0.5
                    logits, last = model(tokens)
                    logits_h, last_h = model(tokens, hidden)
                    cases.append({"tokens": tokens.numpy(), "hidden": hidden.numpy(),
                                  "refs": (logits.numpy(), last.numpy()),
                                  "refs_hidden": (logits_h.numpy(), last_h.numpy())})
        cache[name] = {"graph": graph, "model": model, "weights": weights, "cases": cases,
                       "spec": spec, "dir": out}
        return cache[name]

    return get


def _check_parity(t: dict, model_path: Path) -> None:
    sess = _session(model_path)
    assert [i.name for i in sess.get_inputs()] == ["tokens"]  # hidden is optional
    assert [i.name for i in sess.get_overridable_initializers()] == ["hidden"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "last_hidden"]
    for case in t["cases"]:
        where = f"batch {case['tokens'].shape[0]}, length {case['tokens'].shape[1]}"
        runs = [(sess.run(None, {"tokens": case["tokens"]}), case["refs"], ""),
                (sess.run(None, {"tokens": case["tokens"], "hidden": case["hidden"]}),
                 case["refs_hidden"], " with an initial state")]
        for (logits, last), (ref_logits, ref_last), how in runs:
            assert logits.shape == ref_logits.shape and last.shape == ref_last.shape
            err = _rel_err(logits, ref_logits)
            assert err <= TOLERANCE, f"{where}{how}: logits' relative error {err:.2e}"
            err = _rel_err(last, ref_last)
            assert err <= TOLERANCE, f"{where}{how}: last hidden state's relative error {err:.2e}"


@pytest.mark.parametrize("name", ["shrinkrnn", "tiny_rnn_space", "odd"])
def test_parity_with_pytorch(trained, tmp_path, name):
    t = trained(name)
    _check_parity(t, _compile(t["spec"], tmp_path, "--weights", str(t["weights"])))


@pytest.mark.parametrize("name", ["shrinkrnn", "odd"])
def test_parity_with_safetensors(trained, tmp_path, name):
    """``save_model`` keeps one of a tied pair of tensors (``decoder.weight``); ``save_file``
    of a copy of the state_dict keeps both."""
    st = pytest.importorskip("safetensors.torch")
    t = trained(name)
    path = tmp_path / "w.safetensors"
    st.save_model(t["model"], str(path))
    _check_parity(t, _compile(t["spec"], tmp_path / "a", "--weights", str(path)))
    if name == "shrinkrnn":
        st.save_file({k: v.clone() for k, v in t["model"].state_dict().items()}, str(path))
        _check_parity(t, _compile(t["spec"], tmp_path / "b", "--weights", str(path)))


@pytest.mark.parametrize("name", ["shrinkrnn", "tiny_rnn_space", "odd"])
def test_expected_tensors_are_the_state_dict(trained, name):
    """Names (cell attributes as the PyTorch backend spells them), shapes, dtypes and order."""
    t = trained(name)
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
           for k, v in t["model"].state_dict().items()]
    mine = [(k, s.shape, s.dtype) for k, s in expected_tensors(t["graph"]).items()]
    assert mine == got


def test_a_mismatched_initial_state_fails(trained, tmp_path):
    t = trained("tiny_rnn_space")
    sess = _session(_compile(t["spec"], tmp_path, "--weights", str(t["weights"])))
    tokens = np.zeros((3, 5), np.int64)
    with pytest.raises(Exception, match="cell"):
        sess.run(None, {"tokens": tokens, "hidden": np.zeros((2, 16), np.float32)})


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def graphs(odd_spec):
    return {p.stem: compile_file(p) for p in (SHRINKRNN, PROXY, TINY, odd_spec)}


def _complete(vi) -> bool:
    t = vi.type.tensor_type
    return (t.HasField("shape")
            and all(d.HasField("dim_value") or d.HasField("dim_param") for d in t.shape.dim))


def _subgraphs(graph):
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield node, a.g


def test_parameters_are_the_modules():
    graph = compile_file(SHRINKRNN)
    model = generate_lm(graph)
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    assert sum(sizes.values()) == graph.cost.params == 23_000_700
    assert sizes.pop("hidden") == 0  # the empty default of the optional state
    names = [k for k in expected_tensors(graph) if k != "decoder.weight"]  # tied: one tensor
    assert list(sizes) == names
    assert sizes["embedding.weight"] == 10_000 * 745
    assert sizes["cell.n0.weight"] == 2 * 745 * 1490
    assert len([n for n in names if "_to_" in n]) == graph.edges == 12
    uses = [n.op_type for n in model.graph.node if "embedding.weight" in n.input]
    assert uses == ["Gather", "Transpose"]  # the embedding and the tied decoder


def test_untied_decoder_has_its_own_weight(graphs):
    model = generate_lm(graphs["odd"])
    names = [t.name for t in model.graph.initializer]
    assert "decoder.weight" in names
    assert "cell.forward_.weight" in names and "cell.forward_to_forward_to_highway.weight" in names
    sizes = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert sizes == graphs["odd"].cost.params


@pytest.mark.parametrize("name", ["shrinkrnn", "shrinkrnn_space", "tiny_rnn_space", "odd"])
def test_model_is_valid_and_fully_shaped(graphs, name):
    graph = graphs[name]
    model = onnx_backend.generate(graph)  # dispatches on graph.lm
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shaped = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for _, sub in _subgraphs(inferred.graph):
        shaped.update({vi.name: vi for vi in [*sub.value_info, *sub.output]})
    nodes = [*inferred.graph.node, *(n for _, sub in _subgraphs(inferred.graph) for n in sub.node)]
    for node in nodes:
        for out in node.output:
            assert out in shaped and _complete(shaped[out]), f"no shape for {out}"
    dims = {name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
            for name, vi in shaped.items()}
    lm = graph.lm
    assert dims["embedding"] == ["batch", "time", lm.embed]
    assert dims["hidden.init"] == ["batch", lm.hidden]
    assert dims["cell"] == ["batch", "time", lm.hidden]
    (concat,) = [n for n in nodes if n.op_type == "Concat" and n.name.startswith("cell.")]
    assert dims[concat.output[0]] == ["batch", lm.embed + lm.hidden]
    assert dims["logits"] == ["batch", "time", lm.vocab]
    assert dims["last_hidden"] == ["batch", lm.hidden]
    ops = {n.op_type for n in nodes}
    assert "Scan" in ops and "Loop" not in ops and "Dropout" not in ops
    (scan,) = [n for n in model.graph.node if n.op_type == "Scan"]
    assert scan.name == "cell" and list(scan.output) == ["last_hidden", "cell"]
    assert [o.version for o in model.opset_import if o.domain == ""] == [onnx_backend.OPSET]
    assert model.ir_version == onnx_backend.ir_version()
    assert [i.name for i in model.graph.input] == ["tokens", "hidden"]
    assert [o.name for o in model.graph.output] == ["logits", "last_hidden"]
    tokens = model.graph.input[0].type.tensor_type
    assert tokens.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in tokens.shape.dim] == ["batch", "time"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["time_loop"] == "Scan" and meta["weights"] == "random (numpy, seed 0)"


def test_random_weights_are_deterministic_and_plausible(graphs):
    graph = graphs["shrinkrnn"]
    a = onnx_backend.serialize(generate_lm(graph))
    assert a == onnx_backend.serialize(generate_lm(graph))
    sess = _session(a)
    tokens = np.random.default_rng(0).integers(0, 10_000, (2, 11))
    logits, last = sess.run(None, {"tokens": tokens})
    assert np.isfinite(logits).all() and 1e-3 < float(np.std(logits)) < 1e3
    assert not np.allclose(logits[0], logits[1]) and not np.allclose(last[0], last[1])
    weights = random_weights(graph)
    assert weights["decoder.weight"] is weights["embedding.weight"]  # tied
    assert not weights["decoder.bias"].any()  # as the module's reset_parameters


def test_a_state_carries_over_chunks(graphs):
    """Running a sequence in two chunks, feeding last_hidden back as hidden, is running it
    whole: the Scan's state is the PyTorch module's hidden."""
    sess = _session(onnx_backend.serialize(generate_lm(graphs["tiny_rnn_space"])))
    tokens = np.random.default_rng(1).integers(0, 100, (3, 19))
    whole, last = sess.run(None, {"tokens": tokens})
    first, mid = sess.run(None, {"tokens": tokens[:, :8]})
    second, last2 = sess.run(None, {"tokens": tokens[:, 8:], "hidden": mid})
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(last2, last, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- golden


def summary(model) -> str:
    """A compact, stable text form of a model, subgraphs included: all but the weights."""

    def shape(vi) -> str:
        dims = vi.type.tensor_type.shape.dim
        return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + "]"

    def attr(a) -> str:
        if a.type == onnx.AttributeProto.GRAPH:
            return f"{a.name}=<{a.g.name}>"
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v).tolist()
        if isinstance(v, float):
            v = f"{v:.7g}"
        if isinstance(v, list):
            v = ",".join(map(str, v))
        return f"{a.name}={v}"

    def graph(g, indent: str) -> list[str]:
        lines = []
        for n in g.node:
            attrs = " ".join(attr(a) for a in sorted(n.attribute, key=lambda a: a.name))
            lines.append(f"{indent}{n.op_type} {n.name}: {', '.join(n.input)} -> "
                         f"{', '.join(n.output)}" + (f"  [{attrs}]" if attrs else ""))
            for a in sorted(n.attribute, key=lambda a: a.name):
                if a.type == onnx.AttributeProto.GRAPH:
                    ins = ", ".join(f"{i.name} {shape(i)}" for i in a.g.input)
                    outs = ", ".join(f"{o.name} {shape(o)}" for o in a.g.output)
                    lines.append(f"{indent}  {a.name} <{a.g.name}>({ins}) -> {outs}")
                    lines += graph(a.g, indent + "    ")
        return lines

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    lines = [f"# {model.graph.name}: ir_version {model.ir_version}, opsets {opsets}"]
    lines += [f"input {i.name} {shape(i)}" for i in model.graph.input]
    lines += [f"output {o.name} {shape(o)}" for o in model.graph.output]
    lines.append(f"graph ({len(model.graph.node)} nodes)")
    lines += graph(model.graph, "  ")
    lines.append(f"initializers ({len(model.graph.initializer)})")
    lines += [f"  {t.name} [{', '.join(map(str, t.dims))}]" for t in model.graph.initializer]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("spec", [SHRINKRNN, PROXY], ids=lambda p: p.stem)
def test_golden(spec, monkeypatch):
    """The emitted graph is stable: an unintended change shows up as a diff here."""
    monkeypatch.chdir(ROOT)
    text = summary(generate_lm(compile_file(spec.relative_to(ROOT))))
    check_golden(GOLDEN / f"{spec.stem}.txt", text)


# --------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def tiny_state(torch, tmp_path_factory):
    _, module, _ = generate_module(TINY, tmp_path_factory.mktemp("tiny_lm"))
    return module.build().state_dict()


def _fails(tmp_path, capsys, weights: Path, *needles: str, targets: str = "onnx") -> str:
    return compile_fails(TINY, tmp_path, capsys, weights, *needles, targets=targets)


def test_missing_tensor(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    del sd["cell.n1_to_n3.weight"]
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "do not fit TinyLM",
           "missing tensor 'cell.n1_to_n3.weight'", "expected shape [32, 16]", "found none")


def test_missing_tied_embedding(torch, tiny_state, tmp_path, capsys):
    sd = {k: v for k, v in tiny_state.items() if k not in ("embedding.weight", "decoder.weight")}
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "missing tensor 'embedding.weight'",
           "expected shape [100, 16]", "(and 1 more problem)")


@pytest.mark.parametrize("name,shape,expected", [
    ("cell.n0.weight", (32, 31), "expected [32, 32]"),
    ("decoder.bias", (99,), "expected [100]"),
])
def test_wrong_shape(torch, tiny_state, tmp_path, capsys, name, shape, expected):
    sd = dict(tiny_state)
    sd[name] = torch.zeros(*shape)
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", f"'{name}'",
           f"shape [{', '.join(map(str, shape))}]", expected)


def test_wrong_dtype_safetensors(tiny_state, tmp_path, capsys):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {k: v.numpy() for k, v in tiny_state.items() if k != "decoder.weight"}
    arrays["cell.n0_to_n2.weight"] = arrays["cell.n0_to_n2.weight"].astype(np.float16)
    st.save_file(arrays, str(tmp_path / "w.safetensors"))
    _fails(tmp_path, capsys, tmp_path / "w.safetensors", "'cell.n0_to_n2.weight'",
           "dtype float16", "expected float32")


def test_extra_tensor(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    sd["cell.n0_to_n1.wieght"] = sd.pop("cell.n0_to_n1.weight")
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "missing tensor 'cell.n0_to_n1.weight'",
           "(and 1 more problem)")
    sd["cell.n0_to_n1.weight"] = sd["cell.n0_to_n1.wieght"]
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "unexpected tensor 'cell.n0_to_n1.wieght'",
           "shape [32, 16]", "did you mean 'cell.n0_to_n1.weight'")


def test_tied_tensors_that_differ(torch, tiny_state, tmp_path, capsys):
    sd = {k: v.clone() for k, v in tiny_state.items()}
    sd["decoder.weight"] += 1.0
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'embedding.weight' and 'decoder.weight' differ",
           "ties its decoder", "untied")


def test_cnn_checkpoint_for_an_lm(torch, tmp_path, capsys):
    _, module, _ = generate_module(TEST_SPECS / "tiny.shrink", tmp_path)
    torch.save(module.build().state_dict(), tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "missing tensor 'embedding.weight'")


def test_bad_weights_write_nothing_for_any_target(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    del sd["decoder.bias"]
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'decoder.bias'", targets="pytorch,onnx,ir")


# --------------------------------------------------------------------------- command line


def test_compile_reports_the_scan(tmp_path, capsys):
    assert main(["compile", str(TINY), "--target", "pytorch,onnx", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tiny_rnn_space.onnx" in out and "time loop as Scan" in out
    assert "batch norm" not in out and "random weights" in out


def test_functions_do_not_apply_to_language_models(tmp_path, capsys):
    rc = main(["compile", str(TINY), "--target", "onnx", "-o", str(tmp_path), "--functions"])
    err = capsys.readouterr().err
    assert rc == 1 and "--functions is for image networks" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_compiling_to_onnx_does_not_import_torch(tmp_path):
    """In a fresh process, with random weights and with .safetensors weights holding one of
    the tied tensors; the output is byte-identical to this process's."""
    st = pytest.importorskip("safetensors.numpy")
    graph = compile_file(SHRINKRNN)
    weights = random_weights(graph, seed=7)
    del weights["embedding.weight"]  # as safetensors.torch.save_model keeps a tied pair
    st.save_file(weights, str(tmp_path / "w.safetensors"))
    script = textwrap.dedent(f"""
        import sys
        from shrinkc.cli import main
        rc = main(["compile", {str(SHRINKRNN)!r}, "--target", "onnx", "-o", {str(tmp_path / "a")!r}])
        rc |= main(["compile", {str(SHRINKRNN)!r}, "--target", "onnx",
                    "-o", {str(tmp_path / "b")!r}, "--weights", {str(tmp_path / "w.safetensors")!r}])
        assert rc == 0, rc
        assert "torch" not in sys.modules, "torch was imported"
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    here = tmp_path / "here"
    assert main(["compile", str(SHRINKRNN), "--target", "onnx", "-o", str(here)]) == 0
    assert (tmp_path / "a" / "shrinkrnn.onnx").read_bytes() == (here / "shrinkrnn.onnx").read_bytes()
    b = onnx.load(tmp_path / "b" / "shrinkrnn.onnx")
    assert {p.key: p.value for p in b.metadata_props}["weights"] == "w.safetensors"
    emb = next(t for t in b.graph.initializer if t.name == "embedding.weight")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(emb), weights["decoder.weight"])

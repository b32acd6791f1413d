"""The ONNX backend: parity with the generated PyTorch module in onnxruntime, model validity,
initializer names, checkpoint checking, golden graph summaries, and compiling without torch.

Regenerate the golden summaries with ``SHRINKC_UPDATE_GOLDEN=1 pytest tests/test_onnx.py``.
"""

from __future__ import annotations

import os
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
from shrinkc.cli import main
from shrinkc.compiler import compile_file

from conftest import CNN_SPECS, ROOT, TEST_SPECS, check_golden, compile_fails, generate_module
from conftest import onnx_summary as summary

TINY = TEST_SPECS / "tiny.shrink"
ALL_SPECS = CNN_SPECS + [TINY]
IDS = [p.stem for p in ALL_SPECS]
GOLDEN = ROOT / "tests" / "golden" / "onnx"
TOLERANCE = 1e-4


def _session(path_or_bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
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
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(torch, tmp_path_factory):
    """Per spec: the generated module with random weights and batch-norm statistics, its
    state_dict saved with torch.save, and its outputs on fresh inputs of batch 1 and 3."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name in cache:
            return cache[name]
        spec = next(p for p in ALL_SPECS if p.stem == name)
        out = tmp_path_factory.mktemp(f"trained_{name}")
        graph, module, _ = generate_module(spec, out)
        torch.manual_seed(sum(map(ord, name)))
        model = module.build().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * (2.0 / max(1, p[0].numel())) ** 0.5
                        if p.dim() > 1 else torch.randn_like(p) * 0.1)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
                    m.running_mean.normal_(0.0, 0.2)
                    m.running_var.uniform_(0.3, 2.0)  # positive
                    m.num_batches_tracked.fill_(123)
        weights = out / "w.pt"
        torch.save(model.state_dict(), weights)
        inputs, refs = {}, {}
        with torch.no_grad():
            for batch in (1, 3):
                x = torch.randn(batch, *graph.input_shape.as_list())
                inputs[batch] = x.numpy()
                refs[batch] = model(x).numpy()
        cache[name] = {"graph": graph, "model": model, "weights": weights, "inputs": inputs,
                       "refs": refs, "spec": spec, "dir": out}
        return cache[name]

    return get


def _check_parity(t: dict, model_path: Path) -> None:
    sess = _session(model_path)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == t["graph"].input_name
    for batch in (1, 3):
        (y,) = sess.run([out.name], {inp.name: t["inputs"][batch]})
        assert y.shape == t["refs"][batch].shape
        err = _rel_err(y, t["refs"][batch])
        assert err <= TOLERANCE, f"batch {batch}: relative error {err:.2e}"


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "bn"])
@pytest.mark.parametrize("name", IDS)
def test_parity_with_pytorch(trained, tmp_path, name, fold):
    t = trained(name)
    extra = [] if fold else ["--no-fold-bn"]
    path = _compile(t["spec"], tmp_path, "--weights", str(t["weights"]), *extra)
    _check_parity(t, path)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "bn"])
@pytest.mark.parametrize("name", ["shrinkcnn_a", "tiny"])
def test_parity_with_functions(trained, tmp_path, name, fold):
    t = trained(name)
    extra = [] if fold else ["--no-fold-bn"]
    path = _compile(t["spec"], tmp_path, "--weights", str(t["weights"]), "--functions", *extra)
    model = onnx.load(path)
    assert model.functions
    _check_parity(t, path)


def test_parity_with_safetensors(trained, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    t = trained("mobilenetv2")
    path = tmp_path / "w.safetensors"
    st.save_file(t["model"].state_dict(), str(path))
    _check_parity(t, _compile(t["spec"], tmp_path / "out", "--weights", str(path)))


@pytest.mark.parametrize("name", IDS)
def test_expected_tensors_are_the_state_dict(trained, name):
    """Names, shapes, dtypes and order of the IR-derived layout == the generated module's."""
    t = trained(name)
    sd = t["model"].state_dict()
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    mine = [(k, s.shape, s.dtype) for k, s in expected_tensors(t["graph"]).items()]
    assert mine == got


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def graphs():
    return {p.stem: compile_file(p) for p in ALL_SPECS}


def _complete(vi) -> bool:
    t = vi.type.tensor_type
    return (t.HasField("shape") and len(t.shape.dim) > 0
            and all(d.HasField("dim_value") or d.HasField("dim_param") for d in t.shape.dim))


@pytest.mark.parametrize("functions", [False, True], ids=["flat", "functions"])
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "bn"])
@pytest.mark.parametrize("name", IDS)
def test_model_is_valid_and_fully_shaped(graphs, name, fold, functions):
    graph = graphs[name]
    model = onnx_backend.generate(graph, fold_bn=fold, functions=functions)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    shaped = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for node in inferred.graph.node:
        for out in node.output:
            assert out in shaped and _complete(shaped[out]), f"no shape for {out}"
    ops = {n.op_type for n in model.graph.node}
    if functions:
        ops |= {n.op_type for f in model.functions for n in f.node}
    assert ("BatchNormalization" in ops) == (not fold)
    assert "Dropout" not in ops
    assert [o.version for o in model.opset_import if o.domain == ""] == [onnx_backend.OPSET]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == graph.input_name
    assert out.name == "logits"
    for vi in (inp, out):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_opset_is_supported_by_onnx_and_onnxruntime():
    assert onnx.defs.onnx_opset_version() >= onnx_backend.OPSET
    model = onnx_backend.generate(compile_file(TINY))
    assert model.ir_version == onnx_backend.ir_version()
    _session(onnx_backend.serialize(model))  # onnxruntime loads it


@pytest.mark.parametrize("name", ["shrinkcnn_a", "mobilenetv2"])
def test_initializer_names_follow_the_state_dict(graphs, name):
    graph = graphs[name]
    expected = [k for k in expected_tensors(graph) if not k.endswith("num_batches_tracked")]
    kept = onnx_backend.generate(graph, fold_bn=False)
    names = [i.name for i in kept.graph.initializer if not i.name.startswith("const.")]
    assert sorted(names) == sorted(expected)
    folded = onnx_backend.generate(graph)
    names = {i.name for i in folded.graph.initializer if not i.name.startswith("const.")}
    assert not any(".bn." in n for n in names)
    if name == "shrinkcnn_a":
        assert {"stem.conv.weight", "stem.conv.bias", "stage2.0.n1.depthwise.weight",
                "stage2.0.n1.pointwise.weight", "stage2.0.n1.pointwise.bias",
                "stage2.0.residual.conv.weight", "stage2.0.residual.conv.bias",
                "head.2.weight", "head.2.bias"} <= names
        assert "stage2.0.n1.depthwise.bias" not in names


def test_functions_show_cells(graphs):
    graph = graphs["shrinkcnn_a"]
    model = onnx_backend.generate(graph, functions=True)
    calls = [n for n in model.graph.node if n.domain == onnx_backend.FUNCTION_DOMAIN]
    assert len(calls) == sum(len(s.cells) for s in graph.stages)
    assert [c.name for c in calls][:3] == ["stage1.0", "stage2.0", "stage2.1"]
    # one function per structure: widths are attributes, so 18 cells need only 3 bodies
    assert sorted(f.name for f in model.functions) == ["ShrinkA", "ShrinkA_2", "ShrinkA_3"]
    assert not any(n.op_type == "Relu" for n in model.graph.node if n.name.startswith("stage"))


def test_random_weights_are_deterministic_and_plausible(graphs):
    graph = graphs["mobilenetv2"]
    a = onnx_backend.serialize(onnx_backend.generate(graph))
    b = onnx_backend.serialize(onnx_backend.generate(graph))
    assert a == b
    sess = _session(a)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (y,) = sess.run(None, {"image": x})
    assert np.isfinite(y).all() and 1e-3 < float(np.std(y)) < 1e3
    assert not np.allclose(y[0], y[1])


# --------------------------------------------------------------------------- golden


GOLDEN_CASES = [(p, "", {}) for p in ALL_SPECS] + [
    (ROOT / "specs" / "shrinkcnn_a.shrink", ".functions", {"functions": True}),
    (TINY, ".bn", {"fold_bn": False}),
]


@pytest.mark.parametrize("spec,suffix,opts", GOLDEN_CASES,
                         ids=[p.stem + s for p, s, _ in GOLDEN_CASES])
def test_golden(spec, suffix, opts, monkeypatch):
    """The emitted graph is stable: an unintended change shows up as a diff here."""
    monkeypatch.chdir(ROOT)
    text = summary(onnx_backend.generate(compile_file(spec.relative_to(ROOT)), **opts))
    check_golden(GOLDEN / f"{spec.stem}{suffix}.txt", text)


# --------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def tiny_state(torch, tmp_path_factory):
    _, module, _ = generate_module(TINY, tmp_path_factory.mktemp("tiny"))
    return module.build().state_dict()


def _fails(tmp_path, capsys, weights: Path, *needles: str, targets: str = "onnx") -> str:
    return compile_fails(TINY, tmp_path, capsys, weights, *needles, targets=targets)


def test_missing_tensor(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    del sd["stage1.0.a.pointwise.weight"]
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "missing tensor 'stage1.0.a.pointwise.weight'",
           "expected shape [8, 16, 1, 1]", "found none")


def test_extra_tensor(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    sd["stage1.0.extra.weight"] = torch.zeros(4, 2)
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "unexpected tensor 'stage1.0.extra.weight'",
           "shape [4, 2]")


def test_wrong_shape(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    sd["head.3.0.weight"] = torch.zeros(64, 511)
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'head.3.0.weight'", "shape [64, 511]",
           "expected [64, 512]")


def test_checkpoint_of_another_network(torch, tmp_path, capsys):
    _, module, _ = generate_module(CNN_SPECS[0], tmp_path)  # mobilenetv2 weights for tiny
    torch.save(module.build().state_dict(), tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'stem.0.conv.weight'", "do not fit Tiny")


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16", "int32"])
def test_wrong_dtype(torch, tiny_state, tmp_path, capsys, dtype):
    sd = dict(tiny_state)
    sd["stem.0.bn.running_var"] = sd["stem.0.bn.running_var"].to(getattr(torch, dtype))
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'stem.0.bn.running_var'", f"dtype {dtype}",
           "expected float32", "[16]")


def test_wrong_dtype_safetensors(tiny_state, tmp_path, capsys):
    st = pytest.importorskip("safetensors.numpy")
    arrays = {k: v.numpy() for k, v in tiny_state.items()}
    arrays["head.4.bias"] = arrays["head.4.bias"].astype(np.float16)
    st.save_file(arrays, str(tmp_path / "w.safetensors"))
    _fails(tmp_path, capsys, tmp_path / "w.safetensors", "'head.4.bias'", "dtype float16")


def test_num_batches_tracked_is_optional(torch, tiny_state, tmp_path):
    sd = {k: v for k, v in tiny_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "w.pt")
    assert main(["compile", str(TINY), "--target", "onnx", "-o", str(tmp_path / "o"),
                 "--weights", str(tmp_path / "w.pt")]) == 0


def test_prefixed_names_get_a_hint(torch, tiny_state, tmp_path, capsys):
    torch.save({f"module.{k}": v for k, v in tiny_state.items()}, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "missing tensor 'stem.0.conv.weight'",
           "start with 'module.'")


@pytest.mark.parametrize("content,needle", [
    (b"this is not a checkpoint", "as a PyTorch checkpoint"),
    (b"", "as a PyTorch checkpoint"),
])
def test_not_a_checkpoint(tmp_path, capsys, content, needle):
    pytest.importorskip("torch")
    (tmp_path / "w.pt").write_bytes(content)
    _fails(tmp_path, capsys, tmp_path / "w.pt", needle)


def test_not_a_safetensors_file(tmp_path, capsys):
    (tmp_path / "w.safetensors").write_bytes(b"\xff" * 64)
    _fails(tmp_path, capsys, tmp_path / "w.safetensors", "as a safetensors file")


def test_checkpoint_that_is_not_a_state_dict(torch, tiny_state, tmp_path, capsys):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    _fails(tmp_path, capsys, tmp_path / "list.pt", "holds a value of type list, not a state_dict")
    torch.save({"state_dict": tiny_state, "epoch": 3}, tmp_path / "ckpt.pt")
    _fails(tmp_path, capsys, tmp_path / "ckpt.pt", "'state_dict' holds a nested dict")


def test_pt_and_safetensors_give_the_same_model(torch, tiny_state, tmp_path):
    """A .pt file is read by torch.load(weights_only=True), a .safetensors file by
    safetensors: the same state_dict gives the same bytes, views and transposes included."""
    st = pytest.importorskip("safetensors.torch")
    sd = {k: v.t().contiguous().t() if v.dim() == 2 else v for k, v in tiny_state.items()}
    torch.save(sd, tmp_path / "w.pt")
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        assert main(["compile", str(TINY), "--target", "onnx", "-o", str(tmp_path / name[2:]),
                     "--weights", str(tmp_path / name)]) == 0
    a = onnx.load(tmp_path / "pt" / "tiny.onnx")
    b = onnx.load(tmp_path / "safetensors" / "tiny.onnx")
    assert [t.SerializeToString() for t in a.graph.initializer] == \
        [t.SerializeToString() for t in b.graph.initializer]


def test_pt_files_need_torch_2_6(torch, tiny_state, tmp_path, capsys, monkeypatch):
    """torch.load(weights_only=True) before torch 2.6 could be made to run code by a crafted
    file: an older torch is refused before it reads anything."""
    torch.save(tiny_state, tmp_path / "w.pt")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    msg = _fails(tmp_path, capsys, tmp_path / "w.pt", "needs torch 2.6 or newer",
                 "2.5.1+cpu")
    assert "safetensors" in msg


def test_missing_weights_file(tmp_path, capsys):
    _fails(tmp_path, capsys, tmp_path / "nope.pt", "nope.pt: no such file")


def test_bad_weights_write_nothing_for_any_target(torch, tiny_state, tmp_path, capsys):
    sd = dict(tiny_state)
    del sd["head.4.bias"]
    torch.save(sd, tmp_path / "w.pt")
    _fails(tmp_path, capsys, tmp_path / "w.pt", "'head.4.bias'", targets="pytorch,onnx,ir")


# --------------------------------------------------------------------------- command line


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out, needle in ((blocker, "it is a file"), (blocker / "sub", "cannot create")):
        rc = main(["compile", str(TINY), "--target", "onnx", "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 1 and needle in err and "Traceback" not in err, err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only directories")
def test_read_only_output_dir(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        rc = main(["compile", str(TINY), "--target", "onnx", "-o", str(out)])
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err
    assert rc == 1 and "not writable" in err and not list(out.iterdir())


def test_onnx_options_need_the_onnx_target(tmp_path, capsys):
    rc = main(["compile", str(TINY), "-o", str(tmp_path), "--functions"])
    assert rc == 2 and "--functions only applies to --target onnx" in capsys.readouterr().err


def test_pytorch_and_onnx_at_once(tmp_path, capsys):
    assert main(["compile", str(TINY), "--target", "pytorch,onnx", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.py"]
    out = capsys.readouterr().out
    assert "tiny.onnx" in out and "opset" in out and "random weights" in out


def test_compiling_to_onnx_does_not_import_torch(tmp_path):
    """In a fresh process, with random weights and with .safetensors weights; the output is
    also byte-identical to this process's (random weights are deterministic)."""
    st = pytest.importorskip("safetensors.numpy")
    from shrinkc.backends.onnx.checkpoint import random_weights

    graph = compile_file(TINY)
    st.save_file(random_weights(graph, seed=7), str(tmp_path / "w.safetensors"))
    script = textwrap.dedent(f"""
        import sys
        from shrinkc.cli import main
        rc = main(["compile", {str(TINY)!r}, "--target", "onnx", "-o", {str(tmp_path / "a")!r}])
        rc |= main(["compile", {str(TINY)!r}, "--target", "onnx", "-o", {str(tmp_path / "b")!r},
                    "--weights", {str(tmp_path / "w.safetensors")!r}])
        assert rc == 0, rc
        assert "torch" not in sys.modules, "torch was imported"
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    here = tmp_path / "here"
    assert main(["compile", str(TINY), "--target", "onnx", "-o", str(here)]) == 0
    assert (tmp_path / "a" / "tiny.onnx").read_bytes() == (here / "tiny.onnx").read_bytes()
    b = onnx.load(tmp_path / "b" / "tiny.onnx")
    assert {p.key: p.value for p in b.metadata_props}["weights"] == "w.safetensors"

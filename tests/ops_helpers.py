"""Helpers for the op tests against plain PyTorch (test_ops_activations.py,
test_ops_conv_pool.py, test_ops_blocks.py): a spec from a snippet, its generated module with
seeded random weights and batch-norm statistics, the output of its ONNX graph in onnxruntime
(at an opset, batch norm folded or not), and a relative-error comparison."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from shrinkc.backends import onnx as onnx_backend

from conftest import generate_module

torch = pytest.importorskip("torch")
nn = torch.nn
ort = pytest.importorskip("onnxruntime")


def _spec(tmp_path: Path, text: str, name: str = "net") -> Path:
    path = tmp_path / f"{name}.shrink"
    path.write_text("shrink 1\n\n" + textwrap.dedent(text).strip() + "\n")
    return path


def _randomize(model) -> None:
    """Random weights and batch-norm statistics (seeded), so that parity means something."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (2.0 / max(1, p[0].numel())) ** 0.5
                    if p.dim() > 1 else torch.randn_like(p) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.3, 2.0)


def _build(spec: Path, tmp_path: Path):
    graph, module, _ = generate_module(spec, tmp_path, f"gen_{spec.stem}")
    model = module.build().eval()
    _randomize(model)
    return graph, model


def _onnx_out(graph, model, x: torch.Tensor, *, opset: int = onnx_backend.OPSET,
              fold_bn: bool = True) -> np.ndarray:
    weights = {k: v.numpy() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    m = onnx_backend.generate(graph, weights, fold_bn=fold_bn, opset=opset)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_backend.serialize(m), opts,
                               providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {graph.input_name: x.numpy()})
    return y


def _close(got, ref, tol: float = 1e-5) -> None:
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max() / max(1e-6, float(np.abs(ref).max())))
    assert err <= tol, f"relative error {err:.2e}"


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""Training a shrinker candidate on the proxy task (imports torch; used by workers only).

A candidate arrives as spec *text* (the search-space file with the candidate's edges): it is
compiled by the ordinary pipeline and turned into a module by the PyTorch backend's generated
source, so what the search trains is exactly what ``shrinkc compile`` ships. Each candidate is
trained from its own seed with a fixed number of threads, so results do not depend on which
worker, or how many workers, ran it.
"""

from __future__ import annotations

import time
import types
from functools import lru_cache
from typing import Any

from shrinkc.backends import data as proxy_data
from shrinkc.backends.pytorch import generate
from shrinkc.compiler.pipeline import build_graph, check


def build_module(graph) -> Any:
    """Execute the generated source of ``graph`` and return ``build()``'s network."""
    source = generate(graph)
    module = types.ModuleType(f"shrinkc_candidate_{graph.network}")
    exec(compile(source, f"<shrinkc {graph.network}>", "exec"), module.__dict__)  # noqa: S102
    return module.build()


@lru_cache(maxsize=4)
def _data(name: str | None, shape: tuple[int, ...]):
    return proxy_data.load(name, shape)


def train(model, data, settings: dict, seed: int) -> tuple[float, int]:
    """Train ``model``; returns (best validation accuracy, epochs run)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    lr = float(settings.get("lr", 0.004))
    wd = float(settings.get("weight_decay", 0.0))
    if settings.get("optimizer", "adam") == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(settings.get("momentum", 0.9)),
                              weight_decay=wd)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    batch, epochs = int(settings.get("batch", 128)), int(settings.get("epochs", 20))
    patience = int(settings.get("patience", 0))
    best, since, epoch = 0.0, 0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x_val), 512):
                correct += (model(x_val[i:i + 512]).argmax(1) == y_val[i:i + 512]).sum().item()
        acc = correct / len(x_val)
        if acc > best:
            best, since = acc, 0
        else:
            since += 1
            if patience and since >= patience:
                break
    return best, epoch


def evaluate(job: dict) -> dict:
    """Compile, build and train one candidate. ``job`` is plain data (picklable for workers)."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(int(job.get("threads", 1)))
    checked = check(job["path"], job["text"])
    graph = build_graph(checked, job["network"], job.get("overrides") or None)
    data = _data(job.get("data"), tuple(graph.input_shape.as_list()))
    torch.manual_seed(job["seed"])
    model = build_module(graph)
    acc, epochs = train(model, data, job["train"], job["seed"])
    return {
        "acc": acc,
        "macs": graph.cost.macs,
        "params": graph.cost.params,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - start, 3),
    }

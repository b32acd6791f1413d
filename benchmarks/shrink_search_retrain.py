"""shrink_search's ``retrain`` part: each method's best cell and the references trained from
scratch at the full budget; on the CIFAR-10 proxy on train10k.npz, each network evaluated once
on the held-out test.npz with its best validation epoch's weights (saved as safetensors)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import shrink_search_config as cfg
from shrink_search_config import RESULTS, RETRAIN_SEEDS, SHARED, load
from shrink_search_methods import best_cells
from shrink_search_space import Space, shrinka_job, train_all

RETRAIN_DATA = SHARED / "cifar10" / "train10k.npz"  # 10,000 training images, proxy.npz's val
TEST_DATA = SHARED / "cifar10" / "test.npz"  # final reports only: read once per network
TEST_SEEDS = (11, 22)
WEIGHTS = RESULTS / "weights_cifar10"


def _test_arrays(train_path: str, test_path: str):
    """test.npz's images as the network takes them: N x C x H x W float32, standardised with
    the mean and standard deviation of ``train_path``'s training images, as ``load_npz``
    standardises its own splits."""
    import numpy as np

    with np.load(train_path) as f:
        x = f["x_train"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    std = x.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    with np.load(test_path) as f:
        xt = f["x_test"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        yt = f["y_test"].astype(np.int64)
    return ((xt - mean) / std).astype(np.float32), yt


def _retrain_and_test(job, test_path: str, weights: str | None) -> dict:
    """Train ``job`` from scratch (its data's validation split stops it early), take the
    weights of its best validation epoch, evaluate them once on ``test_path``, and save them
    as safetensors to ``weights`` (when given)."""
    import torch

    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.data import images
    from shrinkc.search import train as T

    start, cpu = time.perf_counter(), time.process_time()
    torch.set_num_threads(int(job.threads))
    graph = build_graph(check(job.path, job.text), job.network, job.overrides or None)
    torch.manual_seed(job.seed)
    model = T.build_module(graph)
    data = images.load_npz(job.data, tuple(graph.input_shape.as_list()))
    acc, epochs, curve, ckpt = T.train(model, data, job.train, job.seed, job.precision,
                                       keep_best=True)
    model.load_state_dict(ckpt["best_model"])
    x, y = _test_arrays(job.data, test_path)
    x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    test_acc = T.accuracy(model, x, torch.from_numpy(y), job.precision)
    if weights:
        from safetensors.torch import save_file

        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        tmp = weights + ".tmp"
        save_file(state, tmp, metadata={"network": job.network, "seed": str(job.seed),
                                         "val_acc": f"{acc:.4f}", "test_acc": f"{test_acc:.4f}"})
        os.replace(tmp, weights)
    return {"acc": acc, "test_acc": test_acc, "macs": graph.cost.macs,
            "params": graph.cost.params, "epochs": epochs, "curve": curve,
            "seconds": round(time.perf_counter() - start, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3)}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def retrain_cells(sp: Space, doc: dict, seeds) -> dict[str, list]:
    """The cells the retrain part trains (the complete DAG and each method's best), kept in
    ``doc``; the runs of a method whose best cell changed since are dropped, to train again."""
    from shrinkc.search import rules

    cells = {"complete DAG": [list(e) for e in rules.live_edges(sp.space)], **best_cells(sp)}
    for name, cell in doc.get("cells", {}).items():
        if cells.get(name) != cell:
            for s in seeds:
                doc.get("runs", {}).pop(f"{name}/{s}", None)
    doc["cells"] = cells
    return cells


def part_retrain_test(args) -> None:
    """Every method's best cell, the complete DAG and ShrinkCNN-A's cell, trained from
    scratch on train10k.npz at the full budget (proxy.npz's validation split stops them
    early) with 2 seeds, each evaluated once on test.npz with its best validation epoch's
    weights; the first seed's weights are saved as safetensors under WEIGHTS."""
    from functools import partial


    sp = Space()
    doc = load("retrain")
    cells = retrain_cells(sp, doc, TEST_SEEDS)
    doc["protocol"] = {"train": str(RETRAIN_DATA.name), "test": str(TEST_DATA.name),
                       "seeds": list(TEST_SEEDS), "train_settings": sp.settings.train.as_dict(),
                       "weights": "best validation epoch", "precision": args.precision}
    retrain = str(RETRAIN_DATA)
    jobs = {f"{name}/{s}": replace(sp.job(c, s, precision=args.precision), data=retrain)
            for name, c in cells.items() for s in TEST_SEEDS}
    jobs.update({f"ShrinkCNN-A cell/{s}": replace(shrinka_job(sp, s, args.precision),
                                                  data=retrain) for s in TEST_SEEDS})
    fns = {k: partial(_retrain_and_test, test_path=str(TEST_DATA),
                      weights=str(WEIGHTS / f"{slug(k.split('/')[0])}.safetensors")
                      if k.endswith(f"/{TEST_SEEDS[0]}") else None) for k in jobs}
    train_all("retrain", doc, jobs, args.workers, fns)


def part_retrain(args) -> None:
    if cfg.DATA_NAME == "cifar10":
        return part_retrain_test(args)

    sp = Space()
    doc = load("retrain")
    cells = retrain_cells(sp, doc, RETRAIN_SEEDS)
    doc.setdefault("precision", args.precision)  # fp32: the references were trained so
    jobs = {f"{name}/{s}": sp.job(c, s, precision=doc["precision"])
            for name, c in cells.items() for s in RETRAIN_SEEDS}
    jobs.update({f"ShrinkCNN-A cell/{s}": shrinka_job(sp, s, doc["precision"])
                 for s in RETRAIN_SEEDS})
    train_all("retrain", doc, jobs, args.workers)

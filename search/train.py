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
from dataclasses import replace
from functools import lru_cache
from typing import Any

from shrinkc.backends.pytorch import generate
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.pipeline import build_graph, check
from shrinkc.data import images as proxy_data

from . import tasks
from .job import Job
from .table import TrainSettings


def build_module(graph) -> Any:
    """Execute the generated source of ``graph`` and return ``build()``'s network."""
    source = generate(graph)
    module = types.ModuleType(f"shrinkc_candidate_{graph.network}")
    exec(compile(source, f"<shrinkc {graph.network}>", "exec"), module.__dict__)  # noqa: S102
    return module.build()


@lru_cache(maxsize=4)
def _data(name: str | None, shape: tuple[int, ...]):
    return proxy_data.load(name, shape)


def _optimizer(model, settings: TrainSettings):
    """The optimizer the train settings name (adam or sgd), with their lr and weight decay."""
    import torch

    lr, wd = settings.lr, settings.weight_decay
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd,
                               momentum=settings.momentum)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


def _schedule(opt, settings: TrainSettings, steps_per_epoch: int):
    """A function ``at(step)`` that sets the learning rate of training step ``step`` (counted
    from 0 over the whole training, epochs continued from a checkpoint included) by the
    ``schedule`` train setting, or None for ``constant`` (the paper: ``lr`` throughout).

    ``linear`` and ``cosine`` decay it from ``lr`` towards zero over the ``epochs`` budget
    ("budgeted training", Li et al., ICLR 2020). On the digits proxy a 2-epoch linear decay
    ranks cells' accuracy better but their score worse, as it lowers the average step and
    small cells, slow to learn, end further from converged (benchmarks/shrink_search.py,
    part budget). ``restarts`` (epochs,
    set by successive halving to the earlier rounds' budgets) start the decay again from
    ``lr`` there, so that a round's survivor, continued from its checkpoint, ends exactly
    as a run trained from scratch through the same rounds."""
    import math

    kind, lr = settings.schedule, settings.lr
    if kind == "constant":
        return None
    bounds = sorted({0, *settings.restarts, settings.epochs})

    def at(step: int) -> None:
        epoch = step // max(1, steps_per_epoch)
        lo = max(b for b in bounds if b <= epoch)
        hi = min((b for b in bounds if b > epoch), default=lo + 1)
        t = (step - lo * steps_per_epoch) / max(1, (hi - lo) * steps_per_epoch)
        factor = 1 - t if kind == "linear" else 0.5 * (1 + math.cos(math.pi * t))
        for group in opt.param_groups:
            group["lr"] = lr * factor

    return at


class _EarlyStop:
    """Keeps the best validation value; says stop after ``patience`` epochs without a gain."""

    def __init__(self, patience: int, higher_is_better: bool):
        self.patience, self.sign = patience, 1 if higher_is_better else -1
        self.best, self.since = None, 0

    def __call__(self, value: float) -> bool:
        if self.best is None or self.sign * (value - self.best) > 0:
            self.best, self.since = value, 0
            return False
        self.since += 1
        return bool(self.patience) and self.since >= self.patience


def _autocast(precision: str, device: str = "cpu"):
    """The context a step runs in: bf16 autocast, or nothing for fp32."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cuda_info() -> tuple[bool, bool]:
    """(CUDA is available, its GPU computes in bf16)."""
    import torch

    ok = torch.cuda.is_available()
    return ok, bool(ok and torch.cuda.is_bf16_supported())


def _device(name: str):
    """The torch device a job trains on: the CPU, or one of the visible GPUs (workers spread
    over them by process id; every GPU of a machine is the same model, so which one does not
    change a result). CUDA's kernels are made deterministic, so results do not depend on
    workers either."""
    import os

    import torch

    if name != "cuda":
        return torch.device("cpu")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.device("cuda", os.getpid() % max(1, torch.cuda.device_count()))


CALIBRATION_IMAGES = 512  # training images whose batch statistics become the BN statistics


def recalibrate_bn(model, x_train, batch: int, precision: str = "fp32") -> None:
    """Recompute every batch-norm layer's running statistics for the current weights, as the
    average over the first ``CALIBRATION_IMAGES`` training images (in batches of ``batch``):
    "precise BN". Training never reads the running statistics (it normalises with each
    batch's own), so the trained weights are unchanged; only what validation sees is.

    Without it, the statistics lag far behind the weights on a small proxy task: the digits
    proxy has 12 steps an epoch, and with the default momentum (0.1) a network whose
    recalibrated validation accuracy is 0.92 after one epoch scores 0.19 with its running
    statistics, near chance (0.98 against 0.20 after two); see benchmarks/shrink_search.py."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    n = min(len(x_train), CALIBRATION_IMAGES)
    with torch.no_grad(), _autocast(precision, x_train.device.type):
        for i in range(0, n, batch):
            if min(n, i + batch) - i >= 2:
                model(x_train[i:i + batch])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def train(model, data, settings: TrainSettings, seed: int, precision: str = "fp32", device=None,
          resume: dict | None = None, keep_best: bool = False,
          ) -> tuple[float, int, list[float], dict]:
    """Train ``model``; returns (best validation accuracy, epochs run, the validation accuracy
    after each epoch: the learning curve, from which the score any shorter budget with the
    same seed would have given can be read, and a checkpoint). Before each validation the
    batch-norm statistics are recomputed for the epoch's weights (``recalibrate_bn``).

    ``resume``: a checkpoint an earlier call returned (weights, optimizer, random state,
    epochs, curve, early stopping); training goes on from it to ``epochs`` and ends exactly
    as one uninterrupted run with the same seed would (successive halving continues its
    survivors so). ``keep_best``: the checkpoint also holds the weights (batch-norm
    statistics recalibrated) of the epoch with the best validation accuracy, as
    ``best_model``, for evaluating a re-trained network on held-out data.

    Images and the model are kept channels-last (NHWC): on CPUs, oneDNN's convolutions run
    about twice as fast so (``benchmarks/proxy_train.py``); the numbers are fp32 either way.
    ``precision="bf16"`` adds bf16 autocast, which pays only on CPUs with native bf16
    (AVX512-BF16, AMX) and on GPUs; on AVX2 it is several times slower."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = device or torch.device("cpu")
    # the data goes to the device once; batches are sliced there
    x_train, y_train = torch.from_numpy(data.x_train).to(dev), torch.from_numpy(data.y_train).to(dev)
    x_val, y_val = torch.from_numpy(data.x_val).to(dev), torch.from_numpy(data.y_val).to(dev)
    model.to(dev)
    if x_train.dim() == 4:
        model.to(memory_format=torch.channels_last)
        x_train = x_train.contiguous(memory_format=torch.channels_last)
        x_val = x_val.contiguous(memory_format=torch.channels_last)
    opt = _optimizer(model, settings)
    batch, epochs = settings.batch, settings.epochs
    stop, epoch, curve = _EarlyStop(settings.patience, higher_is_better=True), 0, []
    stopped, best_model = False, None
    n = len(x_train)
    steps_per_epoch = sum(1 for i in range(0, n, batch) if min(n, i + batch) - i >= 2)
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["rng"])
        epoch, curve, stopped = int(resume["epoch"]), list(resume["curve"]), bool(resume["stopped"])
        stop.best, stop.since = resume["best"], int(resume["since"])
    step, schedule = epoch * steps_per_epoch, _schedule(opt, settings, steps_per_epoch)
    while epoch < epochs and not stopped:
        epoch += 1
        model.train()
        perm = torch.randperm(len(x_train), generator=gen).to(dev)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            if schedule:
                schedule(step)
            step += 1
            with _autocast(precision, dev.type):
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        recalibrate_bn(model, x_train, batch, precision)
        curve.append(accuracy(model, x_val, y_val, precision))
        stopped = stop(curve[-1])
        if keep_best and stop.since == 0:  # this epoch is the best so far
            best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "generator": gen.get_state(), "rng": torch.get_rng_state(), "epoch": epoch,
                  "curve": curve, "stopped": stopped, "best": stop.best, "since": stop.since}
    if keep_best:
        checkpoint["best_model"] = best_model
    return stop.best or 0.0, epoch, curve, checkpoint


def accuracy(model, x, y, precision: str = "fp32", batch: int = 128) -> float:
    """The fraction of ``x`` that ``model`` (put in eval mode) classifies as ``y``.

    In batches of 128 rather than 512: on the CIFAR proxy's complete DAG (1,000 validation
    images, one thread, Xeon with AMX) a pass takes 0.64x the CPU time in bf16 and 0.47x in
    fp32, as a batch's concatenated activations then stay in the core's cache; the logits are
    bitwise the same (``benchmarks/proxy_train.py --variants``)."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            with _autocast(precision, x.device.type):
                logits = model(x[i:i + batch])
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def train_lm(model, corpus, settings: TrainSettings, seed: int, precision: str = "fp32",
             device=None) -> tuple[float, int, list[float]]:
    """Train a language model with truncated back-propagation through time; returns (best
    validation perplexity, epochs run, the validation perplexity after each epoch). SGD with gradient clipping, as DARTS' search does."""
    import math

    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    batch, epochs = settings.batch, settings.epochs
    bptt, clip = settings.require("bptt", "clip")

    dev = device or torch.device("cpu")
    model.to(dev)

    def batchify(ids, n):
        t = torch.from_numpy(ids)
        cols = len(t) // n
        return t[: n * cols].view(n, cols).to(dev)

    train_data = batchify(corpus.train, min(batch, max(1, len(corpus.train) // (bptt + 1))))
    valid_data = batchify(corpus.valid, 10 if len(corpus.valid) > 10 * (bptt + 1) else 1)
    opt = _optimizer(model, settings)
    vocab = corpus.size
    stop, epoch, curve = _EarlyStop(settings.patience, higher_is_better=False), 0, []
    chunks = range(0, train_data.size(1) - 1, bptt)
    schedule, step = _schedule(opt, settings, len(chunks)), 0
    while epoch < epochs:
        epoch += 1
        model.train()
        hidden = None
        for i in chunks:
            if schedule:
                schedule(step)
            step += 1
            n = min(bptt, train_data.size(1) - 1 - i)
            x, y = train_data[:, i:i + n], train_data[:, i + 1:i + 1 + n]
            with _autocast(precision, dev.type):
                logits, hidden = model(x, hidden)
            hidden = hidden.detach()
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        model.eval()
        total, count, hidden = 0.0, 0, None
        with torch.no_grad():
            for i in range(0, valid_data.size(1) - 1, bptt):
                n = min(bptt, valid_data.size(1) - 1 - i)
                x, y = valid_data[:, i:i + n], valid_data[:, i + 1:i + 1 + n]
                with _autocast(precision, dev.type):
                    logits, hidden = model(x, hidden)
                total += F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1),
                                         reduction="sum").item()
                count += y.numel()
        ppl = math.exp(min(total / max(1, count), 50.0))
        curve.append(ppl if math.isfinite(ppl) else math.inf)
        if stop(curve[-1]):
            break
    return stop.best if stop.best is not None else math.inf, epoch, curve


def _input_layout(graph) -> dict[tuple[str, int, str], list[tuple[str, int]]]:
    """(stage name, cell index, node) -> the node's concatenated inputs as (source, channels)."""
    out = {}
    for stage in graph.stages:
        for i, cell in enumerate(stage.cells):
            shapes = {n.name: n.out_shape.c for n in cell.nodes}
            for n in cell.nodes[1:]:
                out[(stage.name, i, n.name)] = [(s, shapes[s]) for s in n.inputs]
    return out


def inherit(model, graph, parent_state: dict, parent_graph) -> int:
    """Start ``model`` from a parent network's trained weights; returns tensors copied.

    Tensors with the same name and shape are copied. A node that lost an input keeps the
    slices of its weights that belong to the inputs it still has (the input-channel axis of
    its convolution: dim 1, or dim 0 for depthwise weights). Any other tensor whose shape
    changed (downstream of a changed channel count) takes the overlapping corner.
    """
    import torch

    child_layout, parent_layout = _input_layout(graph), _input_layout(parent_graph)
    state = model.state_dict()
    copied = 0
    with torch.no_grad():
        for name, t in state.items():
            p = parent_state.get(name)
            if p is None:
                continue
            if p.shape == t.shape:
                t.copy_(p)
                copied += 1
                continue
            parts = name.split(".")
            key = (parts[0], int(parts[1]), parts[2]) if len(parts) > 3 and parts[1].isdigit() else None
            if key in child_layout and key in parent_layout and p.dim() == t.dim():
                keep, at = [], 0
                child_sources = {s for s, _ in child_layout[key]}
                for src, c in parent_layout[key]:
                    if src in child_sources:
                        keep.extend(range(at, at + c))
                    at += c
                index = torch.tensor(keep, dtype=torch.long)
                for dim in (1, 0):
                    if p.dim() > dim and p.shape[dim] == at and t.shape[dim] == len(keep):
                        p = p.index_select(dim, index)
                        break
                if p.shape == t.shape:
                    t.copy_(p)
                    copied += 1
                    continue
            corner = tuple(slice(0, min(a, b)) for a, b in zip(p.shape, t.shape))
            if p.dim() == t.dim():
                t[corner] = p[corner]
                copied += 1
    model.load_state_dict(state)
    return copied


def _fit_images(model, graph, job: Job, settings: TrainSettings, device):
    """Image classification's training loop: ``train`` on the job's images."""
    data = _data(job.data, tuple(graph.input_shape.as_list()))
    return train(model, data, settings, job.seed, job.precision, device,
                 _checkpoint(job.resume, model))


def _fit_language(model, graph, job: Job, settings: TrainSettings, device):
    """Language modelling's training loop: ``train_lm`` on the job's corpus (no checkpoint)."""
    from shrinkc.data import corpus

    return (*train_lm(model, corpus.load(job.data), settings, job.seed, job.precision, device),
            None)


# each task's training loop, by task name (``tasks.py``): (model, graph, job, settings, device)
# -> (best validation quality, epochs run, the learning curve, a checkpoint or None)
_LOOPS = {"image": _fit_images, "lm": _fit_language}


def _state_bytes(model) -> bytes:
    return _to_bytes(model.state_dict())


def evaluate(job: Job) -> dict:
    """Compile, build and train one candidate; returns its metrics (and, with
    ``job.keep_state``, its trained weights as ``state``; with ``job.keep_checkpoint``, a
    checkpoint to continue its training from as ``checkpoint``; ``job.resume`` continues
    from one).

    With ``job.parent`` (the parent's spec text and trained weights), the candidate starts
    from the parent's weights and is fine-tuned for the ``finetune`` train setting's epochs
    at ``finetune_lr`` (0: a tenth of ``lr``),
    without early stopping; the result then carries the candidate's trained weights, so the
    winner can be the next parent.
    """
    import io

    import torch

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.set_num_threads(int(job.threads))
    device = _device(job.device)
    overrides = job.overrides or None
    graph = build_graph(check(job.path, job.text), job.network, overrides)
    torch.manual_seed(job.seed)
    model = build_module(graph)
    settings = job.train
    if job.parent is not None:
        parent_graph = build_graph(check(job.path, job.parent.text), job.network, overrides)
        try:
            state = torch.load(io.BytesIO(job.parent.state), map_location="cpu",
                               weights_only=True)
        except Exception as e:  # noqa: BLE001 - whatever a damaged archive raises
            raise ShrinkError(f"the parent weights of {job.path} cannot be loaded: "
                              f"{type(e).__name__}", None,
                              "start a new run (choose another -o)") from None
        if not isinstance(state, dict):
            raise ShrinkError(f"the parent weights of {job.path} are not a state dict", None,
                              "start a new run (choose another -o)")
        inherit(model, graph, state, parent_graph)
        settings = replace(settings, epochs=settings.finetune,
                           lr=settings.finetune_lr or settings.lr / 10, patience=0)
    task = tasks.of_graph(graph)
    quality, epochs, curve, checkpoint = _LOOPS[task.name](model, graph, job, settings, device)
    result = task.measured(graph, quality)
    if job.keep_checkpoint and checkpoint is not None:
        result["checkpoint"] = _to_bytes(checkpoint)
    result.update(params=graph.cost.params, epochs=epochs, curve=curve,
                  seconds=round(time.perf_counter() - start, 3),
                  cpu_seconds=round(time.process_time() - cpu_start, 3))
    if job.keep_state:
        result["state"] = _state_bytes(model.cpu())
    return result


def _checkpoint(data: bytes | None, model) -> dict | None:
    """A training checkpoint of ``model`` to continue from, or None: none was given, or it
    cannot be read or is not this model's (the candidate is then trained from scratch, which
    ends the same, only slower)."""
    if data is None:
        return None
    import io

    import torch

    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - whatever a damaged archive raises
        return None
    keys = {"model", "optimizer", "generator", "rng", "epoch", "curve", "stopped", "best", "since"}
    if not isinstance(ckpt, dict) or not keys <= set(ckpt) or not isinstance(ckpt["model"], dict):
        return None
    mine = model.state_dict()
    same = set(ckpt["model"]) == set(mine) and all(
        getattr(ckpt["model"][k], "shape", None) == v.shape for k, v in mine.items())
    try:
        groups = ckpt["optimizer"]["param_groups"]
        fits = sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    except (KeyError, TypeError):
        fits = False
    return ckpt if same and fits else None


def _to_bytes(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()

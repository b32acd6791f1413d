"""The search block's settings: their names and types, their defaults, and ``settings()``.

``settings()`` reads a search block's ``shrink(...)`` and ``train(...)`` lines, and the command
line's overrides, into a checked ``Settings``. Every train setting the trainer reads has a
default here, one set per kind of search, chosen by the proxy network's kind; the trainer
(``train.py``) has no defaults of its own:

- image networks: Adam, lr 0.004, batch 128, 20 epochs, patience 3 (AutoShrink's CNN search);
- language models: SGD, lr 20, batch 128, 10 epochs, bptt 35, gradient clip 0.25 (DARTS'
  recurrent search setting, as the trainer's own fallbacks were) and patience 2, as the paper
  setting ``specs/shrinkrnn_space.shrink`` has it (the trainer's fallback was 0, no early stop,
  but it was never reached: the image defaults always came first).

Both: ``schedule`` constant (the paper: the learning rate never changes; ``linear`` and
``cosine`` decay it to zero over the ``epochs`` budget; on the digits proxy that ranks cells'
accuracy better at 2 epochs but their score worse, see benchmarks/shrink_search.py),
``finetune`` 2 (epochs per candidate with ``--inherit``) at ``finetune_lr`` (0: a tenth
of ``lr``; benchmarks/inherit_study.py: inherited children fine-tuned at a tenth of the lr
end higher than at the full lr), momentum 0 (SGD only) and weight decay 0. The score expression is checked by ``rules.check_score``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, did_you_mean

from .rules import CNN_METRICS, LM_METRICS, check_score

TRAIN_KEYS = {"optimizer": str, "lr": float, "batch": int, "epochs": int, "patience": int,
              "momentum": float, "weight_decay": float, "finetune": int, "finetune_lr": float,
              "bptt": int, "clip": float, "schedule": str}
SHRINK_KEYS = {"candidates": int, "drop": int, "keep": float, "seed": int, "halving": int}
DEFAULT_SHRINK = {"candidates": 10, "drop": 1, "keep": 0.01, "seed": 0, "halving": 0}
DEFAULT_TRAIN = {"optimizer": "adam", "lr": 0.004, "batch": 128, "epochs": 20, "patience": 3,
                 "finetune": 2, "finetune_lr": 0.0, "momentum": 0.0, "weight_decay": 0.0,
                 "schedule": "constant"}
DEFAULT_TRAIN_LM = {"optimizer": "sgd", "lr": 20.0, "batch": 128, "epochs": 10, "patience": 2,
                    "bptt": 35, "clip": 0.25, "finetune": 2, "finetune_lr": 0.0, "momentum": 0.0,
                    "weight_decay": 0.0, "schedule": "constant"}
SCHEDULES = ("constant", "linear", "cosine")

# run.json records the train settings; it did so before momentum, weight decay, finetune_lr
# and schedule had defaults, when they appeared only where a spec set them. One at the value
# the trainer always took then stays out of the record, so a run made then still resumes.
_RECORDED_UNLESS = {"momentum": 0, "weight_decay": 0, "finetune_lr": 0, "schedule": "constant"}


@dataclass(frozen=True)
class Settings:
    """A search's checked settings: K candidates a step, edges dropped a step, the fraction of
    edges to keep, the seed, every train setting (``train``), the score expression and the
    successive-halving factor (0: off, every candidate gets the full budget, as the paper)."""

    candidates: int
    drop: int
    keep: float
    seed: int
    train: dict
    score: ir.Expr
    halving: int = 0


def default_train(lm: bool) -> dict:
    """The train settings a search without a ``train(...)`` line gets (a fresh copy)."""
    return dict(DEFAULT_TRAIN_LM if lm else DEFAULT_TRAIN)


def settings(search: ir.SearchDef, overrides: dict | None = None, *, lm: bool = False) -> Settings:
    """Read and check a search block's settings; ``lm``: the proxy network is a language model
    (its defaults, and a score over ppl and flops rather than acc and macs). ``overrides``
    (from the command line) win over the block; a ``None`` value is no override."""
    shrink = _read(search.shrink, SHRINK_KEYS, DEFAULT_SHRINK, "shrink")
    train = _read(search.train, TRAIN_KEYS, default_train(lm), "train")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        (shrink if k in SHRINK_KEYS else train)[k] = v
    if train["optimizer"] not in ("adam", "sgd"):
        raise ShrinkError(f"unknown optimizer '{train['optimizer']}'", search.locs.get("train"),
                          "optimizer=adam or optimizer=sgd")
    if train["schedule"] not in SCHEDULES:
        raise ShrinkError(f"unknown learning-rate schedule '{train['schedule']}'",
                          search.locs.get("train"),
                          did_you_mean(train["schedule"], SCHEDULES, "schedules")
                          or "schedule=constant (the paper), linear or cosine")
    for k in ("candidates", "drop"):
        if shrink[k] < 1:
            raise ShrinkError(f"{k} must be at least 1, got {shrink[k]}", search.locs.get("shrink"))
    if shrink["halving"] == 1 or shrink["halving"] < 0:
        raise ShrinkError(f"halving must be 0 (off) or a factor of at least 2, got "
                          f"{shrink['halving']}", search.locs.get("shrink"),
                          "halving=3 keeps the best third of a step's candidates each round")
    if not 0 <= shrink["keep"] < 1:
        raise ShrinkError(f"keep must be a fraction in [0, 1), got {shrink['keep']}",
                          search.locs.get("shrink"))
    if train["epochs"] < 1 or train["batch"] < 2 or train["lr"] <= 0 or train["finetune_lr"] < 0:
        raise ShrinkError("train needs epochs >= 1, batch >= 2, lr > 0 and finetune_lr >= 0",
                          search.locs.get("train"))
    if search.score is None:
        raise ShrinkError(f"search '{search.name}' has no score", search.loc,
                          "write e.g. score acc - 0.1 * (log10(macs) - 6)")
    check_score(search.score, LM_METRICS if lm else CNN_METRICS)
    return Settings(shrink["candidates"], shrink["drop"], shrink["keep"], shrink["seed"], train,
                    search.score, shrink["halving"])


def recorded(s: Settings) -> dict:
    """The settings as run.json records them (``--resume`` compares them)."""
    train = {k: v for k, v in s.train.items()
             if not (k in _RECORDED_UNLESS and v == _RECORDED_UNLESS[k])}
    out = {"candidates": s.candidates, "drop": s.drop, "keep": s.keep, "seed": s.seed,
           "train": train}
    if s.halving:  # recorded only when on: a run made before halving existed still resumes
        out["halving"] = s.halving
    return out


def _read(args: tuple[ir.Arg, ...], keys: dict, defaults: dict, what: str) -> dict:
    """``defaults`` updated with a ``shrink(...)`` or ``train(...)`` line's named values."""
    out = dict(defaults)
    for a in args:
        if a.name is None:
            raise ShrinkError(f"{what} settings are named: write {what}(name=value)", a.loc,
                              f"names: {', '.join(keys)}")
        if a.name not in keys:
            raise ShrinkError(f"unknown {what} setting '{a.name}'", a.loc,
                              did_you_mean(a.name, keys, "settings"))
        v = a.value
        if keys[a.name] is str:
            if not isinstance(v, ir.Ref):
                raise ShrinkError(f"{a.name} is a name, e.g. adam", a.loc)
            value: object = v.name
        else:
            from shrinkc.compiler.passes.elaborate import evaluate

            value = evaluate(v, {})
            if isinstance(value, str) or (keys[a.name] is int and not isinstance(value, int)):
                raise ShrinkError(f"{what} setting {a.name} must be {keys[a.name].__name__}, "
                                  f"got {value!r}", a.loc)
            value = keys[a.name](value)
        out[a.name] = value
    return out


PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """Where candidates train: ``cpu``, or ``cuda`` (``auto``: CUDA when a GPU is visible).
    On a machine without an NVIDIA driver this is decided without importing torch; where
    there is one, torch says whether CUDA works. Decided once, in the driver, and recorded."""
    if device not in DEVICES:
        raise ShrinkError(f"unknown device '{device}'", None, "auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    available = _cuda_available()
    if device == "cuda" and not available:
        raise ShrinkError("--device cuda, but no CUDA GPU is visible to torch", None,
                          "use --device auto (CUDA when available, else CPU) or --device cpu")
    return "cuda" if available else "cpu"


def _cuda_available() -> bool:
    import os
    import shutil

    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")
            or os.environ.get("CUDA_VISIBLE_DEVICES")):
        return False
    from .train import cuda_info

    return cuda_info()[0]


def resolve_precision(precision: str, cpuinfo: str | None = None, device: str = "cpu",
                      lm: bool = False) -> str:
    """The precision candidates train in: ``auto`` is bf16 autocast where the hardware
    computes in bf16 natively: a GPU that supports it (mixed precision), a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated and several times slower than fp32, see
    benchmarks/proxy_train.py); else fp32. On a CPU a language model (``lm``) stays in fp32
    even there: its steps are many small matrix products, where autocast's casts cost more
    than bf16 saves (the RNN proxy's epoch: 14.8 s in bf16 against 11.9 s in fp32 on an AMX
    CPU). Decided once, in the driver, so every worker trains the same way (it is recorded
    in run.json)."""
    if precision != "auto":
        return precision
    if device == "cuda":
        from .train import cuda_info

        return "bf16" if cuda_info()[1] else "fp32"
    if lm:
        return "fp32"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 16)
        except OSError:
            cpuinfo = ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return "bf16" if {"avx512_bf16", "amx_bf16"} & set(flags.split()) else "fp32"

"""The search block's settings, ``settings()``, and where and in what precision candidates train.

``settings()`` reads a search block's ``shrink(...)`` and ``train(...)`` lines, and the command
line's overrides, into a checked ``Settings``. The settings themselves (names, types, ranges,
defaults) are declared once, in ``table.py``; every train setting the trainer reads has a
default there, one set per task (``tasks.py``), so the trainer has none of its own:

- image networks: Adam, lr 0.004, batch 128, 20 epochs, patience 3 (AutoShrink's CNN search);
- language models: SGD, lr 20, batch 128, 10 epochs, bptt 35, gradient clip 0.25 (DARTS'
  recurrent search setting) and patience 2, as the paper setting
  ``specs/shrinkrnn_space.shrink`` has it.

Both: ``schedule`` constant (the paper: the learning rate never changes; ``linear`` and
``cosine`` decay it to zero over the ``epochs`` budget; on the digits proxy that ranks cells'
accuracy better at 2 epochs but their score worse, see benchmarks/shrink_search.py),
``finetune`` 2 (epochs per candidate with ``--inherit``) at ``finetune_lr`` (0: a tenth
of ``lr``; benchmarks/inherit_study.py: inherited children fine-tuned at a tenth of the lr
end higher than at the full lr), momentum 0 (SGD only) and weight decay 0. The score
expression is checked by ``rules.check_score`` against the task's score variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, did_you_mean

from . import table
from .rules import check_score
from .table import DEVICES, PRECISIONS, SCHEDULES, ShrinkSettings, TrainSettings
from .tasks import IMAGES, LANGUAGE, Task

__all__ = ["DEVICES", "PRECISIONS", "SCHEDULES", "Settings", "TrainSettings", "default_train",
           "recorded", "resolve_device", "resolve_precision", "settings"]


@dataclass(frozen=True)
class Settings(ShrinkSettings):
    """A search's checked settings: K candidates a step, edges dropped a step, the fraction of
    edges to keep, the seed and the successive-halving factor (0: off, every candidate gets
    the full budget, as the paper) (``ShrinkSettings``), every train setting (``train``) and
    the score expression."""

    train: TrainSettings = field(default=None, kw_only=True)  # type: ignore[assignment]
    score: ir.Expr = field(default=None, kw_only=True)  # type: ignore[assignment]


def default_train(task: Task = IMAGES) -> TrainSettings:
    """The train settings a search without a ``train(...)`` line gets."""
    return TrainSettings.defaults(task.name)


def settings(search: ir.SearchDef, overrides: dict | None = None, *, lm: bool = False,
             task: Task | None = None) -> Settings:
    """Read and check a search block's settings for the proxy network's ``task`` (its
    defaults, and its score variables; ``lm``: the language-model task, where no ``task`` is
    given). ``overrides`` (from the command line) win over the block; a ``None`` value is no
    override."""
    task = task or (LANGUAGE if lm else IMAGES)
    shrink = _read(search.shrink, ShrinkSettings, table.values(ShrinkSettings()), "shrink")
    train = _read(search.train, TrainSettings, table.values(default_train(task)), "train")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        (shrink if k in shrink else train)[k] = v
    for values, cls, what in ((shrink, ShrinkSettings, "shrink"), (train, TrainSettings, "train")):
        for k, row in table.rows(cls).items():
            if values[k] is None:
                continue
            found = table.problem(k, row, values[k])
            if found is not None:
                raise ShrinkError(found[0], search.locs.get(what), found[1])
    if search.score is None:
        raise ShrinkError(f"search '{search.name}' has no score", search.loc,
                          "write e.g. score acc - 0.1 * (log10(macs) - 6)")
    check_score(search.score, task.metrics)
    return Settings(**shrink, train=TrainSettings(**train), score=search.score)


def recorded(s: Settings) -> dict:
    """The settings as run.json records them (``--resume`` compares them): every setting but
    those at a value every run had before the setting existed (``table.record``)."""
    out = table.record(s)
    out["train"] = table.record(s.train)
    return {k: out[k] for k in ("candidates", "drop", "keep", "seed", "train", "halving")
            if k in out}


def _read(args: tuple[ir.Arg, ...], cls, defaults: dict, what: str) -> dict:
    """``defaults`` updated with a ``shrink(...)`` or ``train(...)`` line's named values."""
    keys = table.types(cls)
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
                      task: Task = IMAGES) -> str:
    """The precision candidates train in: ``auto`` is bf16 autocast where the hardware
    computes in bf16 natively: a GPU that supports it (mixed precision), a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated and several times slower than fp32, see
    benchmarks/proxy_train.py); else fp32. On a CPU a task may stay in fp32 even there
    (``Task.cpu_bf16``: a language model's). Decided once, in the driver, so every worker trains the same way (it is recorded
    in run.json)."""
    if precision != "auto":
        return precision
    if device == "cuda":
        from .train import cuda_info

        return "bf16" if cuda_info()[1] else "fp32"
    if not task.cpu_bf16:
        return "fp32"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 16)
        except OSError:
            cpuinfo = ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return "bf16" if {"avx512_bf16", "amx_bf16"} & set(flags.split()) else "fp32"

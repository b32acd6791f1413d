"""Every setting of a search, declared once: its name, type, default, range, help and where it
may come from.

A setting is a field of one of three frozen dataclasses, declared with ``setting(...)``:

``TrainSettings``  how a candidate trains (the spec's ``train(...)`` keys; ``--epochs``,
                   ``--batch`` and ``--schedule`` override theirs). Its defaults depend on the
                   task (``by_task``), so the dataclass itself has none: the trainer cannot
                   fall back on a default of its own.
``ShrinkSettings`` how the search shrinks (the spec's ``shrink(...)`` keys; ``--candidates``,
                   ``--seed`` and ``--halving`` override theirs).
``RunSettings``    how and where a search runs (flags, and the keys of ``--config`` YAML).

From these fields the rest is made: the command line's flags (``add_flags``), their range
checks (``check_flags``), the YAML keys (``config.py``), the checks of the spec's keys
(``settings.py``) and what run.json records (``record``). Adding a setting is one field here
(and its use).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

FLAG, YAML, TRAIN, SHRINK = "flag", "yaml", "train", "shrink"

PRECISIONS = ("auto", "fp32", "bf16")  # the precision candidates train in (autocast)
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "ray")
SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("adam", "sgd")
MAX_WORKERS = 256  # local worker processes, or Ray CPUs
MAX_THREADS = 256  # torch threads per candidate

_NONE = object()  # no default: the value must come from elsewhere


@dataclass(frozen=True)
class Row:
    """One setting's declaration (the metadata of its dataclass field)."""

    what: str  # a short description, for error messages
    sources: frozenset[str]
    help: str | None = None  # the flag's help (default: ``what``)
    default: Any = _NONE  # the same for every task
    by_task: dict | None = None  # or one per task name (None: not used by that task)
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    above: bool = False  # low is excluded
    below: bool = False  # high is excluded
    range_text: str | None = None  # how to say the range, where the default wording misleads
    extra: Any = None  # a further check: value -> problem (a sentence) or None, and a hint
    flag: str | None = None  # its flag (default: --NAME with dashes)
    aliases: tuple[str, ...] = ()  # deprecated spellings (flag and YAML key)
    metavar: str | None = None
    noun: str | None = None  # what an unknown choice is called (default: the name)
    record_unless: Any = _NONE  # run.json leaves it out at this value (runs made before it)

    def default_for(self, task: str) -> Any:
        if self.by_task is not None:
            return self.by_task.get(task)
        return None if self.default is _NONE else self.default


def setting(what: str, *sources: str, default: Any = _NONE, **row: Any) -> Any:
    """A dataclass field declaring a setting (``Row`` holds the rest). A setting with a
    ``default`` gets it as the field's default; one with per-task defaults gets none."""
    meta = {"row": Row(what=what, sources=frozenset(sources), default=default, **row)}
    if default is _NONE:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def rows(cls) -> dict[str, Row]:
    """The settings a dataclass declares, by name, in order."""
    return {f.name: f.metadata["row"] for f in fields(cls) if "row" in f.metadata}


def types(cls) -> dict[str, type]:
    """Each setting's Python type (int, float or str)."""
    hints = {"int": int, "float": float, "str": str}
    return {f.name: hints[str(f.type).split(" ")[0].split("|")[0]] for f in fields(cls)
            if "row" in f.metadata}


def problem(name: str, row: Row, value: Any, label: str | None = None) -> tuple[str, str | None] | None:
    """What is wrong with ``value`` for the setting (a message and a hint), or None. ``label``
    names it in the message (a flag, a key; default: its name)."""
    from shrinkc.compiler.errors import did_you_mean

    label = label or name
    if row.choices and value not in row.choices:
        return (f"unknown {row.noun or label} '{value}'",
                did_you_mean(str(value), row.choices, name) or f"one of: {', '.join(row.choices)}")
    low_bad = row.low is not None and (value <= row.low if row.above else value < row.low)
    high_bad = row.high is not None and (value >= row.high if row.below else value > row.high)
    if low_bad or high_bad:
        return f"{label} must be {range_text(row)}, got {value}", None
    if row.extra is not None:
        return row.extra(value, label)
    return None


def range_text(row: Row) -> str:
    """The range, as words: ``at least 1 and at most 256``, ``above 0``."""
    if row.range_text:
        return row.range_text
    parts = []
    if row.low is not None:
        parts.append(f"{'above' if row.above else 'at least'} {row.low:g}")
    if row.high is not None:
        parts.append(f"{'below' if row.below else 'at most'} {row.high:g}")
    return " and ".join(parts)


def flag_of(name: str, row: Row) -> str:
    return row.flag or "--" + name.replace("_", "-")


# --------------------------------------------------------------------------- the settings


def _halving(value: int, label: str) -> tuple[str, str | None] | None:
    if value == 1:
        return (f"halving must be 0 (off) or a factor of at least 2, got {value}",
                "halving=3 keeps the best third of a step's candidates each round")
    return None


def _subset(value: str, label: str) -> tuple[str, str | None] | None:
    from shrinkc.data.images import parse_subset

    try:
        parse_subset(value)
    except ValueError as e:
        return str(e).replace("--subset", label), None
    return None


def _ray_address(value: str, label: str) -> tuple[str, str | None] | None:
    from .address import address_problem

    return address_problem(value, label)


@dataclass(frozen=True)
class TrainSettings:
    """How a candidate trains: the spec's ``train(...)`` keys, with the task's defaults
    (image networks: AutoShrink's CNN search; language models: DARTS' recurrent search, with
    patience 2 as ``specs/shrinkrnn_space.shrink`` has it). ``restarts`` is not a setting: the
    epochs where a successive-halving round's learning-rate schedule starts again."""

    optimizer: str = setting("the optimizer", TRAIN, by_task={"image": "adam", "lm": "sgd"},
                             choices=OPTIMIZERS)
    lr: float = setting("the learning rate", TRAIN, by_task={"image": 0.004, "lm": 20.0},
                        low=0, above=True)
    batch: int = setting(
        "the training batch", TRAIN, FLAG, by_task={"image": 128, "lm": 128}, low=2,
        help="training batch size per candidate (default: the spec's train(batch=...), else "
        "128); smaller batches take more steps in the same epochs, which short budgets need "
        "(benchmarks/shrink_search.py)")
    epochs: int = setting("training epochs per candidate", TRAIN, FLAG,
                          by_task={"image": 20, "lm": 10}, low=1)
    patience: int = setting("epochs without a gain before training stops (0: never)", TRAIN,
                            by_task={"image": 3, "lm": 2})
    bptt: int | None = setting("back-propagation through time, in tokens", TRAIN,
                               by_task={"lm": 35})
    clip: float | None = setting("the gradient norm clip", TRAIN, by_task={"lm": 0.25})
    finetune: int = setting("epochs a candidate is fine-tuned with --inherit", TRAIN,
                            by_task={"image": 2, "lm": 2})
    finetune_lr: float = setting("the fine-tuning learning rate (0: a tenth of lr)", TRAIN,
                                 by_task={"image": 0.0, "lm": 0.0}, low=0, record_unless=0)
    momentum: float = setting("SGD's momentum", TRAIN, by_task={"image": 0.0, "lm": 0.0},
                              record_unless=0)
    weight_decay: float = setting("the weight decay", TRAIN, by_task={"image": 0.0, "lm": 0.0},
                                  record_unless=0)
    schedule: str = setting(
        "the learning-rate schedule", TRAIN, FLAG,
        by_task={"image": "constant", "lm": "constant"}, choices=SCHEDULES,
        noun="learning-rate schedule", record_unless="constant",
        help="learning rate over each candidate's epochs: constant (the paper), or decayed to "
        "zero over the --epochs budget (default: the spec's train(schedule=...), else "
        "constant)")
    restarts: tuple[int, ...] = ()

    @classmethod
    def defaults(cls, task: str) -> TrainSettings:
        """The settings a search of ``task`` without a ``train(...)`` line gets."""
        return cls(**{k: r.default_for(task) for k, r in rows(cls).items()})

    @classmethod
    def of(cls, task: str, **given: Any) -> TrainSettings:
        """``task``'s defaults with the settings ``given`` replaced."""
        return dataclasses.replace(cls.defaults(task), **given)

    def as_dict(self) -> dict:
        """The settings as a plain dict: those the task uses (not None), and ``restarts``
        where there are any."""
        out = {k: getattr(self, k) for k in rows(TrainSettings) if getattr(self, k) is not None}
        if self.restarts:
            out["restarts"] = list(self.restarts)
        return out

    def require(self, *names: str) -> tuple:
        """The values of settings a task's training needs; KeyError names a missing one."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise KeyError(missing[0])
        return tuple(getattr(self, n) for n in names)


@dataclass(frozen=True)
class ShrinkSettings:
    """How the search shrinks: the spec's ``shrink(...)`` keys."""

    candidates: int = setting("candidates per step (K)", SHRINK, FLAG, default=10, low=1)
    drop: int = setting("edges removed a step", SHRINK, default=1, low=1)
    keep: float = setting("the fraction of edges to keep", SHRINK, default=0.01, low=0, high=1,
                          below=True, range_text="a fraction in [0, 1)")
    seed: int = setting("the search seed", SHRINK, FLAG, default=0, help="search seed")
    halving: int = setting(
        "the successive-halving factor (0: off)", SHRINK, FLAG, default=0, low=0,
        extra=_halving, record_unless=0, metavar="ETA",
        help="successive halving inside each step: train every candidate briefly, keep the best "
        "1/ETA for a budget ETA times longer, up to --epochs (0: off, the paper's procedure; "
        "default: the spec's shrink(halving=...))")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How and where a search runs: flags, or the keys of a ``--config`` YAML file (flags win).
    What run.json records of them is decided when the run starts (``device`` and
    ``train_precision``, with ``auto`` resolved; the data and its fingerprint)."""

    data: str | None = setting(
        "the proxy data, relative to this file", FLAG, YAML, default=None,
        help="proxy data: an .npz (x_train, y_train, x_val, y_val); an image folder "
        "(DIR/train/<class>/*, DIR/val/<class>/*, or class folders alone: split 80/20, "
        "stratified, seed 0); or CIFAR-10/100's python batches folder (cifar-10-batches-py, "
        "cifar-100-python: the training batches, a stratified 10%% of them for validation; the "
        "test batch is never read). Folders are decoded once into a cache ($SHRINKC_CACHE, "
        "default ~/.cache/shrinkc/data). Default: scikit-learn's digits; 'cluttered-digits': "
        "the same digits at random places and sizes among fragments of others, a harder task")
    subset: str | None = setting(
        "N training and M validation images of the data, as N/M", FLAG, YAML, default=None,
        extra=_subset, metavar="N/M",
        help="with an image folder or CIFAR folder: N training and M validation images of it, "
        "stratified by class, seed 0 (the paper's proxy: 5000/1000); recorded in run.json, so "
        "--resume with another subset is refused")
    latency_table: str | None = setting(
        "the latency table a latency score predicts from, relative to this file", FLAG, YAML,
        default=None, metavar="FILE",
        help="with a score that uses latency: the table of measured pieces to predict it from "
        "(shrinkc latency SPEC --space --save-table FILE; another device's, such as a phone's, "
        "is used as it is and must hold every piece of the space). A table of this machine "
        "gets the pieces it lacks measured and saved; a FILE that does not exist is built here. "
        "Default: built here, in the run folder (latency.json)")
    workers: int = setting("local worker processes, or Ray CPUs", FLAG, YAML, default=1, low=1,
                           high=MAX_WORKERS, help="local worker processes (default 1)")
    threads: int = setting(
        "torch threads per candidate", FLAG, YAML, default=1, low=1, high=MAX_THREADS,
        help="torch threads per candidate (fixed, so results do not depend on workers; "
        "default 1)")
    executor: str = setting("where workers run", FLAG, YAML, default="local", choices=EXECUTORS,
                            help="default: local")
    address: str | None = setting(
        "a Ray cluster's address", FLAG, YAML, default=None, extra=_ray_address,
        help="Ray cluster address (with --executor ray): HOST:PORT (its GCS port, e.g. "
        "127.0.0.1:6379), ray://HOST:PORT (Ray Client) or auto (the cluster started on this "
        "machine with 'ray start --head')")
    ray_timeout: float = setting(
        "how long to wait for the Ray cluster, in seconds", FLAG, YAML, default=30.0, low=0,
        high=3600, above=True, metavar="SECONDS",
        help="with --executor ray --address: how long to wait for the cluster to answer "
        "before giving up with a message (default 30)")
    train_precision: str = setting(
        "the precision candidates train in", FLAG, YAML, default="auto", choices=PRECISIONS,
        aliases=("precision",), noun="precision",
        help="train candidates in fp32 or in bf16 autocast; auto (default): bf16 on GPUs that "
        "have it and CPUs with native bf16 (AVX512-BF16, AMX), else fp32 (--precision: the "
        "old spelling, deprecated)")
    device: str = setting("where candidates train", FLAG, YAML, default="auto", choices=DEVICES,
                          help="where candidates train; auto (default): CUDA when a GPU is "
                          "visible")
    gpus_per_candidate: float = setting(
        "the GPUs Ray gives each candidate", FLAG, YAML, default=1.0, low=0, high=8, above=True,
        metavar="G", help="with --executor ray on GPUs: the GPUs each candidate asks Ray for "
        "(default 1; 0.25 lets four small candidates share a GPU)")


@dataclass(frozen=True, kw_only=True)
class Options(RunSettings):
    """What ``shrinkc shrink`` was asked to do: how the search runs (``RunSettings``), the
    spec and run folder, and ``overrides`` of the spec's settings (candidates, epochs, ...)."""

    spec: str
    out: str
    resume: bool = False
    quiet: bool = False
    max_steps: int | None = setting("removal steps to run (0: check and write run.json only)",
                                    FLAG, default=None, low=0,
                                    help="stop after N removal steps")
    search: str | None = None
    inherit: bool = False  # start candidates from the current DAG's trained weights
    overrides: dict = field(default_factory=dict)  # candidates, epochs, seed, ...


def values(obj) -> dict:
    """A settings object's settings, by name (what ``dataclasses.replace`` takes)."""
    return {k: getattr(obj, k) for k in rows(type(obj))}


def record(obj) -> dict:
    """The settings as run.json records them: a setting at its ``record_unless`` value (one
    the run always had before the setting existed) and one the task does not use (None) are
    left out, so a run made before the setting existed still resumes."""
    out = {}
    for k, r in rows(type(obj)).items():
        v = getattr(obj, k)
        if v is None or (r.record_unless is not _NONE and v == r.record_unless):
            continue
        out[k] = v
    return out


# --------------------------------------------------------------------------- the command line


def add_flags(parser, cls, names: tuple[str, ...] | None = None) -> None:
    """Add a flag for each setting of ``cls`` (those in ``names``, in that order) that may come
    from the command line. Flags default to None: not given (the spec, the YAML file or the
    setting's default then decides)."""
    table = rows(cls)
    typed = types(cls)
    for name in names or tuple(table):
        row = table[name]
        if FLAG not in row.sources:
            continue
        kwargs: dict = {"dest": name, "help": row.help or row.what}
        if row.choices:
            kwargs["choices"] = row.choices
        elif typed[name] is not str:
            kwargs["type"] = typed[name]
        if row.metavar:
            kwargs["metavar"] = row.metavar
        aliases = tuple("--" + a.replace("_", "-") for a in row.aliases)
        if aliases:
            kwargs["action"] = _deprecated(aliases)
        parser.add_argument(flag_of(name, row), *aliases, **kwargs)


def _deprecated(old: tuple[str, ...]):
    """An argparse action that stores the value and warns when an old spelling is used."""
    import argparse
    import sys

    class Store(argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            if option_string in old:
                print(f"shrinkc: warning: {option_string} is deprecated; use "
                      f"{self.option_strings[0]}", file=sys.stderr)
            setattr(namespace, self.dest, value)

    return Store


def check_flags(args, *classes) -> str | None:
    """The first flag given with a value its setting refuses (a usage error's message), or
    None. A spec setting's flag is checked for its range only: its further rules are checked
    with the spec's own value (``settings.py``), where an error names the spec's line."""
    for cls in classes:
        for name, row in rows(cls).items():
            value = getattr(args, name, None)
            if FLAG not in row.sources or value is None or row.choices:
                continue
            if {TRAIN, SHRINK} & row.sources:
                row = dataclasses.replace(row, extra=None)
            found = problem(name, row, value, flag_of(name, row))
            if found is not None:
                return found[0]
    return None


def from_flags(args, cls) -> dict:
    """The flags given for the settings of ``cls``, by name (None: not given)."""
    return {k: getattr(args, k) for k, r in rows(cls).items() if FLAG in r.sources}


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)

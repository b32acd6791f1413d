"""The proxy tasks a search trains candidates on: image classification and language modelling.

A ``Task`` says everything the search needs to know about one kind of proxy network, so that
the driver, the settings, the run folder and the command line ask it instead of branching on
the kind: its train settings' defaults (``TrainSettings``' ``by_task``, by ``name``), its
score variables (``metrics``: the quality a trained candidate reaches and its cost, with
``params`` and ``edges``), its data (loading and fitting the network to it, the built-in
data's name, the fingerprint run.json records), whether ``auto`` precision may choose bf16
autocast on a CPU, and the summary line of a search's best snapshot. Its training loop is the
trainer's (``train.py``, the one module that imports torch), registered there under the
task's ``name``. ``of`` is where a network's task is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError
from shrinkc.compiler.units import human


class Prepared(NamedTuple):
    """A task's data, checked: its size (classes or tokens), what the workers load (the data
    as given, or its decoded cache) and what run.json records of it."""

    size: int
    source: str | None
    record: dict


@dataclass(frozen=True)
class Task:
    """One kind of proxy network (see the module's docstring)."""

    name: str  # TrainSettings' defaults for it, and its training loop in train.py
    quality: str  # what training reaches: a validation metric
    higher_is_better: bool
    cost: str  # what the network costs, from the compiler's cost pass
    knob: str  # the network parameter fitted to the data
    unit: str  # what the data has ``size`` of
    cpu_bf16: bool  # auto precision may choose bf16 autocast on a CPU that has it natively
    deployed: tuple[str, ...] = ()  # variables of the deployment network (search/latency.py)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The score's variables."""
        return (self.quality, self.cost, "params", "edges", *self.deployed)

    def measured(self, graph: Any, quality: float) -> dict:
        """A trained candidate's metrics: its quality and its cost (``params`` is common)."""
        return {self.quality: quality, self.cost: self.cost_of(graph)}

    def cost_of(self, graph: Any) -> int:
        raise NotImplementedError

    def prepare(self, data: str | None, graph: Any, subset: str | None, report, progress: bool,
                loc: ir.Loc | None) -> Prepared:
        """Load and check the data (an error here, before anything is trained)."""
        raise NotImplementedError

    def data_name(self, data: str | None) -> str:
        """The data as run.json names it (``data``, or the built-in data's name)."""
        raise NotImplementedError

    def summary(self, best: dict) -> str:
        """A best snapshot's metrics, for the line ``shrinkc shrink`` ends with."""
        raise NotImplementedError


class _Images(Task):
    def cost_of(self, graph) -> int:
        return graph.cost.macs

    def prepare(self, data, graph, subset, report, progress, loc) -> Prepared:
        from shrinkc.data import images

        prepared = images.prepare(data, tuple(graph.input_shape.as_list()), subset, report,
                                  progress=progress)
        return Prepared(prepared.data.classes, prepared.source, dict(prepared.record))

    def data_name(self, data: str | None) -> str:
        from shrinkc.data import images

        return data or images.DIGITS

    def summary(self, best: dict) -> str:
        return f"acc {best['acc']:.4f}, {human(best['macs'])} MACs"


class _Language(Task):
    def cost_of(self, graph) -> int:
        return graph.lm.flops

    def prepare(self, data, graph, subset, report, progress, loc) -> Prepared:
        from shrinkc.data import corpus

        if subset is not None:
            raise ShrinkError("--subset takes part of an image folder or a CIFAR batches "
                              "folder, not a corpus", loc, "drop --subset")
        size = corpus.load(data).size
        return Prepared(size, data, {"data_sha256": corpus.fingerprint(data)})

    def data_name(self, data: str | None) -> str:
        return data or "generated corpus"

    def summary(self, best: dict) -> str:
        return f"ppl {best['ppl']:.2f}, {human(best['flops'])} FLOPs"


IMAGES = _Images(name="image", quality="acc", higher_is_better=True, cost="macs",
                 knob="classes", unit="classes", cpu_bf16=True, deployed=("latency",))
# on a CPU a language model stays in fp32 even where bf16 is native: its steps are many small
# matrix products, where autocast's casts cost more than bf16 saves (the RNN proxy's epoch:
# 14.8 s in bf16 against 11.9 s in fp32 on an AMX CPU)
LANGUAGE = _Language(name="lm", quality="ppl", higher_is_better=False, cost="flops",
                     knob="vocab", unit="tokens", cpu_bf16=False)
TASKS = (IMAGES, LANGUAGE)
# what a step's snapshot keeps of its winner's log entry
SNAPSHOT_METRICS = ("score", *(m for t in TASKS for m in (t.quality, t.cost)), "params",
                    "latency", "latency_measured")


def of(network: ir.NetworkDef) -> Task:
    """The task of a proxy network: a language model's, or image classification's."""
    return LANGUAGE if network.is_lm else IMAGES


def of_graph(graph: Any) -> Task:
    """The task of a built network graph."""
    return LANGUAGE if isinstance(graph, ir.LMGraph) else IMAGES


def of_metrics(metrics: dict) -> Task:
    """The task whose quality metric a log entry or snapshot has (image classification's
    when none has)."""
    return next((t for t in TASKS if metrics.get(t.quality) is not None), IMAGES)

"""What a worker trains: ``Job``, one candidate (or the complete DAG, with ``--inherit``).

A job is plain, picklable data (spec text, not IR), so that it travels to local worker
processes (spawned) and to Ray workers unchanged; ``train.evaluate(job)`` compiles and trains
it. The driver builds jobs with ``make_job``, from the spec and a candidate's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from shrinkc.compiler import ir
from shrinkc.compiler.syntax.printer import print_program

from .rules import Edge, with_edges
from .table import TrainSettings


@dataclass(frozen=True)
class Parent:
    """The network a candidate starts from with ``--inherit``: its spec text (the search-space
    file with the parent's edges) and its trained weights (``torch.save`` bytes)."""

    text: str
    state: bytes


@dataclass(frozen=True)
class Job:
    """One network to train on the proxy task.

    ``path`` names the spec (for messages and includes), ``text`` is the spec with the
    candidate's edges, ``network`` the proxy network to build from it with ``overrides`` (its
    class or vocabulary count), ``train`` every train setting, ``data`` the proxy data (None:
    the built-in), ``seed`` and ``threads`` make the result independent of the worker,
    ``edges`` the candidate's live edges, ``parent`` the weights to start from (``--inherit``)
    and ``keep_state`` whether the result carries the trained weights.
    """

    path: str
    text: str
    network: str
    overrides: dict
    train: TrainSettings
    data: str | None
    seed: int
    threads: int
    edges: int
    parent: Parent | None = None
    keep_state: bool = False
    precision: str = "fp32"  # or "bf16" (autocast): how it runs, not what it is
    device: str = "cpu"  # or "cuda"
    resume: bytes | None = None  # a checkpoint to continue training from (halving)
    keep_checkpoint: bool = False  # the result carries a checkpoint to continue from


def make_job(*, program: ir.Program, space: str, edges: tuple[Edge, ...], threads: int = 1,
             **job) -> Job:
    """The job that trains ``job['network']`` of ``program`` with ``space`` cut down to
    ``edges``; ``job`` holds the rest of ``Job``'s fields."""
    job["overrides"] = dict(job["overrides"])
    return Job(text=print_program(with_edges(program, space, edges)), edges=len(edges),
               threads=threads, **job)

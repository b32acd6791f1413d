"""One line of a search's log (``log.jsonl``): a trained candidate, or the complete DAG.

``Entry`` is the one declaration of a log line. The driver makes entries, ``rules`` ranks them,
the run folder writes them (one JSON object a line, keys sorted) and, on ``--resume``, reads
them back through the same model, which checks their types. A field the search reads is
declared here; what a training returns beyond them (the validation curve, the latency's
measurement, a language model's perplexity curve) is kept as it came, an extra, and written
back as it was read. Only what was set is written, so a line reads back to itself.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import tasks

Edge = tuple[int, int]
Number = int | float  # a count stays an int in the log, a ratio a float


class Entry(BaseModel):
    """A log line: which step and edge, the cell's size and hash, its metrics and score,
    whether the step chose it, and (with successive halving) the round."""

    model_config = ConfigDict(extra="allow", strict=True)
    step: int = Field(ge=0)
    edge: list[int] | None = Field(min_length=2, max_length=2)  # None: step 0, the complete DAG
    edges: int = Field(ge=0)  # live edges of the candidate's cell
    chosen: bool
    score: float
    hash: str | None = None
    isomorphic_to: list | None = Field(default=None, min_length=2, max_length=2)
    acc: Number | None = None
    macs: Number | None = None
    ppl: Number | None = None
    flops: Number | None = None
    params: Number | None = None
    epochs: int | None = None
    seconds: Number | None = None
    rung: int | None = Field(default=None, ge=0)  # the round, with successive halving

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        if (self.step == 0) != (self.edge is None):
            raise ValueError("edge must be null for step 0 (the complete DAG) and an edge "
                             "[i, j] for later steps")
        if self.step > 0 and self.hash is None:
            raise ValueError("a candidate needs its cell's hash")
        task = tasks.of_metrics(vars(self))
        missing = [k for k in (task.quality, task.cost) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"metric '{missing[0]}' is missing")
        return self

    @property
    def edge_key(self) -> Edge | None:
        """The removed edge as a tuple (None for step 0)."""
        return None if self.edge is None else (self.edge[0], self.edge[1])

    @property
    def trained(self) -> bool:
        """Trained in this run, not taken from an isomorphic twin."""
        return self.isomorphic_to is None

    def get(self, name: str) -> Any:
        """A metric by name (declared or extra), None when the entry has none."""
        return self.as_dict().get(name)

    def add(self, **extra: Any) -> None:
        """Record more about the entry (the chosen snapshot's measured latency)."""
        for k, v in extra.items():
            setattr(self, k, v)

    def as_dict(self, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """What the log line holds: every field set and every extra."""
        return self.model_dump(exclude_unset=True, exclude=set(exclude))

    def line(self) -> str:
        """The log line (keys sorted, without the newline)."""
        return json.dumps(self.as_dict(), sort_keys=True)

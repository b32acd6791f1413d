"""run.json: what a search run depends on, as recorded, and what ``--resume`` compares.

``meta`` makes a run's record (the spec and every file it includes, by sha256; the search
block; the data and its sha256, split and subset; the settings; shrinkc's version; precision
and device; how validation is measured; the latency table a latency score uses). ``Meta``
is its shape as read back, ``COMPARED`` the keys a resumed run must match (``BEFORE``: what a
run.json written before a key existed meant; ``NEW_KEYS``: keys without which a run cannot be
resumed), and ``what_changed`` says what differs, as a sentence. The run folder
(``rundir.py``) reads and writes the file.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from .settings import Settings, recorded

# run.json's mark: the folder it is in is a shrinkc run folder
FORMAT = "shrinkc run"


# How a candidate's validation score is measured; a run measured otherwise does not resume.
# Before it was recorded, validation used the running batch-norm statistics.
VALIDATION = "batch-norm statistics recomputed on 512 training images before each validation"


def meta(spec: str, text: str, search: str, settings: Settings, data: str, max_steps: int | None,
         inherit: bool, *, sources: dict[str, str], data_sha256: str | dict[str, str],
         version: str, precision: str = "fp32", device: str = "cpu",
         validation: str = VALIDATION, data_split: str | None = None,
         subset: str | None = None, subset_sha256: str | None = None,
         latency: dict | None = None) -> dict:
    """run.json's contents: the spec (name and hash of its text), the hashes of the spec and
    every file it includes (``sources``: name, relative to the spec's folder, to sha256), the
    search block, its settings, the proxy data (name and the sha256 of its contents, or the
    built-in data's name; for an image folder or CIFAR folder, how it was split into training
    and validation images, and ``--subset`` with the sha256 of the indices it chose),
    shrinkc's version, the run's options, and the latency table a latency score uses
    (``latency.Latency.record``). All but max_steps must match on resume."""
    return {
        "format": FORMAT,
        "spec": spec,
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "sources": dict(sources),
        "search": search,
        "settings": recorded(settings),
        "data": data,
        "data_sha256": data_sha256,
        "data_split": data_split,
        "subset": subset,
        "subset_sha256": subset_sha256,
        "max_steps": max_steps,
        "inherit": inherit,
        "shrinkc_version": version,
        "precision": precision,
        "device": device,
        "validation": validation,
        "latency": latency,
    }


# The keys compared on --resume, in the order their mismatch is reported.
COMPARED = ("spec", "search", "spec_sha256", "sources", "data", "data_sha256", "data_split",
             "subset", "subset_sha256", "settings", "inherit", "shrinkc_version", "precision",
             "device", "validation", "latency")
# what a run.json written before the key existed meant
BEFORE = {"device": "cpu", "data_split": None, "subset": None, "subset_sha256": None,
                "latency": None}
# not in older run.json: such a run cannot be resumed (its candidates were measured otherwise)
NEW_KEYS = ("sources", "data_sha256", "shrinkc_version", "precision", "validation")


class Meta(BaseModel):
    """run.json as read back: the keys every run.json has, of the right types."""

    model_config = ConfigDict(extra="allow", strict=True)
    spec: str
    spec_sha256: str
    search: str
    settings: dict
    data: str
    max_steps: int | None
    inherit: bool
    sources: dict[str, str] | None = None
    data_sha256: str | dict[str, str] | None = None
    shrinkc_version: str | None = None
    precision: str | None = None
    device: str | None = None
    validation: str | None = None
    data_split: str | None = None
    subset: str | None = None
    subset_sha256: str | None = None


def what_changed(key: str, old, new) -> str:
    """What differs between a run's recorded ``key`` and this invocation's, as a sentence."""
    if key == "sources":
        for name in [*new, *old]:
            if old.get(name) != new.get(name):
                what = "the spec" if name == next(reversed(new), None) else "included file"
                if name not in old:
                    return f"{what} {name} was not part of the run when it began"
                if name not in new:
                    return f"included file {name} is no longer included"
                return f"{what} {name} changed since the run began"
    if key == "spec_sha256":
        return "the spec changed since the run began"
    if key == "data_sha256":
        if isinstance(old, dict) and isinstance(new, dict):
            name = next((k for k in [*new, *old] if old.get(k) != new.get(k)), "")
            return f"corpus file {name} changed since the run began"
        return "the data file changed since the run began"
    if key == "settings":
        flat_old = {**old, **old.get("train", {})} if isinstance(old.get("train"), dict) else old
        flat_new = {**new, **new["train"]}
        for k in [*flat_new, *flat_old]:
            if k != "train" and flat_old.get(k) != flat_new.get(k):
                return (f"setting {k} changed since the run began "
                        f"({flat_old.get(k, 'unset')}, now {flat_new.get(k, 'unset')})")
        return "the settings changed since the run began"
    if key == "subset":
        if old and new:
            return f"the run began with --subset {old}, not {new}"
        return (f"the run began with --subset {old}; give it again" if old
                else f"the run began without --subset (not --subset {new})")
    if key == "subset_sha256":
        return "--subset chose other images than when the run began"
    if key == "data_split":
        return f"the data was split otherwise when the run began ({old}, now {new})"
    if key == "shrinkc_version":
        return f"the run began with shrinkc {old}, this is shrinkc {new}"
    if key == "latency":
        if not old or not new:
            return "the run began " + ("with" if old else "without") + " a latency score"
        return ("the latency table differs from the one the run began with (its copy is the "
                "run folder's latency.json)")
    if key == "inherit":
        return "the run began " + ("with" if old else "without") + " --inherit"
    return f"{key} differs from the run's ({old}, now {new})"

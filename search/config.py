"""``shrinkc shrink --config run.yaml``: how a search runs, kept beside the spec.

Where and how candidates train (device, precision, workers, threads, executor and cluster
address, GPUs per candidate, proxy data) is not architecture, so it does not belong in the
``.shrink`` file; a YAML file holds it instead, so that a cluster setup is versioned next to the
spec. Command-line flags override it. The file is read like a spec (a regular UTF-8 file of at
most 4 MiB) and checked with located errors: YAML syntax, unknown keys (with a suggestion),
duplicate keys, types and ranges. ``data`` is relative to the config file's folder.

    # run.yaml
    device: cuda              # auto (default), cpu or cuda
    precision: auto           # auto, fp32 or bf16
    workers: 8                # local worker processes, or Ray CPUs
    executor: ray             # local or ray
    address: auto             # a Ray cluster
    gpus_per_candidate: 0.25  # with Ray on GPUs: four candidates share a GPU
    data: ../data/proxy.npz
    subset: 5000/1000         # of an image folder or CIFAR folder: N/M images
"""

from __future__ import annotations

from pathlib import Path

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, did_you_mean
from shrinkc.compiler.syntax.parser import read_source

from .settings import PRECISIONS

DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("local", "ray")
MAX_WORKERS = 256
_KIND = "YAML run configuration"

# key -> (type, allowed values or (low, high) range, what it is)
KEYS: dict[str, tuple[type, tuple, str]] = {
    "device": (str, DEVICES, "where candidates train"),
    "precision": (str, PRECISIONS, "the precision candidates train in"),
    "workers": (int, (1, MAX_WORKERS), "local worker processes, or Ray CPUs"),
    "threads": (int, (1, MAX_WORKERS), "torch threads per candidate"),
    "executor": (str, EXECUTORS, "where workers run"),
    "address": (str, (), "a Ray cluster's address"),
    "gpus_per_candidate": (float, (0.0, 8.0), "the GPUs Ray gives each candidate"),
    "data": (str, (), "the proxy data, relative to this file"),
    "subset": (str, (), "N training and M validation images of the data, as N/M"),
}


def load(path: str | Path) -> dict:
    """The settings in a run configuration file, checked; ``data`` made relative to the
    current folder. An empty file is an empty configuration."""
    import yaml

    path = Path(path)
    display = path.as_posix()
    text = read_source(path, display, kind=_KIND)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ShrinkError(f"not valid YAML: {e.problem or e.context}", _loc(display, mark),
                          "a run configuration is lines of 'key: value'") from None
    except yaml.YAMLError as e:
        raise ShrinkError(f"not valid YAML: {e}", _loc(display, None)) from None
    except RecursionError:
        raise ShrinkError("not valid YAML: nested too deeply", _loc(display, None),
                          quote=False) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ShrinkError("a run configuration is a mapping of settings", _node_loc(display, node),
                          f"write 'key: value' lines; keys: {', '.join(KEYS)}")
    out: dict = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in KEYS:
            shown = key if isinstance(key, str) else "a non-text key"
            hint = (did_you_mean(key, KEYS, "settings") if isinstance(key, str) else None)
            raise ShrinkError(f"unknown run setting '{shown}'", _node_loc(display, key_node),
                              hint or f"settings: {', '.join(KEYS)}")
        if key in out:
            raise ShrinkError(f"'{key}' is set twice", _node_loc(display, key_node))
        out[key] = _value(display, key, value_node)
    if "data" in out:
        out["data"] = (path.parent / out["data"]).as_posix()
    return out


def _value(display: str, key: str, node) -> object:
    """A setting's value, of its type and in its range."""
    import yaml

    kind, allowed, what = KEYS[key]
    loc = _node_loc(display, node)
    if not isinstance(node, yaml.ScalarNode):
        raise ShrinkError(f"{key} ({what}) is a single value, not a list or mapping", loc)
    if node.value == "" and node.tag.endswith(":null"):
        raise ShrinkError(f"{key} ({what}) has no value", loc)
    value = _construct(node)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ShrinkError(f"{key} ({what}) must be {_article(kind)}, got {node.value!r}", loc,
                          _choices(allowed) if kind is str else None)
    if kind is str and allowed and value not in allowed:
        raise ShrinkError(f"unknown {key} '{value}'", loc,
                          did_you_mean(value, allowed, key) or _choices(allowed))
    if kind in (int, float) and not allowed[0] <= value <= allowed[1]:  # type: ignore[operator]
        low = "above 0" if kind is float else f"at least {allowed[0]}"
        raise ShrinkError(f"{key} must be {low} and at most {allowed[1]:g}, got {value}", loc)
    if kind is float and value <= 0:  # type: ignore[operator]
        raise ShrinkError(f"{key} must be above 0, got {value}", loc)
    if kind is str and not value:
        raise ShrinkError(f"{key} is empty", loc)
    if key == "subset":
        from .data.images import parse_subset

        try:
            parse_subset(value)
        except ValueError as e:
            raise ShrinkError(str(e).replace("--subset", "subset"), loc) from None
    return value


def _construct(node) -> object:
    """A scalar node's value, as YAML's safe loader reads it (int, float, bool, null, str)."""
    import yaml

    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _article(kind: type) -> str:
    return {int: "a whole number", float: "a number", str: "a name"}[kind]


def _choices(allowed: tuple) -> str | None:
    return f"one of: {', '.join(allowed)}" if allowed else None


def _loc(file: str, mark) -> ir.Loc:
    if mark is None:
        return ir.Loc(file=file)
    line, col = mark.line + 1, mark.column + 1
    return ir.Loc(file=file, line=line, col=col, end_line=line, end_col=col + 1)


def _node_loc(file: str, node) -> ir.Loc:
    start, end = node.start_mark, node.end_mark
    if end.line != start.line:
        return _loc(file, start)
    return ir.Loc(file=file, line=start.line + 1, col=start.column + 1, end_line=end.line + 1,
                  end_col=max(end.column + 1, start.column + 2))

"""``shrinkc shrink --config run.yaml``: how a search runs, kept beside the spec.

Where and how candidates train (device, precision, workers, threads, executor and cluster
address, GPUs per candidate, proxy data) is not architecture, so it does not belong in the
``.shrink`` file; a YAML file holds it instead, so that a cluster setup is versioned next to the
spec. Command-line flags override it. The file is read like a spec (a regular UTF-8 file), of
at most 16 KiB (a few lines: YAML's reader is slow enough that 4 MiB of one scalar takes
seconds), and checked with located errors: YAML syntax and tags, unknown keys (with a
suggestion), duplicate keys, types and ranges; a value is quoted cut short, and a number
beyond any setting's range is refused before it is converted or printed. ``data`` and
``latency_table`` are relative to the config file's folder.

    # run.yaml
    device: cuda              # auto (default), cpu or cuda
    train_precision: auto     # auto, fp32 or bf16 (``precision``: the old key, deprecated)
    workers: 8                # local worker processes, or Ray CPUs
    executor: ray             # local or ray
    address: auto             # a Ray cluster
    ray_timeout: 30           # seconds to wait for it to answer
    gpus_per_candidate: 0.25  # with Ray on GPUs: four candidates share a GPU
    data: ../data/proxy.npz
    subset: 5000/1000         # of an image folder or CIFAR folder: N/M images
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from shrinkc.compiler import ir
from shrinkc.compiler.errors import ShrinkError, closest, did_you_mean
from shrinkc.compiler.syntax.parser import read_source

from . import table
from .table import YAML, RunSettings

_KIND = "YAML run configuration"

# the keys (a setting's name, or an old spelling of it) -> the setting's name
_ROWS = {k: r for k, r in table.rows(RunSettings).items() if YAML in r.sources}
KEYS: dict[str, str] = {**{k: k for k in _ROWS},
                        **{a: k for k, r in _ROWS.items() for a in r.aliases}}
_TYPES = table.types(RunSettings)
MAX_CONFIG_BYTES = 16 * 1024  # a run configuration is a few lines
_MAX_TEXT = 4096  # the longest text value (a path may be as long)
_BIG = 1 << 63  # beyond every setting's range: refused before it is printed or made a float


def load(path: str | Path) -> dict:
    """The settings in a run configuration file, checked; ``data`` made relative to the
    current folder. An empty file is an empty configuration."""
    path = Path(path)
    display = path.as_posix()
    try:
        import yaml
    except ImportError:
        raise ShrinkError("--config needs pyyaml, which is not installed", None,
                          "pip install 'shrinkc[search]' (or pip install pyyaml)") from None
    text = read_source(path, display, kind=_KIND)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ShrinkError(f"{display} is larger than {MAX_CONFIG_BYTES // 1024} KiB: refused",
                          None, "a run configuration is a few lines of 'key: value'")
    quote = _looks_like_a_config(text, display)  # its lines are shown under an error
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ShrinkError(f"not valid YAML: {e.problem or e.context}", _loc(display, mark),
                          "a run configuration is lines of 'key: value'", quote=quote) from None
    except yaml.YAMLError as e:
        raise ShrinkError(f"not valid YAML: {e}", _loc(display, None), quote=quote) from None
    except RecursionError:
        raise ShrinkError("not valid YAML: nested too deeply", _loc(display, None),
                          quote=False) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ShrinkError("a run configuration is a mapping of settings", _node_loc(display, node),
                          f"write 'key: value' lines; keys: {', '.join(KEYS)}", quote=quote)
    first = node.value[0][0] if node.value else None
    if first is not None and not _a_setting(getattr(first, "value", None)):
        raise _not_a_config(display, first.start_mark.line + 1)
    out: dict = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in KEYS:
            shown = _cut(key) if isinstance(key, str) else "a non-text key"
            hint = (did_you_mean(key, KEYS, "settings") if isinstance(key, str) else None)
            raise ShrinkError(f"unknown run setting '{shown}'", _node_loc(display, key_node),
                              hint or f"settings: {', '.join(KEYS)}")
        if KEYS[key] in out:
            raise ShrinkError(f"'{key}' is set twice", _node_loc(display, key_node))
        out[KEYS[key]] = _value(display, key, value_node)
    for name in ("data", "latency_table"):  # files, relative to the config's folder
        if out.get(name) is not None:
            out[name] = (path.parent / out[name]).as_posix()
    return out


def _value(display: str, key: str, node) -> object:
    """A setting's value, of its type and in its range."""
    import yaml

    row, kind = _ROWS[KEYS[key]], _TYPES[KEYS[key]]
    what = row.what
    loc = _node_loc(display, node)
    if not isinstance(node, yaml.ScalarNode):
        raise ShrinkError(f"{key} ({what}) is a single value, not a list or mapping", loc)
    if node.value == "" and node.tag.endswith(":null"):
        raise ShrinkError(f"{key} ({what}) has no value", loc)
    value = _construct(display, key, node)
    said = _said(node.value)
    if kind is not str and isinstance(value, int) and abs(value) >= _BIG:  # bool: < _BIG
        raise ShrinkError(f"{key} ({what}) is out of range, got {said}", loc,
                          f"{key} must be {table.range_text(row)}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ShrinkError(f"{key} ({what}) must be a finite number, got {said}", loc)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ShrinkError(f"{key} ({what}) must be {_article(kind)}, got {said}", loc,
                          _choices(row.choices) if kind is str else None)
    if kind is str and not value and not row.choices:
        raise ShrinkError(f"{key} is empty", loc)
    if kind is str and len(value) > _MAX_TEXT:
        raise ShrinkError(f"{key} ({what}) is longer than {_MAX_TEXT} characters: {said}", loc)
    found = table.problem(key, row, value)
    if found is not None:
        raise ShrinkError(found[0], loc, found[1])
    return value


_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_FIRST_KEY = re.compile(r"""[-{\s]*["']?([^\s"':{}\[\],#&*!|>%@`]+)["']?\s*:(?:\s|$)""")


def _looks_like_a_config(text: str, file: str) -> bool:
    """Whether the first statement of ``text`` sets a setting (or a misspelling of one): only
    then are the file's lines quoted under an error. A first statement that is not YAML's
    ``key: value`` (nor a list or flow mapping) is refused here, without quoting it:
    ``--config`` given a credentials file or an ``.env`` (a symlink may lead anywhere) must
    not echo it into a terminal or a log."""
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "---", "%")):
            continue
        m = _FIRST_KEY.match(stripped)
        if m:
            return _a_setting(m.group(1))
        if stripped.startswith(("-", "[", "{")):
            return False
        raise _not_a_config(file, n)
    return True


def _a_setting(key: object) -> bool:
    return isinstance(key, str) and (key in KEYS or closest(key, KEYS) is not None)


def _not_a_config(file: str, line: int) -> ShrinkError:
    return ShrinkError(f"{file} does not look like a run configuration",
                       ir.Loc(file=file, line=line, col=1, end_line=line, end_col=2),
                       "a run configuration is lines of 'key: value' with keys "
                       f"{', '.join(KEYS)} (its lines are not shown, as the file may be "
                       "anything)", quote=False)


def _construct(display: str, key: str, node) -> object:
    """A scalar node's value, as YAML's safe loader reads it (int, float, bool, null, str);
    other tags (timestamps, binary, python/...) and values it cannot build are errors."""
    import yaml

    loc = _node_loc(display, node)
    if node.tag not in _SCALAR_TAGS:
        raise ShrinkError(f"{key}: the YAML tag {_said(node.tag)} is not allowed here", loc,
                          "write a plain number, name or true/false, without a '!!' tag")
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, ArithmeticError,
            LookupError) as e:  # LookupError: '!!int' or '!!bool' of nothing
        problem = getattr(e, "problem", None) or str(e).split(":")[0] or type(e).__name__
        raise ShrinkError(f"{key}: YAML cannot read this value as {node.tag.rsplit(':', 1)[-1]}"
                          f" ({problem})", loc) from None
    finally:
        loader.dispose()


def _cut(text: str, width: int = 60) -> str:
    """User text cut to ``width`` characters for a message (a lone surrogate, which YAML's
    ``"\\ud800"`` makes, as its escape: no output stream can encode one)."""
    text = text if len(text) <= width else text[:width] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _said(text: str) -> str:
    """A value as a message quotes it: in quotes, cut short."""
    return repr(_cut(text))


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

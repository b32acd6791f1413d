"""The documents for users: README.md and docs/.

- every page under docs/ is reachable from the README by links, followed recursively;
- every relative link in the README and docs/ resolves (a file, and a heading for a #anchor);
- docs/ops.md is what ``python docs/gen_ops.py`` makes from compiler/ops.py now;
- docs/cli.md lists every flag of every command's parser, and no flag a parser lacks;
- the parameter and MAC figures of docs/zoo.md's tables are what ``shrinkc stats`` says;
- every ``shrinkc ...`` command in the fenced command examples (```bash and ``` blocks; lines
  that start with ``shrinkc `` or ``$ shrinkc``) runs, with the exit code its trailing
  ``# exit N`` comment documents (else 0), and a ``$ shrinkc`` example prints what the page
  shows under it. Each page's commands run in order in a temporary folder holding a copy of
  specs/ and the few files the examples name (``bad.shrink``, ``w.pt``, ``data.npz``).

What is not run as written, and why:

- ``shrinkc shrink`` searches take minutes: each runs with ``--max-steps 0`` added (the spec,
  data and every flag are checked and run.json written; nothing is trained). The quick
  start's full search is measured by hand (README).
  A run so cut short writes no snapshot, so the space is copied to its ``best.shrink`` for
  the examples that read it.
- ``shrinkc viz`` to .svg, .png or .pdf needs Graphviz's ``dot``: skipped where it is absent.
- Commands whose run takes more than a few seconds (int8 compiles, which calibrate in
  onnxruntime, and the ``bench`` runs after them) run only in ``test_doc_commands_slow``,
  marked ``slow``; ``test_doc_commands`` skips them and says which.

Commands without shell syntax run in this process through ``shrinkc.cli.main`` (a cold
process per command cost several seconds each on loaded cores); those with a pipe or a glob
run in bash, with a time limit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\s*$")
EXIT = re.compile(r"#\s*exit (\d+)\b")
TIMEOUT = 120  # seconds a command may take
SLOW = (re.compile(r"--precision int8"), re.compile(r"^shrinkc bench "))


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _text_outside_code(path: Path) -> str:
    """The page without its fenced blocks and inline code (links there are examples)."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()) or line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _links(path: Path) -> list[str]:
    return LINK.findall(_text_outside_code(path))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#+\s+(.*)$", line)):
            found.add(_slug(m.group(1)))
    return found


def _targets(path: Path) -> list[tuple[str, Path, str]]:
    """(link, target file, anchor) for each relative link on the page."""
    found = []
    for link in _links(path):
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        file, _, anchor = link.partition("#")
        target = (path.parent / file).resolve() if file else path
        found.append((link, target, anchor))
    return found


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [README]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        todo += [t for _, t, _ in _targets(page) if t.suffix == ".md" and t.exists()]
    lost = [_rel(p) for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in seen]
    assert not lost, (f"not reachable from README.md by links: {lost} (link a report from "
                      "docs/reports/README.md, a page from README.md's Documents list)")


@pytest.mark.parametrize("page", _pages(), ids=_rel)
def test_relative_links_resolve(page):
    broken = []
    for link, target, anchor in _targets(page):
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {_rel(target)}")
    assert not broken, f"{_rel(page)}: " + "; ".join(broken)


def _gen_ops():
    spec = importlib.util.spec_from_file_location("_docs_gen_ops", DOCS / "gen_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ops_page_is_generated_from_the_op_table():
    want = _gen_ops().render()
    assert (DOCS / "ops.md").read_text(encoding="utf-8") == want, (
        "docs/ops.md is stale: run python docs/gen_ops.py")


def test_ops_page_names_every_op_and_activation():
    from shrinkc.compiler import ops

    text = (DOCS / "ops.md").read_text(encoding="utf-8")
    for name in [*ops.OPS, *ops.ACTS]:
        assert f"| `{name}` |" in text


def _cli_sections() -> dict[str, str]:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^## shrinkc (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cli_page_lists_every_flag_of_every_command():
    from shrinkc.cli import make_parser

    parser = make_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    sections = _cli_sections()
    assert sorted(sections) == sorted(sub.choices), "one '## shrinkc CMD' section per command"
    problems = []
    for name, cmd in sub.choices.items():
        table = "\n".join(line for line in sections[name].splitlines() if line.startswith("| `"))
        documented = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", table))
        actual = {s for a in cmd._actions for s in a.option_strings} - {"-h", "--help"}
        if actual - documented:
            problems.append(f"{name}: undocumented {sorted(actual - documented)}")
        if documented - actual:
            problems.append(f"{name}: documented but not in the parser "
                            f"{sorted(documented - actual)}")
    assert not problems, "; ".join(problems)


# --------------------------------------------------------------------------- zoo figures


def _figure_matches(doc: str, value: int) -> bool:
    """``doc`` ("383.7M", "1.81G", "3,617,085") is ``value`` as written, to its precision."""
    doc = doc.replace(",", "")
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?([KMG]?)", doc)
    assert m, f"not a figure: {doc!r}"
    unit = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(3)]
    decimals = len(m.group(2) or "")
    return abs(float(m.group(1) + "." + (m.group(2) or "0")) * unit - value) <= (
        0.5 * 10 ** -decimals * unit + 1e-9)


def _zoo_rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in (DOCS / "zoo.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `(specs/[^`]+\.shrink)` \|[^|]*\| ([^|]*) \| ([^|]*) \|", line)
        if m and m.group(2).strip():
            rows.append((m.group(1), m.group(2).strip(), m.group(3).strip()))
    return rows


def test_zoo_tables_name_every_shipped_spec():
    named = {r[0] for r in _zoo_rows()} | set(
        re.findall(r"`(specs/[^`]+\.shrink)`", (DOCS / "zoo.md").read_text(encoding="utf-8")))
    shipped = {_rel(p) for p in (ROOT / "specs").rglob("*.shrink")}
    assert shipped <= named, f"not in docs/zoo.md: {sorted(shipped - named)}"


@pytest.mark.parametrize("row", _zoo_rows(), ids=lambda r: r[0])
def test_zoo_figures_are_what_stats_says(row):
    from shrinkc.compiler import compile_file

    spec, params, cost = row
    graph = compile_file(ROOT / spec)
    assert _figure_matches(params.split()[0], graph.cost.params), (spec, params)
    if "FLOPs" in cost:
        flops = _lm_flops(spec)
        assert _figure_matches(cost.split()[0], flops), (spec, cost, flops)
    else:
        assert _figure_matches(cost.split()[0], graph.cost.macs), (spec, cost)


def _lm_flops(spec: str) -> int:
    import json

    out = _run_inprocess(["stats", str(ROOT / spec), "--json"], ROOT)
    assert out[0] == 0, out
    return json.loads(out[1])["flops"]


# --------------------------------------------------------------------------- commands


def _commands(page: Path) -> list[tuple[str, list[str] | None, int]]:
    """(command line, expected output lines or None, expected exit code), in page order."""
    found = []
    lang, fenced, current = None, False, None
    for line in page.read_text(encoding="utf-8").splitlines():
        m = FENCE.match(line.strip())
        if m or line.strip().startswith("```"):
            fenced = not fenced
            lang = m.group(1) if (m and fenced) else None
            current = None
            continue
        if not fenced or lang not in ("", "bash"):
            continue
        if line.startswith(("$ shrinkc ", "shrinkc ")):
            shown = line.startswith("$ ")
            cmd = line[2:] if shown else line
            code = EXIT.search(cmd)
            cmd = re.sub(r"\s+#.*$", "", cmd).strip()
            current = [] if shown else None
            found.append((cmd, current, int(code.group(1)) if code else 0))
        elif current is not None:
            current.append(line)
    return found


def _slow(cmd: str) -> bool:
    return any(p.search(cmd) for p in SLOW)


def _needs_dot(cmd: str) -> bool:
    return bool(re.match(r"^shrinkc viz .*-o \S+\.(svg|png|pdf)\b", cmd))


def _stand_in(cmd: str, folder: Path) -> None:
    """A search run with --max-steps 0 writes no snapshot: the space itself stands in for
    ``best.shrink``, so the examples that read a run's result run too."""
    argv = shlex.split(cmd)
    out = folder / argv[argv.index("-o") + 1]
    if out.is_dir() and not (out / "best.shrink").exists():
        shutil.copy(folder / argv[2], out / "best.shrink")


def _prepared(cmd: str) -> str:
    """The command as the test runs it: a search with --max-steps 0 (see the docstring)."""
    if cmd.startswith("shrinkc shrink ") and "--max-steps" not in cmd:
        cmd += " --max-steps 0 --quiet"
    return cmd


class _Timeout(Exception):
    pass


def _run_inprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``shrinkc ARGV`` through ``cli.main`` in ``cwd``, its stdout and stderr captured at
    the file descriptors (some commands write bytes), within the time limit."""
    import tempfile

    from shrinkc import cli

    def alarm(*_):
        raise _Timeout

    old_cwd = os.getcwd()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        old_handler = signal.signal(signal.SIGALRM, alarm)
        signal.alarm(TIMEOUT)
        try:
            os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            with open(1, "w", closefd=False) as so, open(2, "w", closefd=False) as se, \
                    contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
                try:
                    rc = cli.main(argv)
                except SystemExit as e:  # argparse's usage errors
                    rc = e.code if isinstance(e.code, int) else 1
                finally:
                    so.flush()
                    se.flush()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old_handler)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(old_cwd)
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def _run(cmd: str, cwd: Path) -> tuple[int, str, str]:
    if re.search(r"[|*?<>;&$]", cmd):
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                    f"{os.environ.get('PATH', '')}")
        r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
        return r.returncode, r.stdout, r.stderr
    argv = shlex.split(cmd)
    assert argv[0] == "shrinkc"
    return _run_inprocess(argv[1:], cwd)


BAD_SPEC = """shrink 1
cell Bad {
    input x
    a = sepcnv(4) <- x
    output a
}
"""


def _fixtures(folder: Path, commands: list[str]) -> None:
    """A copy of specs/ and the files the examples name."""
    shutil.copytree(ROOT / "specs", folder / "specs")
    text = " ".join(commands)
    if "bad.shrink" in text:
        (folder / "bad.shrink").write_text(BAD_SPEC)
    if re.search(r"\bw\.pt\b", text):
        _weights(folder / "w.pt", ROOT / "specs" / "mobilenetv2.shrink", folder)
    if "data.npz" in text:
        import numpy as np

        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
        y = np.arange(64) % 10
        np.savez(folder / "data.npz", x_train=x, y_train=y, x_val=x[:16], y_val=y[:16])


def _weights(path: Path, spec: Path, scratch: Path) -> None:
    """The generated module's seeded state_dict, saved with torch.save."""
    torch = pytest.importorskip("torch")
    from conftest import generate_module

    _, module, _ = generate_module(spec, scratch)
    torch.manual_seed(0)
    torch.save(module.build().state_dict(), path)


def _pages_with_commands() -> list[Path]:
    return [p for p in _pages() if _commands(p)]


def _check_page(page: Path, tmp_path: Path, slow: bool) -> list[str]:
    commands = _commands(page)
    run = [c for c in commands if slow or not _slow(c[0])]
    _fixtures(tmp_path, [c[0] for c in run])
    failures = []
    for cmd, shown, code in run:
        if _needs_dot(cmd) and shutil.which("dot") is None:
            continue  # Graphviz is not installed: .dot examples still run
        rc, out, err = _run(_prepared(cmd), tmp_path)
        if cmd.startswith("shrinkc shrink ") and rc == 0:
            _stand_in(cmd, tmp_path)
        if rc != code:
            failures.append(f"{cmd!r}: exit {rc}, documented {code}\n{out[-2000:]}{err[-2000:]}")
            continue
        if shown is not None:
            got = [line.rstrip() for line in (out + err).rstrip("\n").splitlines()]
            want = [line.rstrip() for line in shown]
            if got != want:
                failures.append(f"{cmd!r} printed\n" + "\n".join(got) + "\nwhere the page shows\n"
                                + "\n".join(want))
    return failures


@pytest.mark.parametrize("page", _pages_with_commands(), ids=_rel)
def test_doc_commands(page, tmp_path):
    """Every command but the slow ones (test_doc_commands_slow runs the whole page)."""
    failures = _check_page(page, tmp_path, slow=False)
    assert not failures, f"{_rel(page)}:\n" + "\n\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in _pages_with_commands()
                                  if any(_slow(c[0]) for c in _commands(p))], ids=_rel)
def test_doc_commands_slow(page, tmp_path):
    failures = _check_page(page, tmp_path, slow=True)
    assert not failures, f"{_rel(page)}:\n" + "\n\n".join(failures)

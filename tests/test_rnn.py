"""ShrinkRNN: the released network's numbers, and a tiny recurrent search end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkc.cli import main

from conftest import ROOT, TEST_SPECS, kill_mid_run

PENN = ROOT.parent / "shared" / "data" / "penn_proxy"
TINY = TEST_SPECS / "tiny_rnn_space.shrink"


def test_stats_json(capsys, chdir_root):
    assert main(["stats", "specs/shrinkrnn.shrink", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 23_000_700
    assert d["edges"] == 12 and d["flops"] == 12 * 745 * 745
    assert d["parts"] == {"embedding": 7_450_000, "cell": 2_220_100 + 12 * 1_110_050,
                          "decoder": 10_000}
    assert d["output"] == ["batch", "time", 10_000]


def test_found_rnn_spec_counts_by_hand(capsys, chdir_root):
    """The shipped search result (4 edges: 0->1, 0->2, 2->3, 0->5) in the ShrinkRNN network:
    the embedding (10,000 x 745), node 0's (745 + 745) x 1490 matrix, 4 edges of 745 x 1490,
    the tied decoder's bias; and the generated module holds exactly as many."""
    import torch  # noqa: F401  (the generated module needs it)

    from shrinkc.compiler import compile_file
    from shrinkc.search.train import build_module

    assert main(["stats", "specs/shrinkrnn_found.shrink", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["parts"] == {"embedding": 10_000 * 745, "cell": 1490 * 1490 + 4 * 745 * 1490,
                          "decoder": 10_000}
    assert d["params"] == 14_120_300 and d["edges"] == 4 and d["flops"] == 4 * 745 * 745
    module = build_module(compile_file(Path("specs/shrinkrnn_found.shrink")))
    assert sum(p.numel() for p in module.parameters()) == 14_120_300


def test_recurrent_cell_errors_are_located(tmp_path):
    bad = tmp_path / "bad.shrink"
    bad.write_text("shrink 1\nrecurrent cell C {\n    input x, h\n    n0 = tanh <- x, h\n"
                   "    n1 = tanhh <- n0\n    output mean(leaves)\n}\n")
    r = subprocess.run([sys.executable, "-m", "shrinkc", "check", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{bad}:5:10: error:") and "did you mean 'tanh'?" in r.stderr


def _generated_lines(split: str) -> list[str]:
    """The built-in generated corpus's sentences of one split, as PTB-layout lines."""
    from shrinkc.data import corpus

    c = corpus.generated()
    words = [c.vocab[i] for i in getattr(c, split)]
    lines, line = [], []
    for w in words:
        if w == corpus.EOS:
            lines.append(" ".join(line))
            line = []
        else:
            line.append(w)
    return lines


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
    """400/60/60 sentences of the PTB proxy corpus, or of the generated corpus when
    ../shared is not beside the repository (the search tests run either way)."""
    d = tmp_path_factory.mktemp("penn_slice")
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        if PENN.exists():
            lines = (PENN / f"{split}.txt").read_text().splitlines()[:n]
        else:
            lines = _generated_lines(split)[:n]
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return d


def _run(out: Path, data: Path, *extra, check=True):
    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o", str(out),
                        "--data", str(data), "--quiet", *extra], capture_output=True, text=True,
                       cwd=ROOT)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _log(out: Path):
    entries = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    for e in entries:
        e.pop("seconds")
        e.pop("cpu_seconds", None)
    return entries


@pytest.fixture(scope="module")
def reference(corpus_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("rnn") / "run"
    _run(out, corpus_slice)
    return out


def test_tiny_rnn_search_end_to_end(reference):
    log = _log(reference)
    assert {"ppl", "flops", "score", "edge"} <= set(log[0])
    steps = sorted({e["step"] for e in log})
    assert len(steps) >= 2
    for s in steps:
        chosen = [e for e in log if e["step"] == s and e["chosen"]]
        assert len(chosen) == 1
    best = (reference / "best.shrink").read_text()
    assert "recurrent space TinyRNN" in best and "edges " in best
    from shrinkc.compiler import check
    from shrinkc.compiler.pipeline import build_graph

    g = build_graph(check(reference / "best.shrink"))
    assert g.lm is not None and g.edges < 6


def test_rnn_resume_after_kill(reference, corpus_slice, tmp_path):
    out = tmp_path / "killed"
    n = kill_mid_run(TINY, out, "--data", str(corpus_slice), lines=2)
    assert 2 <= n < len(_log(reference)), "killed mid-run"
    _run(out, corpus_slice, "--resume")
    assert _log(out) == _log(reference)


def test_generated_corpus_without_data(tmp_path):
    r = subprocess.run([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o",
                        str(tmp_path / "gen"), "--quiet", "--max-steps", "1"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "gen" / "run.json").read_text())["data"] == "generated corpus"


@pytest.mark.parametrize("case, message", [
    ("missing", "corpus file missing"),
    ("empty", "corpus file is empty"),
    ("binary", "is not UTF-8 text"),
    ("nodir", "no such corpus directory"),
])
def test_bad_corpus_is_an_error_before_training(tmp_path, case, message):
    d = tmp_path / "corpus"
    if case != "nodir":
        d.mkdir()
        for split in ("train", "valid", "test"):
            (d / f"{split}.txt").write_text("a b c\n")
        if case == "missing":
            (d / "valid.txt").unlink()
        elif case == "empty":
            (d / "test.txt").write_text("\n\n")
        elif case == "binary":
            (d / "train.txt").write_bytes(b"\xff\xfe\x00abc")
    r = _run(tmp_path / "out", d, check=False)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "log.jsonl").exists()


def test_rnn_inherit(corpus_slice, tmp_path):
    _run(tmp_path / "inh", corpus_slice, "--inherit", "--max-steps", "1")
    log = _log(tmp_path / "inh")
    assert log[0]["step"] == 0 and all(e["epochs"] == 2 for e in log[1:])

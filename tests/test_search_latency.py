"""A search scored by latency (``search/latency.py``, issue 25 item 3).

``tests/specs/tiny_latency_space.shrink`` trains the Tiny cell in an 8x8 digits proxy and
scores ``acc - 0.1 * (log10(latency) - log10(0.05))``, the latency predicted for the cell in
the search's deployment network (``TinyDeploy`` at 1x32x32). The tests check the log against
independent figures: the score's formula, the predicted latency of a snapshot as
``shrinkc latency`` computes it from the compiled snapshot, and the table's sha256 in
run.json; then that a run killed with ``kill -9`` resumes to the same log, that another table
is refused on ``--resume``, and that a table of another device is used as it is (and must hold
every piece the space needs).

The table is built once for the module with a short measuring protocol (the search's own
default protocol measures each piece until its median is stable, about a minute here).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT, TEST_SPECS, kill_mid_run, read_log, run_shrink

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

SPEC = TEST_SPECS / "tiny_latency_space.shrink"
STEPS = ("--max-steps", "2")
MEASURED = ("latency_measured", "latency_iqr")


def _table(path, protocol=None):
    from shrinkc.backends import latency as L
    from shrinkc.compiler.deploy import find_search
    from shrinkc.compiler.pipeline import check
    from shrinkc.search.latency import _space_pieces

    checked = check(str(SPEC))
    search = find_search(checked)
    space = next(i for i in checked.sources.main.items if i.kind == "space")
    pieces = _space_pieces(checked, search, space)
    protocol = protocol or L.Protocol(warmup=1, min_runs=3, max_runs=6, max_seconds=0.3,
                                      block=3)
    table = L.build_table(pieces.values(), protocol)
    L.save(table, path)
    return table


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency") / "tiny.json"
    _table(path)
    return path


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, table):
    out = tmp_path_factory.mktemp("latency_run") / "run"
    run_shrink(SPEC, out, "--latency-table", str(table), *STEPS)
    return out


def _without_measured(log):
    return [{k: v for k, v in e.items() if k not in MEASURED} for e in log]


def test_every_candidate_is_scored_by_its_predicted_latency(whole_run):
    log = read_log(whole_run)
    assert len(log) == 6 and sum(e["chosen"] for e in log) == 2
    lat = [e["latency"] for e in log]
    assert all(0 < x < 100 for x in lat) and len(set(lat)) > 1  # cells differ in latency
    for e in log:
        assert e["score"] == pytest.approx(e["acc"] - 0.1 * (math.log10(e["latency"])
                                                              - math.log10(0.05)), abs=1e-12)


def test_chosen_snapshots_are_measured_too(whole_run):
    """Only the chosen candidates carry a measured latency (the table is this machine's);
    measured and predicted are of the same size."""
    log = read_log(whole_run)
    for e in log:
        assert ("latency_measured" in e) == e["chosen"], e
        if e["chosen"]:
            assert e["latency_iqr"] >= 0
            assert 0.2 < e["latency_measured"] / e["latency"] < 5
    meta = json.loads((whole_run / "run.json").read_text())
    assert meta["latency"]["measured"] is True
    assert meta["latency"]["network"] == "TinyDeploy" and meta["latency"]["input"] == [1, 32, 32]


def test_the_prediction_is_shrinkc_latency_of_the_snapshot(whole_run, table):
    """The logged prediction of step 1's winner is what ``shrinkc latency`` predicts for the
    step's snapshot compiled as a spec (its deployment network at the deploy input), with the
    same table."""
    chosen = next(e for e in read_log(whole_run) if e["chosen"] and e["step"] == 1)
    r = subprocess.run([sys.executable, "-m", "shrinkc", "latency",
                        str(whole_run / "step-01.shrink"), "--network", "TinyDeploy",
                        "--input", "1x32x32", "--table", str(table), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    # the command prints 4 decimals
    assert json.loads(r.stdout)["predicted_ms"] == pytest.approx(chosen["latency"], abs=5.1e-5)


def test_run_json_records_the_table_it_scored_with(whole_run, table):
    from shrinkc.backends import latency as L

    meta = json.loads((whole_run / "run.json").read_text())
    assert meta["latency"]["table_sha256"] == L.load(table).digest()
    assert L.load(whole_run / "latency.json").digest() == L.load(table).digest()


def test_kill_9_resumes_to_the_same_log(tmp_path, whole_run, table):
    out = tmp_path / "run"
    n = kill_mid_run(SPEC, out, "--latency-table", str(table), *STEPS, lines=2)
    assert 2 <= n < 6, "killed mid-run"
    run_shrink(SPEC, out, "--latency-table", str(table), *STEPS, "--resume")
    assert _without_measured(read_log(out)) == _without_measured(read_log(whole_run))
    assert all("latency_measured" in e for e in read_log(out) if e["chosen"])
    # without the flag, the run folder's copy of the table is used
    run_shrink(SPEC, out, "--max-steps", "2", "--resume")


def test_resume_refuses_another_table(tmp_path, whole_run, table):
    other = tmp_path / "other.json"
    data = json.loads(table.read_text())
    data["entries"][sorted(data["entries"])[0]]["ms"] *= 2  # one piece measured otherwise
    other.write_text(json.dumps(data))
    r = run_shrink(SPEC, whole_run, "--latency-table", str(other), *STEPS, "--resume",
                   check_rc=False)
    assert r.returncode == 1, r.stderr
    assert "latency table differs" in r.stderr and "run.json" in r.stderr


def _foreign(table, path, drop: int = 0):
    """``table`` as if measured on another machine (another CPU model), less ``drop``
    pieces."""
    data = json.loads(table.read_text())
    data["fingerprint"]["cpu_model"] = "Some Phone SoC"
    for key in sorted(data["entries"])[:drop]:
        del data["entries"][key]
    path.write_text(json.dumps(data))
    return path


def test_a_foreign_table_is_used_as_it_is(tmp_path, whole_run, table):
    """Another device's table predicts the same (its entries are the same numbers), is not
    extended, and nothing is measured here."""
    foreign = _foreign(table, tmp_path / "phone.json")
    before = foreign.read_bytes()
    out = tmp_path / "run"
    run_shrink(SPEC, out, "--latency-table", str(foreign), *STEPS)
    assert foreign.read_bytes() == before
    log = read_log(out)
    assert [e["latency"] for e in log] == [e["latency"] for e in read_log(whole_run)]
    assert not any("latency_measured" in e for e in log)
    assert json.loads((out / "run.json").read_text())["latency"]["measured"] is False


def test_a_foreign_table_lacking_pieces_is_a_located_error(tmp_path, table):
    foreign = _foreign(table, tmp_path / "phone.json", drop=2)
    r = run_shrink(SPEC, tmp_path / "run", "--latency-table", str(foreign), check_rc=False)
    assert r.returncode == 1
    assert f"{foreign.as_posix()}" in r.stderr and "lacks 2 piece(s)" in r.stderr, r.stderr
    assert "TinySearch" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "log.jsonl").exists()  # refused before training


def test_a_missing_table_file_is_built_here_and_saved(tmp_path):
    """A FILE that does not exist is built here (default protocol: slow, so only checked to
    start: --max-steps 0 builds the table and writes run.json without training)."""
    path = tmp_path / "new.json"
    r = run_shrink(SPEC, tmp_path / "run", "--latency-table", str(path), "--max-steps", "0",
                   check_rc=False)
    assert r.returncode == 0, r.stderr
    from shrinkc.backends import latency as L

    assert L.load(path).digest() == L.load(tmp_path / "run" / "latency.json").digest()


def test_latency_is_not_a_language_model_variable(tmp_path):
    spec = tmp_path / "lm.shrink"
    text = (TEST_SPECS / "tiny_rnn_space.shrink").read_text()
    import re

    text = re.sub(r"score .*", "score ppl + latency", text)
    spec.write_text(text)
    r = run_shrink(spec, tmp_path / "run", check_rc=False)
    assert r.returncode == 1 and "unknown name 'latency'" in r.stderr, r.stderr

"""Latency (``backends/latency``, ``shrinkc latency``, ``stats --latency-table``, ``bench``):
the measuring routine's protocol (warm-up, repeats until the median is stable or a limit, the
fingerprint), the table's round trip and its refusal of a foreign fingerprint, the
predictor's sum against hand-computed cases, every piece of a search space's candidates,
and bad tables as located errors. Real measurements are of tiny graphs with few runs."""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ROOT, TEST_SPECS

pytest.importorskip("onnxruntime")

from shrinkc.backends import latency as L
from shrinkc.backends.latency.measure import median_interval, time_runs
from shrinkc.compiler import compile_file, ir
from shrinkc.compiler.errors import ShrinkError

TINY = TEST_SPECS / "tiny_space.shrink"
FAST = L.Protocol(warmup=1, min_runs=3, max_runs=6, tolerance=0.5, max_seconds=0.2, block=3)

FP = L.Fingerprint(cpu_model="Test CPU", cpu_flags=("avx2",), cpu_flags_sha256="0" * 64, cores=2,
                   cores_usable=2, machine="x86_64", onnxruntime="1.0", provider="CPUExecutionProvider",
                   graph_optimization="all", intra_op_threads=1, inter_op_threads=1,
                   spinning=True, batch=1)


# --------------------------------------------------------------------------- the protocol


class _Fake:
    """A run that takes the next of ``durations`` (seconds) on a fake clock, and counts."""

    def __init__(self, durations):
        self.durations = durations
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += self.durations(self.calls)
        self.calls += 1


def test_warm_up_then_stops_once_the_median_is_stable():
    fake = _Fake(lambda i: 0.001)
    p = L.Protocol(warmup=3, min_runs=5, max_runs=100, tolerance=0.01, block=5)
    times, stopped = time_runs(fake.run, p, fake.clock)
    assert stopped == "stable" and len(times) == 5  # the first check, at min_runs
    assert fake.calls == 3 + 5  # the warm-up runs are not timed
    assert all(t == pytest.approx(0.001) for t in times)


def test_a_median_that_never_settles_stops_at_the_run_limit():
    fake = _Fake(lambda i: 0.001 if i % 2 else 0.002)  # two values: the median's interval spans both
    p = L.Protocol(warmup=2, min_runs=4, max_runs=23, tolerance=0.01, block=4)
    times, stopped = time_runs(fake.run, p, fake.clock)
    assert stopped == "run limit" and len(times) == 23 and fake.calls == 25


def test_a_run_limit_and_a_time_limit():
    fake = _Fake(lambda i: 1.0)
    times, stopped = time_runs(fake.run, L.Protocol(warmup=0, max_runs=50, tolerance=0.0,
                                                    max_seconds=3.5, block=1), fake.clock)
    assert stopped == "time limit" and len(times) == 4  # 4 s of timed runs >= 3.5
    fake = _Fake(lambda i: 0.001)
    times, stopped = time_runs(fake.run, L.Protocol(warmup=0, min_runs=1, max_runs=7,
                                                    tolerance=0.0, block=3), fake.clock)
    assert stopped == "run limit" and len(times) == 7  # tolerance 0: exactly max_runs


def test_summary_median_quartiles_and_interval():
    times = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    m = L.measure.summarize(times, "stable", L.Protocol(), FP)
    assert m.median_ms == pytest.approx(50.5) and m.min_ms == pytest.approx(1.0)
    assert (m.q1_ms, m.q3_ms) == (pytest.approx(25.75), pytest.approx(75.25))
    assert m.iqr_ms == pytest.approx(49.5)
    lo, hi = median_interval(sorted(t * 1000 for t in times))
    assert lo < 50.5 < hi and hi - lo < 25  # about +-1 sqrt(n) ranks
    d = m.to_dict()
    assert d["fingerprint"]["cpu_model"] == "Test CPU" and d["stopped"] == "stable"


def test_the_protocol_refuses_nonsense():
    for bad in ({"threads": 0}, {"tolerance": 1.5}, {"clock": "sundial"},
                {"clock": "cpu", "threads": 2}, {"graph_optimization": "max"}):
        with pytest.raises(ValueError):
            L.Protocol(**bad)


def test_measuring_a_tiny_network_records_its_fingerprint():
    import onnxruntime as ort

    from shrinkc.backends.onnx import generate

    graph = compile_file(TINY)
    p = replace(FAST, spinning=False, batch=2)
    m = L.measure_model(generate(graph), p)
    assert 3 <= m.runs <= 6 and m.warmup == 1 and m.stopped in L.measure.STOPS
    assert 0 < m.min_ms <= m.q1_ms <= m.median_ms <= m.q3_ms
    fp = m.fingerprint
    assert fp.onnxruntime == ort.__version__ and fp.provider == "CPUExecutionProvider"
    assert (fp.intra_op_threads, fp.inter_op_threads, fp.batch, fp.spinning) == (1, 1, 2, False)
    assert fp.graph_optimization == "all" and fp.clock == "wall"
    assert fp.input == (1, 8, 8) and fp.cores >= 1 and fp.cpu_model
    assert len(fp.cpu_flags_sha256) == 64
    opts = L.measure.session_options(p)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1
    assert L.Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp


# --------------------------------------------------------------------------- tables


def _fake_table(graph, ms, **overhead) -> L.LatencyTable:
    """A table of ``graph``'s pieces whose times ``ms(key)`` gives."""
    entries = {k: L.Entry(ms(k), ms(k), ms(k), ms(k), 10, "stable", (False,), False)
               for k in L.needed_keys(graph)}
    return L.LatencyTable(FP, L.Protocol(), entries,
                          {"run_ms": 0.01, "node_ms": 0.001, "nchwc_block": 0, **overhead})


def test_table_round_trip(tmp_path):
    graph = compile_file(TINY)
    table = _fake_table(graph, lambda k: round(0.1 + len(k) / 1000, 6))
    key = sorted(table.entries)[0]
    table.entries[key] = L.Entry(0.5, 0.4, 0.6, 0.3, 42, "run limit", (True,), True, (0.25,), 0.125,
                                 0.375)
    table.overhead["reorder_in"] = {"ms": 0.001, "ms_per_mvalue": 0.5}
    table.calibration = {"basis": "kernel", "networks": [],
                         "terms": {"pieces_ms": 1.25, "concat_mvalues": 0.2, "constant_ms": -0.5}}
    path = tmp_path / "t.json"
    L.save(table, path)
    back = L.load(path)
    assert back.entries == table.entries and back.fingerprint == FP
    assert back.entries[key].kernel_ms == 0.375
    assert back.overhead["reorder_in"] == {"ms": 0.001, "ms_per_mvalue": 0.5}
    assert back.calibration["terms"]["constant_ms"] == -0.5 and back.source == path.as_posix()
    assert L.load(path, expect=FP).entries == table.entries  # its own fingerprint: accepted
    assert back.digest() == table.digest()  # what a search records of its table
    assert json.loads(path.read_text())["version"] == 2


def test_a_version_1_table_still_predicts_from_wall_times(tmp_path):
    """A table written before kernel times (version 1: no ``kernel_ms``, a calibration of
    one scale and an offset) reads, and predicts from the pieces' medians."""
    spec = tmp_path / "hand.shrink"
    spec.write_text(HAND)
    graph = compile_file(spec)
    data = _fake_table(graph, HAND_MS.__getitem__).to_dict()
    data.update(version=1, calibration={"scale": 2.0, "offset_ms": 0.5, "networks": []})
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data, indent=1))
    p = L.predict(graph, L.load(path))
    assert p.basis == "wall" and p.calibrated
    assert p.ms == pytest.approx(2.0 * 1.28 + 0.5)  # the hand sum below, scaled
    with pytest.raises(ShrinkError, match="no kernel time") as e:  # asked for kernel times
        L.predict_pieces(L.network_pieces(graph), L.load(path), basis="kernel")
    assert e.value.diagnostic.loc.file == path.as_posix() and e.value.diagnostic.hint


def test_a_table_is_never_saved_over_a_change_made_while_it_was_measured(tmp_path):
    """A table read from a file and saved back (``latency --table F --save-table F``, a
    search's ``--latency-table F`` of this machine, after minutes of measuring) replaces the
    file only if it is as it was read; saving to another file needs no such check."""
    import os

    graph = compile_file(TINY)
    path = tmp_path / "t.json"
    L.save(_fake_table(graph, lambda k: 0.1), path)
    table = L.load(path)
    table.entries.popitem()
    L.save(table, path)  # unchanged since read: written
    assert L.load(path).entries == table.entries
    table = L.load(path)
    edited = path.read_text().replace('"ms": 0.1', '"ms": 0.2', 1)
    path.write_text(edited)  # another run, or a person, saved the file meanwhile
    with pytest.raises(ShrinkError, match="changed while shrinkc measured pieces for it"):
        L.save(table, path)
    assert path.read_text() == edited
    table = L.load(path)
    st = path.stat()
    path.write_text(edited.replace('"ms": 0.2', '"ms": 0.3', 1))  # same size and time
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ShrinkError, match="changed while"):
        L.save(table, path)
    L.save(table, tmp_path / "other.json")  # another file: no check
    assert L.load(tmp_path / "other.json").entries == table.entries


def test_a_foreign_fingerprint_is_refused(tmp_path):
    graph = compile_file(TINY)
    table = _fake_table(graph, lambda k: 0.1)
    path = tmp_path / "phone.json"
    L.save(table, path)
    other = replace(FP, cpu_model="Another CPU", intra_op_threads=4)
    with pytest.raises(ShrinkError) as e:
        L.load(path, expect=other)
    d = e.value.diagnostic
    assert d.loc.file == path.as_posix() and d.hint
    assert "cpu_model" in d.message and "intra_op_threads: 1 vs 4" in d.message
    assert "never mixed" in d.message
    assert '"fingerprint"' in path.read_text().split("\n")[d.loc.line - 1]
    key = next(iter(table.entries))
    with pytest.raises(ShrinkError, match="another fingerprint"):  # no piece from elsewhere
        table.add(key, table.entries[key], other)
    with pytest.raises(ShrinkError, match="never"):
        table.merge(L.LatencyTable(other, L.Protocol()))
    with pytest.raises(ShrinkError, match="cannot take measurements from here"):
        L.build_table([], FAST, table)  # this machine is not "Test CPU"


def _bad(tmp_path, text: str) -> tuple:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ShrinkError) as e:
        L.load(path)
    d = e.value.diagnostic
    assert d.loc is not None and d.loc.file == path.as_posix(), d
    assert d.hint, d
    return d, text.split("\n")[d.loc.line - 1]


def test_bad_tables_are_located_errors(tmp_path):
    graph = compile_file(TINY)
    path = tmp_path / "good.json"
    L.save(_fake_table(graph, lambda k: 0.1), path)
    good = json.loads(path.read_text())
    key = sorted(good["entries"])[1]

    d, line = _bad(tmp_path, "{\n  \"format\": \"shrinkc latency table\",\n  oops\n}")
    assert "not JSON" in d.message and d.loc.line == 3

    d, line = _bad(tmp_path, json.dumps({**good, "version": 7}, indent=1))
    assert "version 7" in d.message and '"version"' in line

    bad = json.loads(json.dumps(good))
    bad["entries"][key]["ms"] = float("nan")
    d, line = _bad(tmp_path, json.dumps(bad, indent=1))
    assert "nan" in d.message and key in d.message and json.dumps(key) in line

    bad["entries"][key]["ms"] = -1
    d, _ = _bad(tmp_path, json.dumps(bad, indent=1))
    assert "positive" in d.message

    bad = json.loads(json.dumps(good))
    bad["entries"][key]["kernel_ms"] = float("inf")
    d, line = _bad(tmp_path, json.dumps(bad, indent=1))
    assert "kernel_ms" in d.message and "inf" in d.message and json.dumps(key) in line

    for terms, said in (({"pieces_ms": 1.2, "concat_mvalues": float("nan"), "constant_ms": 0},
                         "concat_mvalues"),
                        ({"pieces_ms": 0, "concat_mvalues": 0.1, "constant_ms": 0}, "positive"),
                        ({"pieces_ms": 1.2, "concat_mvalues": 0.1}, "constant_ms")):
        bad = {**good, "calibration": {"basis": "kernel", "terms": terms, "networks": []}}
        d, line = _bad(tmp_path, json.dumps(bad, indent=1))
        assert said in d.message and '"calibration"' in line, d.message
    bad = {**good, "calibration": {"basis": "phone", "terms": {}, "networks": []}}
    d, _ = _bad(tmp_path, json.dumps(bad, indent=1))
    assert "'basis' is 'phone'" in d.message
    terms = {"pieces_ms": 1.2, "concat_mvalues": 0.1, "constant_ms": 0}
    for nets, said in (("all", "not a list"), ([{"measured_ms": 1.0}], "'network' name"),
                       ([{"network": "N", "measured_ms": "1", "wall_ms": 1.0}], "measured_ms"),
                       ([{"network": "N", "measured_ms": 1.0, "wall_ms": 1.0,
                          "kernel_ms": -2}], "kernel_ms")):
        bad = {**good, "calibration": {"basis": "kernel", "terms": terms, "networks": nets}}
        d, line = _bad(tmp_path, json.dumps(bad, indent=1))
        assert said in d.message and '"calibration"' in line, d.message

    bad = json.loads(json.dumps(good))
    del bad["fingerprint"]["onnxruntime"]
    d, line = _bad(tmp_path, json.dumps(bad, indent=1))
    assert "onnxruntime" in d.message and '"fingerprint"' in line

    d, _ = _bad(tmp_path, json.dumps({"entries": {}}))
    assert "not a latency table" in d.message

    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ShrinkError, match="not UTF-8"):
        L.load(tmp_path / "bin.json")
    with pytest.raises(ShrinkError, match="no such latency table"):
        L.load(tmp_path / "nowhere.json")


def test_a_table_without_a_piece_says_which(tmp_path):
    graph = compile_file(TINY)
    table = _fake_table(graph, lambda k: 0.1)
    gone = sorted(table.entries)[0]
    del table.entries[gone]
    path = tmp_path / "partial.json"
    L.save(table, path)
    with pytest.raises(ShrinkError) as e:
        L.predict(graph, L.load(path))
    d = e.value.diagnostic
    assert d.loc.file == path.as_posix() and "lacks 1 piece(s)" in d.message
    assert gone in d.message and "TinyProxy" in d.message and "--save-table" in d.hint


# --------------------------------------------------------------------------- the predictor

HAND = """shrink 1

cell C(w: int) {
    input x
    a = conv(w, k=1) relu <- x
    b = conv(w, k=1) <- x
    output concat(a, b) + x
}

network N {
    input image[4, 8, 8]
    stem conv(8, k=3) relu
    stage C(4) x 2
    head global_avgpool -> linear(10)
}
"""

HAND_MS = {"conv(dilation=1,groups=1,k=3,out=8,stride=1)+relu 4x8x8->8x8x8": 0.11,
           "conv(dilation=1,groups=1,k=1,out=4,stride=1)+relu 8x8x8->4x8x8": 0.21,
           "conv(dilation=1,groups=1,k=1,out=4,stride=1) 8x8x8->4x8x8": 0.31,
           "concat 4x8x8,4x8x8": 0.05,
           "add 8x8x8,8x8x8": 0.04,
           "global_avgpool() 8x8x8->8": 0.02,
           "linear(out=10) 8->10": 0.03}


def test_the_prediction_is_the_sum_by_hand(tmp_path):
    spec = tmp_path / "hand.shrink"
    spec.write_text(HAND)
    graph = compile_file(spec)
    assert L.needed_keys(graph) == set(HAND_MS)
    table = _fake_table(graph, HAND_MS.__getitem__)
    p = L.predict(graph, table)
    # run 0.01 once, and each piece less the run it paid alone: stem 0.10, per cell
    # a 0.20 + b 0.30 + concat 0.04 + add 0.03 (two cells), pool 0.01, linear 0.02
    assert p.pieces == 1 + 2 * 4 + 2
    assert p.raw_ms == pytest.approx(0.01 + 0.10 + 2 * 0.57 + 0.01 + 0.02)
    assert p.ms == pytest.approx(1.28) and not p.calibrated and p.layout_ms == 0
    assert p.by_part == pytest.approx({"stem": 0.10, "stage1": 1.14, "head": 0.03, "run": 0.01})
    assert L.predict_ms(graph, table) == pytest.approx(1.28)
    flow = L.network_pieces(graph)
    record = L.calibration_record(flow, table, "N", 2.56)
    assert record["wall_ms"] == pytest.approx(1.28) and record["kernel_ms"] is None
    L.calibrate(table, [record])  # one network: a scale alone, of the wall sum
    assert table.calibration["basis"] == "wall"
    assert L.predict(graph, table).ms == pytest.approx(2.56)
    assert L.predict(graph, table).by_part["stage1"] == pytest.approx(2.28)


HAND_KERNEL_MS = {k: round(v / 2, 6) for k, v in HAND_MS.items()}  # half of each wall time


def test_the_kernel_basis_by_hand(tmp_path):
    """A calibrated table predicts ``a * (run + the pieces' kernel times) + b * the values
    concatenated (millions) + c``; the calibration is fitted from six networks on (least
    squares of relative errors), one scale of the wall sum below that."""
    spec = tmp_path / "hand.shrink"
    spec.write_text(HAND)
    graph = compile_file(spec)
    table = _fake_table(graph, HAND_MS.__getitem__)
    table.entries = {k: replace(e, kernel_ms=HAND_KERNEL_MS[k]) for k, e in table.entries.items()}
    flow = L.network_pieces(graph)
    raw = L.predict_pieces(flow, table, basis="kernel")
    # run 0.01, stem 0.055, per cell 0.105 + 0.155 + concat 0.025 + add 0.02, pool 0.01,
    # linear 0.015; each cell concatenates 8x8x8 values
    assert raw.raw_ms == pytest.approx(0.01 + 0.055 + 2 * 0.305 + 0.01 + 0.015)
    assert raw.concat_mvalues == pytest.approx(2 * 512 / 1e6) and not raw.calibrated
    table.calibration = {"basis": "kernel", "networks": [],
                         "terms": {"pieces_ms": 1.5, "concat_mvalues": 100.0, "constant_ms": 0.2}}
    p = L.predict(graph, table)
    assert p.basis == "kernel" and p.calibrated
    assert p.ms == pytest.approx(1.5 * 0.7 + 100.0 * 1024e-6 + 0.2)
    assert p.by_part["stage1"] == pytest.approx(1.5 * 0.61 + 100.0 * 1024e-6)
    assert p.by_part["run"] == pytest.approx(1.5 * 0.01 + 0.2)
    assert sum(p.by_part.values()) == pytest.approx(p.ms)
    # a fitted constant below zero never takes a network below an empty run's cost
    table.calibration["terms"]["constant_ms"] = -5.0
    assert L.predict(graph, table).ms == pytest.approx(0.01)

    # six networks made by known terms: the fit finds them
    truth = (1.2, 0.15, -0.05)
    records = [{"network": f"n{i}", "kernel_ms": k, "wall_ms": w, "concat_mvalues": c,
                "measured_ms": truth[0] * k + truth[1] * c + truth[2]}
               for i, (k, w, c) in enumerate([(1, 1.3, 0), (2, 2.5, 1), (5, 6, 3), (8, 10, 2),
                                              (13, 15, 9), (21, 25, 4)])]
    cal = L.calibrate(table, records)
    assert cal["basis"] == "kernel"
    assert [cal["terms"][t] for t in ("pieces_ms", "concat_mvalues", "constant_ms")] == \
        pytest.approx(truth, abs=1e-6)
    # five: too few to fit three terms; one scale of the wall sum (the median ratio)
    cal = L.calibrate(table, records[:5])
    ratios = sorted(r["measured_ms"] / r["wall_ms"] for r in records[:5])
    assert cal["basis"] == "wall" and cal["terms"]["pieces_ms"] == pytest.approx(ratios[2], 1e-5)
    assert cal["terms"]["concat_mvalues"] == 0 and cal["terms"]["constant_ms"] == 0
    # concatenation that makes networks faster is not a cost: the term is dropped
    faster = [{**r, "measured_ms": 1.2 * r["kernel_ms"] - 0.1 * r["concat_mvalues"] + 0.3}
              for r in records]
    cal = L.calibrate(table, faster)
    assert cal["basis"] == "kernel" and cal["terms"]["concat_mvalues"] == 0
    # one network without kernel times (a version 1 record): the wall scale
    old = [*records[1:], {"network": "v1", "predicted_ms": 2.0, "measured_ms": 2.4}]
    assert L.calibrate(table, old)["basis"] == "wall"


LINE = """shrink 1

cell One(w: int) {
    input x
    n = conv(w, k=1) <- x
    output n
}

network Line {
    input image[16, 4, 4]
    stem conv(32, k=1)
    stage One(16) x 1
    head global_avgpool -> linear(2)
}
"""


def test_layout_reorders_that_the_network_does_not_have_are_taken_off(tmp_path):
    """stem conv -> cell conv -> pool: measured alone, the stem's output reorder (a quarter
    of its 0.4 ms) and the cell conv's input reorder (a fifth of 0.5 ms) are paid, but in
    the network the tensor between them stays blocked; the cell conv's output reorder, which
    the pool needs, the network pays as well."""
    spec = tmp_path / "line.shrink"
    spec.write_text(LINE)
    graph = compile_file(spec)
    stem, cell, pool, linear = (p.piece.key for p in L.network_pieces(graph).parts)
    entries = {stem: L.Entry(0.41, 0.41, 0.41, 0.41, 9, "stable", (False,), True, (0.0,), 0.25),
               cell: L.Entry(0.51, 0.51, 0.51, 0.51, 9, "stable", (True,), True, (0.2,), 0.1),
               pool: L.Entry(0.03, 0.03, 0.03, 0.03, 9, "stable", (False,), False),
               linear: L.Entry(0.02, 0.02, 0.02, 0.02, 9, "stable", (False,), False)}
    table = L.LatencyTable(FP, L.Protocol(), entries,
                           {"run_ms": 0.01, "node_ms": 0.0, "nchwc_block": 16,
                            "reorder_in": {"ms": 0.5, "ms_per_mvalue": 0.0},
                            "reorder_out": {"ms": 0.5, "ms_per_mvalue": 0.0}})
    p = L.predict(graph, table)
    assert p.layout_ms == pytest.approx(-(0.25 * 0.4 + 0.2 * 0.5))
    assert p.ms == pytest.approx(0.01 + 0.4 + 0.5 + 0.02 + 0.01 - 0.2)
    assert p.by_part["stem"] == pytest.approx(0.4 - 0.1)
    assert p.by_part["stage1"] == pytest.approx(0.5 - 0.1)
    table.overhead["nchwc_block"] = 0  # no blocked layout on this device: the plain sum
    assert L.predict(graph, table).ms == pytest.approx(0.94)


def _flow_table(parts: list, ms: dict[str, float], blocked: bool = True):
    """A table for ``parts`` (each piece's median from ``ms``, by key), every op run in the
    blocked layout when ``blocked``, no reorder shares, run 0.01 ms, no reorder cost."""
    entries = {}
    for p in parts:
        n = len(p.piece.ins)
        entries[p.piece.key] = L.Entry(ms[p.piece.key], 0, 0, ms[p.piece.key], 9, "stable",
                                       (blocked,) * n if p.piece.op else (),
                                       blocked and p.piece.op is not None,
                                       (0.0,) * n if p.piece.op else (), 0.0)
    return L.LatencyTable(FP, L.Protocol(), entries,
                          {"run_ms": 0.01, "node_ms": 0.0, "nchwc_block": 4 if blocked else 0,
                           "reorder_in": {"ms": 0.0, "ms_per_mvalue": 0.0},
                           "reorder_out": {"ms": 0.0, "ms_per_mvalue": 0.0}})


def _shape(c: int) -> ir.Shape:
    return ir.Shape(c=c, h=4, w=4)


def test_a_sum_of_two_that_a_convolution_feeds_alone_is_fused_into_it():
    """x -> conv a (no activation) and conv b (relu); sum(a, b) -> relu. onnxruntime
    accumulates the sum into a (its only consumer) and fuses the relu after it, as it does
    for a residual add: they cost nothing. A sum of three is not fused."""
    from shrinkc.backends.latency.pieces import Part

    s = _shape(8)
    a = L.Piece("op", (s,), s, ir.OpInst(op="conv", attrs={"out": 8, "k": 1}))
    b = L.Piece("op", (s,), s, ir.OpInst(op="conv", attrs={"out": 8, "k": 3}, act="relu"))
    add2 = L.Piece("sum", (s, s), s)
    relu = L.Piece("op", (s,), s, ir.OpInst(op="identity", act="relu"))
    parts = [Part("c", a, (-1,)), Part("c", b, (-1,)), Part("c", add2, (0, 1)),
             Part("c", relu, (2,))]
    ms = {a.key: 0.31, b.key: 0.51, add2.key: 0.06, relu.key: 0.03}
    table = _flow_table(parts, ms)
    # run once, then each piece less the run: a 0.30 + b 0.50; the sum and the relu fused
    assert L.predict_pieces(L.Pieces(tuple(parts), 3), table).ms == pytest.approx(0.81)
    # without the blocked layout nothing fuses: + sum 0.05 + relu 0.02
    plain = _flow_table(parts, ms, blocked=False)
    assert L.predict_pieces(L.Pieces(tuple(parts), 3), plain).ms == pytest.approx(0.88)
    add3 = L.Piece("sum", (s, s, s), s)
    three = [*parts[:2], Part("c", a, (-1,)), Part("c", add3, (0, 1, 2))]
    table3 = _flow_table(three, {**ms, add3.key: 0.08})
    assert L.predict_pieces(L.Pieces(tuple(three), 3), table3).ms == pytest.approx(
        0.01 + 0.30 + 0.50 + 0.30 + 0.07)


def test_repeated_activations_of_one_input_are_counted_once():
    """Two ops of a cell each beginning with a ReLU of the same input (DARTS' cells):
    onnxruntime's common subexpression elimination keeps one ReLU. A ReLU of another input,
    or another activation, is counted."""
    from shrinkc.backends.latency.pieces import Part

    s = _shape(8)
    relu = L.Piece("op", (s,), s, ir.OpInst(op="identity", act="relu"))
    sig = L.Piece("op", (s,), s, ir.OpInst(op="identity", act="sigmoid"))
    conv = L.Piece("op", (s,), s, ir.OpInst(op="conv", attrs={"out": 8, "k": 1}))
    cat = L.Piece("concat", (s,) * 5, _shape(40))
    parts = [Part("c", relu, (-1,)), Part("c", relu, (-1,)),   # the same: one kept
             Part("c", conv, (0,)), Part("c", relu, (2,)),       # another input: counted
             Part("c", sig, (-1,)), Part("c", cat, (1, 2, 3, 4, 0))]
    ms = {relu.key: 0.03, sig.key: 0.05, conv.key: 0.31, cat.key: 0.11}
    table = _flow_table(parts, ms, blocked=False)
    p = L.predict_pieces(L.Pieces(tuple(parts), 5), table)
    assert p.ms == pytest.approx(0.01 + 0.02 + 0.30 + 0.02 + 0.04 + 0.10)


def test_prediction_takes_milliseconds():
    import time

    graph = compile_file(ROOT / "specs" / "shrinkcnn_a.shrink")
    table = _fake_table(graph, lambda k: 0.1, nchwc_block=16)
    start = time.perf_counter()
    for _ in range(10):
        L.predict_ms(graph, table)
    assert (time.perf_counter() - start) / 10 < 0.2  # about 2 ms here; generous when busy


# --------------------------------------------------------------------------- search spaces


def test_a_space_table_has_every_piece_of_every_candidate():
    from shrinkc.compiler.passes.space import cleanup, complete_edges, node_count
    from shrinkc.compiler.pipeline import build_graph, check
    from shrinkc.compiler.syntax.printer import print_program
    from shrinkc.search.rules import valid, with_edges

    spec = ROOT / "specs" / "shrinkcnn_space.shrink"
    checked = check(spec)
    space = next(i for i in checked.sources.main.items if isinstance(i, ir.SpaceDef))
    keys = L.space_keys(build_graph(checked), space)
    n = node_count(space)
    rng = random.Random(0)
    tried = 0
    while tried < 12:
        edges = cleanup(tuple(e for e in complete_edges(n) if rng.random() < 0.35), n)
        if not valid(edges):
            continue
        text = print_program(with_edges(checked.sources.main, space.name, edges))
        graph = build_graph(check(spec, text))
        assert L.needed_keys(graph) <= keys, edges
        tried += 1


def test_building_a_table_measures_each_piece_once(tmp_path):
    graph = compile_file(TINY)
    parts = L.network_pieces(graph).parts
    table = L.build_table([p.piece for p in parts], FAST)
    assert set(table.entries) == L.needed_keys(graph)
    assert table.fingerprint == FAST.fingerprint().device()
    assert {"run_ms", "node_ms", "nchwc_block"} <= set(table.overhead)
    assert all(e.ms > 0 and e.runs >= 3 for e in table.entries.values())
    # each piece's kernel time, from onnxruntime's profile: within its wall time
    assert all(0 < e.kernel_ms < e.q3_ms + 1 for e in table.entries.values())
    assert sum(e.kernel_ms for e in table.entries.values()) < sum(
        e.ms for e in table.entries.values())
    assert L.predict(graph, table).ms > 0
    L.save(table, tmp_path / "t.json")
    again = L.build_table([p.piece for p in parts], FAST, L.load(tmp_path / "t.json"))
    assert again.entries == table.entries  # nothing new measured


# --------------------------------------------------------------------------- the command


def _main(argv: list[str]) -> int:
    """``shrinkc ARGV``, with ``latency`` registered if the command line does not have it."""
    from shrinkc import cli
    from shrinkc.commands import latency

    parser = cli.make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "latency" not in sub.choices:
        latency.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args, cli.Reporter())
    except ShrinkError as e:
        cli.Reporter()(e.diagnostic)
        return 1


FLAGS = ["--warmup", "1", "--max-runs", "6", "--tolerance", "0.5", "--max-seconds", "0.2",
         "--quiet"]


def test_latency_command_predicts_measures_and_saves(tmp_path, capsys):
    table = tmp_path / "tiny.json"
    assert _main(["latency", str(TINY), "--measure", "--json", "--space",
                  "--save-table", str(table), *FLAGS]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["predicted_ms"] > 0 and r["measured_ms"] > 0 and r["network"] == "TinyProxy"
    assert r["table"]["space"] == "Tiny" and r["table"]["measured_here"] > r["distinct_pieces"]
    assert r["measurement"]["fingerprint"]["input"] == [1, 8, 8]
    assert math.isfinite(r["error_pct"])
    assert _main(["latency", str(TINY), "--table", str(table), "--json", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["table"]["measured_here"] == 0 and again["measured_ms"] is None
    assert again["predicted_ms"] == r["predicted_ms"]
    # --calibrate records the measured network (both sums) and fits: one network, one scale
    assert _main(["latency", str(TINY), "--table", str(table), "--measure", "--calibrate",
                  "--save-table", str(table), "--json", *FLAGS]) == 0
    c = json.loads(capsys.readouterr().out)
    rec = c["table"]["calibration"]["networks"]
    assert [n["network"] for n in rec] == ["TinyProxy"] and rec[0]["kernel_ms"] > 0
    assert c["calibrated"] and c["table"]["calibration"]["basis"] == "wall"
    assert c["predicted_ms"] == pytest.approx(c["measured_ms"], rel=0.01)  # fitted on itself
    L.save(replace(L.load(table), calibration=None), table)
    from shrinkc.cli import main

    assert main(["stats", str(TINY), "--latency-table", str(table), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["latency"]["predicted_ms"] == r["predicted_ms"]
    assert s["stages"][0]["predicted_ms"] >= 0  # tiny pieces cost about a run: maybe 0
    assert main(["stats", str(TINY), "--latency-table", str(table)]) == 0
    assert "ms (predicted)" in capsys.readouterr().out


def test_calibrating_on_random_cells_of_the_space(tmp_path, capsys):
    """``--calibrate-cells N`` measures N seeded random cells of the search's space in its
    deployment network, records each (with its edges) and fits the calibration on them (which
    form the fit takes is tested by hand above: these tiny networks' times are mostly a run's
    overhead, and on a busy machine their kernel-time fit may fall back to one scale). Run
    again, it measures the same cells and replaces their records."""
    table = tmp_path / "t.json"
    argv = ["latency", str(TINY), "--calibrate-cells", "6", "--save-table", str(table),
            "--json", *FLAGS]
    assert _main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    cal = r["table"]["calibration"]
    assert r["calibrated"] and r["basis"] == cal["basis"]
    refit = L.calibrate(L.LatencyTable(FP, L.Protocol()), cal["networks"])
    assert {k: refit[k] for k in ("basis", "terms")} == {k: cal[k] for k in ("basis", "terms")}
    nets = cal["networks"]
    assert len(nets) == 6 and len({n["network"] for n in nets}) == 6
    assert all(n["network"].startswith("TinyProxy [Tiny cell ") and n["edges"] for n in nets)
    assert all(n["measured_ms"] > 0 and n["kernel_ms"] > 0 for n in nets)
    assert [n["edges"] for n in nets] == [[list(e) for e in c] for c in _tiny_cells(6)]
    assert _main(argv) == 0  # the same cells again: replaced, not added
    again = json.loads(capsys.readouterr().out)["table"]["calibration"]["networks"]
    assert [n["network"] for n in again] == [n["network"] for n in nets]
    from shrinkc.cli import main

    assert main(["latency", str(TINY), "--calibrate-cells", "0", "--save-table",
                 str(table)]) == 2
    assert "N >= 1" in capsys.readouterr().err
    assert main(["latency", str(TINY), "--calibrate-cells", "3", *FLAGS]) == 2
    assert "--save-table" in capsys.readouterr().err
    spec = tmp_path / "hand.shrink"
    spec.write_text(HAND)
    assert _main(["latency", str(spec), "--calibrate-cells", "3", "--save-table",
                  str(tmp_path / "h.json"), *FLAGS]) == 1
    assert "no search with a space" in capsys.readouterr().err


def _tiny_cells(n: int) -> list:
    from shrinkc.compiler.pipeline import check
    from shrinkc.search.rules import random_cells

    parsed = check(TINY).sources.main
    space = next(i for i in parsed.items if isinstance(i, ir.SpaceDef))
    return random_cells(parsed, space, n, seed=0)


def test_random_cells_are_distinct_valid_and_stop_when_the_space_runs_out():
    """The tiny space (4 nodes, 6 edges) has few distinct valid cells (by cell hash, counted
    here over every subset of its edges): asked for 40, drawing stops with those instead of
    looping forever."""
    from itertools import combinations

    from shrinkc.compiler.analysis.cellhash import cell_hash
    from shrinkc.compiler.passes.space import cleanup, expand, node_count
    from shrinkc.compiler.pipeline import check
    from shrinkc.search.rules import live_edges, valid, with_edges

    parsed = check(TINY).sources.main
    space = next(i for i in parsed.items if isinstance(i, ir.SpaceDef))
    full, nodes = live_edges(space), node_count(space)

    def hash_of(edges):
        return cell_hash(expand(with_edges(parsed, "Tiny", edges).defs(ir.SpaceDef)["Tiny"]))

    every = {hash_of(c) for k in range(2, len(full) + 1) for sub in combinations(full, k)
             if valid(c := cleanup(tuple(sorted(sub, key=lambda e: (e[1], e[0]))), nodes))}
    assert 5 < len(every) < 40
    cells = _tiny_cells(40)
    assert all(valid(c) for c in cells)
    assert {hash_of(c) for c in cells} == every and len(cells) == len(every)
    assert _tiny_cells(5) == cells[:5]  # seeded: the first ones whatever the number asked


def test_latency_command_refuses_to_mix(tmp_path, capsys):
    graph = compile_file(TINY)
    foreign = tmp_path / "phone.json"
    L.save(_fake_table(graph, lambda k: 0.1), foreign)
    # a complete table from another device predicts that device ...
    assert _main(["latency", str(TINY), "--table", str(foreign), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"]["cpu_model"] == "Test CPU"
    # ... but is never compared with a measurement here, nor extended with one
    assert _main(["latency", str(TINY), "--table", str(foreign), "--measure", *FLAGS]) == 1
    assert "never mixed" in capsys.readouterr().err
    table = _fake_table(graph, lambda k: 0.1)
    del table.entries[sorted(table.entries)[0]]
    L.save(table, foreign)
    assert _main(["latency", str(TINY), "--table", str(foreign), *FLAGS]) == 1
    assert "lacks 1 piece(s)" in capsys.readouterr().err


def test_bench_goes_through_the_routine(tmp_path, capsys):
    from shrinkc.backends.onnx import generate, serialize
    from shrinkc.cli import main

    model = Path(tmp_path / "tiny.onnx")
    model.write_bytes(serialize(generate(compile_file(TINY))))
    assert main(["bench", str(model), "--json", "--runs", "40", "--warmup", "2",
                 "--tolerance", "0.5", "--no-spin"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["stopped"] == "stable" and 20 <= r["runs"] <= 40 and r["run_limit"] == 40
    assert r["spinning"] is False and r["fingerprint"]["spinning"] is False
    assert r["q1_ms"] <= r["p50_ms"] <= r["q3_ms"] and r["fingerprint"]["input"] == [1, 8, 8]


@pytest.mark.parametrize("spec", ["shrinkcnn_a.shrink", "zoo/mobilenet_v3_small.shrink",
                                  "zoo/shufflenet_v2_x1_0.shrink", "zoo/resnet18.shrink"])
def test_the_pieces_are_the_network_node_for_node(spec):
    """The pieces' models together hold exactly the nodes of the network's own ONNX model
    (batch norm folded): what is measured is what runs."""
    from collections import Counter

    from shrinkc.backends.onnx import generate

    graph = compile_file(ROOT / "specs" / spec)
    nodes: dict[str, Counter] = {}
    total: Counter = Counter()
    for part in L.network_pieces(graph).parts:
        key = part.piece.key
        if key not in nodes:
            nodes[key] = Counter(n.op_type for n in L.piece_model(part.piece).graph.node)
        total += nodes[key]
    assert total == Counter(n.op_type for n in generate(graph).graph.node)

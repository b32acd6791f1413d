"""The shrinker: rules on hand-made DAGs, score expressions, and tiny searches end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shrinkc.compiler import ShrinkError, check, parse
from shrinkc.compiler.passes.space import cleanup, expand, node_ops
from shrinkc.search import rules
from shrinkc.search.settings import settings

from conftest import ROOT, TEST_SPECS, kill_mid_run, read_log, run_shrink

TINY = TEST_SPECS / "tiny_space.shrink"


def space_of(text: str):
    return next(i for i in parse(text).items if i.kind == "space")


SPACE = """\
shrink 1
space S(w: int) {
    input x
    nodes 5
    ops cycle(sepconv(w), conv(w, k=1)) shuffle 0
    act relu
    %s
    output concat(leaves) + x
}
"""


# ------------------------------------------------------------------ rules on hand-made DAGs


def test_complete_space_expands_to_a_complete_cell():
    cell = expand(space_of(SPACE % ""))
    assert cell.edges == 10  # 5 nodes: every i < j
    nodes = {n.name: n for n in cell.nodes}
    assert nodes["n4"].inputs == ("x", "n1", "n2", "n3")
    assert nodes["n4"].act is None  # the only leaf is linear
    assert all(nodes[f"n{i}"].act is not None for i in (1, 2, 3))


def test_cycle_and_shuffle_assignment_is_seeded():
    ops = [c.op for c in node_ops(space_of(SPACE % ""))]
    assert sorted(ops) == ["conv", "conv", "sepconv", "sepconv"]
    again = [c.op for c in node_ops(space_of(SPACE % ""))]
    assert ops == again
    other = [c.op for c in node_ops(space_of((SPACE % "").replace("shuffle 0", "shuffle 7")))]
    unshuffled = [c.op for c in node_ops(space_of((SPACE % "").replace(" shuffle 0", "")))]
    assert unshuffled == ["sepconv", "conv", "sepconv", "conv"]
    assert ops != unshuffled or other != unshuffled


def test_cleanup_drops_edges_out_of_unreachable_nodes():
    # node 1 lost its only input: its edges to 2 and 4 go, and then node 2 keeps 0->2 only
    edges = ((1, 2), (0, 2), (1, 4), (2, 3), (3, 4))
    assert cleanup(edges, 5) == ((0, 2), (2, 3), (3, 4))
    cell = expand(space_of(SPACE % "edges 1->2, 0->2, 1->4, 2->3, 3->4"))
    assert [n.name for n in cell.nodes] == ["n2", "n3", "n4"]
    assert {n.name: n.act for n in cell.nodes}["n4"] is None


def test_leaves_change_activation_as_edges_go():
    cell = expand(space_of(SPACE % "edges 0->1, 0->2, 1->3, 0->4"))
    acts = {n.name: n.act is not None for n in cell.nodes}
    assert acts == {"n1": True, "n2": False, "n3": False, "n4": False}
    assert cell.output.nodes == ("leaves",)


def test_removal_and_shrink_space():
    space = space_of(SPACE % "edges 0->1, 1->2, 0->3, 2->4")
    edges = rules.live_edges(space)
    after = rules.remove(space, edges, (0, 1))
    assert after == ((0, 3),)  # 1 and then 2 and 4 become unreachable
    # removing the last edge out of the input would leave no cell: not a candidate
    assert (0, 3) in rules.shrink_space(edges, space)
    assert rules.shrink_space(((0, 3),), space) == []


def test_best_snapshot_prefers_score_then_fewer_edges():
    snaps = [
        {"step": 1, "edges": 9, "score": 0.5},
        {"step": 2, "edges": 8, "score": 0.7},
        {"step": 3, "edges": 6, "score": 0.7},
        {"step": 4, "edges": 5, "score": 0.6},
    ]
    assert rules.best_snapshot(snaps)["step"] == 3
    assert rules.best_snapshot([]) is None


def test_sampling_is_seeded_and_takes_all_when_few():
    edges = [(i, j) for j in range(1, 8) for i in range(j)]
    a, b = rules.sample(edges, 10, 0, 1), rules.sample(edges, 10, 0, 1)
    assert a == b and len(a) == 10 and len(set(a)) == 10
    assert rules.sample(edges, 10, 0, 2) != a
    assert rules.sample(edges[:4], 10, 0, 1) == edges[:4]
    assert rules.target(28, 0.01) == 0 and rules.target(15, 0.25) == 4


# ------------------------------------------------------------------ scores


def _search(score: str, extra: str = ""):
    text = TINY.read_text().replace("score acc - 0.1 * (log10(macs) - 6)", f"score {score}")
    text = text.replace("shrink(candidates=3, drop=1, keep=0.2, seed=0)",
                        f"shrink(candidates=3, drop=1, keep=0.2, seed=0{extra})")
    checked = check(TINY, text)
    return next(i for i in checked.program.items if i.kind == "search")


def test_paper_score():
    s = settings(_search("acc - 0.1 * (log10(macs) - 6)"))
    assert rules.score(s.score, {"acc": 0.9, "macs": 1e7, "params": 1, "edges": 3}) == pytest.approx(0.8)
    s = settings(_search("acc - params / 1000000 + 0 * edges - min(acc, 2) + max(1, 2)"))
    assert rules.score(s.score, {"acc": 0.5, "macs": 1, "params": 500000, "edges": 2}) == pytest.approx(1.5)


@pytest.mark.parametrize("score, message, hint", [
    ("accuracy - 0.1", "unknown name 'accuracy' in the score", "acc, edges, latency, macs, params"),
    ("acc - 0.1 * log(macs, 2)", "log() takes 1 argument, got 2", None),
    ("acc - lg10(macs)", "unknown function 'lg10'", "did you mean 'log10'?"),
])
def test_score_errors_are_located(score, message, hint):
    with pytest.raises(ShrinkError) as e:
        settings(_search(score))
    d = e.value.diagnostic
    assert message in d.message and d.loc is not None and d.loc.line == 24
    if hint:
        assert hint in d.hint


def test_unknown_setting_is_an_error():
    with pytest.raises(ShrinkError, match="unknown shrink setting 'kepp'") as e:
        settings(_search("acc", ", kepp=0.1"))
    assert "keep" in e.value.diagnostic.hint


def test_functions_outside_scores_are_errors(tmp_path):
    p = tmp_path / "f.shrink"
    p.write_text("shrink 1\nnetwork N {\n    input x[3, 8, 8]\n    stem conv(log10(8))\n}\n")
    with pytest.raises(ShrinkError, match="outside a search score"):
        check(p)


# ------------------------------------------------------------------ end to end


def _run(out: Path, *extra: str, check_rc: bool = True):
    return run_shrink(TINY, out, *extra, check_rc=check_rc)


_log = read_log


# tiny_reference_run (the tiny search uninterrupted, on one worker) and tiny_resumed_run (the
# same on two workers, killed mid-run and resumed) are tests/conftest.py's, made once a session


def test_tiny_search_end_to_end(tiny_reference_run):
    out = tiny_reference_run
    log = _log(out)
    steps = sorted({e["step"] for e in log})
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 3
    for s in steps:
        chosen = [e for e in log if e["step"] == s and e["chosen"]]
        assert len(chosen) == 1
        others = [e for e in log if e["step"] == s]
        assert chosen[0]["score"] == max(e["score"] for e in others)
        assert {"edge", "score", "acc", "macs", "params"} <= set(chosen[0])
    for s in steps:
        snap = out / f"step-{s:02d}.shrink"
        text = snap.read_text()
        from shrinkc.compiler.syntax.printer import print_program

        assert print_program(parse(text)) == text  # canonically formatted
        from shrinkc.compiler.pipeline import build_graph

        build_graph(check(snap))  # compiles
    assert (out / "best.shrink").read_text() in [
        (out / f"step-{s:02d}.shrink").read_text() for s in steps]
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"


def _space_edges(text: str) -> set[tuple[int, int]]:
    from shrinkc.compiler.ir import SpaceDef

    space = next(i for i in parse(text).items if isinstance(i, SpaceDef))
    return set(space.edges) if space.edges is not None else set(rules.live_edges(space))


def _reachable_only(edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The cleanup, written out here: edges out of nodes that node 0 no longer reaches go."""
    reach = {0}
    for src, dst in sorted(edges):  # sources come before destinations in a DAG of i < j
        if src in reach:
            reach.add(dst)
    return {e for e in edges if e[0] in reach}


def test_each_step_removes_its_chosen_edge_and_the_run_stops_at_keep(tiny_reference_run):
    """Each snapshot is the previous one without exactly the chosen edge (and the edges the
    cleanup drops), and the run ends at the first step at or below the keep fraction."""
    out, log = tiny_reference_run, _log(tiny_reference_run)
    steps = sorted({e["step"] for e in log})
    before = _space_edges(TINY.read_text())
    initial = len(before)
    for s in steps:
        (chosen,) = [tuple(e["edge"]) for e in log if e["step"] == s and e["chosen"]]
        after = _space_edges((out / f"step-{s:02d}.shrink").read_text())
        assert chosen in before and after == _reachable_only(before - {chosen})
        before = after
    keep = 0.2  # tiny_space.shrink: shrink(..., keep=0.2)
    assert f"keep={keep}" in TINY.read_text()
    target = round(initial * keep)
    sizes = [len(_space_edges((out / f"step-{s:02d}.shrink").read_text())) for s in steps]
    assert sizes[-1] <= target < ([initial] + sizes)[-2]


def test_workers_give_the_same_result(tiny_reference_run, tiny_resumed_run):
    """The shared killed run was resumed with --workers 2: every candidate after the kill
    was trained on one of two worker processes, and the result is one worker's."""
    assert tiny_resumed_run.log == _log(tiny_reference_run)
    assert tiny_resumed_run.best == (tiny_reference_run / "best.shrink").read_text()


def test_resume_after_kill_gives_the_identical_result(tiny_reference_run, tiny_resumed_run):
    killed = tiny_resumed_run  # tests/conftest.py: killed after 5 lines, then resumed
    assert 5 <= killed.lines < len(_log(tiny_reference_run)), "killed mid-run"
    again = killed.refused  # the same command on the killed folder, without --resume
    assert again.returncode == 1 and "--resume" in again.stderr  # never silently overwritten
    assert killed.log == _log(tiny_reference_run)
    assert killed.best == (tiny_reference_run / "best.shrink").read_text()


def test_max_steps_and_overrides(tmp_path):
    out = tmp_path / "short"
    r = _run(out, "--max-steps", "2", "--candidates", "2", "--epochs", "1", "--seed", "3")
    log = _log(out)
    assert {e["step"] for e in log} == {1, 2} and len(log) == 4
    assert "2 step(s)" in r.stdout


def test_npz_data_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x_train=rng.random((40, 1, 8, 8), dtype=np.float32),
             y_train=rng.integers(0, 3, 40), x_val=rng.random((20, 1, 8, 8), dtype=np.float32),
             y_val=rng.integers(0, 3, 20))
    _run(tmp_path / "npz", "--data", str(good), "--max-steps", "1")
    nhwc = tmp_path / "nhwc.npz"
    np.savez(nhwc, x_train=rng.integers(0, 255, (30, 8, 8, 1), dtype=np.uint8),
             y_train=rng.integers(0, 3, 30), x_val=rng.integers(0, 255, (10, 8, 8, 1), dtype=np.uint8),
             y_val=rng.integers(0, 3, 10))
    _run(tmp_path / "nhwc", "--data", str(nhwc), "--max-steps", "1")
    bad = {
        "missing": ({"x_train": np.zeros((4, 1, 8, 8), np.float32)}, "missing array 'y_train'"),
        "shape": ({"x_train": np.zeros((4, 3, 8, 8), np.float32), "y_train": np.zeros(4, int),
                   "x_val": np.zeros((4, 3, 8, 8), np.float32), "y_val": np.zeros(4, int)},
                  "images are 3x8x8 but the proxy network takes 1x8x8"),
        "count": ({"x_train": np.zeros((4, 1, 8, 8), np.float32), "y_train": np.zeros(3, int),
                   "x_val": np.zeros((4, 1, 8, 8), np.float32), "y_val": np.zeros(4, int)},
                  "has 4 images but y_train has 3 labels"),
        "labels": ({"x_train": np.zeros((4, 1, 8, 8), np.float32), "y_train": np.zeros(4),
                    "x_val": np.zeros((4, 1, 8, 8), np.float32), "y_val": np.zeros(4, int)},
                   "y_train must be a 1-D array of integer labels"),
    }
    for name, (arrays, message) in bad.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        r = _run(tmp_path / f"bad-{name}", "--data", str(path), check_rc=False)
        assert r.returncode == 1 and message in r.stderr, (name, r.stderr)
        assert "Traceback" not in r.stderr
        assert not (tmp_path / f"bad-{name}" / "log.jsonl").exists()  # nothing trained
    notnpz = tmp_path / "junk.npz"
    notnpz.write_text("not numpy")
    r = _run(tmp_path / "bad-junk", "--data", str(notnpz), check_rc=False)
    assert r.returncode == 1 and "cannot read" in r.stderr


def test_paper_space_is_as_specified():
    checked = check(ROOT / "specs" / "shrinkcnn_space.shrink")
    space = next(i for i in checked.sources.main.items if i.kind == "space")
    search = next(i for i in checked.program.items if i.kind == "search")
    assert len(rules.live_edges(space)) == 28
    ops = [c.op for c in node_ops(space)]
    assert sorted(ops) == ["conv"] * 3 + ["sepconv"] * 4
    s = settings(search)
    assert (s.candidates, s.drop, s.keep) == (10, 1, 0.01)
    assert s.train.optimizer == "adam" and s.train.lr == 0.004 and s.train.epochs == 20
    from shrinkc.compiler.pipeline import build_graph

    g = build_graph(checked, "Proxy")
    assert g.stem[0].op.attrs["out"] == 32
    assert [c.args["w"] for s_ in g.stages for c in s_.cells] == [16, 32, 64]


def test_inherit_keeps_the_slices_of_the_remaining_inputs():
    torch = pytest.importorskip("torch")
    from shrinkc.compiler.pipeline import build_graph
    from shrinkc.compiler.syntax.printer import print_program
    from shrinkc.search.train import build_module, inherit

    checked = check(TINY)
    space = next(i for i in checked.sources.main.items if i.kind == "space")
    parent_graph = build_graph(checked, "TinyProxy")
    child_text = print_program(rules.with_edges(checked.sources.main, "Tiny",
                                                rules.remove(space, rules.live_edges(space), (1, 3))))
    child_graph = build_graph(check(TINY, child_text), "TinyProxy")
    torch.manual_seed(0)
    parent, child = build_module(parent_graph), build_module(child_graph)
    inherit(child, child_graph, parent.state_dict(), parent_graph)
    # n3 took concat(x, n1, n2) with 8 + 8 + 8 channels; without 1->3 it keeps x's and n2's
    p, c = parent.state_dict(), child.state_dict()
    name = next(k for k in c if k.startswith("stage1.0.n3.") and k.endswith("weight") and c[k].dim() == 4)
    assert c[name].shape[0 if "depthwise" in name else 1] == 16
    keep = torch.tensor(list(range(8)) + list(range(16, 24)))
    dim = 0 if "depthwise" in name else 1
    torch.testing.assert_close(c[name], p[name].index_select(dim, keep))
    same = [k for k in c if c[k].shape == p[k].shape]
    assert all(torch.equal(c[k], p[k]) for k in same)


def test_inherit_search_resumes_identically(tmp_path):
    ref = tmp_path / "ref"
    _run(ref, "--inherit", "--max-steps", "3")
    log = _log(ref)
    assert log[0]["step"] == 0 and log[0]["edge"] is None  # the complete DAG, from scratch
    assert all(e["epochs"] == 2 for e in log[1:])  # candidates are fine-tuned
    out = tmp_path / "killed"
    n = kill_mid_run(TINY, out, "--inherit", "--max-steps", "3", lines=4)
    assert 4 <= n < len(log), "killed mid-run"
    _run(out, "--inherit", "--max-steps", "3", "--resume")
    assert _log(out) == log


def test_inherited_candidates_start_from_the_parents_weights():
    """A candidate job with a parent starts from the parent's trained weights: fine-tuned with
    a learning rate too small to move them, its weights are the parent's (sliced where an
    input went); the same job without a parent ends far from them, and so does a parent whose
    weights are shifted by a constant (the child follows it)."""
    torch = pytest.importorskip("torch")
    import io

    from shrinkc.compiler.syntax.printer import print_program
    from shrinkc.search.job import Parent, make_job
    from shrinkc.search.settings import settings as read_settings
    from shrinkc.search.table import replace
    from shrinkc.search.train import evaluate

    checked = check(TINY)
    prog = checked.sources.main
    space = next(i for i in prog.items if i.kind == "space")
    search = next(i for i in prog.items if i.kind == "search")
    full = rules.live_edges(space)
    child_edges = rules.remove(space, full, (1, 3))
    train = replace(read_settings(search).train, finetune=1)

    def job(edges, parent=None, lr=None, seed=5):
        return make_job(path=str(TINY), program=prog, space="Tiny", edges=edges,
                        network="TinyProxy", overrides={}, train=replace(train, lr=lr or train.lr),
                        data=None, seed=seed, parent=parent, keep_state=True)

    trained = evaluate(job(full, seed=1))
    parent_state = torch.load(io.BytesIO(trained["state"]), weights_only=True)
    parent = Parent(text=print_program(rules.with_edges(prog, "Tiny", full)), state=trained["state"])

    def weights(result):
        st = torch.load(io.BytesIO(result["state"]), weights_only=True)
        return {k: v for k, v in st.items() if k.endswith("weight") and v.dim() >= 2}

    inherited = weights(evaluate(job(child_edges, parent, lr=1e-9)))
    same = [k for k, v in inherited.items() if v.shape == parent_state[k].shape]
    assert len(same) >= 4
    for k in same:
        torch.testing.assert_close(inherited[k], parent_state[k], rtol=0, atol=1e-5)
    sliced = [k for k, v in inherited.items() if v.shape != parent_state[k].shape]
    assert sliced  # n3 lost n1's 8 input channels: its weights are the parent's other slices
    scratch = weights(evaluate(job(child_edges, None, lr=1e-9)))
    assert all((scratch[k] - parent_state[k]).abs().max() > 1e-2 for k in same)


def test_ray_executor_gives_the_same_result(tiny_reference_run, tmp_path):
    pytest.importorskip("ray")
    r = _run(tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert "Traceback" not in r.stderr
    assert _log(tmp_path / "ray") == _log(tiny_reference_run)


def test_isomorphic_candidates_are_not_retrained(tiny_reference_run):
    raw = [json.loads(x) for x in (tiny_reference_run / "log.jsonl").read_text().splitlines()]
    twins = [e for e in raw if "isomorphic_to" in e]
    assert twins, "the tiny space has isomorphic removals"
    for e in twins:
        step, edge = e["isomorphic_to"]
        twin = next(t for t in raw if t["step"] == step and t["edge"] == edge)
        assert e["seconds"] == 0 and e["hash"] == twin["hash"]
        assert (e["acc"], e["macs"], e["score"]) == (twin["acc"], twin["macs"], twin["score"])


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_end_when_the_driver_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "shrinkc", "shrink", str(TINY), "-o",
                             str(tmp_path / "w"), "--quiet", "--workers", "2"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
        time.sleep(0.1)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if _running(p)], "worker processes outlived the driver"

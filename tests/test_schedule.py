"""Learning-rate schedules over a candidate's budget (train setting ``schedule``): the rates
by hand, training against torch's own LambdaLR loop, restarts with successive halving, and a
tiny search with 1 and 2 workers and after kill -9."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest

from conftest import TEST_SPECS, kill_and_resume, read_log, run_shrink

torch = pytest.importorskip("torch")

TINY = TEST_SPECS / "tiny_space.shrink"
LINEAR = ("--candidates", "3", "--epochs", "2", "--schedule", "linear")


def _settings(**given):
    """Train settings: the image task's defaults with ``given`` replaced."""
    from shrinkc.search.table import TrainSettings, replace

    return replace(TrainSettings.defaults("image"), **given)


def _rates(kind: str, steps_per_epoch: int, epochs: int, restarts=()) -> list[float]:
    from shrinkc.search.train import _schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    at = _schedule(opt, _settings(schedule=kind, lr=0.1, epochs=epochs, restarts=tuple(restarts)),
                   steps_per_epoch)
    out = []
    for step in range(steps_per_epoch * epochs):
        at(step)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_rates_by_hand():
    assert _rates("linear", 2, 2) == pytest.approx([0.1, 0.075, 0.05, 0.025])
    c = [0.05 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]  # 0.1, 0.0854, 0.05, 0.0146
    assert _rates("cosine", 4, 1) == pytest.approx(c)
    # halving's rounds at 1 and 2 epochs: the decay starts again at epoch 1
    assert _rates("linear", 2, 2, restarts=[1]) == pytest.approx([0.1, 0.05, 0.1, 0.05])
    assert _rates("linear", 1, 4, restarts=[1, 2]) == pytest.approx([0.1, 0.1, 0.1, 0.05])
    from shrinkc.search.train import _schedule

    assert _schedule(None, _settings(schedule="constant", lr=0.1, epochs=2), 3) is None


def _data(n_train=50, n_val=20):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_val, 6, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return SimpleNamespace(x_train=x[:n_train].numpy(), y_train=y[:n_train].numpy(),
                           x_val=x[n_train:].numpy(), y_val=y[n_train:].numpy())


@pytest.mark.parametrize("kind, factor", [
    ("linear", lambda t, total: 1 - t / total),
    ("cosine", lambda t, total: 0.5 * (1 + math.cos(math.pi * t / total))),
])
def test_training_with_a_schedule_equals_a_plain_lambdalr_loop(kind, factor):
    """The trainer's weights after 3 epochs equal those of a plain loop written here with
    torch's LambdaLR (same seed, same shuffling, batches of 16 with the 2-sample tail
    dropped)."""
    from shrinkc.search.train import train

    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    ref = copy.deepcopy(model)
    data = _data()
    settings = _settings(optimizer="adam", lr=0.01, batch=16, epochs=3, patience=0,
                         momentum=0.0, weight_decay=0.0, schedule=kind)
    train(model, data, settings, seed=7)

    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    total = 3 * 4  # 50 images: batches of 16, 16, 16 and a 2-image one: 4 steps an epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: factor(t, total))
    for _ in range(3):
        perm = torch.randperm(50, generator=gen)
        for i in range(0, 50, 16):
            idx = perm[i:i + 16]
            loss = torch.nn.functional.cross_entropy(ref(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * factor(12, 12), abs=1e-12)


def test_a_continued_training_restarts_and_ends_as_one_run_through_the_rounds():
    """A 1-epoch run continued to 2 epochs from its checkpoint (restart at epoch 1) ends
    bitwise as one 2-epoch run with the restart, and differs from one without it."""
    from shrinkc.search.train import train

    torch.manual_seed(5)
    base = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    data = _data()
    settings = _settings(optimizer="adam", lr=0.01, batch=16, epochs=2, patience=0,
                         momentum=0.0, weight_decay=0.0, schedule="linear")
    one, two, plain = (copy.deepcopy(base) for _ in range(3))
    *_, ckpt = train(one, data, _settings(**{**settings.as_dict(), "epochs": 1}), seed=3)
    train(two, data, _settings(**settings.as_dict(), restarts=(1,)), seed=3, resume=ckpt)
    whole = copy.deepcopy(base)
    train(whole, data, _settings(**settings.as_dict(), restarts=(1,)), seed=3)
    train(plain, data, settings, seed=3)
    for a, b in zip(two.state_dict().values(), whole.state_dict().values()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(two.state_dict().values(),
                                                       plain.state_dict().values()))


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("schedule") / "run"
    run_shrink(TINY, out, *LINEAR)
    return out


@pytest.fixture(scope="module")
def linear_resumed(tmp_path_factory):
    """The scheduled search on one worker, killed after 3 log lines and resumed on two
    workers (conftest.kill_and_resume): checked by the workers and the resume tests against
    the uninterrupted one-worker ``linear_run``."""
    out = tmp_path_factory.mktemp("schedule_killed") / "run"
    return kill_and_resume(TINY, out, *LINEAR, lines=3)


def test_schedule_is_recorded_and_changes_the_result(linear_run, tiny_two_epoch_step):
    meta = json.loads((linear_run / "run.json").read_text())
    assert meta["settings"]["train"]["schedule"] == "linear"
    # conftest's tiny_two_epoch_step: --candidates 3 --epochs 2 --max-steps 1, no schedule
    constant = tiny_two_epoch_step
    assert "schedule" not in json.loads((constant / "run.json").read_text())["settings"]["train"]
    first = {tuple(e["edge"]): e["curve"] for e in read_log(linear_run) if e["step"] == 1}
    other = {tuple(e["edge"]): e["curve"] for e in read_log(constant) if e["step"] == 1}
    assert first.keys() == other.keys() and first != other


def test_schedule_with_two_workers_gives_the_same_result(linear_run, linear_resumed):
    assert linear_resumed.log == read_log(linear_run)


def test_schedule_resumes_identically_after_kill(linear_run, linear_resumed):
    out, total = linear_resumed.out, len(read_log(linear_run))
    n = linear_resumed.lines
    assert 3 <= n < total, "killed mid-run"
    assert linear_resumed.log == read_log(linear_run)
    mismatch = run_shrink(TINY, out, "--candidates", "3", "--epochs", "2", "--resume",
                          check_rc=False)
    assert mismatch.returncode == 1 and "schedule" in mismatch.stderr


def test_halving_with_a_schedule_continues_as_a_run_through_the_rounds(tmp_path):
    """With halving, a second-round survivor continued from its checkpoint equals the same
    candidate re-trained from scratch after --resume lost the checkpoints (kill between
    rounds is simulated by deleting them)."""
    args = (*LINEAR, "--halving", "2", "--max-steps", "1")
    run_shrink(TINY, tmp_path / "a", *args)
    log = read_log(tmp_path / "a")
    second = [e for e in log if e["rung"] == 1 and "isomorphic_to" not in e]
    assert second and all(e["epochs"] == 2 for e in second)
    # the same step without the first round's checkpoints: survivors trained from scratch
    out = tmp_path / "b"
    lines = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    out.mkdir()
    (out / "run.json").write_text((tmp_path / "a" / "run.json").read_text())
    (out / "log.jsonl").write_text("\n".join(x for x in lines if json.loads(x)["step"] < 1
                                             or json.loads(x).get("rung") == 0) + "\n")
    run_shrink(TINY, out, *args, "--resume")
    assert read_log(out) == log


@pytest.mark.parametrize("extra, where", [
    (("--schedule", "step"), "usage"),
])
def test_unknown_schedule_on_the_command_line_is_a_usage_error(tmp_path, extra, where):
    r = run_shrink(TINY, tmp_path / "o", *extra, check_rc=False)
    assert r.returncode == 2 and "invalid choice: 'step'" in r.stderr


def test_unknown_schedule_in_the_spec_is_located(tmp_path):
    spec = tmp_path / "s.shrink"
    text = TINY.read_text().replace("epochs=1)", "epochs=1, schedule=cosin)")
    spec.write_text(text)
    r = run_shrink(spec, tmp_path / "o", check_rc=False)
    line = next(i for i, x in enumerate(text.splitlines(), 1) if "cosin" in x)
    assert r.returncode == 1 and f"s.shrink:{line}:" in r.stderr
    assert "unknown learning-rate schedule 'cosin'" in r.stderr and "cosine" in r.stderr


def test_batch_flag_overrides_the_spec_and_is_recorded(tmp_path):
    out = tmp_path / "b16"
    run_shrink(TINY, out, "--candidates", "2", "--max-steps", "1", "--batch", "16")
    assert json.loads((out / "run.json").read_text())["settings"]["train"]["batch"] == 16
    r = run_shrink(TINY, tmp_path / "bad", "--batch", "1", check_rc=False)
    assert r.returncode == 2 and "--batch must be at least 2, got 1" in r.stderr
    assert "Traceback" not in r.stderr

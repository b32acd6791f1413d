"""The speed changes to search/train.py change nothing that is trained or measured.

``accuracy`` validates in batches of 128 (faster than 512 on CPUs: a batch's concatenated
activations stay in cache; ``benchmarks/proxy_train.py --variants``): a convolutional network
with a dense cell (batch norm, concatenations, as the shrinker's proxies have) gives bitwise
the same logits, so the same accuracy, as in one batch of 512; and a candidate's training,
validation included, is the same twice over with the same seed and thread count.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")


class _Dense(torch.nn.Module):
    """Stem, two nodes on the concatenation of everything before them, pooled head."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.n1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                                nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.n2 = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        n1 = self.n1(x)
        n2 = self.n2(torch.cat([x, n1], dim=1))
        return self.head((n2 + x).mean(dim=(2, 3)))


def _data(n_train=96, n_val=300, seed=0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        x_train=rng.standard_normal((n_train, 3, 16, 16)).astype(np.float32),
        y_train=rng.integers(0, 5, n_train).astype(np.int64),
        x_val=rng.standard_normal((n_val, 3, 16, 16)).astype(np.float32),
        y_val=rng.integers(0, 5, n_val).astype(np.int64))


SETTINGS = {"optimizer": "adam", "lr": 0.01, "batch": 32, "epochs": 2, "patience": 0,
            "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant"}


def _settings():
    from shrinkc.search.table import TrainSettings, replace

    return replace(TrainSettings.defaults("image"), **SETTINGS)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_validation_in_batches_of_128_gives_the_logits_of_one_batch_of_512(precision):
    from shrinkc.search.train import _autocast, accuracy, train

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, data = _Dense(), _data()
    train(model, data, _settings(), seed=1, precision=precision)  # channels-last, as trained
    x = torch.from_numpy(data.x_val).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(data.y_val)
    model.eval()
    with torch.no_grad(), _autocast(precision):
        whole = model(x).float()
        parts = torch.cat([model(x[i:i + 128]).float() for i in range(0, len(x), 128)])
    assert torch.equal(whole, parts)
    expected = (whole.argmax(1) == y).sum().item() / len(y)
    assert accuracy(model, x, y, precision) == pytest.approx(expected, abs=1e-12)
    assert accuracy(model, x, y, precision) == accuracy(model, x, y, precision, batch=512)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_same_candidate_trains_the_same_twice(precision):
    from shrinkc.search.train import train

    torch.set_num_threads(1)
    torch.manual_seed(0)
    base, data = _Dense(), _data()
    one, two = copy.deepcopy(base), copy.deepcopy(base)
    *_, curve_one, _ = train(one, data, _settings(), seed=4, precision=precision)
    *_, curve_two, _ = train(two, data, _settings(), seed=4, precision=precision)
    assert curve_one == curve_two
    for a, b in zip(one.state_dict().values(), two.state_dict().values()):
        assert torch.equal(a, b)

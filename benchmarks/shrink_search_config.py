"""shrink_search's settings and run state: paths, seeds, the recommended search protocols,
the earlier runs kept under their own names; the state the command line sets (``--data``,
``--seed``: DATA, DATA_NAME, TAG, SEED, RECOMMENDED), and the results files it names (load,
save).

The state lives here only: every other ``shrink_search_*`` module imports this one as ``cfg``
and reads ``cfg.DATA``, ``cfg.TAG``... when called, never a copy of them, so that what
``shrink_search.main`` (or ``shrink_search.DATA = ...``) sets takes effect everywhere.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPEC = "specs/shrinkcnn_space.shrink"
RESULTS = ROOT / "benchmarks" / "results" / "shrink_search"
RANK_SEEDS = (101, 202)
RETRAIN_SEEDS = (11, 22, 33)
SEARCH_SEEDS = (0, 1, 2)  # the search seeds of the search and random parts (--seed)
# the settings this benchmark recommends for the search, per proxy data (chosen from the rank
# and budget parts' runs on each: on digits, 2 epochs at batch 32 with halving ranked best of
# the fast protocols; on cluttered digits, one epoch at batch 32 ranks at 0.99 of the noise
# ceiling for half the training of the first 2 epochs at batch 128 (0.93, session 12's choice):
# four protocols were compared on the same 20 cells, so the 0.99 carries a selection bias)
RECOMMENDED_BY_DATA = {
    None: ["--epochs", "2", "--halving", "2", "--batch", "32"],
    "cluttered-digits": ["--epochs", "1", "--halving", "0", "--batch", "32"],
    # on the CIFAR-10 proxy: chosen by ``choose_protocol`` from its rank and budget parts
    # (the cheapest at 0.8 of the noise ceiling), fixed in protocol_cifar10.json at the first
    # search so that every search seed and random search use the same
    "cifar10": None,
}
TARGET_FRACTION = 0.8  # of the noise ceiling: the protocol the search should rank at
RECOMMENDED = RECOMMENDED_BY_DATA[None]
# the search part's earlier runs, kept under their own names: part -> (cell name, how it ran);
# a part exists only for the data it ran on (search_b32 and search_e2b128 on cluttered digits:
# search_b32_cluttered, search_e2b128_cluttered)
EARLIER = {
    "search_avx2": ("autoshrink, AVX2 fp32",
                    " ".join(RECOMMENDED) + ", fp32 on an AVX2 CPU (session 10)"),
    "search_b128": ("autoshrink, batch 128", "--epochs 2 --halving 2, batch 128, fp32 on an "
                    "AVX2 CPU (session 9)"),
    "search_b32": ("autoshrink, batch 32", "--epochs 2 --halving 2 --batch 32, bf16 "
                   "(session 11)"),
    "search_e2b128": ("autoshrink, 2 epochs at batch 128", "--epochs 2 --halving 0 --batch 128, "
                      "bf16 (session 12)"),
    "paper": ("autoshrink, paper procedure", "the paper's procedure: from scratch, up to 20 "
              "epochs, patience 3, batch 128, no halving; --precision auto"),
}
# the random part's earlier runs (fp32 on the AVX2 CPU beside search_avx2; on cluttered digits
# batch 32 beside search_b32, 2 epochs at batch 128 beside search_e2b128)
RANDOM_EARLIER = {"random_avx2": "random search, AVX2 fp32",
                  "random_b32": "random search, batch 32",
                  "random_e2b128": "random search, 2 epochs at batch 128"}


# short names for the shared data sets (``--data cifar10``: the paper's CIFAR-10 proxy)
SHARED = ROOT.parent / "shared" / "data"
DATA_ALIASES = {"cifar10": str(SHARED / "cifar10" / "proxy.npz")}

# --data: the proxy data of every part but ``cluttered`` (None: the default digits). A part run
# on other data keeps its results apart: PART_TAG.json, runs/PART_TAG, search_pareto_TAG.png.
DATA: str | None = None
DATA_NAME: str | None = None  # --data as given (cifar10, cluttered-digits, a path)
TAG = ""
SEED = 0  # --seed: the search seed of the search and random parts (0: the spec's)
# the names above that the command line (or a script such as shrink_search_cifar10.py)
# sets; the other modules read them as ``cfg.NAME`` at call time
STATE = ("DATA", "DATA_NAME", "TAG", "SEED", "RECOMMENDED")


def seeded(part: str, seed: int | None = None) -> str:
    """The name a search or random part's results are kept under for a search seed (seed 0,
    the spec's own, keeps the plain name)."""
    seed = SEED if seed is None else seed
    return part if not seed else f"{part}_s{seed}"


def recommended(flag: str) -> int:
    return int(RECOMMENDED[RECOMMENDED.index(flag) + 1])


def load(part: str) -> dict:
    path = RESULTS / f"{part}{TAG}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save(part: str, doc: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{part}{TAG}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)

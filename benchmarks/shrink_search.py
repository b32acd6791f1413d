"""Does the AutoShrink search find something? Measured against random search, in parts.

On the paper's CNN space (``specs/shrinkcnn_space.shrink``, default digits proxy), each part is
run on its own, writes its raw results to ``benchmarks/results/shrink_search/PART.json`` after
every finished training, and resumes from there when run again:

    python benchmarks/shrink_search.py rank      # >= 20 random cells, 2 seeds each, full budget
    python benchmarks/shrink_search.py search    # the recommended AutoShrink run, timed
    python benchmarks/shrink_search.py paper     # the paper's procedure (from scratch), timed
    python benchmarks/shrink_search.py random    # random search, same candidate-epoch budget
    python benchmarks/shrink_search.py retrain   # each method's best + references, 3 seeds
    python benchmarks/shrink_search.py rnn       # the ShrinkRNN search on the PTB proxy, timed
    python benchmarks/shrink_search.py rnn_retrain   # its best cell + references, full budget
    python benchmarks/shrink_search.py cluttered --cells 3   # the harder proxy: does it separate?
    python benchmarks/shrink_search.py report    # the tables and docs/search_pareto.png

``rank`` measures whether a cheap evaluation ranks cells as full training does. Every training
records its learning curve (validation accuracy after each epoch), and with a constant learning
rate and no schedule the first r epochs of a full run are exactly what a run with ``epochs=r``
and the same seed trains, so one full run per cell and seed gives the score of every shorter
budget. The report gives Kendall tau between the r-epoch scores of one seed and the full scores
of the other seed, next to tau between the two seeds' full scores (the noise ceiling).

``search`` runs ``shrinkc shrink`` with the settings this benchmark recommends (``--epochs``,
``--halving``, see the report); ``random`` samples cells of the space and trains each with the
same per-candidate protocol until the search's candidate-epochs are spent; ``retrain`` trains
each method's best cell, the complete DAG and ShrinkCNN-A's cell in the proxy network from
scratch at the paper's full budget (20 epochs, patience 3) with 3 seeds.
"""

# The code lives in the shrink_search_* modules beside this one, one concern each:
#   shrink_search_config   paths, seeds, protocols, the command line's state, load/save
#   shrink_search_space    Space (jobs, random cells), the reference cells, train_all
#   shrink_search_rank     the rank, budget and cluttered parts, rank_table, choose_protocol
#   shrink_search_methods  the search, paper and random parts, budget_of, best_cells
#   shrink_search_rnn      the rnn and rnn_retrain parts
#   shrink_search_retrain  the retrain part (on CIFAR-10: train10k.npz, tested on test.npz)
#   shrink_search_report   the report part: tables and docs/search_pareto.png
# This module keeps the command line and re-exports their names (``import shrink_search as
# S``; ``S.Space``, ``S.load``...). The state the command line sets (DATA, DATA_NAME, TAG, SEED,
# RECOMMENDED) lives in shrink_search_config only, where every part reads it when it runs:
# set it there (``S.cfg.DATA = ...``), never on this module.

from __future__ import annotations

import argparse

import shrink_search_config as cfg
from shrink_search_config import (
    DATA_ALIASES,
    EARLIER,
    RANDOM_EARLIER,
    RANK_SEEDS,
    RECOMMENDED_BY_DATA,
    RESULTS,
    RETRAIN_SEEDS,
    ROOT,
    SEARCH_SEEDS,
    SHARED,
    SPEC,
    TARGET_FRACTION,
    load,
    recommended,
    save,
    seeded,
)
from shrink_search_methods import (
    _edges_after,
    _keep_log,
    best_cells,
    budget_of,
    part_paper,
    part_random,
    part_search,
    timed_search,
)
from shrink_search_rank import (
    BUDGET_SEEDS_BY_DATA,
    FAST,
    FAST_BY_DATA,
    choose_protocol,
    fast_key,
    kendall,
    part_budget,
    part_cluttered,
    part_rank,
    rank_table,
)
from shrink_search_report import dominating, pareto, part_report
from shrink_search_retrain import (
    RETRAIN_DATA,
    TEST_DATA,
    TEST_SEEDS,
    WEIGHTS,
    _retrain_and_test,
    _test_arrays,
    part_retrain,
    part_retrain_test,
    retrain_cells,
    slug,
)
from shrink_search_rnn import (
    RNN_DATA,
    RNN_SEEDS,
    RNN_SETTINGS,
    RNN_SPEC,
    part_rnn,
    part_rnn_retrain,
)
from shrink_search_space import (
    REFERENCES,
    Space,
    _evaluate,
    reference_job,
    shrinka_job,
    train_all,
)

__all__ = [
    "cfg",
    "BUDGET_SEEDS_BY_DATA", "DATA_ALIASES", "EARLIER", "FAST", "FAST_BY_DATA", "RANDOM_EARLIER",
    "RANK_SEEDS", "RECOMMENDED_BY_DATA", "REFERENCES", "RESULTS", "RETRAIN_DATA", "RETRAIN_SEEDS",
    "RNN_DATA", "RNN_SEEDS", "RNN_SETTINGS", "RNN_SPEC", "ROOT", "SEARCH_SEEDS", "SHARED", "SPEC",
    "TARGET_FRACTION", "TEST_DATA", "TEST_SEEDS", "WEIGHTS", "Space", "_edges_after", "_evaluate",
    "_keep_log", "_retrain_and_test", "_test_arrays", "best_cells", "budget_of", "choose_protocol",
    "dominating", "fast_key", "kendall", "load", "main", "pareto", "part_budget",
    "part_cluttered", "part_paper", "part_random", "part_rank", "part_report", "part_retrain",
    "part_retrain_test", "part_rnn", "part_rnn_retrain", "part_search", "rank_table",
    "recommended", "reference_job", "retrain_cells", "save", "seeded", "shrinka_job", "slug",
    "timed_search", "train_all",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("rank", "budget", "search", "paper", "random", "retrain", "rnn",
                                     "rnn_retrain", "cluttered", "report"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0,
                    help="search seed of the search and random parts (0: the spec's own); "
                    "each seed's results are kept apart (search_s1, random_s1, ...)")
    ap.add_argument("--cells", type=int, default=20, help="random cells in the rank part")
    ap.add_argument("--data", help="proxy data (shrinkc shrink --data), e.g. cluttered-digits; "
                    "results are kept apart under its name")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="training precision of the rank and retrain parts' runs, recorded in "
                    "their JSON at the first run (the search and random parts take --precision "
                    "auto's choice)")
    args = ap.parse_args()
    cfg.DATA, cfg.DATA_NAME, cfg.SEED = (DATA_ALIASES.get(args.data, args.data), args.data,
                                         args.seed)
    cfg.RECOMMENDED = RECOMMENDED_BY_DATA.get(args.data, RECOMMENDED_BY_DATA[None])
    cfg.TAG = "_" + args.data.replace("-digits", "").replace("/", "_") if args.data else ""
    {"rank": part_rank, "budget": part_budget, "search": part_search, "paper": part_paper,
     "random": part_random, "retrain": part_retrain,
     "rnn": part_rnn, "rnn_retrain": part_rnn_retrain, "cluttered": part_cluttered, "report": part_report}[args.part](args)


if __name__ == "__main__":
    main()

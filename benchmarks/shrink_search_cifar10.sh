#!/usr/bin/env bash
# Every part of benchmarks/shrink_search.py on the CIFAR-10 proxy, in the order the report
# needs them (rank, the cheap protocols, one search seed with its random search, the re-training
# on train10k.npz evaluated once on test.npz (after each method's best at the full budget on
# the proxy, which is cheaper), the other two seeds, the paper's procedure last). The tables and the plot:
# python benchmarks/shrink_search_cifar10.py report --plot NAME.png.
# Each part resumes where it stopped and skips what is done, so running this again continues:
#
#     nohup bash benchmarks/shrink_search_cifar10.sh > cifar10.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "== $* ($(date -u +%H:%M:%S))"; python benchmarks/shrink_search.py "$@" --data cifar10; }
run rank --precision bf16
run budget
run search
run random
python benchmarks/shrink_search_cifar10.py proxyfull   # each method's best at the full budget
run retrain --precision bf16
for seed in 1 2; do
    run search --seed "$seed"
    run random --seed "$seed"
done
run retrain --precision bf16   # the other seeds' best cells
python benchmarks/shrink_search_cifar10.py proxyfull
python benchmarks/shrink_search_cifar10.py select           # the final selection stage (session 19)
python benchmarks/shrink_search_cifar10.py select_retrain
python benchmarks/shrink_search_cifar10.py report --plot search_cifar10_pareto_seeds012.png
run paper                      # several sittings: a search cut short has no best cell yet
run retrain --precision bf16   # the paper procedure's best cell, once it has finished
python benchmarks/shrink_search_cifar10.py proxyfull   # and at the full budget on the proxy
python benchmarks/shrink_search_cifar10.py select      # the selection stage on it too
python benchmarks/shrink_search_cifar10.py select_retrain
python benchmarks/shrink_search_cifar10.py report --plot search_cifar10_pareto_paper.png

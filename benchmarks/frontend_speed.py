"""The front end on large cells: cold ``shrinkc check``, ``stats`` and ``diff`` on a chain cell
of 1,000, 4,000 and 10,000 nodes.

The cell (:func:`chain_spec`) is a chain of ``conv(w) relu`` nodes with a skip edge from the
input every third node (``n3 = conv(w) relu <- n2, x``), in a small network; ``diff`` compares it
with the same file where the middle node's op is ``conv(w, k=3)``. Target (issue 23, relaxed
from issue 11's 2 s): ``check``, ``stats`` and ``diff`` on 10,000 nodes at most 4 s each for the
whole command, cold. Each command runs in a
fresh process (``python -m shrinkc``), 3 times after one warm-up run; the table gives the
medians of wall and CPU (user + system, of every process the command ran: ``diff`` reads
the second spec in a second process when both are large) seconds. Writes
``benchmarks/results/frontend_speed.json``.

    python benchmarks/frontend_speed.py [--runs 3] [--sizes 1000,4000,10000]
        [--against DIR] [--one-core]

``--against DIR`` times another checkout (``git worktree add --detach DIR COMMIT``) in the
same runs, alternating, and ``--one-core`` this one pinned to one core; the table then
gives each one's ratio to this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import cpu_flags

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 4.0


def chain_spec(n: int, skip_every: int = 3, edit: int | None = None) -> str:
    """A spec whose cell ``Big`` chains ``n`` nodes, every ``skip_every``-th also fed by the
    input; node ``edit`` (1-based), if given, is ``conv(w, k=3)`` instead of ``conv(w)``."""
    lines = ["shrink 1", "cell Big(w: int) {", "    input x"]
    prev = "x"
    for i in range(1, n + 1):
        inputs = prev if i % skip_every or i == 1 else f"{prev}, x"
        op = "conv(w, k=3)" if i == edit else "conv(w)"
        lines.append(f"    n{i} = {op} relu <- {inputs}")
        prev = f"n{i}"
    lines += [f"    output {prev}", "}", "network N {", "    input image[3, 8, 8]",
              "    stage Big(4) x 1", "    head global_avgpool -> linear(10)", "}"]
    return "\n".join(lines) + "\n"


def cold(args: list[str], root: Path = ROOT, cores: set[int] | None = None
         ) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``python -m shrinkc ARGS`` in a fresh process run in ``root``
    (the checkout whose shrinkc it imports: the current folder comes first on sys.path),
    on ``cores`` only if given, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    r = subprocess.run([sys.executable, "-m", "shrinkc", *args], cwd=root, preexec_fn=pin,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1) or "Traceback" in r.stderr:
        raise SystemExit(f"shrinkc {' '.join(args)} failed:\n{r.stderr}")
    return wall, cpu, r.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1000,4000,10000")
    ap.add_argument("--against", metavar="DIR",
                    help="also time the shrinkc checked out in DIR (e.g. a git worktree of an "
                         "earlier commit), interleaved run by run with this one")
    ap.add_argument("--one-core", action="store_true",
                    help="also time this checkout pinned to one core (diff then reads the "
                         "two specs one after the other)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "frontend_speed.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants: dict[str, tuple[Path, set[int] | None]] = {"this": (ROOT, None)}
    if args.against:
        variants[f"against {Path(args.against).name}"] = (Path(args.against).resolve(), None)
    if args.one_core:
        variants["this, 1 core"] = (ROOT, {min(os.sched_getaffinity(0))})
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            a, b = Path(d) / f"chain{n}.shrink", Path(d) / f"chain{n}_edit.shrink"
            a.write_text(chain_spec(n))
            b.write_text(chain_spec(n, edit=n // 2))
            commands = {"check": ["check", str(a)], "stats": ["stats", str(a)],
                        "diff": ["diff", str(a), str(b)]}
            for name, cmd in commands.items():
                cold(cmd)  # warm the file cache
                times: dict[str, tuple[list, list]] = {v: ([], []) for v in variants}
                for _ in range(args.runs):
                    for v, (root, cores) in variants.items():  # interleaved: the same load
                        wall, cpu, code = cold(cmd, root, cores)
                        assert code == (1 if name == "diff" else 0), (name, v, code)
                        times[v][0].append(wall)
                        times[v][1].append(cpu)
                for v, (walls, cpus) in times.items():
                    rows.append({"command": name, "nodes": n, "variant": v, "wall_s": walls,
                                 "cpu_s": cpus, "median_wall_s": statistics.median(walls),
                                 "median_cpu_s": statistics.median(cpus)})
    print(f"shrinkc check / stats / diff on a chain cell (skip edge every third node); "
          f"{os.cpu_count()} CPUs ({cpu_flags().get('model')}), load average {load0:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end; medians of {args.runs} cold runs"
          + (", interleaved" if len(variants) > 1 else "") + "\n")
    base = {(r["command"], r["nodes"]): r for r in rows if r["variant"] == "this"}
    wide = max(len(v) for v in variants)
    print(f"{'command':<8} {'nodes':>7} {'code':<{wide}} {'CPU s':>7} {'wall s':>7}"
          + (f" {'CPU / this':>10} {'wall / this':>11}" if len(variants) > 1 else ""))
    for r in rows:
        line = (f"{r['command']:<8} {r['nodes']:>7,} {r['variant']:<{wide}} "
                f"{r['median_cpu_s']:>7.2f} {r['median_wall_s']:>7.2f}")
        if len(variants) > 1:
            b = base[r["command"], r["nodes"]]
            line += (f" {r['median_cpu_s'] / b['median_cpu_s']:>9.2f}x"
                     f" {r['median_wall_s'] / b['median_wall_s']:>10.2f}x")
        print(line)
    big = [r for r in rows if r["nodes"] == 10_000 and r["variant"] == "this"]
    for r in big:
        verdict = ["meets" if r[k] < TARGET_S else "MISSES" for k in ("median_wall_s",
                                                                       "median_cpu_s")]
        print(f"-> {r['command']} on 10,000 nodes: {r['median_wall_s']:.2f} s wall "
              f"({verdict[0]} the target of < {TARGET_S:g} s), {r['median_cpu_s']:.2f} s CPU "
              f"({verdict[1]} it" + (", two processes" if r["command"] == "diff" else "") + ")")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "cpus": os.cpu_count(), "cpu": cpu_flags().get("model"), "load_average": [load0, os.getloadavg()[0]],
        "runs": args.runs, "target_s": TARGET_S, "variants": {
            v: {"root": str(root), "cores": sorted(cores) if cores else None}
            for v, (root, cores) in variants.items()}, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

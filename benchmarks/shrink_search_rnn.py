"""shrink_search's RNN parts: the ShrinkRNN search on the PTB proxy corpus, timed (``rnn``),
and its best cell re-trained beside the released ShrinkRNN cell and the complete DAG
(``rnn_retrain``)."""

from __future__ import annotations

import sys

import shrink_search_config as cfg
from shrink_search_config import ROOT, load
from shrink_search_methods import timed_search
from shrink_search_space import train_all

RNN_SPEC = "specs/shrinkrnn_space.shrink"
RNN_DATA = ROOT.parent / "shared" / "data" / "penn_proxy"
RNN_SETTINGS = ["--epochs", "2"]  # the paper: up to 10 epochs; see the report


def part_rnn(args) -> None:
    """The ShrinkRNN search on the PTB proxy corpus, timed (resumes an interrupted run)."""
    if cfg.DATA:
        sys.exit("the rnn part searches the PTB proxy corpus: run it without --data")
    timed_search("rnn", RNN_SPEC, ["--data", str(RNN_DATA), "--workers", str(args.workers),
                                   *RNN_SETTINGS])


RNN_SEEDS = (11, 22)


def part_rnn_retrain(args) -> None:
    """The RNN search's best cell, the released ShrinkRNN cell and the complete DAG, each in
    the proxy language model at the search's full budget (up to 10 epochs, patience 2), with
    2 seeds: does the 2-epoch search's choice hold up?"""
    from shrinkc.compiler import check
    from shrinkc.compiler.ir import SearchDef, SpaceDef
    from shrinkc.data import corpus
    from shrinkc.search import rules
    from shrinkc.search.job import Job, make_job
    from shrinkc.search.settings import settings as read_settings

    if cfg.DATA:
        sys.exit("the rnn_retrain part uses the PTB proxy corpus: run it without --data")
    search = load("rnn")
    if "log" not in search:
        sys.exit("run the rnn part first")
    checked = check(ROOT / RNN_SPEC)
    parsed = checked.sources.main
    space = next(i for i in parsed.items if isinstance(i, SpaceDef))
    block = next(i for i in checked.program.items if isinstance(i, SearchDef))
    settings = read_settings(block, {}, lm=True)
    train = settings.train
    overrides = {"vocab": corpus.load(str(RNN_DATA)).size}
    snaps = [e for e in search["log"] if e.get("chosen") and e.get("edge") is not None]
    best = max(snaps, key=lambda e: (e["score"], -e["edges"]))
    edges = rules.live_edges(space)
    for e in sorted(snaps, key=lambda e: e["step"]):
        if e["step"] <= best["step"]:
            edges = rules.remove(space, edges, tuple(e["edge"]))
    cells = {"autoshrink": edges, "complete DAG": rules.live_edges(space)}

    def job(name: str, seed: int):
        if name == "ShrinkRNN cell":  # the released cell, its own activations, in ProxyLM
            text = (ROOT / "specs" / "shrinkrnn.shrink").read_text()
            cell = text[text.index("recurrent cell"):text.index("network ShrinkRNN")]
            net = (ROOT / RNN_SPEC).read_text()
            net = net[net.index("network ProxyLM"):net.index("search ShrinkRNN")]
            net = net.replace("ShrinkRNNSearch", "ShrinkRNNCell")
            return Job(path=str(ROOT / "benchmarks" / "shrinkrnn_proxy.shrink"),
                       text="shrink 1\n\n" + cell + net, network="ProxyLM",
                       overrides=overrides, train=train, data=str(RNN_DATA), seed=seed,
                       threads=1, edges=12)
        return make_job(path=str(ROOT / RNN_SPEC), program=parsed, space=space.name,
                        edges=tuple(cells[name]), network="ProxyLM", overrides=overrides,
                        train=train, data=str(RNN_DATA), seed=seed, threads=1)

    doc = load("rnn_retrain")
    doc["cells"] = {k: [list(e) for e in v] for k, v in cells.items()}
    names = [*cells, "ShrinkRNN cell"]
    jobs = {f"{n}/{s}": job(n, s) for n in names for s in RNN_SEEDS}
    runs = train_all("rnn_retrain", doc, jobs, args.workers)["runs"]
    print(f"\n{'cell':<16} {'edges':>5} {'ppl per seed':>20} {'FLOPs':>8} {'score':>9}")
    for n in names:
        got = [runs[f"{n}/{s}"] for s in RNN_SEEDS if f"{n}/{s}" in runs]
        if got:
            ppl = sum(g["ppl"] for g in got) / len(got)
            score = rules.score(settings.score,
                                {"ppl": ppl, "flops": got[0]["flops"]})
            print(f"{n:<16} {len(cells.get(n, range(12))):>5} "
                  f"{' / '.join(format(g['ppl'], '.1f') for g in got):>20} "
                  f"{got[0]['flops']:>8,} {score:>9.3f}")

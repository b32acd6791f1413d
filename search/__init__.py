"""The shrinker: AutoShrink's edge-shrinking search on top of the compiler and backends.

``rules``      the rules, pure: sampling, cleanup, removal, scores, the best snapshot
``settings``   the search block's settings, their names, types and defaults (one set per kind
               of proxy network: image network or language model)
``job``        ``Job``: what a worker trains, plain picklable data, built by ``make_job``
``driver``     ``shrinkc shrink``: the search loop, step by step
``rundir``     the run directory: run.json, log.jsonl, snapshots, the scores plot
``executors``  where jobs are trained: in-process, local worker processes, Ray
``progress``   the progress display on stderr (rich, imported when a search starts)
``train``      trains one job on the proxy task (the only module that imports torch)
``data``       the proxy data: images and corpora
"""

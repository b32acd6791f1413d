"""The shrinker: AutoShrink's edge-shrinking search on top of the compiler and backends.

``rules``      the rules, pure: sampling, cleanup, removal, scores, the best snapshot
``table``      every setting declared once (type, default per task, range, help, sources):
               the flags, YAML keys, spec checks and run.json's record are made from it
``tasks``      the proxy tasks (image classification, language modelling): data, metrics,
               score variables, summary
``settings``   reads and checks the search block's settings; device and training precision
``job``        ``Job``: what a worker trains, plain picklable data, built by ``make_job``
``driver``     ``shrinkc shrink``: the search loop, step by step
``logentry``   ``Entry``: one line of log.jsonl, declared once (made, ranked, written, read back)
``rundir``     the run directory: run.json, log.jsonl, snapshots, the scores plot
``executors``  where jobs are trained: in-process, local worker processes, Ray
``progress``   the progress display on stderr (rich, imported when a search starts)
``train``      trains one job on the proxy task (the only module that imports torch)
``data``       the proxy data: images and corpora
"""

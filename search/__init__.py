"""The shrinker: AutoShrink's edge-shrinking search on top of the compiler and backends.

``rules`` (pure: sampling, cleanup, scores, best snapshot), ``settings`` (the search block's
settings and their defaults), ``driver`` (the search loop), ``rundir`` (log, resume,
snapshots, plots), ``executors`` (in-process, local workers, Ray), ``train`` (the only module
that imports torch) and ``data`` (proxy images and corpora).
"""

"""Orchestration: running a study once, resumably, on one CPU, one GPU or a cluster.

  study         generators → samples → classifier grid → equivalence → analyses → report
  plan          what a config trains and samples, the data it needs, its estimated cost
  results       the results table (SQLite), one row per finished cell
(runtime services — log, progress, executors, lock — live in synthequiv.runtime)
"""

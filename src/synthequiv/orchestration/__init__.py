"""Orchestration: running a study once, resumably, on one CPU, one GPU or a cluster.

  study         generators → samples → classifier grid → equivalence → analyses → report
  plan          what a config trains and samples, the data it needs, its estimated cost
  executor      tasks in-process, in a process pool or on Ray (ray_executor)
  lock          one study per directory at a time
  results       the results table (SQLite), one row per finished cell
  runlog        log.txt and metrics.jsonl; progress: bars on a terminal, lines in a pipe
"""

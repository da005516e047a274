"""Orchestration: running a study once, resumably, on one CPU, one GPU or a cluster.

  study         generators → samples → classifier grid → equivalence → analyses → report
  grid          the classifier cells: keys, data, training groups as executor tasks
  pipeline      a pass's generators, samples and cells as one queue on local workers
  plan          what a config trains and samples, the data it needs, its estimated cost
(runtime services — log, progress, executors, lock — live in synthequiv.runtime; the run
directory's files are read and written through synthequiv.rundir)
"""

"""Runtime services, the ground floor: every stage may import these; they import no stage.

  runlog        log.txt and metrics.jsonl of the current run (plain lines or rich)
  progress      bars on a terminal, timestamped lines in a pipe
  executor      tasks in-process or in a process pool (ray_executor: on a Ray cluster)
  lock          one writer per directory at a time
  outputs       one guard for every output path a command writes
  cpu           free cores and contention: how many torch threads to use
  config        RuntimeConfig (how a study runs), RayConfig and its check (light)
"""

"""Statistics: the answer and how far to trust it.

  equivalence   gains, exchange rates ("1 real ≈ N synthetic"), fits, multiplicity
  intervals     replicate-level intervals (t over replicates, jackknife for fitted numbers)
  planner       "generate about N synthetic or collect about M real images/class"
  simulate      simulated studies with a known truth: interval coverage
"""

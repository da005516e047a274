"""Statistics: the answer and how far to trust it.

  equivalence   gains, exchange rates ("1 real ≈ N synthetic"), multiplicity; one arm's answer
  curves        the real learning curve (isotonic, linear in log amount) and its inverse
  fitting       the paper's formula and the effective-data model (point estimates)
  intervals     replicate-level intervals (t over replicates, test inversion, Holm)
  moderated     empirical-Bayes moderated variances across a family's cells (Smyth 2004)
  power         variance components, power and minimum detectable gain of a design
  planner       "generate about N synthetic or collect about M real images/class"
  sequential    grid.replicates: auto — targets and the stopping rule
  config        GridConfig (the design) and EquivalenceConfig, their checks (light: no numpy)
  simulate      simulated studies with a known truth: coverage, power, finite intervals
"""

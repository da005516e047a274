"""Measures of synthetic sets: how do they differ from real images?

  analyses      the analyses stage (per synthetic set, cached in analysis.json)
  trainings     its small classifiers as specs (a study's queue trains them beside the grid)
  features      FD, KID, precision / recall / density / coverage on feature arrays
  domaingap     a real-vs-synthetic classifier: accuracy, AUC, overlap in its features
  memorization  nearest generator-training image of every synthetic image
  config        AnalysisConfig and its check (light: no torch)
"""

"""Inputs: every data source as one in-memory dataset, and the seeded, nested splits.

  data      sources (digits, npz, torchvision, medmnist, folders) → `Dataset`
  dataset   the `Dataset` every source becomes
  sources   the sources by name, their config, where each looks (light: no torch)
  folder    the `folder:<path>` source
  splits    base sets, real reserve and hold-out test set per replicate; config: their settings
"""

"""Inputs: every data source as one in-memory dataset, and the seeded, nested splits.

  data      sources (digits, npz, torchvision, medmnist, folders) → `Dataset`
  dataset   the `Dataset` every source becomes
  folder    the `folder:<path>` source
  splits    base sets, real reserve and hold-out test set per replicate
"""

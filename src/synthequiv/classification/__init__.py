"""Classification: one grid cell = a classifier trained on a real (+ synthetic) mix.

  classifier    the training recipe, data path and evaluation of one cell
  config        its settings (ClassifierConfig) and their check: light, no torch
  networks      SmallCNN, ResNet-18 (CIFAR stem / torchvision), airbench
  batched       many cells trained (and scored) as one batched computation on one device
  metrics       accuracy, balanced accuracy and ROC AUC of many classifiers at once
"""

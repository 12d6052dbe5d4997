"""Training: batch augmentation, configuration and the training loop (PyTorch)."""

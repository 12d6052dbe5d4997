"""Training: aligned crop cache, batch augmentation, configuration and the training loop (PyTorch)."""

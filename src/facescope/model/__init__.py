"""Model: the multi-task network (network, PyTorch), its export, and the inference bundle (bundle, no PyTorch)."""

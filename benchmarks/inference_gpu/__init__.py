"""GPU inference benchmark: stock static batching vs the harness with the PyTorch engine."""

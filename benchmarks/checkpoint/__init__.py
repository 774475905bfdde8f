"""Checkpoint benchmark: `python -m benchmarks.checkpoint`."""

"""One prepared GPU check for a lent GPU machine: ``python -m benchmarks.gpu_check`` (see __main__)."""

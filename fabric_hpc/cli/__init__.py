"""The ``fabric`` command line: thin commands that parse, call the library and render."""

from fabric_hpc.cli.main import cli, main

__all__ = ["cli", "main"]

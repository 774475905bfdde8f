"""Transcoding a checkpoint as one verified, streaming, parallel operation: renames, transposes,
fused <-> separate projections, pipeline stages merged or split, dtype (fp32/bf16/fp16, fp8 with
weight and activation scales), tensor-parallel layout.

>>> from fabric_hpc.checkpoint.convert import convert
>>> report = convert("ckpts", "converted", "recipe.yaml")      # doctest: +SKIP

Recipe format: :mod:`fabric_hpc.checkpoint.convert.recipe`; docs: ``docs/checkpoint.md``.
"""

from fabric_hpc.checkpoint.convert.recipe import Recipe, load_recipe
from fabric_hpc.checkpoint.convert.run import ConvertReport, convert

__all__ = ["ConvertReport", "Recipe", "convert", "load_recipe"]

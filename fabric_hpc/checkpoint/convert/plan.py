"""What a convert writes: every output tensor as a list of row ranges of input tensors.

Renames, fused <-> separate projections, head-aware tensor-parallel reordering, KV-head
replication and vocabulary padding all move whole rows (dimension 0), so every output tensor
is described by :class:`Spec`: its shape and a list of :class:`Seg` (output rows ``lo:hi`` come
from rows ``src_lo:`` of input tensor ``src``, or are zeros). Nothing is read while planning;
the runner gathers the rows block by block (bounded memory) and casts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fabric_hpc.checkpoint.convert.recipe import (
    FLOAT_DTYPES, FP8_DTYPES, AttentionTP, Cast, Heads, Recipe, fill, load_calibration, template,
)
from fabric_hpc.checkpoint.convert.quant import input_scale_name, weight_module
from fabric_hpc.checkpoint.errors import CheckpointError
from fabric_hpc.checkpoint.format import SplitInfo, check_name
from fabric_hpc.checkpoint.reader import Checkpoint


@dataclass(frozen=True)
class Seg:
    lo: int
    hi: int
    src: str | None  # None: zero rows (padding)
    src_lo: int = 0


@dataclass
class Spec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    segs: list[Seg]
    cast: Cast | None = None
    split: SplitInfo | None = None
    notes: list[str] = field(default_factory=list)
    # transposed (2-D): ``segs`` are the rows of the tensor before the transpose and this tensor's
    # rows are its columns ``cols[0]:cols[1]``
    cols: tuple[int, int] | None = None
    input_scale: float | None = None  # fp8: static activation scale written beside the weight

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def sources(self) -> list[str]:
        return sorted({s.src for s in self.segs if s.src is not None})


def take(spec: Spec, lo: int, hi: int) -> list[Seg]:
    """Rows ``lo:hi`` of ``spec`` as segments re-based at output row 0."""
    out = []
    for s in spec.segs:
        a, b = max(lo, s.lo), min(hi, s.hi)
        if a < b:
            out.append(Seg(a - lo, b - lo, s.src, s.src_lo + (a - s.lo) if s.src else 0))
    return out


def transposed(spec: Spec) -> Spec:
    """``spec`` transposed (2-D only, once): its rows become the columns it is read from."""
    if len(spec.shape) != 2 or spec.cols is not None:
        raise CheckpointError(f"transpose {spec.name}: " + (f"{len(spec.shape)}-d, only 2-d tensors are transposed"
                                                           if len(spec.shape) != 2 else "transposed twice"),
                              hint="limit the transpose pattern to 2-d weights (e.g. '.*\\.weight')")
    return replace(spec, shape=(spec.shape[1], spec.shape[0]), cols=(0, spec.shape[1]),
                   notes=[*spec.notes, "transposed"])


def gather(name: str, parts: list[tuple[Spec, int, int]], notes: list[str] | None = None) -> Spec:
    """A new tensor stacking rows ``lo:hi`` of each spec in order (same trailing dims and dtype)."""
    first = parts[0][0]
    if any(spec.cols is not None for spec, _, _ in parts):
        spec, lo, hi = parts[0]
        if len(parts) > 1:
            raise CheckpointError(f"{name}: cannot stack rows of a transposed tensor ({spec.name}) with others",
                                  hint="fuse or split first and transpose after (transpose: {match: ..., "
                                       "after_fuse: true}), or transpose the parts before fusing them")
        return replace(spec, name=name, shape=(hi - lo, *spec.shape[1:]), split=None, cast=None,
                       cols=(spec.cols[0] + lo, spec.cols[0] + hi), notes=list(notes or spec.notes))  # type: ignore[index]
    for spec, _, _ in parts:
        if spec.shape[1:] != first.shape[1:] or spec.dtype != first.dtype or not spec.shape:
            raise CheckpointError(f"{name}: cannot stack {spec.name} {list(spec.shape)} {spec.dtype} with "
                                  f"{first.name} {list(first.shape)} {first.dtype}",
                                  hint="fused tensors need the same dtype and trailing dimensions")
    segs, row = [], 0
    for spec, lo, hi in parts:
        segs.extend(Seg(s.lo + row, s.hi + row, s.src, s.src_lo) for s in take(spec, lo, hi))
        row += hi - lo
    return Spec(name, (row, *first.shape[1:]), first.dtype, segs, notes=list(notes or []))


def _pad(spec: Spec, rows: int) -> Spec:
    if rows == spec.rows:
        return spec
    if spec.cols is not None:
        raise CheckpointError(f"{spec.name}: a transposed tensor cannot be padded",
                              hint="pad (tp.vocab) tensors that are not transposed")
    return replace(spec, shape=(rows, *spec.shape[1:]), segs=[*spec.segs, Seg(spec.rows, rows, None)],
                   notes=[*spec.notes, f"padded {spec.rows} -> {rows} rows"])


def head_dim(name: str, rows: int, heads: int) -> int:
    if heads <= 0 or rows % heads:
        raise CheckpointError(f"{name}: {rows} rows are not a whole number of {heads} heads",
                              hint="check heads / kv_heads in the recipe")
    return rows // heads


def qkv_blocks(h: Heads, hd: int) -> dict[str, list[tuple[int, int]]]:
    """Row ranges of q, k, v inside a fused tensor of layout ``h.layout``."""
    h.check()
    g = h.heads // h.kv_heads
    if h.layout == "concat":
        return {"q": [(0, h.heads * hd)], "k": [(h.heads * hd, (h.heads + h.kv_heads) * hd)],
                "v": [((h.heads + h.kv_heads) * hd, (h.heads + 2 * h.kv_heads) * hd)]}
    out: dict[str, list[tuple[int, int]]] = {"q": [], "k": [], "v": []}
    for j in range(h.kv_heads):
        base = j * (g + 2) * hd
        out["q"].append((base, base + g * hd))
        out["k"].append((base + g * hd, base + (g + 1) * hd))
        out["v"].append((base + (g + 1) * hd, base + (g + 2) * hd))
    return out


def fuse_qkv(name: str, q: Spec, k: Spec, v: Spec, h: Heads) -> Spec:
    hd = head_dim(q.name, q.rows, h.heads)
    if k.rows != h.kv_heads * hd or v.rows != h.kv_heads * hd:
        raise CheckpointError(f"{name}: k/v have {k.rows}/{v.rows} rows, expected kv_heads x head_dim = "
                              f"{h.kv_heads * hd}", hint="check heads / kv_heads in the recipe")
    h.check()
    if h.layout == "concat":
        return gather(name, [(q, 0, q.rows), (k, 0, k.rows), (v, 0, v.rows)])
    g = h.heads // h.kv_heads
    parts = []
    for j in range(h.kv_heads):
        parts += [(q, j * g * hd, (j + 1) * g * hd), (k, j * hd, (j + 1) * hd), (v, j * hd, (j + 1) * hd)]
    return gather(name, parts)


def split_qkv(fused: Spec, h: Heads) -> dict[str, Spec]:
    hd = head_dim(fused.name, fused.rows, h.heads + 2 * h.kv_heads)
    blocks = qkv_blocks(h, hd)
    return {part: gather(f"{fused.name}:{part}", [(fused, lo, hi) for lo, hi in ranges])
            for part, ranges in blocks.items()}


class Planner:
    """Applies the recipe's stages to the checkpoint's tensors (names -> Spec, ordered)."""

    def __init__(self, ckpt: Checkpoint, recipe: Recipe) -> None:
        self.recipe = recipe
        self.specs: dict[str, Spec] = {}
        for name in ckpt.names:
            e = ckpt.entry(name)
            self.specs[name] = Spec(name, tuple(e.shape), e.dtype,
                                    [Seg(0, e.shape[0] if e.shape else 1, name, 0)] if not e.shape or e.shape[0] else [])
        self.layout: dict[str, object] = {}
        self._calib: dict[str, tuple[dict[str, float], set[str]]] = {}

    def plan(self) -> list[Spec]:
        self._pipeline("merge")  # into global numbering first: the later stages see global names
        self._rename()
        self._transpose(after_fuse=False)
        self._fuse_split()
        self._transpose(after_fuse=True)
        self._pipeline("split")  # out of global numbering last: the earlier stages saw global names
        self._drop()
        self._cast()
        if self.recipe.tp is not None:
            self._tp()
        for name in self.specs:
            check_name(name)
        return [self.specs[n] for n in sorted(self.specs)]

    def _rename(self) -> None:
        for rule in self.recipe.rename:
            pattern = re.compile(rule.pattern)
            renamed: dict[str, Spec] = {}
            for name, spec in self.specs.items():
                new = pattern.sub(rule.replace, name)
                if new in renamed:
                    raise CheckpointError(f"rename {rule.pattern!r} -> {rule.replace!r} maps two tensors to {new!r}")
                renamed[new] = replace(spec, name=new)
            self.specs = renamed

    def _matches(self, tmpl: str) -> list[tuple[str, str | None]]:
        """(name, layer) for every current name matching a template (none is an error: a recipe
        that silently does nothing is a wrong recipe)."""
        pattern = template(tmpl)
        out = []
        for name in sorted(self.specs):
            m = pattern.match(name)
            if m:
                out.append((name, m.groupdict().get("i")))
        if not out:
            raise CheckpointError(f"recipe template {tmpl!r} matches no tensor (after renames)",
                                  hint="check the names with `fabric ckpt show` and the recipe's templates")
        return out

    def _pop(self, name: str, why: str) -> Spec:
        if name not in self.specs:
            raise CheckpointError(f"{why}: no tensor {name!r} (after renames)",
                                  hint="check the names with `fabric ckpt show` and the recipe's templates")
        return self.specs.pop(name)

    def _put(self, spec: Spec) -> None:
        if spec.name in self.specs:
            raise CheckpointError(f"the recipe produces {spec.name!r} twice (it already exists)")
        self.specs[spec.name] = spec

    def _fuse_split(self) -> None:
        r = self.recipe
        for op in r.fuse_qkv:
            for name, i in self._matches(op.q):
                q = self._pop(name, "fuse_qkv")
                k, v = self._pop(fill(op.k, i), "fuse_qkv"), self._pop(fill(op.v, i), "fuse_qkv")
                self._put(replace(fuse_qkv(fill(op.into, i), q, k, v, op), name=fill(op.into, i)))
        for sop in r.split_qkv:
            for name, i in self._matches(sop.fused):
                parts = split_qkv(self._pop(name, "split_qkv"), sop)
                for part, tmpl in (("q", sop.q), ("k", sop.k), ("v", sop.v)):
                    self._put(replace(parts[part], name=fill(tmpl, i)))
        for fop in r.fuse:
            for name, i in self._matches(fop.parts[0]):
                specs = [self._pop(name, "fuse")] + [self._pop(fill(p, i), "fuse") for p in fop.parts[1:]]
                self._put(gather(fill(fop.into, i), [(s, 0, s.rows) for s in specs]))
        for xop in r.split:
            for name, i in self._matches(xop.fused):
                spec = self._pop(name, "split")
                rows = xop.rows or [spec.rows // len(xop.parts)] * len(xop.parts)
                if sum(rows) != spec.rows or len(rows) != len(xop.parts):
                    raise CheckpointError(f"split {name}: {spec.rows} rows cannot be cut into {rows}",
                                          hint="give `rows` with one count per part, summing to the total")
                lo = 0
                for tmpl, n in zip(xop.parts, rows):
                    self._put(gather(fill(tmpl, i), [(spec, lo, lo + n)]))
                    lo += n

    def _pipeline(self, mode: str) -> None:
        from fabric_hpc.checkpoint.convert import pipeline
        p = self.recipe.pipeline
        if p is None or p.mode != mode:
            return
        if p.mode == "merge":
            if p.first or p.last:
                raise CheckpointError("pipeline merge: `first` / `last` apply to split only",
                                      hint="merge strips the stage prefix of every stage's other tensors")
            names = pipeline.merge(self.specs, p.layers, p.stage_layer, p.layer, p.stage)
        else:
            names = pipeline.split(self.specs, p.layers, p.stage_layer, p.layer, p.stage, p.first, p.last)
        self.specs = {names[n]: replace(spec, name=names[n]) for n, spec in self.specs.items()}
        self.layout["pp"] = len(p.layers) if p.mode == "split" else 1
        self.layout["pp_layers"] = list(p.layers) if p.mode == "split" else [sum(p.layers)]

    def _transpose(self, *, after_fuse: bool) -> None:
        for rule in self.recipe.transpose:
            if rule.after_fuse != after_fuse:
                continue
            names = [n for n in self.specs if re.fullmatch(rule.match, n)]
            if not names:
                raise CheckpointError(f"transpose {rule.match!r} matches no tensor"
                                      + (" (after fuse/split)" if after_fuse else " (after renames)"),
                                      hint="check the names with `fabric ckpt show` and the pattern")
            for name in names:
                self.specs[name] = transposed(self.specs[name])

    def _drop(self) -> None:
        for pattern in self.recipe.drop:
            for name in [n for n in self.specs if re.fullmatch(pattern, n)]:  # "if present": none is fine
                del self.specs[name]
        if self.recipe.drop and not self.specs:
            raise CheckpointError("the recipe's drop patterns remove every tensor: the output would be empty",
                                  hint="narrow the drop patterns (they match whole names)")

    def _cast(self) -> None:
        for name, spec in list(self.specs.items()):
            rule = next((c for c in self.recipe.cast if re.fullmatch(c.match, name)), None)
            if rule is None or rule.to == spec.dtype or spec.dtype not in (*FLOAT_DTYPES, *FP8_DTYPES):
                continue  # integer and bool tensors (steps, ids, masks) are never cast
            if spec.dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"cast {name}: cannot convert {spec.dtype} to {rule.to}",
                                      hint="casts go between float32/float16/bfloat16, or from them to fp8 "
                                           "(fp8 sources need their scales to be dequantised)")
            if rule.to in FP8_DTYPES and rule.scale == "channel" and len(spec.shape) < 2:
                raise CheckpointError(f"cast {name}: per-channel fp8 scales need a tensor of 2+ dims",
                                      hint="use scale: tensor for vectors, or exclude it from the pattern")
            self.specs[name] = replace(spec, cast=rule, input_scale=self._input_scale(name, rule))
            if rule.to in FP8_DTYPES and scale_name(name) in self.specs:
                raise CheckpointError(f"cast {name}: its scale {scale_name(name)!r} already exists")
        unused = [c.match for c in self.recipe.cast if not any(re.fullmatch(c.match, n) for n in self.specs)]
        if unused:
            raise CheckpointError(f"cast {unused[0]!r} matches no tensor (after renames and drops)",
                                  hint=_names_hint(self.specs))
        self._calibration_used()

    def _input_scale(self, name: str, rule: Cast) -> float | None:
        """vLLM's static activation scale for the fp8 weight ``name`` (``…weight`` ->
        ``…input_scale``), from the rule's calibration file (amax / fp8 max) or explicit value."""
        if rule.input_scale is None:
            return None
        module = weight_module(name)
        if module is None:
            raise CheckpointError(f"cast {name}: an input_scale goes beside a linear's `.weight`",
                                  hint="limit the rule with input_scale to weight names (e.g. '.*proj\\.weight')")
        if input_scale_name(name) in self.specs:
            raise CheckpointError(f"cast {name}: {input_scale_name(name)!r} already exists",
                                  hint="drop the old input scales first, or leave input_scale out of the rule")
        if rule.input_scale.value is not None:
            return rule.input_scale.value
        path = rule.input_scale.calibration
        assert path is not None
        if path not in self._calib:
            self._calib[path] = (load_calibration(path), set())
        amax, used = self._calib[path]
        if module not in amax and module.replace("/", ".") in amax:  # nested names, HF-style keys
            module = module.replace("/", ".")
        if module not in amax:
            raise CheckpointError(f"cast {name}: calibration file {path} has no activation abs-max for {module!r}",
                                  hint="the file maps module names (the weight name without `.weight`) to amax")
        used.add(module)
        return amax[module] / FP8_MAX[rule.to]

    def _calibration_used(self) -> None:
        for path, (amax, used) in self._calib.items():
            if set(amax) - used:
                raise CheckpointError(f"calibration file {path}: no fp8 weight is cast for "
                                      f"{sorted(set(amax) - used)[:5]}",
                                      hint="check the module names (after renames) and the cast patterns")

    def _tp(self) -> None:
        tp = self.recipe.tp
        assert tp is not None
        n = tp.size
        self.layout["tp"] = n
        for name, spec in list(self.specs.items()):
            att = next((a for a in tp.attention if re.fullmatch(a.match, name)), None)
            if att is not None:
                spec = self._tp_attention(spec, att, n)
            elif any(re.fullmatch(p, name) for p in tp.vocab):
                multiple = tp.vocab_multiple_of or n
                spec = _pad(spec, math.ceil(spec.rows / multiple) * multiple)
            elif any(re.fullmatch(p, name) for p in tp.row):
                if len(spec.shape) < 2:
                    raise CheckpointError(f"tp: {name} is {len(spec.shape)}-d; row parallel splits dim 1")
                self.specs[name] = replace(spec, split=SplitInfo(dim=1, parts=n))
                continue
            elif not any(re.fullmatch(p, name) for p in tp.column):
                continue
            if not spec.shape:
                raise CheckpointError(f"tp: {name} is a scalar and cannot be split")
            self.specs[name] = replace(spec, split=SplitInfo(dim=0, parts=n))

    def _tp_attention(self, spec: Spec, att: AttentionTP, n: int) -> Spec:
        att.check()
        if att.heads % n:
            raise CheckpointError(f"tp {n}: {spec.name} has {att.heads} query heads, not divisible by {n}",
                                  hint="choose a tensor-parallel size that divides the number of heads")
        rep = 1
        if att.kv_heads % n:
            if self.recipe.tp.kv_short == "refuse" or n % att.kv_heads:  # type: ignore[union-attr]
                raise CheckpointError(
                    f"tp {n}: {spec.name} has {att.kv_heads} KV heads; splitting them {n} ways would cut "
                    f"heads in two (torch.chunk does exactly that)",
                    hint=f"use tp <= {att.kv_heads} (a divisor), or set tp.kv_short: replicate "
                         f"(needs tp to be a multiple of {att.kv_heads})")
            rep = n // att.kv_heads
            self.layout["kv_replicas"] = rep
        if att.kind == "q" or (att.kind == "kv" and rep == 1):
            return spec
        if att.kind == "kv":
            hd = head_dim(spec.name, spec.rows, att.kv_heads)
            return gather(spec.name, [(spec, (r // rep) * hd, (r // rep + 1) * hd) for r in range(n)],
                          notes=[f"KV heads replicated x{rep} for tp {n}"])
        hd = head_dim(spec.name, spec.rows, att.heads + 2 * att.kv_heads)
        blocks = qkv_blocks(att, hd)
        qh, kvh = att.heads // n, max(1, att.kv_heads // n)
        q = gather("q", [(spec, lo, hi) for lo, hi in blocks["q"]])
        k = gather("k", [(spec, lo, hi) for lo, hi in blocks["k"]])
        v = gather("v", [(spec, lo, hi) for lo, hi in blocks["v"]])
        parts = []
        for r in range(n):
            kv0 = (r // rep) * hd if rep > 1 else r * kvh * hd
            qs, ks, vs = (q, r * qh * hd, (r + 1) * qh * hd), (k, kv0, kv0 + kvh * hd), (v, kv0, kv0 + kvh * hd)
            if att.layout == "concat":
                parts += [qs, ks, vs]
            else:
                g = qh // kvh
                for j in range(kvh):
                    parts += [(q, qs[1] + j * g * hd, qs[1] + (j + 1) * g * hd),
                              (k, kv0 + j * hd, kv0 + (j + 1) * hd), (v, kv0 + j * hd, kv0 + (j + 1) * hd)]
        notes = [f"rows ordered rank-major for tp {n}"] + ([f"KV heads replicated x{rep}"] if rep > 1 else [])
        return gather(spec.name, parts, notes=notes)


FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}  # torch.finfo(...).max


def scale_name(name: str) -> str:
    """Where an fp8 weight's scale goes: ``...weight`` -> ``...weight_scale`` (vLLM's layout)."""
    return name + "_scale"


def _names_hint(specs: Mapping[str, Spec]) -> str:
    names = sorted(specs)
    return f"patterns match whole tensor names, e.g. {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")

"""Reading and writing fabric description files (``topology/*.yaml``), with line numbers in errors."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fabric_hpc.atomic import write_atomic
from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.inputs import check_path, load_yaml, os_error, output_path, read_text
from fabric_hpc.topology.model import Fabric
from fabric_hpc.topology.spec import FabricSpec
from fabric_hpc.validation import Loc, did_you_mean, parse_model


#: Largest fabric file read (a 16,384-host SuperPOD file is well under 1 MiB).
MAX_FABRIC_BYTES = 16 << 20


class _Lines:
    """Maps a key path in the YAML document to the line where it appears."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Loc, int] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Loc) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                self._walk(value, sub)
                self.lines[sub] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def __call__(self, loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            if tuple(loc[:end]) in self.lines:
                return self.lines[tuple(loc[:end])]
        return None


def parse_spec(text: str, *, source: str = "<string>") -> tuple[FabricSpec, _Lines]:
    """Parse YAML text into a validated spec (schema only) and its line map."""
    data, root = load_yaml(text, source)
    if data is None:  # nothing but blank lines and comments
        raise ConfigError(f"{source}: the file is empty (no YAML document in it)",
                          hint="start from `fabric topology generate superpod --sus 1` or the examples "
                               "in docs/topology.md")
    _check_is_fabric(data, source)
    lines = _Lines(root)
    spec = parse_model(FabricSpec, data, source=source, locate=lines,
                       hint="see docs/topology.md for the fabric file format")
    return spec, lines


def _check_is_fabric(data: Any, source: str) -> None:
    """One line for a mapping none of whose top-level keys is, or is close to, a fabric key (``/etc/shadow``,
    another tool's config): its keys are not listed, so such a file's contents never reach the terminal."""
    if not isinstance(data, dict) or not data:
        return
    fields = list(FabricSpec.model_fields)
    if any(str(k).lower() in fields or did_you_mean(str(k).lower(), fields) for k in data):
        return
    from fabric_hpc.topology.report import plural

    raise ConfigError(f"{source} is not a fabric file: none of its {plural(len(data), 'top-level key')} is a "
                      f"fabric key ({', '.join(fields)})",
                      hint="check that it is the right file; the format: docs/topology.md (or start from "
                           "`fabric topology generate superpod --sus 1`)")


def load_fabric(path: str | os.PathLike[str]) -> Fabric:
    """Load and fully validate a fabric file into a :class:`Fabric`."""
    path = Path(path)
    if not path.exists():
        from fabric_hpc.topology.shipped import shipped_hint

        raise NotFoundError(f"fabric file {str(path)!r} does not exist",
                            hint="give the path of a fabric YAML file (docs/topology.md), or a generator "
                                 "reference such as superpod:sus=4 (`fabric topology generate` writes a file)"
                                 + shipped_hint())
    check_path(path, what="fabric file")
    spec, lines = parse_spec(read_text(path, what="fabric file", limit=MAX_FABRIC_BYTES), source=str(path))
    from fabric_hpc.topology.spec_check import check_spec

    check_spec(spec, source=str(path), locate=lines)
    return Fabric(spec, source=str(path))


def dump_spec(spec: FabricSpec) -> str:
    """YAML text for a spec (defaults omitted, keys in schema order)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data = {"fabric": spec.fabric, **data}
    header = f"# fabric-hpc fabric description (format {spec.fabric}); see docs/topology.md\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


def model_digest(fab: Fabric) -> str:
    """16 hex digits of the SHA-256 of the model's graph, every node and link with its attributes, in sorted
    order: equal for two files that build one model whatever their name, description, comments, key order,
    hostlist spelling or order of entries and features (a running agent records its model; 1.3 s at 16,384
    GPUs). A renamed host type is another model (its name is on its hosts)."""
    import hashlib
    import json

    g = fab.graph
    nodes = sorted((str(n), json.dumps({k: sorted(v) if k == "features" else v for k, v in d.items()},
                                       sort_keys=True)) for n, d in g.nodes(data=True))
    links = sorted((*sorted((str(a), str(b))), json.dumps(d, sort_keys=True))
                   for a, b, d in g.edges(data=True))
    return hashlib.sha256(json.dumps([nodes, links]).encode()).hexdigest()[:16]


def save_spec(spec: FabricSpec, path: str | os.PathLike[str]) -> Path:
    path = output_path(path, what="fabric file")
    try:
        write_atomic(path, dump_spec(spec))
    except OSError as exc:
        raise os_error(exc, "fabric file", path) from None
    return path


from fabric_hpc import DEFAULT_FABRIC  # noqa: E402  (re-exported: fabric_hpc.topology.DEFAULT_FABRIC)


def _parse_params(ref: str, text: str) -> tuple[dict[str, int | float | str], dict[str, str]]:
    """The parameters of a generator reference, as values and as the text written."""
    params: dict[str, int | float | str] = {}
    written: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"fabric reference {ref!r}: {item!r} is not key=value",
                              hint="write e.g. superpod:sus=4 or leaf-spine:hosts=16,hosts_per_leaf=4")
        value, key = value.strip(), key.strip()
        if key in params:
            raise ConfigError(f"fabric reference {ref!r}: {key!r} is given more than once",
                              hint="give each parameter once")
        written[key] = value
        try:
            if not value.isascii() or "_" in value:  # int() also reads '１' and '1_0': kept as text (refused)
                raise ValueError
            params[key] = int(value) if len(value) <= 12 else float(value)
        except ValueError:
            try:
                if not value.isascii() or "_" in value:
                    raise ValueError
                params[key] = float(value)
            except ValueError:
                params[key] = value
        if isinstance(params[key], float) and not math.isfinite(params[key]):
            raise ConfigError(f"fabric reference {ref!r}: {key}={value} is not a finite number",
                              hint="give a number, e.g. superpod:sus=4")
    return params, written


def _check_types(name: str, func: Callable[..., Any], kwargs: dict[str, Any],
                 written: dict[str, str]) -> None:
    """Each parameter has the kind of value its default (or annotation) says: a whole number, a
    number or a name. The message shows the text written (``sus=1e3``), not the number it read."""
    import inspect
    params = inspect.signature(func).parameters
    for key, value in kwargs.items():
        default = params[key].default
        has_default = default not in (None, inspect.Parameter.empty)
        kind = type(default).__name__ if has_default else str(params[key].annotation)
        want = "a whole number" if "int" in kind else "a number" if "float" in kind else None
        if want and (isinstance(value, str) or (want == "a whole number" and not isinstance(value, int))):
            shown = f"{key}={value!r}" if isinstance(value, str) else f"{key}={written.get(key, value)}"
            like = f" like {int(value)}" if isinstance(value, float) and value.is_integer() else ""
            raise ConfigError(f"generator {name!r}: {shown} must be {want}{like}",
                              hint=f"write {name}:{key}={int(value)}" if like else
                              f"e.g. {name}:{key}={default if has_default else 4}")


def open_fabric(ref: str | os.PathLike[str] | None = None) -> Fabric:
    """A fabric from a YAML path or a generator reference (``superpod:sus=4``, ``nvl72:racks=2``,
    ``fat-tree:k=8``, ``leaf-spine:hosts=16``); ``None`` gives the built-in default cluster."""
    import inspect

    from fabric_hpc.topology.generators import GENERATORS

    ref = DEFAULT_FABRIC if ref is None else ref
    if not isinstance(ref, (str, os.PathLike)) or not os.fspath(ref):
        raise ConfigError(f"a fabric is a YAML path or a generator reference, got {ref!r}",
                          hint="e.g. open_fabric('superpod:sus=4') or open_fabric('topology/my-cluster.yaml')")
    text = os.fspath(ref)
    name, _, params = text.partition(":")
    if not Path(text).exists() and ":" not in text:
        from fabric_hpc.topology.shipped import shipped_fabric

        shipped = shipped_fabric(text)  # a fabric file of the wheel, by name
        if shipped is not None:
            return load_fabric(shipped)
    if Path(text).exists() or (name not in GENERATORS and (text.endswith((".yaml", ".yml")) or "/" in text)):
        return load_fabric(text)
    if name not in GENERATORS:
        from fabric_hpc.topology.shipped import shipped_hint

        raise NotFoundError(f"{text!r} is neither a fabric file nor a generator",
                            hint=f"give a YAML path or one of: {', '.join(GENERATORS)} (e.g. superpod:sus=4)"
                                 + shipped_hint())
    func = GENERATORS[name]
    kwargs, written = _parse_params(text, params)
    valid = [p for p in inspect.signature(func).parameters]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"generator {name!r} has no parameter {', '.join(unknown)}",
                          hint=f"valid parameters: {', '.join(valid)}")
    _check_types(name, func, kwargs, written)
    from pydantic import ValidationError

    try:
        spec = func(**kwargs)
    except (TypeError, ValidationError) as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
                           )[:300] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"generator {name!r}: bad parameter value ({detail})",
                          hint=f"valid parameters: {', '.join(valid)}; see docs/topology.md for their ranges"
                          ) from None
    return Fabric(spec, source=text)

"""Reading and writing fabric description files (``topology/*.yaml``), with line numbers in errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology.model import Fabric
from fabric_hpc.topology.spec import FabricSpec
from fabric_hpc.validation import Loc, parse_model


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                  f"(first at line {seen[key]})", hint="each key may appear once")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_spec(text: str, *, source: str = "<string>") -> tuple[FabricSpec, _Lines]:
    """Parse YAML text into a validated spec (schema only) and its line map."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}",
                          hint="check indentation and quoting") from None
    lines = _Lines(root)
    spec = parse_model(FabricSpec, data, source=source, locate=lines,
                       hint="see docs/topology.md for the fabric file format")
    return spec, lines


def load_fabric(path: str | os.PathLike[str]) -> Fabric:
    """Load and fully validate a fabric file into a :class:`Fabric`."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"fabric file {str(path)!r} does not exist",
                            hint="give a path to a topology YAML file, e.g. topology/dgx-h100-superpod-4su.yaml")
    spec, lines = parse_spec(path.read_text(encoding="utf-8"), source=str(path))
    from fabric_hpc.topology.spec import check_spec

    check_spec(spec, source=str(path), locate=lines)
    return Fabric(spec, source=str(path))


def dump_spec(spec: FabricSpec) -> str:
    """YAML text for a spec (defaults omitted, keys in schema order)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data = {"fabric": spec.fabric, **data}
    header = f"# fabric-hpc fabric description (format {spec.fabric}); see docs/topology.md\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


def save_spec(spec: FabricSpec, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_spec(spec), encoding="utf-8")
    os.replace(tmp, path)
    return path


DEFAULT_FABRIC = "superpod:sus=4"


def _parse_params(ref: str, text: str) -> dict[str, int | float | str]:
    params: dict[str, int | float | str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"fabric reference {ref!r}: {item!r} is not key=value",
                              hint="write e.g. superpod:sus=4 or leaf-spine:hosts=16,hosts_per_leaf=4")
        value = value.strip()
        try:
            params[key.strip()] = int(value)
        except ValueError:
            try:
                params[key.strip()] = float(value)
            except ValueError:
                params[key.strip()] = value
    return params


def open_fabric(ref: str | os.PathLike[str] | None = None) -> Fabric:
    """A fabric from a YAML path or a generator reference (``superpod:sus=4``, ``nvl72:racks=2``,
    ``fat-tree:k=8``, ``leaf-spine:hosts=16``); ``None`` gives the built-in default cluster."""
    import inspect

    from fabric_hpc.topology.generators import GENERATORS

    ref = DEFAULT_FABRIC if ref is None else ref
    text = os.fspath(ref)
    if Path(text).exists() or text.endswith((".yaml", ".yml")) or "/" in text:
        return load_fabric(text)
    name, _, params = text.partition(":")
    if name not in GENERATORS:
        raise NotFoundError(f"{text!r} is neither a fabric file nor a generator",
                            hint=f"give a YAML path or one of: {', '.join(GENERATORS)} (e.g. superpod:sus=4)")
    func = GENERATORS[name]
    kwargs = _parse_params(text, params)
    valid = [p for p in inspect.signature(func).parameters]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"generator {name!r} has no parameter {', '.join(unknown)}",
                          hint=f"valid parameters: {', '.join(valid)}")
    try:
        spec = func(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"generator {name!r}: bad parameter value ({exc})",
                          hint="parameters are numbers, e.g. superpod:sus=4") from None
    return Fabric(spec, source=text)

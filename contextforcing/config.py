"""Typed configuration helpers: dotted overrides with type coercion, and JSON round trips.

Every component config is a frozen dataclass that lives next to its owner (`DiTConfig`,
`MemoryConfig`, `WorldConfig`, `TrainConfig`, ...). `override(config, {"train.lr": "1e-5"})` is the
one path by which presets derive variants and by which the CLI's `--set key=value` applies: it
raises on an unknown key and coerces strings to the field's declared type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

__all__ = ["from_dict", "override", "parse_assignments", "to_dict", "to_json"]

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A nested dataclass -> a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def to_json(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) dataclass from `to_dict` output; unknown keys raise."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(names)}")
    values = {
        name: _from_json_value(hints[name], value, f"{cls.__name__}.{name}") for name, value in data.items()
    }
    return cls(**values)


def _from_json_value(annotation: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_dict(annotation, value)
    if get_origin(annotation) is tuple and isinstance(value, list):
        return tuple(value)
    if _is_optional(annotation) and value is not None:
        inner = next(a for a in get_args(annotation) if a is not type(None))
        return _from_json_value(inner, value, where)
    if annotation in _SCALAR_NAMES and (
        isinstance(value, bool) or not isinstance(value, int | float if annotation is float else annotation)
    ):
        raise ValueError(f"{where} must be {_SCALAR_NAMES[annotation]}, got {value!r}")
    if annotation is bool and not isinstance(value, bool):
        raise ValueError(f"{where} must be a bool, got {value!r}")
    return value


def override(config: T, updates: dict[str, Any]) -> T:
    """A copy of `config` with dotted keys replaced, e.g. {"train.lr": 1e-5, "memory.num_slow_frames": 6}.

    String values are coerced to the field's type (so CLI strings work); other values are checked.
    All updates of one section are applied together, so they are validated as a whole.
    Raises ValueError naming the key for an unknown key or a value of the wrong type.
    """
    nested: dict[str, Any] = {}
    for key, value in updates.items():
        *sections, leaf = key.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise ValueError(f"config key {key!r} conflicts with another update")
        target[leaf] = value
    return _apply(config, nested, "")


def _apply(config: Any, updates: dict[str, Any], prefix: str) -> Any:
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"cannot set {prefix.rstrip('.')!r}: {type(config).__name__} has no fields")
    names = {f.name for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    values = {}
    for name, value in updates.items():
        key = prefix + name
        if name not in names:
            raise ValueError(f"unknown config key {key!r}: {type(config).__name__} has {sorted(names)}")
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, name)):
            values[name] = _apply(getattr(config, name), value, key + ".")
        else:
            values[name] = coerce(hints[name], value, key)
    return dataclasses.replace(config, **values)


def _is_optional(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in get_args(annotation)


def coerce(annotation: Any, value: Any, key: str) -> Any:
    """Convert `value` (often a CLI string) to `annotation`, or raise a ValueError naming `key`."""
    if _is_optional(annotation):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    origin = get_origin(annotation)
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ValueError(f"{key} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        item_type = get_args(annotation)[0]
        return tuple(coerce(item_type, item, key) for item in items)
    if dataclasses.is_dataclass(annotation):
        raise ValueError(f"{key} is a section, set one of its fields instead (e.g. {key}.<field>)")
    return _coerce_scalar(annotation, value, key)


_SCALAR_NAMES = {int: "an int", float: "a float", str: "a string"}


def _coerce_scalar(annotation: Any, value: Any, key: str) -> Any:
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{key} must be a bool, got {value!r}")
    if annotation not in _SCALAR_NAMES:
        return value
    wrong = ValueError(f"{key} must be {_SCALAR_NAMES[annotation]}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise wrong
    if annotation is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if annotation is int and isinstance(value, float):
        raise wrong
    try:
        coerced = annotation(value)
    except ValueError:
        raise wrong from None
    if annotation is float and not math.isfinite(coerced):
        # No config knob means anything at NaN or Inf; refusing them here keeps them out of every run.
        raise ValueError(f"{key} must be a finite float, got {value!r}")
    return coerced


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """["a.b=1", "c=x"] -> {"a.b": "1", "c": "x"}; raises on an item without '='."""
    parsed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        parsed[key.strip()] = value.strip()
    return parsed

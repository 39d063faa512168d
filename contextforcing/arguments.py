"""Argument types of the command line: numbers and seeds checked as they are parsed.

Each is an `argparse` `type=`: a value that makes no sense (a negative count, an infinite length, a
seed past `runtime.MAX_SEED`) is refused with one line naming the flag, before anything runs. The memory
of a command is a preset with `--set-memory KEY=VALUE` overrides (`memory_from_flags`).
"""

from __future__ import annotations

import argparse
import math

from contextforcing.config import override
from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.runtime import MAX_SEED

__all__ = [
    "assignments",
    "memory_from_flags",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "positive_seconds",
    "seed",
]


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _finite_float(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise argparse.ArgumentTypeError(
            f"expected a finite number {'>' if positive else '>='} 0, got {text!r}"
        )
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _finite_float(text, positive=False)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _finite_float(text, positive=True)


def seed(text: str) -> int:
    """An integer in [0, MAX_SEED]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, {MAX_SEED}] (2**32 - 1), got {value}")
    return value


def assignments(flag: str, items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` items of a repeatable flag as a dict; raises ValueError naming the flag otherwise."""
    updates = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        updates[key.strip()] = value.strip()
    return updates


def memory_from_flags(base: str | MemoryConfig, items: list[str]) -> MemoryConfig:
    """A memory (a preset's name, or a config) with `--set-memory KEY=VALUE` overrides, coerced by the
    field types."""
    updates = assignments("--set-memory", items)
    config = memory_preset(base) if isinstance(base, str) else base
    try:
        return override(config, updates)
    except ValueError as error:
        raise ValueError(f"--set-memory: {error}") from None

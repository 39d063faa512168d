"""Argument types of the command line: numbers and seeds checked as they are parsed.

Each is an `argparse` `type=`: a value that makes no sense (a negative count, an infinite length, a
seed past `runtime.MAX_SEED`) is refused with one line naming the flag, before anything runs.
"""

from __future__ import annotations

import argparse
import math

from contextforcing.runtime import MAX_SEED

__all__ = ["positive_int", "positive_seconds", "seed"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """An integer in [0, MAX_SEED]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, {MAX_SEED}] (2**32 - 1), got {value}")
    return value

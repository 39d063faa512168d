"""Training presets by name: the miniature's (`contextforcing.world.presets`), each a function returning
an ExperimentConfig."""

from __future__ import annotations

from collections.abc import Callable

from contextforcing.training.config import ExperimentConfig
from contextforcing.world.presets import WORLD_PRESETS

__all__ = ["PRESETS", "preset", "preset_names"]

PRESETS: dict[str, Callable[[], ExperimentConfig]] = {**WORLD_PRESETS}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset(name: str) -> ExperimentConfig:
    """The ExperimentConfig of a named preset; raises ValueError listing the names for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return PRESETS[name]()

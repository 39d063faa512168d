"""Training presets by name: the real-scale Wan2.1 stages (`contextforcing.training.wan_presets`) and the
miniature's (`contextforcing.world.presets`), each a function returning an ExperimentConfig."""

from __future__ import annotations

from collections.abc import Callable

from contextforcing.training.config import ExperimentConfig
from contextforcing.training.wan_presets import WAN_PRESETS
from contextforcing.world.presets import WORLD_PRESETS

__all__ = ["PRESETS", "preset", "preset_names"]

PRESETS: dict[str, Callable[[], ExperimentConfig]] = {**WAN_PRESETS, **WORLD_PRESETS}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset(name: str) -> ExperimentConfig:
    """The ExperimentConfig of a named preset; raises ValueError listing the names for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return PRESETS[name]()

"""The miniature's training configuration: the experiment config with the world as its data section.

`WorldExperimentConfig` is `ExperimentConfig` whose `data` is a `WorldDataConfig`: clips are world
episodes made on the fly (`contextforcing.world.clips`), coded with the shipped world codec unless
`data.codec` names another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from contextforcing.training.config import DataConfig, ExperimentConfig
from contextforcing.world.types import WorldConfig

__all__ = ["WorldDataConfig", "WorldExperimentConfig"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldDataConfig(DataConfig):
    """World clips: the world itself, and how often a teacher clip is drawn around a return."""

    source: str = "world"
    """Always "world"."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """The synthetic world."""
    return_prob: float = 0.0
    """Teacher stages: probability that a clip is redrawn until the subject returns in its target."""
    novelty_prob: float = 0.0
    """Teacher stages: probability that a clip (not redrawn for a return) is redrawn until a subject
    shows an identity nothing before tells (a first entry or a change at the gate, `timeline.novel_frames`)
    in its target: the moments where a model must commit to one identity of many rather than recall one."""
    return_at: Literal["anywhere", "first"] = "anywhere"
    """Where a forced return lands: anywhere in the target, or on its first frame (the door's cue then
    lies on the last context frame, as when a model continues a history up to a return)."""

    def __post_init__(self) -> None:
        if self.source != "world":
            raise ValueError(f"WorldDataConfig.source must be 'world', got {self.source!r}")
        if self.negative_prompt:
            raise ValueError("data.negative_prompt: the world's prompts are a closed set; its guidance is "
                             "against the empty prompt, so leave it empty")  # fmt: skip
        if not 0.0 <= self.return_prob <= 1.0:
            raise ValueError(f"data.return_prob must lie in [0, 1], got {self.return_prob}")
        if not 0.0 <= self.novelty_prob <= 1.0 - self.return_prob:
            raise ValueError(f"data.novelty_prob must lie in [0, 1 - data.return_prob = "
                             f"{1.0 - self.return_prob:g}], got {self.novelty_prob}")  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldExperimentConfig(ExperimentConfig):
    """An experiment trained on the world."""

    data: WorldDataConfig = field(default_factory=WorldDataConfig)
    """World clips."""

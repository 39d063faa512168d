"""A trained run folder (`config.json` + `model/`), loaded for evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from contextforcing.config import from_dict
from contextforcing.inference.streaming import SamplerConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.training.config import ExperimentConfig

__all__ = ["TrainedRun", "load_run"]


@dataclass(frozen=True, slots=True)
class TrainedRun:
    """The resolved experiment config, the trained model (eval mode) and the step it was saved at."""

    folder: Path
    config: ExperimentConfig
    model: CausalDiT
    step: int | None

    @property
    def few_step(self) -> SamplerConfig:
        """The student's few-step sampler, as distillation trained it."""
        return self.config.distill.sampler


def load_run(folder: str | Path, config_class: type[ExperimentConfig] = ExperimentConfig) -> TrainedRun:
    """Load a run folder whose config.json is a `config_class`; raises ValueError naming the folder if
    config.json or model/ is missing."""
    from contextforcing.model.weights import load_model

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model").is_dir():
        raise ValueError(f"{folder} is not a run folder: expected config.json and model/")
    try:
        config = from_dict(config_class, json.loads((folder / "config.json").read_text()))
        step = json.loads((folder / "model" / "config.json").read_text()).get("step")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise ValueError(f"{folder} is not a readable run folder: {error}") from None
    return TrainedRun(folder, config, load_model(folder / "model").eval(), step)

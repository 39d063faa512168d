"""The networks of a stage: the trained model, a frozen teacher, a trainable critic.

    teacher stages   model = the teacher being trained
    ode-init         model = the causal student; teacher = frozen source of ODE trajectories
    dmd / cdmd /     model = the causal student; teacher = frozen "real score" (a context teacher in
    long-tuning      cdmd); critic = trainable "fake score", started from the teacher

All three share one DiTConfig; a checkpoint of another architecture is refused before training starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import load_model
from contextforcing.training.config import ExperimentConfig

__all__ = ["Roles", "build_roles", "load_role"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Roles:
    model: CausalDiT
    teacher: CausalDiT | None = None
    critic: CausalDiT | None = None

    def trainable(self) -> dict[str, nn.Module]:
        roles = {"model": self.model}
        if self.critic is not None:
            roles["critic"] = self.critic
        return roles


def load_role(path: str, config: DiTConfig, device: torch.device, *, seed: int, name: str) -> CausalDiT:
    """Weights from `path` (any supported layout), or a seeded fresh init when `path` is empty."""
    if not path:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return CausalDiT(config).to(device)
    model = load_model(path, device=device)
    if model.config != config:
        differences = {
            field: (getattr(model.config, field), getattr(config, field))
            for field in config.to_dict()
            if getattr(model.config, field) != getattr(config, field)
        }
        raise ValueError(
            f"the {name} checkpoint {path} has another architecture (checkpoint, config): {differences}"
        )
    return model


def build_roles(config: ExperimentConfig, device: torch.device) -> Roles:
    seed, init = config.train.seed, config.init
    if config.stage in ("teacher", "context-teacher"):
        return Roles(model=load_role(init.model, config.model, device, seed=seed, name="model").train())
    if not init.teacher:
        logger.warning(
            "stage %s runs with a randomly initialised teacher (init.teacher is empty)", config.stage
        )
    teacher = (
        load_role(init.teacher, config.model, device, seed=seed, name="teacher").eval().requires_grad_(False)
    )
    # The student starts from the teacher's weights unless told otherwise (CausVid / Self-Forcing).
    model = load_role(init.model or init.teacher, config.model, device, seed=seed, name="model")
    if not config.is_distillation:
        return Roles(model=model.train(), teacher=teacher)
    critic = load_role(init.critic or init.teacher, config.model, device, seed=seed, name="critic")
    return Roles(model=model.train(), teacher=teacher, critic=critic.train())

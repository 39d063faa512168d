"""The networks of a stage (`StageSpec.roles`): a student, a teacher, a critic.

    teacher stages   teacher = the teacher being trained (from `init.model`)
    ode-init         student = the causal student (trained); teacher = frozen source of ODE trajectories
    dmd / cdmd /     student = the causal student (trained); teacher = frozen "real score" (a context
    long-tuning      teacher in cdmd); critic = trainable "fake score", started from the teacher

All three share one DiTConfig; a checkpoint of another architecture is refused before training starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import load_model
from contextforcing.training.config import ExperimentConfig
from contextforcing.training.stages import StageSpec

__all__ = ["Roles", "build_roles", "check_teacher_layout", "load_role"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Roles:
    """The stage's networks; `trained` names the one trained with `config.optim`."""

    trained: str
    student: CausalDiT | None = None
    teacher: CausalDiT | None = None
    critic: CausalDiT | None = None

    @property
    def trained_model(self) -> CausalDiT:
        return getattr(self, self.trained)

    def models(self) -> dict[str, nn.Module]:
        """Every role the stage built, by name: the trained ones first, then the frozen teacher."""
        roles = self.trainable()
        if self.teacher is not None and "teacher" not in roles:
            roles["teacher"] = self.teacher
        return roles

    def trainable(self) -> dict[str, nn.Module]:
        """Trained roles by name: the trained one first, then the critic if any."""
        roles = {self.trained: self.trained_model}
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


_LAYOUT_FIELDS = ("num_sink_frames", "num_slow_frames", "slow_interval", "num_recent_frames", "recent_only",
                  "context_timestep")  # fmt: skip


def check_teacher_layout(config: ExperimentConfig, spec: StageSpec) -> None:
    """Refuse a run that lays out its teacher's context (Contextual DMD with
    `distill.teacher_context="layout"`, or a regression after a true prefix) otherwise than the teacher
    was trained: the layout is read from `teacher.*` of this run's config, and a teacher that is a run's
    `model/` folder has its own beside it (`config.json`)."""
    dist = config.distill
    in_layout = (
        spec.judges_context and dist.teacher_context == "layout"
    ) or dist.regression_prefix_frames > 0
    if not (in_layout and config.init.teacher):
        return
    trained_config = Path(config.init.teacher).parent / "config.json"
    if not trained_config.is_file():
        return
    trained = json.loads(trained_config.read_text()).get("teacher", {})
    for field in _LAYOUT_FIELDS:
        ours = getattr(config.teacher, field)
        if field in trained and trained[field] != ours:
            raise ValueError(
                f"teacher.{field}={ours!r}, but init.teacher {config.init.teacher} was trained with "
                f"{trained[field]!r} ({trained_config}); set teacher.{field}={trained[field]!r}"
            )


def build_roles(config: ExperimentConfig, spec: StageSpec, device: torch.device) -> Roles:
    """The roles of `spec`, loaded from `config.init` (or seeded fresh)."""
    seed, init = config.train.seed, config.init
    check_teacher_layout(config, spec)
    if spec.trained == "teacher":
        teacher = load_role(init.model, config.model, device, seed=seed, name="teacher").train()
        return Roles(trained="teacher", teacher=teacher)
    if not init.teacher:
        logger.warning(
            "stage %s runs with a randomly initialised teacher (init.teacher is empty)", config.stage
        )
    teacher = (
        load_role(init.teacher, config.model, device, seed=seed, name="teacher").eval().requires_grad_(False)
    )
    # The student starts from the teacher's weights unless told otherwise (CausVid / Self-Forcing).
    student = load_role(init.model or init.teacher, config.model, device, seed=seed, name="student")
    if "critic" not in spec.roles:
        return Roles(trained="student", student=student.train(), teacher=teacher)
    critic = load_role(init.critic or init.teacher, config.model, device, seed=seed, name="critic")
    return Roles(trained="student", student=student.train(), teacher=teacher, critic=critic.train())

"""The stages of the pipeline as data: one `StageSpec` per stage, run by the one trainer.

A spec says which roles a stage builds and which one it trains, its step function, whether it keeps
ERFT error banks or may train LoRA adapters, and for distillation how rollouts grow (curriculum), how
chunks exit (exit policy), whether they may continue a true prefix, and whether teacher and critic
judge the target after the student-made context. A new stage is one more entry of `STAGES`.

    teacher          flow matching of the bidirectional teacher on clips of `num_target_frames`
    context-teacher  the long-context teacher: [sink | slow | recent | target], loss on the target,
                     optional Error-Recycling Fine-Tuning (ERFT) and LoRA
    ode-init         regression of the causal student onto the teacher's ODE on the few-step schedule
    dmd              Stage 1, Self-Forcing DMD on short self-rollouts
    cdmd             Stage 2, Contextual DMD: long self-rollouts, teacher and critic see the
                     student-made context
    long-tuning      the LongLive baseline: long rollouts, DMD on short windows from a short teacher
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from contextforcing.training.steps import context_teacher_step, distill_step, ode_init_step, teacher_step

if TYPE_CHECKING:
    from contextforcing.training.config import DistillConfig
    from contextforcing.training.trainer import Run

__all__ = ["STAGES", "StageSpec", "stage_spec"]

Role = Literal["student", "teacher", "critic"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StageSpec:
    """What distinguishes one stage from another."""

    name: str
    step: Callable[[Run, int], dict[str, float]]
    """One training step: draws data, runs the roles, updates, returns float metrics."""
    roles: tuple[Role, ...]
    """The networks built for the stage; the first is the one trained with `config.optim`."""
    error_banks: bool = False
    """Keeps ERFT error banks (when `teacher.erft` is set)."""
    lora: bool = False
    """May train LoRA adapters (`teacher.lora_rank` > 0) instead of every weight."""
    curriculum: bool = False
    """Distillation: rollouts of `distill.min/max_rollout_frames` growing over the decay steps, the
    last `distill.num_frames` judged; without it, rollouts of exactly `distill.num_frames`."""
    exit_policy: Literal["none", "every-chunk", "released"] = "none"
    """Distillation: every chunk exits at the random step with gradient (Self-Forcing), or only the
    chunks of the last `num_grad_frames` do and earlier ones are fully denoised (released code)."""
    prefix: bool = False
    """Distillation: rollouts may continue `distill.prefix_frames` true frames."""
    judges_context: bool = False
    """Teacher and critic see the student-made context before the judged window (Contextual DMD)."""

    @property
    def trained(self) -> Role:
        """The role trained with `config.optim` (and kept as EMA and exported)."""
        return self.roles[0]

    @property
    def is_distillation(self) -> bool:
        return "critic" in self.roles

    def continues_prefix(self, distill: DistillConfig) -> bool:
        """Whether the stage's rollouts may continue `distill.prefix_frames` true frames."""
        return self.prefix and distill.prefix_frames > 0

    def reads_clips(self, distill: DistillConfig) -> bool:
        """Whether the stage draws training clips, not prompts alone: a teacher's stage, rollouts that
        continue a true prefix, or a regression after one (`distill.regression_prefix_frames`)."""
        return (
            self.trained == "teacher"
            or self.continues_prefix(distill)
            or distill.regression_prefix_frames > 0
        )


_DISTILL = {"step": distill_step, "roles": ("student", "teacher", "critic")}

STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(name="teacher", step=teacher_step, roles=("teacher",), lora=True),
        StageSpec(
            name="context-teacher",
            step=context_teacher_step,
            roles=("teacher",),
            error_banks=True,
            lora=True,
        ),
        StageSpec(name="ode-init", step=ode_init_step, roles=("student", "teacher")),
        StageSpec(name="dmd", exit_policy="every-chunk", **_DISTILL),
        StageSpec(
            name="cdmd", curriculum=True, exit_policy="released", prefix=True, judges_context=True, **_DISTILL
        ),
        StageSpec(name="long-tuning", curriculum=True, exit_policy="released", prefix=True, **_DISTILL),
    )
}
"""Every stage, by name."""


def stage_spec(name: str) -> StageSpec:
    """The spec of a stage; raises ValueError listing the stages for an unknown name."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; choose one of {list(STAGES)}")
    return STAGES[name]

"""Pure index arithmetic of the stages: which frames form the context teacher's input, and how a
distillation step rolls out (length, exit steps, which chunks carry gradient, what is judged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from contextforcing.training.config import ContextTeacherConfig, ExperimentConfig

if TYPE_CHECKING:
    from contextforcing.training.stages import StageSpec

__all__ = [
    "DistillPlan",
    "context_teacher_clip_frames",
    "context_teacher_indices",
    "distill_plan",
    "history_indices",
    "rollout_frames",
]


def context_teacher_clip_frames(config: ContextTeacherConfig, num_slow: int) -> int:
    """Length of a context-teacher training clip [sink | num_slow groups of slow_interval | recent |
    target]: each slow frame is the first of its group, one every `slow_interval` frames (two student
    chunks), as the context teacher of Context Forcing is trained."""
    return (
        config.num_sink_frames
        + num_slow * config.slow_interval
        + config.num_recent_frames
        + config.num_target_frames
    )


def context_teacher_indices(config: ContextTeacherConfig, target_start: int) -> list[int]:
    """The frames a context teacher sees before a target at `target_start`: the sink, the most recent
    slow frames (at most `num_slow_frames`, one every `slow_interval` frames, the last one a group
    before the recent window) and the recent frames; with `recent_only`, the recent frames alone.

    The same indices serve training clips (`context_teacher_clip_frames`) and any longer history.
    """
    recent_start = target_start - config.num_recent_frames
    if config.recent_only and recent_start >= 0:
        return list(range(recent_start, target_start))
    if recent_start < config.num_sink_frames:
        raise ValueError(f"a target at frame {target_start} leaves no room for the sink and recent frames")
    room = (recent_start - config.num_sink_frames) // config.slow_interval
    num_slow = min(config.num_slow_frames, room)
    slow = [recent_start - config.slow_interval * (num_slow - k) for k in range(num_slow)]
    return [*range(config.num_sink_frames), *slow, *range(recent_start, target_start)]


def history_indices(config: ContextTeacherConfig, frames: int) -> list[int]:
    """The frames a context teacher sees of a history of `frames` frames before its target: the layout of
    `context_teacher_indices`, or the whole history when it is too short for that layout (the first
    chunks of a video). Training with `history="chunks"` and every sampler use this one function."""
    if frames < config.num_recent_frames + (0 if config.recent_only else config.num_sink_frames):
        return list(range(frames))
    return context_teacher_indices(config, frames)


def rollout_frames(config: ExperimentConfig, spec: StageSpec, step: int, generator: torch.Generator) -> int:
    """The curriculum: L ~ U[min, max(step)] in whole chunks, max growing linearly over the decay steps
    and held at `distill.rollout_cap_frames` if set; `distill.num_frames` for a stage without curriculum."""
    dist, chunk = config.distill, config.memory.frames_per_chunk
    if not spec.curriculum:
        return dist.num_frames
    progress = min(1.0, step / dist.rollout_decay_steps)
    low = dist.min_rollout_frames // chunk
    high = min(
        int(low + progress * (dist.max_rollout_frames // chunk - low)), dist.longest_rollout_frames // chunk
    )
    return chunk * int(torch.randint(low, high + 1, (1,), generator=generator))


@dataclass(frozen=True, slots=True)
class DistillPlan:
    """How one distillation step rolls out and what the teacher judges.

    Attributes:
        num_frames: rollout length L.
        exit_steps: per chunk, the number of denoising predictions.
        grad_chunks: per chunk, whether its exit prediction keeps gradient.
        target_start: first judged frame (the judged window is [target_start, L)).
        context_start: first frame of the clean context the teacher sees (cdmd window mode).
        teacher_sees_context: whether teacher and critic get a context before the target.
        prefix: whether the rollout continues `distill.prefix_frames` true frames.
    """

    num_frames: int
    exit_steps: tuple[int, ...]
    grad_chunks: tuple[bool, ...]
    target_start: int
    context_start: int
    teacher_sees_context: bool
    prefix: bool = False

    @property
    def first_target_chunk(self) -> int | None:
        return (
            None
            if not self.teacher_sees_context
            else self.target_start // (self.num_frames // len(self.exit_steps))
        )

    def without_gradient(self) -> DistillPlan:
        return replace(self, grad_chunks=(False,) * len(self.grad_chunks))


def distill_plan(
    config: ExperimentConfig, spec: StageSpec, step: int, generator: torch.Generator
) -> DistillPlan:
    """Exit policy "every-chunk" (dmd): every chunk exits at one random step with gradient. "released"
    (cdmd / long-tuning): the last `num_grad_frames` frames get gradient at their exit step; chunks
    starting at or before L - num_grad_frames are fully denoised, the later ones exit at the random
    step. The last `num_frames` are judged, after the student-made context if the stage judges it."""
    dist, chunk = config.distill, config.memory.frames_per_chunk
    every_chunk = spec.exit_policy == "every-chunk"
    length = rollout_frames(config, spec, step, generator)
    prefix = spec.continues_prefix(dist)
    if prefix and dist.mixes_prefix:  # drawn only then, so that other runs draw the plans they always drew
        prefix = float(torch.rand((), generator=generator)) < dist.prefix_prob
        length = dist.prefix_frames + dist.num_frames if prefix else length
    exit_step = 1 + int(torch.randint(len(dist.denoising_steps), (1,), generator=generator))
    num_chunks = length // chunk
    grad_from = length - (dist.num_frames if every_chunk else dist.num_grad_frames)
    grad = tuple(c * chunk >= grad_from for c in range(num_chunks))
    full = len(dist.denoising_steps)
    if every_chunk:
        exits = (exit_step,) * num_chunks
    else:  # as released: every chunk starting at or before L - num_grad_frames is fully denoised
        exits = tuple(exit_step if c * chunk > grad_from else full for c in range(num_chunks))
    target_start = length - dist.num_frames
    return DistillPlan(
        num_frames=length,
        exit_steps=exits,
        grad_chunks=grad,
        target_start=target_start,
        context_start=max(0, target_start - dist.num_context_frames),
        teacher_sees_context=spec.judges_context,
        prefix=prefix,
    )

"""A bidirectional (teacher or critic) model on a target after a clean context, with guidance.

The context teacher is trained on [context | noisy target] and judged, sampled or distilled from in
the same layout: context frames carry the timestep it was trained with (`"zero"`, clean, or
`"target"`, the target's own), and only the target's velocity is read. Guidance runs the conditional
and unconditional branches in one batched forward, the context kept in both. Training (DMD judges,
ODE pairs) and evaluation (continuing a true history) call these same functions.

Shape legend: B batch, C latent channels, F frames, H x W latent size, S text tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from contextforcing.diffusion.guidance import cfg
from contextforcing.diffusion.sampling import EulerConfig, euler_sample
from contextforcing.model.dit import CausalDiT

__all__ = [
    "ContextTimestep",
    "context_velocity",
    "frame_timesteps",
    "guided_velocity",
    "sample_after_context",
]

ContextTimestep = Literal["zero", "target"]


def frame_timesteps(t: Tensor, num_context: int, num_target: int, mode: ContextTimestep) -> Tensor:
    """[B] -> [B, context + target]: context frames at 0 (clean) or at the target's t."""
    context = torch.zeros_like(t) if mode == "zero" else t
    return torch.cat([context[:, None].expand(-1, num_context), t[:, None].expand(-1, num_target)], dim=1)


def context_velocity(
    model: CausalDiT,
    x_t: Tensor,
    t: Tensor,
    text: Tensor,
    context: Tensor | None,
    mode: ContextTimestep = "zero",
) -> Tensor:
    """Velocity [B, C, F, H, W] of the target x_t, after the clean context [B, C, K, H, W] if any."""
    if context is None:
        return model(x_t, t, text)
    frames_t = frame_timesteps(t, context.shape[2], x_t.shape[2], mode)
    return model(torch.cat([context, x_t], dim=2), frames_t, text)[:, :, -x_t.shape[2] :]


def guided_velocity(
    model: CausalDiT,
    x_t: Tensor,
    t: Tensor,
    text: Tensor,
    uncond: Tensor,
    scale: float,
    context: Tensor | None = None,
    mode: ContextTimestep = "zero",
) -> Tensor:
    """cond + scale (cond - uncond), both branches in one forward; a context is kept in both."""
    both_context = None if context is None else torch.cat([context, context])
    both = context_velocity(
        model, torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([text, uncond]), both_context, mode
    )
    cond, unconditional = both.chunk(2)
    return cfg(cond, unconditional, scale)


def sample_after_context(
    model: CausalDiT,
    noise: Tensor,
    text: Tensor,
    uncond: Tensor,
    sampler: EulerConfig,
    context: Tensor | None = None,
    mode: ContextTimestep = "zero",
) -> Tensor:
    """The target sampled from `noise` with the Euler ODE and guidance, after the clean context."""

    def predict(x: Tensor, t: Tensor) -> Tensor:
        return guided_velocity(model, x, t, text, uncond, sampler.guidance_scale, context, mode)

    return euler_sample(predict, noise, sampler.timesteps)

"""Samplers over the flow-matching process, written against a `predict(x_t, t) -> velocity` callable so
that they never know which network, memory or guidance sits behind it.

- `few_step_sample`: the few-step student's sampler (Self-Forcing / CausVid): predict x0 at each
  step of a short list, then re-noise it with fresh noise to the next step.
- `euler_sample`: the deterministic Euler ODE sampler used for teachers and ODE pairs, with the
  teacher's settings in `EulerConfig`.

Shape legend: x is any latent tensor [B, C, F, H, W]; t is [B] (one timestep per sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from contextforcing.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, shift_sigma, x0_from_velocity

__all__ = ["EulerConfig", "Predictor", "euler_sample", "euler_timesteps", "few_step_sample", "fresh_noise"]

Predictor = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True, kw_only=True, slots=True)
class EulerConfig:
    """A teacher's sampler: Euler steps of the ODE on the shifted schedule, with classifier-free guidance."""

    num_steps: int = 20
    """Euler steps from t = 1000 to 0."""
    shift: float = 5.0
    """Timestep shift of the schedule."""
    guidance_scale: float = 3.0
    """CFG scale, cond + g (cond - uncond)."""

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"EulerConfig.num_steps must be >= 1, got {self.num_steps}")

    @property
    def timesteps(self) -> Tensor:
        return euler_timesteps(self.num_steps, self.shift)


def fresh_noise(like: Tensor, generator: torch.Generator | Sequence[torch.Generator]) -> Tensor:
    """Gaussian noise shaped like `like`: from one generator, or one generator per sample so that a
    sample's noise does not depend on which other samples share its batch."""
    if isinstance(generator, torch.Generator):
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    if len(generator) != like.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {like.shape[0]}")
    noise = [torch.randn(like.shape[1:], generator=g, device=g.device) for g in generator]
    return torch.stack(noise).to(like.device, like.dtype)


def _full(x: Tensor, t: float) -> Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)


def few_step_sample(
    predict: Predictor,
    noise: Tensor,
    timesteps: Sequence[float] | Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    *,
    num_steps: int | None = None,
) -> Tensor:
    """Denoise `noise` with x0-prediction and fresh re-noising between steps.

    Args:
        predict: velocity predictor.
        noise: [B, ...] pure noise at timesteps[0].
        timesteps: decreasing timesteps, e.g. `warped_timesteps([1000, 750, 500, 250])`.
        generator: draws the fresh noise of every re-noising; one per sample, or one for the batch.
        num_steps: stop after this many predictions (a random exit step in DMD); default all.

    Returns:
        The last x0 prediction, shaped like `noise`.
    """
    steps = [float(t) for t in timesteps]
    num_steps = len(steps) if num_steps is None else num_steps
    if not 1 <= num_steps <= len(steps):
        raise ValueError(f"num_steps must be in [1, {len(steps)}], got {num_steps}")
    x = noise
    for i in range(num_steps):
        t = _full(x, steps[i])
        x0 = x0_from_velocity(x, predict(x, t), t)
        if i + 1 < num_steps:
            x = add_noise(x0, fresh_noise(x, generator), _full(x, steps[i + 1]))
    return x0


def euler_timesteps(num_steps: int, shift: float = 5.0) -> Tensor:
    """num_steps + 1 decreasing timesteps of the shifted schedule, from 1000 down to 0 (float64)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift_sigma(sigmas, shift) * NUM_TRAIN_TIMESTEPS


def euler_sample(
    predict: Predictor,
    noise: Tensor,
    timesteps: Sequence[float] | Tensor,
    *,
    on_step: Callable[[float, Tensor], None] | None = None,
) -> Tensor:
    """Integrate dx/dsigma = v from timesteps[0] to timesteps[-1] with Euler steps; `on_step(t, x)` sees
    the state at every timestep before its step (ODE pairs record the states they need)."""
    steps = [float(t) for t in timesteps]
    x = noise
    for t_now, t_next in pairwise(steps):
        if on_step is not None:
            on_step(t_now, x)
        v = predict(x, _full(x, t_now))
        x = x + (t_next - t_now) / NUM_TRAIN_TIMESTEPS * v.to(x.dtype)
    return x

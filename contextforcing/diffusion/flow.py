"""Rectified-flow noise process in the Wan2.1 convention. Pure math on tensors; follows input dtypes.

    x_t = (1 - sigma) * x0 + sigma * noise,        velocity v = noise - x0,        t = 1000 * sigma

A timestep shift s moves probability mass toward high noise:
    sigma' = s * sigma / (1 + (s - 1) * sigma)      (Wan uses s = 5)

Few-step students (Self-Forcing convention) denoise on a "warped" list: nominal steps
[1000, 750, 500, 250] are read off the shifted 1000-step schedule, giving about
[1000, 937.5, 833.3, 625].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "add_noise",
    "noise_from_velocity",
    "sample_training_timesteps",
    "shift_sigma",
    "training_weight",
    "velocity",
    "velocity_from_x0",
    "warped_timesteps",
    "x0_from_velocity",
]

NUM_TRAIN_TIMESTEPS = 1000


def _sigma(t: Tensor, like: Tensor) -> Tensor:
    """Timesteps [B] or [B, F] -> sigma broadcastable against latents [B, C, F, H, W]."""
    sigma = (t / NUM_TRAIN_TIMESTEPS).to(like.dtype)
    if sigma.ndim == 1:
        return sigma.view(-1, *([1] * (like.ndim - 1)))
    if sigma.ndim == 2:  # one timestep per latent frame
        return sigma[:, None, :, None, None]
    raise ValueError(f"timesteps must be [B] or [B, F], got {tuple(t.shape)}")


def shift_sigma(sigma: Tensor, shift: float) -> Tensor:
    """sigma' = s * sigma / (1 + (s - 1) * sigma); identity at s = 1, fixes 0 and 1."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - sigma) x0 + sigma noise."""
    sigma = _sigma(t, x0)
    return (1 - sigma) * x0 + sigma * noise


def velocity(x0: Tensor, noise: Tensor) -> Tensor:
    """The flow-matching target v = noise - x0."""
    return noise - x0


def x0_from_velocity(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """x0 = x_t - sigma v."""
    return x_t - _sigma(t, x_t) * v


def noise_from_velocity(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """noise = x_t + (1 - sigma) v."""
    return x_t + (1 - _sigma(t, x_t)) * v


def velocity_from_x0(x_t: Tensor, x0: Tensor, t: Tensor) -> Tensor:
    """v = (x_t - x0) / sigma; undefined at sigma = 0."""
    return (x_t - x0) / _sigma(t, x_t)


def warped_timesteps(steps: Sequence[float], shift: float = 5.0) -> Tensor:
    """Map nominal denoising steps (e.g. [1000, 750, 500, 250]) onto the shifted schedule, float64.

    Step i sits at sigma = i / 1000 of the unshifted schedule, and is read at the shifted sigma.
    """
    nominal = torch.as_tensor(steps, dtype=torch.float64)
    if nominal.ndim != 1 or len(nominal) == 0:
        raise ValueError(f"steps must be a non-empty list, got {steps}")
    if (nominal <= 0).any() or (nominal > NUM_TRAIN_TIMESTEPS).any():
        raise ValueError(f"steps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {steps}")
    if (nominal[1:] >= nominal[:-1]).any():
        raise ValueError(f"steps must be strictly decreasing, got {steps}")
    return shift_sigma(nominal / NUM_TRAIN_TIMESTEPS, shift) * NUM_TRAIN_TIMESTEPS


def sample_training_timesteps(
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    shift: float = 5.0,
    min_t: float = 0.0,
    max_t: float = float(NUM_TRAIN_TIMESTEPS),
    device: torch.device | str = "cpu",
) -> Tensor:
    """Draw t = 1000 * shift(u), u ~ U[0, 1), then clamp to [min_t, max_t] (float32).

    With shift 5 and [20, 980] this is the DMD timestep rule of Self-Forcing and Context Forcing.
    """
    if not 0 <= min_t <= max_t <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"need 0 <= min_t <= max_t <= {NUM_TRAIN_TIMESTEPS}, got {min_t}, {max_t}")
    u = torch.rand(tuple(shape), generator=generator, device=device, dtype=torch.float64)
    t = shift_sigma(u, shift) * NUM_TRAIN_TIMESTEPS
    return t.clamp(min_t, max_t).float()


def training_weight(t: Tensor) -> Tensor:
    """Wan's training-loss weight over timesteps: a Gaussian bump at t = 500, mean 1 over [0, 1000].

    w(t) = exp(-2 ((t - 500) / 1000)^2), shifted by its minimum over the schedule and normalised.
    """
    grid = torch.linspace(0, NUM_TRAIN_TIMESTEPS, NUM_TRAIN_TIMESTEPS + 1, dtype=torch.float64)
    bump = torch.exp(-2 * ((grid - 500) / NUM_TRAIN_TIMESTEPS) ** 2)
    low, mean = bump.min(), (bump - bump.min()).mean()
    weight = torch.exp(-2 * ((t.to(torch.float64) - 500) / NUM_TRAIN_TIMESTEPS) ** 2)
    return ((weight - low) / mean).to(t.dtype if t.is_floating_point() else torch.float32)

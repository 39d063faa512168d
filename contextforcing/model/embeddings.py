"""The sinusoidal timestep features of the Wan2.1 DiT and its per-frame adaLN modulation.

Shape legend: B batch, F latent frames, T tokens per frame, C model width, S text tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["modulate", "sinusoidal_embedding"]


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """[...] timesteps in [0, 1000] -> [..., dim] float32 features, cosines first (Wan convention).

    The angles are computed in float64, as Wan2.1 does: at t ~ 1000 a float32 angle is off by about
    3e-5 rad, which moved the outputs by about 1e-5 against Wan. (diffusers computes them in float32.)
    """
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / half
    angles = t.to(torch.float64)[..., None] * exponent.exp()
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN with one (shift, scale) per frame: x [B, F*T, C], shift/scale [B, F, C] -> [B, F*T, C] fp32."""
    frames = shift.shape[1]
    x = x.float().unflatten(1, (frames, -1))
    return (x * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2)

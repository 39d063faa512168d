"""3-axis rotary position embedding (time, height, width) from explicit positions, as in Wan2.1.

Each attention head of width D is split into three bands of channel pairs: the first D - 4*(D//6)
channels rotate with the temporal position, the next 2*(D//6) with the row, the last 2*(D//6) with
the column. Pairs are interleaved: channels (2i, 2i+1) form one complex number.

The temporal position of every query and every key is an explicit input, so the caller decides
where each frame sits: absolute time, a bounded slot index (Context Forcing Eq. 8), or a
block-relative offset. Angles are computed in float64 and applied in float32 whatever the model's
dtype, so positions stay exact under bf16.

A `Rotation` holds (cos, sin) pairs as real float32 numbers. Eager code multiplies complex numbers
(one kernel); inside `torch.compile` the same product is written out in real arithmetic, since
inductor generates no code for complex tensors. The two agree to float32 rounding (tested).

Shape legend: F frames, h x w latent patches per frame, L = F*h*w tokens, N heads, D head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Rotation", "apply_rotary", "rotary_for_frames"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """Unit complex numbers exp(i * angle) of L tokens as (cos, sin) pairs, [L, 1, D/2, 2] float32."""

    table: Tensor


def _inverse_frequencies(dim: int, theta: float, device: torch.device) -> Tensor:
    """[dim/2] float64 angular frequencies of one band, theta^(-2i/dim)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim
    return 1.0 / theta**exponents


def rotary_for_frames(
    frame_positions: Tensor, grid: tuple[int, int], dims: tuple[int, int, int], theta: float
) -> Rotation:
    """Rotation for every token of the given frames, frame-major then row then column.

    Args:
        frame_positions: [F] temporal position of each frame (any real dtype).
        grid: (h, w) patches per frame; rows and columns sit at positions 0..h-1 and 0..w-1.
        dims: channels per head rotated by (time, height, width); see DiTConfig.rope_dims.
        theta: frequency base.

    Returns:
        Rotation with phasors of shape [F*h*w, 1, D/2].
    """
    device = frame_positions.device
    h, w = grid
    num_frames = frame_positions.shape[0]
    t_freq, h_freq, w_freq = (_inverse_frequencies(d, theta, device) for d in dims)
    t_angles = frame_positions.to(torch.float64)[:, None] * t_freq  # [F, Dt/2]
    h_angles = torch.arange(h, dtype=torch.float64, device=device)[:, None] * h_freq  # [h, Dh/2]
    w_angles = torch.arange(w, dtype=torch.float64, device=device)[:, None] * w_freq  # [w, Dw/2]
    angles = torch.cat(
        [
            t_angles[:, None, None, :].expand(num_frames, h, w, -1),
            h_angles[None, :, None, :].expand(num_frames, h, w, -1),
            w_angles[None, None, :, :].expand(num_frames, h, w, -1),
        ],
        dim=-1,
    ).reshape(num_frames * h * w, 1, -1)
    return Rotation(table=torch.stack([angles.cos(), angles.sin()], dim=-1).float())  # (L, 1, D/2, 2)


def apply_rotary(x: Tensor, rotation: Rotation) -> Tensor:
    """Rotate interleaved channel pairs of x [B, L, N, D] by `rotation`; returns x's dtype."""
    if torch.compiler.is_compiling():
        return _apply_rotary_real(x, rotation)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (B, L, N, D/2)
    # The table is float32 when made; mixed-precision wrappers may cast it with the block's inputs.
    table = torch.view_as_complex(rotation.table.float().contiguous())
    return torch.view_as_real(pairs * table).flatten(-2).type_as(x)


def _apply_rotary_real(x: Tensor, rotation: Rotation) -> Tensor:
    """`apply_rotary` in real arithmetic: (a + ib)(c + is) = (ac - bs) + i(as + bc)."""
    a, b = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, N, D/2) each
    cos, sin = rotation.table.float().unbind(-1)  # (L, 1, D/2) each
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).type_as(x)

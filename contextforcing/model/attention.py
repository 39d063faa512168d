"""Self- and cross-attention of the Wan2.1 block. No cache logic lives here.

Self-attention projects q, k, v, applies the RMS q/k norm across heads, rotates q and k with the
positions the caller chose (see `rope.py`), and attends with `scaled_dot_product_attention`.
It returns the call's un-rotated keys and values so that a streaming loop can cache them; it
never writes any cache (a context's `on_keys` hook lets the cache's owner update itself from the
call's keys before they are read).

Shape legend: B batch, L query tokens, Lk key tokens, Lc cached tokens, N heads, D head dim,
C = N*D model width, S text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contextforcing.model.layout import LayerContext
from contextforcing.model.rope import Rotation, apply_rotary

__all__ = ["AttentionPlan", "CrossAttention", "RMSNorm", "SelfAttention", "TokenGroup", "attention"]


class RMSNorm(nn.Module):
    """RMS norm over the last dim, computed in float32 (Wan normalises q and k across all heads)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return normed.type_as(x) * self.weight


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """SDPA over [B, L, N, D] tensors; returns [B, L, N, D]. `mask` [L, Lk] or [1, Lk] bool: True = visible."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


@dataclass(frozen=True, slots=True)
class TokenGroup:
    """Query tokens [start, stop) and the key tokens they see: all of them (None), a contiguous run
    (a slice, read as a view), or a [k] long index (gathered)."""

    start: int
    stop: int
    keys: Tensor | slice | None


@dataclass(frozen=True, slots=True)
class AttentionPlan:
    """Everything self-attention needs to know about positions and visibility, built once per read.

    Attributes:
        query_rotation: rotation of the call's L query tokens.
        key_rotation: rotation of the call's own key tokens (after `key_tokens` gathers them).
        key_tokens: [Lk] long gather index of the own key tokens, or None for the L tokens in order.
        groups: query runs with their visible own-key tokens; a single all-seeing group when `mask`
            is set or in mode (c).
        context_rotation: rotation of the cached tokens in mode (c), else None.
        context_keys: the cached keys already rotated by `context_rotation` (their positions do not
            change while the plan lives), or None to rotate them in the call (a context with an
            `on_keys` hook may rewrite them first).
        mask: [L, Lk] or [1, Lk] bool visibility for one SDPA call over all queries (True = visible), or
            None when every query sees every key of its group.
    """

    query_rotation: Rotation
    key_rotation: Rotation
    key_tokens: Tensor | None
    groups: tuple[TokenGroup, ...]
    context_rotation: Rotation | None = None
    context_keys: Tensor | None = None
    mask: Tensor | None = None


class _Projections(nn.Module):
    """q, k, v, o projections and the RMS q/k norms (across all heads), named as in Wan2.1."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)


class SelfAttention(_Projections):
    """Self-attention over the call's tokens and, in mode (c), a read-only context; returns its own K/V."""

    def forward(
        self, x: Tensor, plan: AttentionPlan, context: LayerContext | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, L, C] -> (output [B, L, C], (un-rotated keys, values) of the call, each [B, L, N, D])."""
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(x)).unflatten(-1, heads)
        v = self.v(x).unflatten(-1, heads)
        q_rot = apply_rotary(q, plan.query_rotation)
        own_k, own_v = (k, v) if plan.key_tokens is None else (k[:, plan.key_tokens], v[:, plan.key_tokens])
        keys, values = apply_rotary(own_k, plan.key_rotation), own_v
        if context is not None:
            # Mode (c): the cached frames come first, then the chunk itself; all of it is visible.
            assert plan.context_rotation is not None, "a context needs context_rotation in the plan"
            if context.on_keys is not None:
                context.on_keys(k, v)  # the cache may update itself from this call's keys first
            cached = plan.context_keys
            if cached is None or context.on_keys is not None:
                cached = apply_rotary(context.keys, plan.context_rotation)
            keys = torch.cat([cached, keys], dim=1)  # (B, Lc + Lk, N, D)
            values = torch.cat([context.values, values], dim=1)
        out = _grouped_attention(q_rot, keys, values, plan.groups, plan.mask)
        return self.o(out.flatten(2)), (k, v)


def _grouped_attention(
    q: Tensor, k: Tensor, v: Tensor, groups: tuple[TokenGroup, ...], mask: Tensor | None
) -> Tensor:
    """Attention where each run of queries sees its own subset of keys: one SDPA call under `mask`,
    else one per group (slices where a group's keys are a contiguous run)."""
    if len(groups) == 1 and groups[0].keys is None:
        return attention(q, k, v, mask)
    assert mask is None, "a masked plan has a single all-seeing group"
    outputs = []
    for group in groups:
        keys, values = (k, v) if group.keys is None else (k[:, group.keys], v[:, group.keys])
        outputs.append(attention(q[:, group.start : group.stop], keys, values))
    return torch.cat(outputs, dim=1)


class CrossAttention(_Projections):
    """Attention from video tokens to the text; the text's keys and values are computed once per prompt."""

    def text_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded text [B, S, C] -> keys and values, each [B, S, N, D]."""
        heads = (self.num_heads, -1)
        return self.norm_k(self.k(text)).unflatten(-1, heads), self.v(text).unflatten(-1, heads)

    def forward(self, x: Tensor, text_kv: tuple[Tensor, Tensor]) -> Tensor:
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))
        return self.o(attention(q, *text_kv).flatten(2))

"""One Wan2.1 transformer block: adaLN-modulated self-attention, cross-attention to the text, and a
GELU-tanh feed-forward network, with norms and modulation kept in float32.

Parameter names follow the original Wan2.1 checkpoint. Note that in that layout `norm3` is the
(affine) norm before cross-attention and `norm2` the (parameter-free) norm before the FFN.

Shape legend: B batch, F latent frames, T tokens per frame, L = F*T, C model width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contextforcing.model.attention import AttentionPlan, CrossAttention, SelfAttention
from contextforcing.model.embeddings import modulate
from contextforcing.model.layout import LayerContext

__all__ = ["DiTBlock", "FP32LayerNorm", "gated_residual", "modulation_parameter"]


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype; returns float32."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """x + gate * y with one gate per frame, in float32, returned in x's dtype."""
    frames = gate.shape[1]
    update = y.float().unflatten(1, (frames, -1)) * gate[:, :, None]
    return (x.float() + update.flatten(1, 2)).type_as(x)


def modulation_parameter(count: int, dim: int) -> nn.Parameter:
    """[1, count, dim] learned modulation offsets, N(0, 1/dim); left unfilled on the meta device, where a
    model is built only to receive its weights (arithmetic there would import torch's compiler stack)."""
    if torch.empty(0).is_meta:
        return nn.Parameter(torch.empty(1, count, dim))
    return nn.Parameter(torch.randn(1, count, dim) / dim**0.5)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim)
        )
        # Learned offsets of the six modulation vectors (shift, scale, gate for attention and FFN).
        self.modulation = modulation_parameter(6, dim)

    def text_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention keys and values of embedded text (a method of the block, so that a
        sharded block gathers its weights for it)."""
        return self.cross_attn.text_kv(text)

    def forward(
        self,
        x: Tensor,
        e6: Tensor,
        text_kv: tuple[Tensor, Tensor],
        plan: AttentionPlan,
        context: LayerContext | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, L, C], e6 [B, F, 6, C] -> (x [B, L, C], this call's un-rotated (k, v))."""
        shift, scale, gate, ffn_shift, ffn_scale, ffn_gate = (self.modulation[None] + e6.float()).unbind(2)
        y, kv = self.self_attn(modulate(self.norm1(x), shift, scale).type_as(x), plan, context)
        x = gated_residual(x, y, gate)
        x = x + self.cross_attn(self.norm3(x).type_as(x), text_kv)
        y = self.ffn(modulate(self.norm2(x), ffn_shift, ffn_scale).type_as(x))
        return gated_residual(x, y, ffn_gate), kv

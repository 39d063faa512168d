"""CausalDiT: the Wan2.1 video diffusion transformer, runnable bidirectionally, block-causally, or one
chunk at a time against a read-only cache.

    patchify (1, 2, 2) -> + per-frame time embedding -> N x DiTBlock -> modulated head -> unpatchify

The model reads memory and never writes it: `forward(..., context=..., return_kv=True)` returns the
call's un-rotated keys and values, and the streaming loop decides what to keep. Positions and
visibility become a `ForwardPlan` (RoPE tables, the cached keys rotated, masks or query groups);
several calls over the same read (a chunk's denoising passes and its refresh) build it once with
`plan_forward` and pass `plan=`. `plan_chunk` builds the plan of mode (c) from tensors alone, with
no host synchronisation, so that a compiled chunk step can build it inside its graph. (A context may carry
an `on_keys` hook through which the memory updates itself from a call's keys before the call reads
it; the released bookkeeping needs this, see `memory/released.py`.) Parameter names
follow the original Wan2.1 checkpoint, so Wan, diffusers and Self-Forcing weights map onto it
(see `weights.py`).

Shape legend: B batch, C latent channels, F latent frames, H x W latent size, h x w patch grid,
T = h*w tokens per frame, L = F*T, D model width, S text tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from contextforcing.model.attention import AttentionPlan, TokenGroup
from contextforcing.model.block import DiTBlock, FP32LayerNorm, modulation_parameter
from contextforcing.model.config import DiTConfig
from contextforcing.model.embeddings import modulate, sinusoidal_embedding
from contextforcing.model.layout import FrameAttention, LayerContext, bidirectional, query_groups
from contextforcing.model.rope import Rotation, apply_rotary, rotary_for_frames

__all__ = ["CausalDiT", "ForwardPlan", "TextCache"]

KV = tuple[Tensor, Tensor]

MASK_LIMIT = 1 << 22
"""Largest [L, Lk] token mask a plan builds to run all query groups in one SDPA call; above it each
group runs its own call on a slice (or gather) of the keys, so that memory stays linear in L."""


@dataclass(frozen=True, slots=True)
class TextCache:
    """Cross-attention keys and values of a batch of prompts, one (k, v) per layer, each [B, S, N, D]."""

    kv: tuple[KV, ...]


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    """Positions and visibility of a forward, built once for any number of calls with the same frames
    and context (`CausalDiT.plan_forward`, `CausalDiT.plan_chunk`).

    Attributes:
        attention: one AttentionPlan per layer.
        context: mode (c), one LayerContext per layer (None: modes (a) and (b)).
        num_frames: frames of the calls.
        grid: (h, w) patches per frame of the calls.
    """

    attention: tuple[AttentionPlan, ...]
    context: tuple[LayerContext, ...] | None
    num_frames: int
    grid: tuple[int, int]


class Head(nn.Module):
    """Final norm, per-frame (shift, scale) modulation from the time embedding, and projection."""

    def __init__(self, dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim)
        self.modulation = modulation_parameter(2, dim)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        shift, scale = (self.modulation[None] + e.float()[:, :, None]).unbind(2)
        return self.head(modulate(self.norm(x), shift, scale).type_as(x))


class CausalDiT(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_channels, dim, config.patch_size, config.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(
            DiTBlock(dim, config.ffn_dim, config.num_heads, config.eps) for _ in range(config.num_layers)
        )
        patch_volume = config.patch_size[0] * config.patch_size[1] * config.patch_size[2]
        self.head = Head(dim, config.out_channels * patch_volume, config.eps)
        self.activation_checkpointing = False
        """Recompute each block in the backward pass instead of storing its activations."""
        if not self.head.head.weight.is_meta:  # a meta model only receives weights
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Wan2.1's initialisation: Xavier linears, small embedding MLPs, a zero output projection."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for mlp in (self.text_embedding, self.time_embedding):
            for module in mlp:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)

    def encode_text(self, text: Tensor) -> TextCache:
        """Text features [B, S, text_dim], S <= text_len -> per-layer cross-attention K/V [B, text_len, N, D].

        Shorter text is padded with zero features to `text_len`, as Wan2.1 does inside its forward:
        there is no text mask, so the video attends to the embedded padding too, and a prompt's
        output depends on it. Longer text is refused (Wan's encoder truncates to `text_len`).
        """
        cfg = self.config
        if text.ndim != 3 or text.shape[-1] != cfg.text_dim:
            raise ValueError(f"text must be [B, S, {cfg.text_dim}], got {tuple(text.shape)}")
        if text.shape[1] > cfg.text_len:
            raise ValueError(
                f"text has {text.shape[1]} tokens, more than the model's text_len={cfg.text_len}; "
                "truncate it when encoding, as Wan's text encoder does"
            )
        text = F.pad(text, (0, 0, 0, cfg.text_len - text.shape[1]))  # zero features, as Wan pads
        embedded = self.text_embedding(text.to(self.text_embedding[0].weight.dtype))
        return TextCache(kv=tuple(block.text_kv(embedded) for block in self.blocks))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text: Tensor | TextCache,
        *,
        layout: FrameAttention | Sequence[FrameAttention] | None = None,
        context: Sequence[LayerContext] | None = None,
        plan: ForwardPlan | None = None,
        return_kv: bool = False,
    ) -> Tensor | tuple[Tensor, list[KV]]:
        """Flow prediction for latents x, diffusers' conventions.

        Args:
            x: [B, C, F, H, W] noisy latents.
            t: [B] or [B, F] timesteps in [0, 1000], one per sample or per latent frame.
            text: [B, S, text_dim] text features (S <= text_len, zero-padded to it), or a TextCache
                from `encode_text`.
            layout: which frames see which, at which temporal positions; one for all layers or one per
                layer. Defaults to bidirectional attention at positions 0..F-1.
            context: mode (c), one LayerContext per layer; the call's frames then see all cached tokens
                and each other (the layout must not restrict visibility).
            plan: a prebuilt plan (`plan_forward`, `plan_chunk`) instead of `layout` and `context`.
            return_kv: also return the call's un-rotated (k, v) per layer, each [B, L, N, D].

        Returns:
            The flow prediction [B, C_out, F, H, W], and the per-layer K/V if `return_kv`.
        """
        batch, num_frames, grid = self._check_input(x, context)
        t = self._frame_timesteps(t, batch, num_frames)
        text_cache = text if isinstance(text, TextCache) else self.encode_text(text)
        if plan is None:
            plan = self.plan_forward(layout, context, num_frames, grid, device=x.device)
        elif layout is not None or context is not None:
            raise ValueError("pass either a plan or a layout and context, not both")
        elif (plan.num_frames, plan.grid) != (num_frames, grid):
            raise ValueError(
                f"the plan is for {plan.num_frames} frames of {plan.grid}, x has {num_frames} of {grid}"
            )
        plans, context = plan.attention, plan.context
        tokens = self.patch_embedding(x.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = tokens.contiguous()  # [B, L, D]; a strided residual stream would slow every op after it
        e = self.time_embedding(sinusoidal_embedding(t, self.config.freq_dim).to(tokens.dtype))
        e6 = self.time_projection(e).unflatten(-1, (6, -1))
        kvs: list[KV] = []
        for i, block in enumerate(self.blocks):
            layer_context = None if context is None else context[i]
            if self.activation_checkpointing and torch.is_grad_enabled():
                tokens, kv = checkpoint(
                    block, tokens, e6, text_cache.kv[i], plans[i], layer_context, use_reentrant=False
                )
            else:
                tokens, kv = block(tokens, e6, text_cache.kv[i], plans[i], layer_context)
            kvs.append(kv)
        out = self._unpatchify(self.head(tokens, e), num_frames, grid)
        return (out, kvs) if return_kv else out

    def _check_input(
        self, x: Tensor, context: Sequence[LayerContext] | None
    ) -> tuple[int, int, tuple[int, int]]:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be [B, {cfg.in_channels}, F, H, W], got {tuple(x.shape)}")
        _, ph, pw = cfg.patch_size
        if x.shape[3] % ph or x.shape[4] % pw:
            raise ValueError(f"latent size {tuple(x.shape[3:])} is not divisible by the patch {(ph, pw)}")
        if context is not None and len(context) != cfg.num_layers:
            raise ValueError(f"context has {len(context)} layers, the model has {cfg.num_layers}")
        return x.shape[0], x.shape[2], (x.shape[3] // ph, x.shape[4] // pw)

    @staticmethod
    def _frame_timesteps(t: Tensor, batch: int, num_frames: int) -> Tensor:
        """[B] -> [B, 1] or [B, F] -> [B, F]: the modulation broadcasts a single frame over all."""
        if t.shape == (batch,):
            return t[:, None]  # one embedding, broadcast over all frames by the modulation
        if t.shape == (batch, num_frames):
            return t
        raise ValueError(f"t must be [{batch}] or [{batch}, {num_frames}], got {tuple(t.shape)}")

    def plan_forward(
        self,
        layout: FrameAttention | Sequence[FrameAttention] | None,
        context: Sequence[LayerContext] | None,
        num_frames: int,
        grid: tuple[int, int],
        *,
        device: torch.device | None = None,
    ) -> ForwardPlan:
        """The plan of any layout (see `forward`): one AttentionPlan per distinct (layout, positions).

        Query groups are read off the layout's visibility on the host; with a context this delegates
        to `plan_chunk`.
        """
        num_layers = self.config.num_layers
        if layout is None:
            positions = torch.arange(num_frames, device=device)
            layout = bidirectional(num_frames, positions)
        layouts = [layout] * num_layers if isinstance(layout, FrameAttention) else list(layout)
        if len(layouts) != num_layers:
            raise ValueError(f"got {len(layouts)} layouts for {num_layers} layers")
        if context is not None and len(context) != num_layers:
            raise ValueError(f"context has {len(context)} layers, the model has {num_layers}")
        for layer_layout in layouts:
            if layer_layout.query_positions.shape != (num_frames,):
                raise ValueError(
                    f"layout has {layer_layout.query_positions.shape[0]} query frames, x has {num_frames}"
                )
        if context is not None:
            for layer_layout in layouts:
                if not layer_layout.own_keys_in_order:
                    raise ValueError("with a context, the call's own keys must be its frames in order")
                if layer_layout.visible is not None and not bool(layer_layout.visible.all()):
                    raise ValueError("with a context, every frame of the call must see every other frame")
            if any(layer_layout is not layouts[0] for layer_layout in layouts):
                raise ValueError("with a context, all layers read the chunk at the same query positions")
            return self.plan_chunk(layouts[0].query_positions, context, grid)
        memo: dict[int, AttentionPlan] = {}
        plans = []
        for layer_layout in layouts:
            if id(layer_layout) not in memo:
                memo[id(layer_layout)] = self._plan(layer_layout, num_frames, grid)
            plans.append(memo[id(layer_layout)])
        return ForwardPlan(tuple(plans), None, num_frames, grid)

    def plan_chunk(
        self, query_positions: Tensor, context: Sequence[LayerContext], grid: tuple[int, int]
    ) -> ForwardPlan:
        """The plan of mode (c): the chunk's frames at `query_positions` [F] see each other and every
        filled cached frame. Tensor operations only (no host synchronisation), so a compiled graph
        can build it; the cached keys are rotated here, once, unless a context has an `on_keys` hook.
        """
        rope = (grid, self.config.rope_dims, self.config.rope_theta)
        tokens, num_frames = grid[0] * grid[1], query_positions.shape[0]
        query_rotation = rotary_for_frames(query_positions, *rope)
        groups = (TokenGroup(0, num_frames * tokens, None),)
        memo: dict[int, Rotation] = {}
        plans = []
        for layer_context in context:
            positions = layer_context.positions
            if id(positions) not in memo:  # layers reading equal positions share one tensor, so one table
                memo[id(positions)] = rotary_for_frames(positions, *rope)
            rotation = memo[id(positions)]
            rotated = (
                None if layer_context.on_keys is not None else apply_rotary(layer_context.keys, rotation)
            )
            mask = None
            if layer_context.filled is not None:
                own = layer_context.filled.new_ones(num_frames * tokens)
                mask = torch.cat([layer_context.filled.repeat_interleave(tokens), own])[None]  # (1, Lc + L)
            plans.append(AttentionPlan(query_rotation, query_rotation, None, groups, rotation, rotated, mask))
        return ForwardPlan(tuple(plans), tuple(context), num_frames, grid)

    def _plan(self, layout: FrameAttention, num_frames: int, grid: tuple[int, int]) -> AttentionPlan:
        """Modes (a) and (b): one SDPA call under a token mask where it is small, else query groups."""
        rope = (grid, self.config.rope_dims, self.config.rope_theta)
        query_rotation = rotary_for_frames(layout.query_positions, *rope)
        tokens = grid[0] * grid[1]
        if layout.own_keys_in_order:
            key_tokens, key_rotation = None, query_rotation
        else:
            key_tokens = _token_index(layout.key_frames, tokens)
            key_rotation = rotary_for_frames(layout.key_positions, *rope)
        frame_groups = query_groups(layout.visible, num_frames)
        num_keys = layout.key_frames.shape[0] * tokens
        if len(frame_groups) > 1 and num_frames * tokens * num_keys <= MASK_LIMIT:
            mask = layout.visible.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)  # (L, Lk)
            groups = (TokenGroup(0, num_frames * tokens, None),)
            return AttentionPlan(query_rotation, key_rotation, key_tokens, groups, mask=mask)
        groups = tuple(
            TokenGroup(g.start * tokens, g.stop * tokens, _token_keys(g.keys, tokens)) for g in frame_groups
        )
        return AttentionPlan(query_rotation, key_rotation, key_tokens, groups)

    def _unpatchify(self, out: Tensor, num_frames: int, grid: tuple[int, int]) -> Tensor:
        """[B, F*h*w, C*pt*ph*pw] -> [B, C, F*pt, h*ph, w*pw]."""
        pt, ph, pw = self.config.patch_size
        h, w = grid
        out = out.reshape(out.shape[0], num_frames, h, w, pt, ph, pw, self.config.out_channels)
        return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(
            out.shape[0], self.config.out_channels, num_frames * pt, h * ph, w * pw
        )


def _token_keys(frame_keys: Tensor | None, tokens_per_frame: int) -> Tensor | slice | None:
    """The key tokens of a query group's key entries: None (all), a slice for a contiguous run, or an index."""
    if frame_keys is None:
        return None
    first, count = int(frame_keys[0]), frame_keys.shape[0]
    if torch.equal(frame_keys.cpu(), torch.arange(first, first + count)):
        return slice(first * tokens_per_frame, (first + count) * tokens_per_frame)
    return _token_index(frame_keys, tokens_per_frame)


def _token_index(frame_index: Tensor, tokens_per_frame: int) -> Tensor:
    """Token indices [len(frame_index) * T] of the given frames, frame-major."""
    offsets = torch.arange(tokens_per_frame, device=frame_index.device)
    return (frame_index[:, None] * tokens_per_frame + offsets).flatten()

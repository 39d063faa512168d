"""The one autoregressive step shared by inference and training: denoise a chunk against a read-only
memory, then re-encode it clean so the loop can write its K/V.

    denoise_chunk   few-step sampling (x0-prediction, fresh noise at every step) of one chunk
    refresh_chunk   the clean pass at t = context_timestep (0) whose K/V the memory keeps
    write_clean_chunk  write a given clean chunk (a prefix) into the memory through that pass
    recache_memory  re-encode the kept frames under a new prompt (LongLive's KV re-cache)

Training reuses `denoise_chunk` with gradient-step selection: `exit_step` stops sampling early (DMD's
random exit) and `grad_at_exit` lets gradients flow through that last prediction only; every earlier
step runs without autograd.

Shape legend: B batch, C latent channels, F frames per chunk, H x W latent size, U kept frames,
T tokens per frame, N heads, Dh head dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from contextforcing.diffusion.sampling import few_step_sample
from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.context import ContextMemory, MemoryRead, build_memory
from contextforcing.memory.store import StoreShape
from contextforcing.model.dit import CausalDiT, TextCache

__all__ = [
    "DenoiseResult",
    "denoise_chunk",
    "new_memory",
    "recache_memory",
    "refresh_chunk",
    "write_clean_chunk",
]

KV = tuple[Tensor, Tensor]


@dataclass(frozen=True, slots=True)
class DenoiseResult:
    """x0: the chunk's last x0 prediction [B, C, F, H, W]; first_pass_kv: per-layer K/V of the first pass."""

    x0: Tensor
    first_pass_kv: list[KV] | None = None


def new_memory(
    model: CausalDiT, config: MemoryConfig, batch: int, num_frames: int, latent_size: tuple[int, int]
) -> ContextMemory:
    """A preallocated memory for a batch of `num_frames`-frame videos with the model's shapes and dtype."""
    cfg = model.config
    parameter = next(model.parameters())
    shape = StoreShape(
        num_layers=cfg.num_layers, batch=batch, capacity=config.context_capacity(num_frames),
        tokens_per_frame=cfg.tokens_per_frame(*latent_size), num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        latent_shape=(cfg.in_channels, *latent_size),
    )  # fmt: skip
    return build_memory(config, shape, device=parameter.device, dtype=parameter.dtype)


def denoise_chunk(
    model: CausalDiT,
    noise: Tensor,
    text: TextCache,
    read: MemoryRead | None,
    *,
    timesteps: Sequence[float] | Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    exit_step: int | None = None,
    grad_at_exit: bool = False,
    keep_first_pass_kv: bool = False,
) -> DenoiseResult:
    """Few-step sampling of one chunk against the memory's read-only context.

    Args:
        model: the causal DiT.
        noise: [B, C, F, H, W] pure noise at timesteps[0].
        text: the prompt's cross-attention cache (`model.encode_text`).
        read: what the chunk sees (`ContextMemory.read()`), or None for no context at positions 0..F-1.
        timesteps: decreasing timesteps, e.g. `warped_timesteps([1000, 750, 500, 250])`.
        generator: draws the fresh noise of every re-noising (one per sample, or one for the batch).
        exit_step: number of predictions to run (1-based exit); default all of them.
        grad_at_exit: run the exit prediction with autograd enabled; earlier ones never are.
        keep_first_pass_kv: also return the K/V of the first prediction (for decide_on='first-pass').

    Returns:
        DenoiseResult with the exit step's x0 prediction.
    """
    num_steps = len(timesteps) if exit_step is None else exit_step
    if grad_at_exit and read is not None and read.in_call_writes:
        raise ValueError(
            "this memory rewrites itself during the calls that read it (bookkeeping='released'), "
            "which autograd cannot follow; use the clean bookkeeping for training"
        )
    first_pass: list[list[KV]] = []
    calls = 0

    def predict(x: Tensor, t: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        want_kv = keep_first_pass_kv and calls == 1
        with torch.set_grad_enabled(grad_at_exit and calls == num_steps):
            out = model(
                x, t, text, layout=None if read is None else read.layout,
                context=None if read is None else read.context, return_kv=want_kv,
            )  # fmt: skip
        if want_kv:
            out, kv = out
            first_pass.append(kv)
        return out

    with torch.set_grad_enabled(grad_at_exit):
        x0 = few_step_sample(predict, noise, timesteps, generator, num_steps=num_steps)
    return DenoiseResult(x0, first_pass[0] if first_pass else None)


def refresh_chunk(
    model: CausalDiT, x0: Tensor, text: TextCache, read: MemoryRead | None, *, timestep: float = 0.0
) -> list[KV]:
    """The clean pass: per-layer un-rotated (keys, values) of the chunk x0 [B, C, F, H, W] at `timestep`."""
    t = torch.full((x0.shape[0],), float(timestep), device=x0.device, dtype=torch.float32)
    _, kv = model(
        x0, t, text, layout=None if read is None else read.layout,
        context=None if read is None else read.context, return_kv=True,
    )  # fmt: skip
    return kv


@torch.no_grad()
def write_clean_chunk(
    model: CausalDiT,
    memory: ContextMemory,
    x0: Tensor,
    text: TextCache,
    *,
    timestep: float = 0.0,
    prompt_index: int = 0,
) -> None:
    """Write a given clean chunk x0 [B, C, F, H, W] (a prefix) into the memory through the refresh pass;
    its K/V also stand for the first pass where promotions are decided there."""
    kv = refresh_chunk(model, x0, text, memory.read(), timestep=timestep)
    memory.append(kv, x0, first_pass_kv=kv, prompt_index=prompt_index)


def recache_memory(model: CausalDiT, memory: ContextMemory, text: TextCache, *, refresh_sink: bool) -> None:
    """Re-encode every kept frame's clean latent under a new prompt and overwrite its K/V.

    Args:
        model: the causal DiT.
        memory: the memory to refresh in place.
        text: the new prompt's cross-attention cache.
        refresh_sink: also refresh the sink; otherwise the sink keeps the old prompt's K/V.
    """
    frames, latents = memory.kept_frames()
    if not frames:
        return
    layout = memory.recache_layout(frames)
    t = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.float32)
    _, kv = model(latents, t, text, layout=layout, return_kv=True)
    memory.overwrite_frames(frames, kv, refresh_sink=refresh_sink)

"""Self-rollouts for distillation: the student generates a video with its own memory, exactly as at
inference (`inference.rollout.denoise_chunk` + the clean refresh pass), plus gradient-step selection.

Gradient flows only through the exit prediction of the chunks asked for. The refresh pass runs without
autograd on the detached x0, and the memory stores detached K/V, so no gradient reaches an earlier
chunk through the cache (Self-Forcing's in-place cache writes leak it; here it cannot happen). A
chunk that needs gradient reads a copy of the context, because the store is reordered in place
after the chunk.

Shape legend: B batch, C latent channels, F frames, H x W latent size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from contextforcing.inference.rollout import (
    denoise_chunk,
    new_memory,
    reencode_memory,
    refresh_chunk,
    write_clean_chunk,
)
from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.context import ContextMemory, MemoryRead
from contextforcing.model.dit import CausalDiT, TextCache
from contextforcing.model.layout import LayerContext

__all__ = ["Rollout", "copied_read", "prefix_memory", "self_rollout"]


@dataclass(frozen=True, slots=True)
class Rollout:
    """video: [B, C, F, H, W], with autograd history at the chunks that asked for it.

    memory: the student's memory after the last chunk (its layouts say what the student kept).
    """

    video: Tensor
    memory: ContextMemory
    snapshot: Tensor | None = None
    """Clean latents [B, C, U, H, W] the student held in memory just before `snapshot_chunk`."""


def copied_read(read: MemoryRead) -> MemoryRead:
    """A read whose K/V are copies, for a call that keeps autograd history: the store is reordered in
    place after each chunk."""
    if read.context is None:
        return read
    context = [LayerContext(c.keys.clone(), c.values.clone(), c.positions) for c in read.context]
    return replace(read, context=context)


def prefix_memory(
    student: CausalDiT, memory_config: MemoryConfig, text: TextCache, prefix: Tensor, num_frames: int
) -> ContextMemory:
    """A memory for `num_frames`-frame videos holding the clean prefix [B, C, P, H, W] (P whole chunks),
    written chunk by chunk through the refresh pass as `self_rollout` writes a prefix."""
    chunk = memory_config.frames_per_chunk
    if prefix.shape[2] % chunk:
        raise ValueError(f"a prefix of {prefix.shape[2]} frames is not whole chunks of {chunk}")
    memory = new_memory(student, memory_config, prefix.shape[0], num_frames, tuple(prefix.shape[3:]))
    for start in range(0, prefix.shape[2], chunk):
        write_clean_chunk(student, memory, prefix[:, :, start : start + chunk], text)
    return memory


def self_rollout(
    student: CausalDiT,
    memory_config: MemoryConfig,
    text: TextCache,
    noise: Tensor,
    *,
    timesteps: Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    exit_steps: Sequence[int],
    grad_chunks: Sequence[bool],
    snapshot_chunk: int | None = None,
    prefix: Tensor | None = None,
) -> Rollout:
    """Generate noise.shape[2] frames chunk by chunk.

    Args:
        student: the causal DiT.
        memory_config: the student's memory.
        text: the prompts' cross-attention cache.
        noise: [B, C, F, H, W] initial noise of every chunk.
        timesteps: the few-step list.
        generator: fresh noise of the re-noising steps.
        exit_steps: per chunk, predictions to run (len(timesteps) = full denoise).
        grad_chunks: per chunk, whether its exit prediction keeps autograd history.
        snapshot_chunk: record the memory's frames (in frame order) just before this chunk.
        prefix: clean latents [B, C, P, H, W] (P a multiple of the chunk) that stand for the first P
            frames: written into the memory through the refresh pass and returned as they are.
    """
    chunk = memory_config.frames_per_chunk
    num_chunks = noise.shape[2] // chunk
    if len(exit_steps) != num_chunks or len(grad_chunks) != num_chunks:
        raise ValueError(f"need one exit step and one grad flag per chunk ({num_chunks})")
    if prefix is None:
        prefix = noise[:, :, :0]
    num_prefix = prefix.shape[2] // chunk
    if any(grad_chunks[:num_prefix]):
        raise ValueError("a prefix chunk cannot take gradient")
    if snapshot_chunk is not None and snapshot_chunk < num_prefix:
        raise ValueError(
            f"a snapshot before chunk {snapshot_chunk} falls inside the prefix ({num_prefix} chunks)"
        )
    memory = prefix_memory(student, memory_config, text, prefix, noise.shape[2])
    first_pass = memory_config.decide_on == "first-pass"
    outputs, snapshot = [prefix] if num_prefix else [], None
    for index in range(num_prefix, num_chunks):
        if index == snapshot_chunk:
            snapshot = memory.kept_frames()[1].clone()
        reencode_memory(student, memory, text)
        read = memory.read()
        if grad_chunks[index]:
            read = copied_read(read)
        result = denoise_chunk(
            student, noise[:, :, index * chunk : (index + 1) * chunk], text, read, timesteps=timesteps,
            generator=generator, exit_step=exit_steps[index], grad_at_exit=grad_chunks[index],
            keep_first_pass_kv=first_pass,
        )  # fmt: skip
        clean = result.x0.detach()
        with torch.no_grad():
            kv = refresh_chunk(student, clean, text, read)
        first_kv = (
            None
            if result.first_pass_kv is None
            else [(k.detach(), v.detach()) for k, v in result.first_pass_kv]
        )
        memory.append(kv, clean, first_pass_kv=first_kv)
        outputs.append(result.x0)
    return Rollout(torch.cat(outputs, dim=2), memory, snapshot)

"""Does a model recall? Identity recall against gap, continuing a true history.

For each gap G, world episodes are drawn in which the subject leaves and comes back after exactly G
frames, at frame r (a chunk boundary; the door lights up at r - 1). A model continues the true history
[0, r) for `num_target_frames` frames:

- a teacher gets the history laid out as it was trained (sink, sparse slow frames, recent frames; or a
  plain window) and samples the target with an Euler ODE and guidance;
- a student streams it: the history is written into its memory as a prefix, chunk by chunk, and its
  memory policy decides what it keeps; then it generates with its few-step sampler.

The decoded return is read with the world's recall decoder and compared with the true identity. With
8 identities, chance is 1/8. This is the learnability check of the miniature reproduction and the
recall column of its comparison table.

Shape legend: B batch (1 here), C latent channels, F frames, H x W latent size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.diffusion.sampling import EulerConfig
from contextforcing.inference.streaming import SamplerConfig, StreamingGenerator
from contextforcing.inference.teacher import sample_after_context
from contextforcing.memory.config import MemoryConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.runtime import step_generator
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.plan import context_teacher_indices
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall import recall_events
from contextforcing.world.render import render_episode
from contextforcing.world.types import Episode, WorldConfig

__all__ = [
    "Continuer",
    "ProbeConfig",
    "Sampler",
    "probe_recall",
    "student_continuer",
    "student_sampler",
    "teacher_sampler",
]

Sampler = Callable[[Tensor, str, torch.Generator], Tensor]
"""(history latents [1, C, r, H, W], prompt, generator) -> continuation latents [1, C, F, H, W]."""
Continuer = Callable[[Tensor, str, int, torch.Generator], Tensor]
"""(prefix latents [1, C, P, H, W], prompt, frames to add, generator) -> the added latents [1, C, F, H, W]."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeConfig:
    """What the probe measures and how a teacher samples."""

    gaps_seconds: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 18.0, 24.0)
    """Gaps between the subject's two visits."""
    episodes_per_gap: int = 24
    """Returns measured per gap."""
    num_target_frames: int = 21
    """Frames generated after the history."""
    teacher: EulerConfig = field(default_factory=EulerConfig)
    """How a teacher samples: Euler steps, shift and CFG scale (the context is kept in both branches)."""
    seed: int = 0
    """Seed of the episodes and the noise."""


def teacher_sampler(
    model: CausalDiT, layout: ContextTeacherConfig, text_encoder, probe: ProbeConfig
) -> Sampler:
    """A bidirectional teacher continuing its training layout of the history (Euler ODE with CFG)."""
    uncond = text_encoder.encode([""])

    def sample(history: Tensor, prompt: str, generator: torch.Generator) -> Tensor:
        context = history[:, :, context_teacher_indices(layout, history.shape[2])]
        noise = torch.randn(
            (1, history.shape[1], probe.num_target_frames, *history.shape[3:]), generator=generator
        )
        text = text_encoder.encode([prompt])
        return sample_after_context(
            model, noise, text, uncond, probe.teacher, context, layout.context_timestep
        )

    return sample


def student_continuer(
    model: CausalDiT, memory: MemoryConfig, text_encoder, sampler: SamplerConfig | None = None
) -> Continuer:
    """A causal student streaming on from a prefix, which it keeps as its memory policy says.

    The prefix enters the memory through clean refresh passes, so with `decide_on="first-pass"` its
    promotions are decided on clean keys, unlike on the student's own rollouts.
    """

    def go_on(prefix: Tensor, prompt: str, num_frames: int, generator: torch.Generator) -> Tensor:
        streamer = StreamingGenerator(model, memory, latent_size=tuple(prefix.shape[3:]), sampler=sampler)
        num_chunks = -(-num_frames // memory.frames_per_chunk)
        chunks = streamer.stream(text_encoder.encode([prompt]), num_chunks=num_chunks, generator=generator,
                                 prefix=prefix)  # fmt: skip
        return torch.cat(list(chunks), dim=2)[:, :, :num_frames]

    return go_on


def student_sampler(
    model: CausalDiT,
    memory: MemoryConfig,
    text_encoder,
    probe: ProbeConfig,
    sampler: SamplerConfig | None = None,
) -> Sampler:
    """A causal student streaming `probe.num_target_frames` frames on from the history."""
    go_on = student_continuer(model, memory, text_encoder, sampler)
    return lambda history, prompt, generator: go_on(history, prompt, probe.num_target_frames, generator)


def _episode_with_gap(
    gap: int, generator: torch.Generator, world: WorldConfig, target: int
) -> tuple[Episode, int]:
    """An episode whose second visit starts after exactly `gap` hidden frames, cut `target` frames later."""
    episode = sample_episode(4 * (gap + 60), generator, world, gap_frames=gap)
    start = episode.visits[1].enter_frame
    return replace(episode, num_frames=start + target), start


@torch.no_grad()
def probe_recall(sampler: Sampler, codec: Codec, world: WorldConfig, probe: ProbeConfig) -> list[dict]:
    """Recall of the returning identity per gap: [{gap_seconds, count, recall, colour_recall, drawn}];
    a return counts only where a subject is drawn (`drawn`: the share of returns where one is).

    Episode i of gap j comes from its own generator seeded by (seed, j, i), and the sampler's noise
    from another, so every model is judged on exactly the same episodes.
    """
    results = []
    for j, gap_seconds in enumerate(probe.gaps_seconds):
        events, gap = [], round(gap_seconds * world.fps)
        for i in range(probe.episodes_per_gap):
            episodes = step_generator(probe.seed, i, f"probe/gap{j}/episode")
            noise = step_generator(probe.seed, i, f"probe/gap{j}/noise")
            episode, start = _episode_with_gap(gap, episodes, world, probe.num_target_frames)
            events += _judge(sampler, codec, world, episode, start, noise)
        identities = world.identities
        colours = sum(e["drawn"] and identities[e["decoded"]].colour == identities[e["truth"]].colour
                      for e in events)  # fmt: skip
        results.append({
            "gap_seconds": gap_seconds, "count": len(events),
            "recall": sum(e["matches_truth"] for e in events) / len(events), "colour_recall": colours / len(events),
            "drawn": sum(e["drawn"] for e in events) / len(events),
        })  # fmt: skip
    return results


def _judge(sampler: Sampler, codec: Codec, world: WorldConfig, episode: Episode, start: int,
           generator: torch.Generator) -> list[dict]:  # fmt: skip
    """Continue the true history from `start` and read the returning identity."""
    frames = render_episode(episode, world)  # [3, T, H, W]
    history = codec.encode(frames[None, :, :start])
    generated = codec.decode(sampler(history, episode.prompt, generator))[0]
    video = torch.cat([frames[:, :start], generated], dim=1)
    pixels = ((video.clamp(-1, 1) + 1) * 127.5).permute(1, 0, 2, 3)  # [T, 3, H, W] in [0, 255]
    return [e for e in recall_events(pixels, episode, world) if e["frame"] == start]

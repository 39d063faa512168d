"""Does a (context) teacher recall? Identity recall against gap, with a true history.

For each gap G, world episodes are drawn in which the subject leaves and comes back after exactly G
frames, at frame r. The teacher gets the true history laid out as it was trained (sink, sparse slow
frames, recent frames; or a plain window) and samples the 21 frames from r on with an Euler ODE and
guidance. The decoded return is read with the world's recall decoder and compared with the true
identity. With 8 identities, chance is 1/8.

This is the learnability check of the miniature reproduction: a memory teacher must stay above chance
past the window, and a window teacher must fall to chance there.

Shape legend: B batch, C latent channels, F frames, H x W latent size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.data.world import sample_episode
from contextforcing.data.world_render import render_episode
from contextforcing.data.world_types import Episode, WorldConfig
from contextforcing.diffusion.guidance import cfg
from contextforcing.diffusion.sampling import euler_sample, euler_timesteps
from contextforcing.eval.recall import recall_events
from contextforcing.model.dit import CausalDiT
from contextforcing.training.config import ContextTeacherConfig

__all__ = ["ProbeConfig", "history_indices", "probe_teacher"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeConfig:
    """What the probe measures and how the teacher samples."""

    gaps_seconds: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 18.0, 24.0)
    """Gaps between the subject's two visits."""
    episodes_per_gap: int = 24
    """Returns measured per gap."""
    num_steps: int = 20
    """Euler steps of the teacher's ODE."""
    guidance_scale: float = 3.0
    """CFG scale (cond + g (cond - uncond)); the context is kept in both branches."""
    shift: float = 5.0
    """Timestep shift of the sampling schedule."""
    seed: int = 0
    """Seed of the episodes and the noise."""


def history_indices(config: ContextTeacherConfig, target_start: int) -> list[int]:
    """The frames the teacher sees before `target_start`: sink, the most recent slow groups, recent.

    Slow frames sit every `slow_interval` frames, the last one `slow_interval` frames before the recent
    window, as in training (see `training.plan.context_teacher_indices`).
    """
    recent_start = target_start - config.num_recent_frames
    if recent_start < config.num_sink_frames:
        raise ValueError(f"a target at frame {target_start} leaves no room for the sink and recent frames")
    room = (recent_start - config.num_sink_frames) // config.slow_interval
    num_slow = min(config.num_slow_frames, room)
    slow = [recent_start - config.slow_interval * (num_slow - k) for k in range(num_slow)]
    return [*range(config.num_sink_frames), *slow, *range(recent_start, target_start)]


def _episode_with_gap(
    gap: int, generator: torch.Generator, world: WorldConfig, target: int
) -> tuple[Episode, int]:
    """An episode whose second visit starts after exactly `gap` hidden frames, cut `target` frames later."""
    episode = sample_episode(4 * (gap + 60), generator, world, gap_frames=gap)
    start = episode.visits[1].enter_frame
    return replace(episode, num_frames=start + target), start


@torch.no_grad()
def _sample_targets(model: CausalDiT, context: Tensor, text: Tensor, uncond: Tensor, shape, probe: ProbeConfig,
                    generator: torch.Generator) -> Tensor:  # fmt: skip
    noise = torch.randn(shape, generator=generator)
    num_context = context.shape[2]

    def predict(x: Tensor, t: Tensor) -> Tensor:
        frames_t = torch.cat([torch.zeros(x.shape[0], num_context), t[:, None].expand(-1, x.shape[2])], dim=1)
        both = model(
            torch.cat([torch.cat([context, x], 2)] * 2),
            torch.cat([frames_t, frames_t]),
            torch.cat([text, uncond]),
        )[:, :, num_context:]
        cond, unconditional = both.chunk(2)
        return cfg(cond, unconditional, probe.guidance_scale)

    return euler_sample(predict, noise, euler_timesteps(probe.num_steps, probe.shift))


@torch.no_grad()
def probe_teacher(model: CausalDiT, codec: Codec, text_encoder, layout: ContextTeacherConfig,
                  world: WorldConfig, probe: ProbeConfig) -> list[dict]:  # fmt: skip
    """Recall of the returning identity per gap: [{gap_seconds, count, recall, colour_recall}]."""
    generator = torch.Generator().manual_seed(probe.seed)
    target = layout.num_target_frames
    results = []
    for gap_seconds in probe.gaps_seconds:
        gap = round(gap_seconds * world.fps)
        batch = [_episode_with_gap(gap, generator, world, target) for _ in range(probe.episodes_per_gap)]
        events = _judge_batch(model, codec, text_encoder, layout, world, probe, batch, generator)
        hits = sum(e["matches_truth"] for e in events)
        colours = sum(
            world.identities[e["decoded"]].colour == world.identities[e["truth"]].colour for e in events
        )
        count = len(events)
        results.append({"gap_seconds": gap_seconds, "count": count, "recall": hits / count,
                        "colour_recall": colours / count})  # fmt: skip
    return results


def _judge_batch(model, codec, text_encoder, layout, world, probe, batch, generator) -> list[dict]:
    """Sample each episode's target from its true history and read the returning identity."""
    events = []
    for episode, start in batch:
        frames = render_episode(episode, world)  # [3, T, H, W]
        latents = codec.encode(frames[None])
        context = latents[:, :, history_indices(layout, start)]
        text, uncond = text_encoder.encode([episode.prompt]), text_encoder.encode([""])
        shape = (1, latents.shape[1], layout.num_target_frames, *latents.shape[3:])
        sampled = _sample_targets(model, context, text, uncond, shape, probe, generator)
        generated = codec.decode(sampled)[0]  # [3, F, H, W]
        video = torch.cat([frames[:, :start], generated], dim=1)
        pixels = ((video.clamp(-1, 1) + 1) * 127.5).permute(1, 0, 2, 3)  # [T, 3, H, W] in [0, 255]
        events += [e for e in recall_events(pixels, episode, world) if e["frame"] == start]
    return events

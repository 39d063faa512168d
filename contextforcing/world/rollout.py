"""Long rollouts on the world: a student continues a true prefix and runs free for a minute.

The prefix (`prefix_frames`, by default the sink and the subject's first entrance) fixes the scene and
the identity; after it the model invents the rest. Nothing after the prefix is compared frame by frame
with the ground truth (the subject's comings and goings are the model's own), only what must stay:

* identity consistency: in each window, the share of frames that show a subject (found where the frame
  departs from the true background) showing the identity of the prefix;
* presence: the share of frames that show a subject at all (a model that forgets may stop drawing it);
* background error: the mean absolute difference to the true background over the 80 % of non-door
  pixels that differ least (the subject covers at most about 14 %), in [0, 1] units;
* speed: generated frames per second of wall time, measured around the model's generation.

A student streams (`recall_probe.student_continuer`); a teacher continues window after window of its training
target, each from the history laid out as it was trained (`teacher_continuer`, for the short horizon).

Shape legend: T frames, H x W frame size, C latent channels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.eval.windows import windows
from contextforcing.runtime import step_generator
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall import decode_identity, is_drawn
from contextforcing.world.recall_probe import Continuer, Sampler
from contextforcing.world.render import background_frame, fixture_mask, render_episode
from contextforcing.world.types import Episode, WorldConfig

__all__ = [
    "RolloutConfig",
    "read_subjects",
    "rollout_metrics",
    "teacher_continuer",
    "world_rollouts",
]


_DIFFERENT = 48.0  # a pixel departs from the background by more than this mean |RGB| difference (0-255)
_KEPT_SHARE = 0.8  # background error: the share of pixels that differ least


@dataclass(frozen=True, kw_only=True, slots=True)
class RolloutConfig:
    """How long, from which prefix, and how many episodes."""

    seconds: float = 60.0
    """Length of each video, prefix included."""
    prefix_frames: int = 12
    """True frames the model continues (a multiple of the chunk)."""
    episodes: int = 4
    """Videos per seed."""
    window_seconds: float = 10.0
    """Window of the curves."""
    short_seconds: float = 5.0
    """The short horizon: the first seconds after the prefix, also measured on their own."""
    seed: int = 0


def read_subjects(frames: Tensor, background: Tensor, config: WorldConfig) -> list[int | None]:
    """Per frame of float [T, 3, H, W] (0-255), the identity of the subject drawn, or None if there is none.

    A subject is where at least a quarter of a sprite's area departs from `background` [3, H, W]; it is read
    with the recall decoder at the sprite-sized box centred on those pixels.
    """
    size = config.sprite_size
    away = ((frames - background).abs().mean(dim=1) > _DIFFERENT) & ~fixture_mask(config)
    readings: list[int | None] = []
    for frame, mask in zip(frames, away, strict=True):
        if mask.sum() < size * size / 4:
            readings.append(None)
            continue
        ys, xs = torch.nonzero(mask, as_tuple=True)
        x0 = min(max(0, round(float(xs.float().mean())) - size // 2), config.width - size)
        y0 = min(max(0, round(float(ys.float().mean())) - size // 2), config.height - size)
        identity, errors = decode_identity(frame[None], [(x0, y0, x0 + size, y0 + size)], background, config)
        readings.append(identity if is_drawn(errors) else None)
    return readings


def _background_error(frames: Tensor, background: Tensor, config: WorldConfig) -> Tensor:
    """Per frame: mean |frame - background| (0-1) over the least different `_KEPT_SHARE` of non-door pixels."""
    diff = (frames - background).abs().mean(dim=1)[:, ~fixture_mask(config)] / 255.0  # [T, P]
    kept = max(1, int(diff.shape[1] * _KEPT_SHARE))
    return diff.sort(dim=1).values[:, :kept].mean(dim=1)


def _span(shown: Tensor, same: Tensor, error: Tensor, start: int, stop: int) -> dict[str, Any]:
    """Presence, identity consistency (None without a subject) and background error over [start, stop)."""
    count = float(shown[start:stop].sum())
    return {
        "presence": float(shown[start:stop].mean()),
        "identity_consistency": float(same[start:stop].sum()) / count if count else None,
        "background_error": float(error[start:stop].mean()),
    }


def rollout_metrics(
    frames: Tensor,
    episode: Episode,
    config: WorldConfig,
    *,
    prefix_frames: int,
    window_seconds: float,
    short_seconds: float = 5.0,
) -> dict[str, Any]:
    """Metrics of one continuation: frames float [T, 3, H, W] (0-255), the first `prefix_frames` true.

    Returns:
        {"windows": {"0-10s": span, ...} (seconds after the prefix), "short": span of the first
        `short_seconds`, "frames_with_subject", "frames_consistent"}; a span holds presence,
        identity_consistency and background_error.
    """
    background = background_frame(episode, config)
    free = frames[prefix_frames:]
    readings = read_subjects(free, background, config)
    shown = torch.tensor([r is not None for r in readings], dtype=torch.float64)
    same = torch.tensor([r == episode.identity for r in readings], dtype=torch.float64)
    error = _background_error(free, background, config)
    spans = {
        label: _span(shown, same, error, span.start, span.stop)
        for label, span in windows(len(free), config.fps, window_seconds)
    }
    return {
        "windows": spans,
        "short": _span(shown, same, error, 0, round(short_seconds * config.fps)),
        "frames_with_subject": int(shown.sum()),
        "frames_consistent": int(same.sum()),
    }


def teacher_continuer(sampler: Sampler) -> Continuer:
    """A teacher continuing target after target, each conditioned on the whole history so far."""

    def go_on(prefix: Tensor, prompt: str, num_frames: int, generator: torch.Generator) -> Tensor:
        history = prefix
        while history.shape[2] < prefix.shape[2] + num_frames:
            history = torch.cat([history, sampler(history, prompt, generator)], dim=2)
        return history[:, :, prefix.shape[2] : prefix.shape[2] + num_frames]

    return go_on


@torch.no_grad()
def world_rollouts(
    continuer: Continuer, codec: Codec, world: WorldConfig, config: RolloutConfig
) -> dict[str, Any]:
    """Continue `config.episodes` true prefixes to `config.seconds` and measure each; episode i and its
    noise come from generators seeded by (seed, i), so every model sees the same episodes."""
    total = round(config.seconds * world.fps)
    if codec.temporal_factor != 1:
        raise ValueError(
            f"world rollouts need a per-frame codec, this one has temporal_factor {codec.temporal_factor}"
        )
    if not 0 < config.prefix_frames < total:
        raise ValueError(f"prefix_frames must lie in (0, {total}), got {config.prefix_frames}")
    videos, generated, seconds = [], 0, 0.0
    for i in range(config.episodes):
        episode = sample_episode(total, step_generator(config.seed, i, "rollout/episode"), world)
        truth = render_episode(episode, world)  # [3, T, H, W] in [-1, 1]
        prefix = codec.encode(truth[None, :, : config.prefix_frames])
        noise = step_generator(config.seed, i, "rollout/noise")
        start = time.perf_counter()
        latents = continuer(prefix, episode.prompt, total - config.prefix_frames, noise)
        seconds += time.perf_counter() - start
        generated += latents.shape[2]
        video = torch.cat([truth[:, : config.prefix_frames], codec.decode(latents)[0]], dim=1)
        pixels = ((video.clamp(-1, 1) + 1) * 127.5).permute(1, 0, 2, 3)
        metrics = rollout_metrics(pixels, episode, world, prefix_frames=config.prefix_frames,
                                  window_seconds=config.window_seconds, short_seconds=config.short_seconds)  # fmt: skip
        videos.append({"episode": i, "identity": episode.identity, **metrics})
    return {"videos": videos, "frames_per_second": generated / seconds, "summary": _summary(videos)}


def _mean_span(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Spans averaged over videos; identity consistency weighted by each video's presence."""
    known = [
        (s["identity_consistency"], s["presence"]) for s in spans if s["identity_consistency"] is not None
    ]
    weight = sum(p for _, p in known)
    return {
        "presence": sum(s["presence"] for s in spans) / len(spans),
        "identity_consistency": sum(c * p for c, p in known) / weight if weight else None,
        "background_error": sum(s["background_error"] for s in spans) / len(spans),
    }


def _summary(videos: list[dict[str, Any]]) -> dict[str, Any]:
    shown = sum(v["frames_with_subject"] for v in videos)
    return {
        "windows": {
            label: _mean_span([v["windows"][label] for v in videos]) for label in videos[0]["windows"]
        },
        "short": _mean_span([v["short"] for v in videos]),
        "identity_consistency": sum(v["frames_consistent"] for v in videos) / shown if shown else None,
    }

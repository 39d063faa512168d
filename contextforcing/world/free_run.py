"""A minute from the prompt alone: does the world live in what a model makes on its own?

Each video starts from a world prompt and nothing else: a student streams it chunk by chunk with its
memory, a teacher continues target after target, each after the history laid out as it was trained
(`recall_probe.teacher_context`). (`FreeRunConfig.prefix_seconds` gives a model the episode's own first
seconds instead, which tells a first target that fails from one that cannot be continued.) Nothing is
compared with an episode; the pixels alone are judged
(`dynamics`):

* dynamics: presence, visits per minute and dwell times, averaged over the videos and checked against
  the world's own (`dynamics.world_dynamics`, within 25 %);
* free-running recall: on the returns the videos make, the share that come back as they left;
* temporal coherence: transitions the world cannot make, per minute;
* the memory (students with a slow tier): the frames promoted per minute (a frame counts once whichever
  layers promote it), their precision and recall against the video's own events (entries, exits and
  identity changes found in its pixels, within one chunk), and the similarity of every promotion test,
  from which a threshold can be fitted (`fit_threshold`).

Shape legend: B batch (1 here), C latent channels, F frames, H x W latent size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.inference.streaming import SamplerConfig, StreamingGenerator
from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.trace import MemoryTrace
from contextforcing.model.dit import CausalDiT
from contextforcing.runtime import step_generator
from contextforcing.world.dynamics import (
    cast_of,
    coherence,
    detect_subjects,
    dynamics,
    event_scores,
    free_recall,
    living,
    pooled_free_recall,
    recall_by_gap,
    video_background,
    video_events,
)
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall_probe import Continuer
from contextforcing.world.render import background_frame, render_episode
from contextforcing.world.types import WorldConfig

__all__ = [
    "FreeRunConfig",
    "FreeVideo",
    "calibrate_layer_thresholds",
    "calibrate_threshold",
    "fit_threshold",
    "free_runs",
    "mean_promotions",
    "similarity_quantiles",
    "still_videos",
    "student_free_generator",
    "teacher_free_generator",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class FreeRunConfig:
    """How many videos, how long, and from which seed."""

    seconds: float = 60.0
    videos: int = 4
    seed: int = 0
    prefix_seconds: float = 0.0
    """The episode's own first seconds, given before the model takes over (whole chunks; 0: the prompt
    alone). The measures cover the whole video, prefix included."""

    def prefix_frames(self, world: WorldConfig) -> int:
        """The prefix in frames; raises ValueError unless it is whole chunks shorter than the video."""
        frames = round(self.prefix_seconds * world.fps)
        if frames % world.chunk_frames or not 0 <= frames < round(self.seconds * world.fps):
            raise ValueError(
                f"a prefix of {self.prefix_seconds:g} s must be whole chunks of {world.chunk_frames} frames "
                f"at {world.fps:g} fps, shorter than the video's {self.seconds:g} s"
            )
        return frames


@dataclass(frozen=True, slots=True)
class FreeVideo:
    """What a model made from a prompt: its latents and, for a memory with a slow tier, what it kept."""

    latents: Tensor
    """[1, C, F, H, W]."""
    promoted: tuple[int, ...] | None = None
    """Latent frames promoted into the slow tier by any layer; None without promotion tests."""
    layer_similarities: tuple[tuple[float, ...], ...] = ()
    """The similarity of every promotion test, by layer (one row per layer, or one when decisions are
    shared)."""

    @property
    def similarities(self) -> tuple[float, ...]:
        """Every layer's tests, layer by layer."""
        return sum(self.layer_similarities, ())


FreeGenerator = Callable[[str, Tensor, int, torch.Generator], FreeVideo]
"""(prompt, prefix [1, C, P, H, W] (P may be 0), frames to make, generator) -> the video it makes after
the prefix (the prefix not included)."""


def student_free_generator(
    model: CausalDiT, memory: MemoryConfig, text_encoder, sampler: SamplerConfig | None = None
) -> FreeGenerator:
    """A causal student streaming from the prompt alone; its memory trace gives the promotions."""

    def make(prompt: str, prefix: Tensor, num_frames: int, generator: torch.Generator) -> FreeVideo:
        streamer = StreamingGenerator(model, memory, latent_size=tuple(prefix.shape[3:]), sampler=sampler)
        num_chunks = -(-num_frames // memory.frames_per_chunk)
        chunks = streamer.stream(text_encoder.encode([prompt]), num_chunks=num_chunks, generator=generator,
                                 prefix=prefix if prefix.shape[2] else None)  # fmt: skip
        latents = torch.cat(list(chunks), dim=2)[:, :, :num_frames]
        assert streamer.memory is not None
        return _with_trace(latents, streamer.memory.trace)

    return make


def _with_trace(latents: Tensor, trace: MemoryTrace) -> FreeVideo:
    if not trace.config.promotes:  # no promotion to score against the events
        return FreeVideo(latents)
    promoted = sorted({f for record in trace.records for layer in record.layers for f in layer.promoted})
    by_layer = tuple(
        tuple(r.layers[i].similarity for r in trace.records if r.layers[i].similarity is not None)
        for i in range(len(trace.records[0].layers) if trace.records else 0)
    )
    return FreeVideo(latents, tuple(promoted), by_layer)


def teacher_free_generator(continuer: Continuer) -> FreeGenerator:
    """A teacher (`rollout.teacher_continuer`) continuing the prefix, or an empty history."""
    return lambda prompt, prefix, num_frames, generator: FreeVideo(
        continuer(prefix, prompt, num_frames, generator)
    )


def free_video_metrics(
    frames: Tensor, world: WorldConfig, promoted: tuple[int, ...] | None, room: Tensor | None = None
) -> dict[str, Any]:
    """Metrics of one video, frames float [T, 3, H, W] (0-255) at one frame per latent frame, whose
    prompt names the empty room [3, H, W] (0-255), if given (`dynamics.video_background`)."""
    background = video_background(frames, world, room)
    sightings = detect_subjects(frames, world, background)
    out = {
        "background": background.to_dict(),
        "dynamics": dynamics(sightings, world),
        "free_recall": free_recall(sightings, world),
        "cast": cast_of(sightings, world),
        "coherence": coherence(sightings, world),
    }
    if promoted is not None:
        events = video_events(sightings)
        out["promotions"] = {
            **event_scores(list(promoted), events, world.chunk_frames, len(frames), world.fps),
            "events_per_minute": len(events) / (len(frames) / world.fps / 60.0),
        }
    return out


def _made(generate: FreeGenerator, codec: Codec, world: WorldConfig, config: FreeRunConfig):
    """(index, episode, prefix latents, video, generation seconds) of each of `config.videos` videos:
    video i takes the prompt (and the prefix) of the episode seeded by (seed, i) and its noise from
    another generator."""
    num_frames, num_prefix = round(config.seconds * world.fps), config.prefix_frames(world)
    latent_size = (world.height // codec.spatial_factor, world.width // codec.spatial_factor)
    for i in range(config.videos):
        episode = sample_episode(num_frames, step_generator(config.seed, i, "free/episode"), world)
        prefix = torch.zeros(1, codec.latent_channels, 0, *latent_size)
        if num_prefix:
            prefix = codec.encode(render_episode(episode, world)[None, :, :num_prefix])
        start = time.perf_counter()
        made = generate(episode.prompt, prefix, num_frames - num_prefix,
                        step_generator(config.seed, i, "free/noise"))  # fmt: skip
        yield i, episode, prefix, made, time.perf_counter() - start


@torch.no_grad()
def free_runs(
    generate: FreeGenerator,
    codec: Codec,
    world: WorldConfig,
    config: FreeRunConfig,
    keep: Callable[[int, Tensor], None] | None = None,
) -> dict[str, Any]:
    """`config.videos` videos from world prompts alone, each measured, and their summary.

    Video i takes the prompt (and with `config.prefix_seconds` the first seconds) of the episode seeded
    by (seed, i) and its noise from another generator, so every model gets the same prompts and seeds.
    `keep(i, frames)`, if given, receives each video as it is judged: uint8 [T, H, W, 3], prefix included.
    """
    if codec.temporal_factor != 1:
        raise ValueError(
            f"free runs need a per-frame codec, this one has temporal_factor {codec.temporal_factor}"
        )
    videos, similarities, by_layer, seconds = [], [], [], 0.0
    for i, episode, prefix, made, took in _made(generate, codec, world, config):
        seconds += took
        latents = torch.cat([prefix, made.latents], dim=2)
        pixels = ((codec.decode(latents)[0].clamp(-1, 1) + 1) * 127.5).permute(1, 0, 2, 3)
        metrics = free_video_metrics(pixels, world, made.promoted, background_frame(episode, world))
        videos.append({"video": i, "prompt": episode.prompt, **metrics})
        if keep is not None:
            keep(i, pixels.round().to(torch.uint8).permute(0, 2, 3, 1))
        similarities += made.similarities
        by_layer.append(made.layer_similarities)
    made_frames = round(config.seconds * world.fps) - config.prefix_frames(world)
    return {
        "videos": videos,
        "frames_per_second": config.videos * made_frames / seconds if seconds else None,
        "summary": _summary(
            videos,
            world,
            config.seconds,
            similarities,
            [sum(tests, ()) for tests in zip(*by_layer, strict=True)],
            config.prefix_frames(world),
        ),
    }


def still_videos(videos: list[dict[str, Any]]) -> int | None:
    """How many of the measured videos leave a subject standing in one place for more than half of their
    frames: the prompt's room stood in for the median somewhere (`dynamics.video_background`). None if a
    video was measured against its median alone."""
    if any("background" not in video for video in videos):
        return None
    return sum(video["background"]["still_pixels"] > 0 for video in videos)


def mean_promotions(videos: list[dict[str, Any]]) -> dict[str, float | None]:
    """The memory's promotions a minute, their precision and recall against the videos' events, and the
    events a minute, averaged over the videos (a share a video cannot give is left out)."""
    return {key: _mean([v["promotions"][key] for v in videos])
            for key in ("per_minute", "precision", "recall", "events_per_minute")}  # fmt: skip


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _summary(
    videos: list[dict[str, Any]],
    world: WorldConfig,
    seconds: float,
    similarities: list[float],
    by_layer: list[tuple[float, ...]],
    prefix_frames: int,
) -> dict[str, Any]:
    per_video = [v["free_recall"]["returns"] for v in videos]
    out = {
        **living(videos, world, seconds),
        "free_recall_by_gap": recall_by_gap([r for v in per_video for r in v], world.fps),
        "still_videos": still_videos(videos),
    }
    if prefix_frames:
        # the returns the model makes after the episode's own first seconds (those in the prefix are the world's)
        out["after_prefix"] = pooled_free_recall(
            [[r for r in v if r["frame"] >= prefix_frames] for v in per_video]
        )
    if "promotions" in videos[0]:
        out["promotions"] = mean_promotions(videos)
        out["similarity_quantiles"] = similarity_quantiles(similarities)
        out["layer_similarity_quantiles"] = [similarity_quantiles(layer) for layer in by_layer]
    return out


_QUANTILES = (0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0)


def similarity_quantiles(similarities: list[float]) -> dict[str, float] | None:
    """Quantiles of the promotion tests' similarities ({"q0.05": value, ...}); None without a test."""
    if not similarities:
        return None
    values = torch.tensor(similarities, dtype=torch.float64)
    return {f"q{q:g}": float(torch.quantile(values, q)) for q in _QUANTILES}


def fit_threshold(similarities: list[float], share: float) -> float:
    """The threshold tau under which a share `share` of these similarities falls: with it, surprisal
    promotion fires on about that share of the tests (rounded up to a multiple of 1e-4)."""
    if not similarities:
        raise ValueError("fit_threshold needs at least one similarity")
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must lie in (0, 1), got {share}")
    tau = float(torch.quantile(torch.tensor(similarities, dtype=torch.float64), share))
    return min(1.0, math.ceil(tau * 1e4) / 1e4)


@torch.no_grad()
def calibrate_threshold(
    generate: FreeGenerator, codec: Codec, world: WorldConfig, config: FreeRunConfig, share: float
) -> float:
    """`fit_threshold` on the similarities of `config.videos` free runs (prompts and noise as in
    `free_runs`, from `config.seed`; nothing is decoded)."""
    similarities = [s for *_, made, _ in _made(generate, codec, world, config) for s in made.similarities]
    return fit_threshold(similarities, share)


@torch.no_grad()
def calibrate_layer_thresholds(
    generate: FreeGenerator, codec: Codec, world: WorldConfig, config: FreeRunConfig, share: float
) -> tuple[float, ...]:
    """`fit_threshold` in every layer on that layer's own similarities (`MemoryConfig.layer_thresholds`),
    from the same free runs as `calibrate_threshold`."""
    made = [made for *_, made, _ in _made(generate, codec, world, config)]
    layers = zip(*(m.layer_similarities for m in made), strict=True)
    return tuple(fit_threshold([s for video in layer for s in video], share) for layer in layers)

"""A procedural video world with long-range structure: a subject leaves and comes back.

This is the first world (`WorldConfig.version` 1); the second, a cast of subjects whose identities
change at a gate, is drawn by `contextforcing.world.cast` when `version` is 2 (`sample_episode` draws
either).

An episode is a static background (its pattern set by the scene class, which is also the prompt, and
its colours by a palette), two dark doors at the left and right edges, and one large flat-coloured
subject. The subject comes out of a door, walks across the room, leaves through a door and stays away for
a gap of about 1 s to 40 s, then comes back, again and again. Times are nominal: one rendered frame per
latent frame, at `WorldConfig.fps` (4 latent frames per second, as Wan's 16 fps with 4x temporal
compression).

What makes it a test of memory rather than of timing:
    * the subject is never visible in the first `num_sink_frames` frames (the attention sink);
    * every entry lands on a chunk boundary, and on the frame before it the door lights up on the rows
      where the subject will appear (the cue), so *when* and *where* are given and only *what* (the
      identity seen before the gap) has to be remembered;
    * identity-bearing pixels are a large share of the frame (a 24 px sprite in 64x64 is 11-14 %), and
      there are few identities: by default 8 (4 flat colours x square / disc, `world_assets`);
    * the scene-class prompt fixes the background pattern only, never the subject.

Shape legend:
    T  frames        H, W  frame height / width in pixels

All randomness comes from an explicit `torch.Generator`: the same seed gives the same episode.
"""

from __future__ import annotations

import math

import torch

from contextforcing.world.assets import BACKGROUND_PALETTES, SCENE_CLASSES
from contextforcing.world.cast import sample_cast_episode
from contextforcing.world.meta import METADATA_FORMAT, episode_from_metadata, episode_metadata
from contextforcing.world.render import render_episode
from contextforcing.world.types import DOORS, Episode, Visit, WorldClip, WorldConfig

__all__ = [
    "DOORS",
    "METADATA_FORMAT",
    "Episode",
    "Visit",
    "WorldClip",
    "WorldConfig",
    "episode_from_metadata",
    "episode_metadata",
    "sample_clip",
    "sample_episode",
]


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """A uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _sample_gap(generator: torch.Generator, config: WorldConfig) -> int:
    """Log-uniform gap in frames, so that short and long gaps are both common."""
    low, high = math.log(config.min_gap_frames), math.log(config.max_gap_frames + 1)
    value = float(torch.rand((), generator=generator)) * (high - low) + low
    return min(config.max_gap_frames, max(config.min_gap_frames, int(math.exp(value))))


def _sample_visit(
    generator: torch.Generator, config: WorldConfig, enter: int, gap: int, next_gap: int
) -> Visit:
    """A visit entering at `enter`, lengthened so that the next entry lands on a chunk boundary."""
    low = config.min_visit_frames
    length = _randint(generator, low, max(low, round(config.max_visit_seconds * config.fps)))
    length += (-(enter + length + next_gap)) % config.chunk_frames
    max_y = config.height - config.sprite_size
    x_low, x_high = config.door_width, config.width - config.door_width - config.sprite_size
    return Visit(
        enter_frame=enter,
        exit_frame=enter + length,
        gap_frames=gap,
        door_in=DOORS[_randint(generator, 0, 1)],
        door_out=DOORS[_randint(generator, 0, 1)],
        y_in=_randint(generator, 0, max_y),
        y_out=_randint(generator, 0, max_y),
        x_turn=_randint(generator, x_low, x_high),
    )


def sample_episode(
    num_frames: int,
    generator: torch.Generator,
    config: WorldConfig | None = None,
    *,
    gap_frames: int | None = None,
    scene: int | None = None,
) -> Episode:
    """Draw an episode of `num_frames` frames.

    Args:
        num_frames: T, at least 1.
        generator: the only source of randomness.
        config: the world; defaults to `WorldConfig()`.
        gap_frames: if given, every gap (hidden frames between two consecutive visits) has exactly this
            length; otherwise gaps are log-uniform in the config's range.
        scene: if given, the scene class; otherwise drawn.

    Returns:
        The episode (render it with `world_render.render_episode`).
    """
    config = config or WorldConfig()
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if gap_frames is not None and gap_frames < 1:
        raise ValueError(f"gap_frames must be >= 1, got {gap_frames}")
    if scene is not None and not 0 <= scene < len(SCENE_CLASSES):
        raise ValueError(f"scene must be in [0, {len(SCENE_CLASSES)}), got {scene}")
    if config.version == 2:
        return sample_cast_episode(num_frames, generator, config, gap_frames=gap_frames, scene=scene)
    drawn_scene = _randint(generator, 0, len(SCENE_CLASSES) - 1)
    palette = _randint(generator, 0, len(BACKGROUND_PALETTES) - 1)
    identity = _randint(generator, 0, len(config.identities) - 1)
    enter = config.first_entry_frame + config.chunk_frames * _randint(
        generator, 0, config.max_first_entry_chunks - 1
    )
    visits, gap = [], enter
    while enter < num_frames:
        next_gap = gap_frames if gap_frames is not None else _sample_gap(generator, config)
        visits.append(_sample_visit(generator, config, enter, gap, next_gap))
        gap, enter = next_gap, visits[-1].exit_frame + next_gap
    return Episode(
        num_frames=num_frames,
        scene=drawn_scene if scene is None else scene,
        palette=palette,
        identity=identity,
        visits=tuple(visits),
    )


def sample_clip(
    num_frames: int,
    generator: torch.Generator,
    config: WorldConfig | None = None,
    *,
    gap_frames: int | None = None,
    scene: int | None = None,
) -> WorldClip:
    """Draw and render a training clip; arguments as in `sample_episode`.

    Returns:
        A `WorldClip` with frames [3, T, H, W] float32 in [-1, 1], the prompt and the metadata.
    """
    config = config or WorldConfig()
    episode = sample_episode(num_frames, generator, config, gap_frames=gap_frames, scene=scene)
    return WorldClip(
        frames=render_episode(episode, config),
        prompt=episode.prompt,
        metadata=episode_metadata(episode, config),
        episode=episode,
    )

"""Writing a world episode to disk: DIR/video.mp4 and its ground truth DIR/meta.json.

Shape legend:
    T  frames
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from contextforcing.video_io import write_video
from contextforcing.world.assets import SCENE_CLASSES
from contextforcing.world.episodes import WorldConfig, episode_metadata, sample_episode
from contextforcing.world.render import render_episode_uint8

__all__ = ["export_episode", "scene_index"]

logger = logging.getLogger(__name__)


def scene_index(name: str) -> int:
    """Index of a scene class given its name."""
    names = [scene.name for scene in SCENE_CLASSES]
    if name not in names:
        raise ValueError(f"unknown scene {name!r}; valid scenes: {names}")
    return names.index(name)


def _frame_counts(seconds: float, gap_seconds: float | None, config: WorldConfig) -> tuple[int, int | None]:
    """Episode length and forced gap in frames, validated."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    num_frames = round(seconds * config.fps)
    if num_frames < 1:
        raise ValueError(f"seconds={seconds} gives no frame at {config.fps} fps")
    if gap_seconds is None:
        return num_frames, None
    if not gap_seconds > 0:
        raise ValueError(f"gap_seconds must be > 0, got {gap_seconds}")
    return num_frames, max(1, round(gap_seconds * config.fps))


def export_episode(
    out_dir: str | Path,
    *,
    seconds: float,
    seed: int,
    gap_seconds: float | None = None,
    scene: str | None = None,
    config: WorldConfig | None = None,
) -> tuple[Path, Path]:
    """Render one episode and write DIR/video.mp4 and DIR/meta.json.

    Args:
        out_dir: output folder (created).
        seconds: length of the episode; T = round(seconds * fps) frames.
        seed: seed of the episode's generator.
        gap_seconds: if given, every gap lasts this long (rounded to frames).
        scene: if given, the scene class name.
        config: the world; defaults to `WorldConfig()`.

    Returns:
        (video path, metadata path).
    """
    config = config or WorldConfig()
    num_frames, gap_frames = _frame_counts(seconds, gap_seconds, config)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    generator = torch.Generator().manual_seed(seed)
    episode = sample_episode(
        num_frames,
        generator,
        config,
        gap_frames=gap_frames,
        scene=None if scene is None else scene_index(scene),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = write_video(out_dir / "video.mp4", render_episode_uint8(episode, config), config.fps)
    meta_path = out_dir / "meta.json"
    meta = episode_metadata(episode, config)
    meta["seed"] = seed
    meta_path.write_text(json.dumps(meta, indent=1))
    logger.info("wrote %s (%d frames, %s) and %s", video_path, num_frames, episode.prompt, meta_path)
    return video_path, meta_path

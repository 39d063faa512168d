"""Ground-truth metrics for videos of the world: background drift and identity recall.

* Background drift: on pixels that are neither a door nor near the subject's ground-truth box, the mean
  absolute difference (in [0, 1] units) between each frame and the video's own sink frames (the median
  of its first `num_sink_frames` frames), and between each frame and the true background; both averaged
  per window of `window_seconds`.
* Identity recall: `recall.recall_events` for the returns inside the video.
* Whether it lives, from the pixels alone (`dynamics`): presence, visits and dwell times; the returns it
  makes on its own and the share that come back as they left; and the transitions the world cannot make
  (temporal coherence).

Shape legend:
    T  frames        H, W  frame height / width        D  feature width
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from contextforcing.eval.windows import per_window
from contextforcing.world.dynamics import (
    cast_of,
    coherence,
    detect_subjects,
    dynamics,
    free_recall,
    video_background,
)
from contextforcing.world.episodes import Episode, WorldConfig
from contextforcing.world.recall import recall_events
from contextforcing.world.render import background_frame, door_mask, subject_boxes

__all__ = ["background_drift", "world_video_metrics"]

_BOX_MARGIN = 2


def _background_masks(episode: Episode, config: WorldConfig, num_frames: int) -> Tensor:
    """Boolean [T, H, W]: pixels that show only background in the ground truth, with a margin."""
    masks = (~door_mask(config)).unsqueeze(0).repeat(num_frames, 1, 1)
    for frame, box in enumerate(subject_boxes(episode, config)[:num_frames]):
        if box is not None:
            x0, y0, x1, y1 = box
            m = _BOX_MARGIN
            masks[frame, max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = False
    return masks


def background_drift(
    frames: Tensor, episode: Episode, config: WorldConfig, window_seconds: float = 10.0
) -> dict[str, Any]:
    """Background drift curves of frames float [T, 3, H, W] in [0, 255].

    Returns:
        {"drift_from_start": {window: value}, "error_vs_truth": {window: value}, "final_drift": value}.
    """
    masks = _background_masks(episode, config, len(frames)).unsqueeze(1)  # (T, 1, H, W)
    start = frames[: max(1, config.num_sink_frames)].median(dim=0).values
    truth = background_frame(episode, config)

    def masked_mean(diff: Tensor) -> Tensor:
        total = (diff.abs().mean(dim=1, keepdim=True) * masks).sum(dim=(1, 2, 3))
        return total / masks.sum(dim=(1, 2, 3)).clamp_min(1) / 255.0

    drift = per_window(masked_mean(frames - start), config.fps, window_seconds)
    return {
        "drift_from_start": drift,
        "error_vs_truth": per_window(masked_mean(frames - truth), config.fps, window_seconds),
        "final_drift": list(drift.values())[-1],
    }


def world_video_metrics(
    frames: Tensor, episode: Episode, config: WorldConfig, window_seconds: float = 10.0
) -> dict[str, Any]:
    """Pixel-level metrics of uint8 frames [T, H, W, 3]: recall events and background drift against the
    episode, and dynamics, free-running recall, the cast and coherence from the pixels alone."""
    images = frames.permute(0, 3, 1, 2).float()
    background = video_background(images, config, background_frame(episode, config))
    sightings = detect_subjects(images, config, background)
    return {
        "recall_events": recall_events(images, episode, config),
        "background": background_drift(images, episode, config, window_seconds),
        "subject_background": background.to_dict(),
        "dynamics": dynamics(sightings, config),
        "free_recall": free_recall(sightings, config),
        "cast": cast_of(sightings, config),
        "coherence": coherence(sightings, config),
    }

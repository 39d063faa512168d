"""Consecutive time windows of a video, with their labels: the one windowing of every curve.

`windows(num_frames, fps, seconds)` cuts frames 0..T-1 into spans of `round(seconds * fps)` frames
(the last one shorter) labelled by their time in seconds, for example "0-10s", "10-20s", "20-25s".
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["per_window", "windows"]


def windows(num_frames: int, fps: float, seconds: float) -> list[tuple[str, slice]]:
    """(label, frame slice) of each window; the last window holds what is left."""
    step = max(1, round(seconds * fps))
    return [
        (
            f"{start / fps:g}-{min(start + step, num_frames) / fps:g}s",
            slice(start, min(start + step, num_frames)),
        )
        for start in range(0, num_frames, step)
    ]


def per_window(values: Tensor, fps: float, seconds: float) -> dict[str, float]:
    """Means of per-frame values [T] over the windows; keys like "0-10s"."""
    return {label: float(values[span].mean()) for label, span in windows(len(values), fps, seconds)}

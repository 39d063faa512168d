"""VBench-style video scores computed from per-frame features or from the frames themselves.

* `consistency_sums`: VBench's subject / background consistency formula. For frames i >= 1,
  s_i = (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2; a video scores sum_i s_i / (T - 1),
  and a set of videos is frame-weighted (sum of all s_i over the total number of pairs).
* `first_frame_similarity`: the paper's windowed curve (DINO / CLIP-F in its Table 1): at time t, the mean
  cos(f_0, f_i) over frames i with |i / fps - t| <= 0.5 s, for t = 10 s, 20 s, ...
* `dynamic_degree_proxy`: VBench's dynamic-degree rule (top-5 % flow magnitude per pair, threshold
  6 * min(H, W) / 256, at least round(4 * n / 16) moving pairs) on OpenCV Farneback flow instead of RAFT.
  It is a proxy and is named as such.

Shape legend:
    T  frames        H, W  frame height / width        D  feature width
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FLOW_NAME",
    "consistency_sums",
    "dynamic_degree_proxy",
    "first_frame_similarity",
    "window_indices",
]

logger = logging.getLogger(__name__)

FLOW_NAME = "farneback-proxy"
# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma: small windows and many iterations recover
# most of the motion of flat-coloured sprites (OpenCV's usual 15 px window sees about a third of it).
_FARNEBACK = (0.5, 3, 7, 10, 5, 1.1)


def consistency_sums(features: Tensor) -> tuple[float, int]:
    """VBench consistency of one video as (sum of s_i, number of pairs) for L2-normalised features [T, D]."""
    if features.ndim != 2:
        raise ValueError(f"features must be [T, D], got {tuple(features.shape)}")
    if len(features) < 2:
        return 0.0, 0
    to_previous = (features[1:] * features[:-1]).sum(-1).clamp_min(0)
    to_first = (features[1:] * features[:1]).sum(-1).clamp_min(0)
    return float(((to_previous + to_first) / 2).sum()), len(features) - 1


def window_indices(num_frames: int, fps: float, center: float, half_width: float = 0.5) -> list[int]:
    """Frames i < num_frames with |i / fps - center| <= half_width (seconds)."""
    low = max(0, int(np.ceil((center - half_width) * fps - 1e-9)))
    high = min(num_frames - 1, int(np.floor((center + half_width) * fps + 1e-9)))
    return list(range(low, high + 1))


def first_frame_similarity(features: Tensor, fps: float, step_seconds: float = 10.0) -> dict[str, float]:
    """Windowed similarity to frame 0 at t = step, 2 * step, ...; keys like "10s".

    Args:
        features: L2-normalised [T, D].
        fps: frames per second.
        step_seconds: spacing of the timestamps.

    Returns:
        Mean cos(f_0, f_i) over |i / fps - t| <= 0.5 s, for every t whose window holds a frame.
    """
    curve: dict[str, float] = {}
    duration = len(features) / fps
    t = step_seconds
    while t - 0.5 <= duration:
        indices = window_indices(len(features), fps, t)
        if indices:
            curve[f"{t:g}s"] = float((features[indices] @ features[0]).mean())
        t += step_seconds
    return curve


def _gray(frames: Tensor) -> np.ndarray:
    weights = torch.tensor([0.299, 0.587, 0.114])
    return (frames.float() @ weights).round().clamp(0, 255).to(torch.uint8).numpy()


def dynamic_degree_proxy(frames: Tensor, fps: float) -> dict[str, float] | None:
    """VBench's dynamic-degree rule on Farneback optical flow.

    Args:
        frames: uint8 [T, H, W, 3].
        fps: frames per second (frames are subsampled to about 8 fps as in VBench).

    Returns:
        {"dynamic": 0 or 1, "mean_pair_score": mean top-5 % flow magnitude in pixels, "moving_pairs": ...},
        or None when OpenCV (the eval extra) is not installed.
    """
    try:
        import cv2
    except ImportError:
        logger.warning("opencv-python-headless is not installed; dynamic degree proxy skipped")
        return None
    interval = max(1, round(fps / 8))
    gray = _gray(frames[::interval])
    height, width = gray.shape[1:]
    cut = max(1, int(height * width * 0.05))
    scores = []
    for previous, current in itertools.pairwise(gray):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, *_FARNEBACK, 0)
        magnitude = np.sqrt((flow**2).sum(-1)).ravel()
        scores.append(float(np.sort(magnitude)[-cut:].mean()))
    threshold = 6.0 * min(height, width) / 256
    needed = round(4 * len(gray) / 16)
    moving = sum(score > threshold for score in scores)
    return {
        "dynamic": float(bool(scores) and moving >= needed),
        "mean_pair_score": float(np.mean(scores)) if scores else 0.0,
        "moving_pairs": float(moving),
        "num_pairs": float(len(scores)),
    }

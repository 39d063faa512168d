"""Summaries over a set of evaluated videos: frame-weighted consistency and mean curves.

Keys keep the backbone name of the per-video metrics they come from. A reference summarises its own
metrics (`evaluate.Reference.summarise`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["mean_curves", "summarise"]


def mean_curves(curves: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of curves (dicts label -> value); a label averages over the curves that have it."""
    labels: dict[str, list[float]] = {}
    for curve in curves:
        for label, value in curve.items():
            labels.setdefault(label, []).append(value)
    return {label: sum(values) / len(values) for label, values in labels.items()}


def _backbone_summary(videos: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    keys = {key for video in videos for key in video}
    for key in sorted(keys):
        present = [video[key] for video in videos if video.get(key) is not None]
        if "_sums[" in key:
            total, pairs = sum(p[0] for p in present), sum(p[1] for p in present)
            summary[key.replace("_sums[", "[")] = total / pairs if pairs else None
        elif key.startswith("first_frame_similarity["):
            summary[key] = mean_curves(present)
        elif key.startswith("frame_quality_frechet["):
            summary[key] = {
                part: mean_curves([p[part] for p in present]) for part in ("frechet", "reference_floor")
            }
        elif key.startswith("dynamic_degree["):
            summary[key] = sum(p["dynamic"] for p in present) / len(present) if present else None
    return summary


def summarise(videos: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of per-video reports from `evaluate.evaluate_frames` (plus "path")."""
    summary = {"num_videos": len(videos), "num_frames": sum(video["num_frames"] for video in videos)}
    summary.update(_backbone_summary(videos))
    return summary

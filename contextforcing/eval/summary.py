"""Summaries over a set of evaluated videos: frame-weighted consistency, mean curves, pooled recall.

Keys keep the backbone name of the per-video metrics they come from. Recall is pooled over the returns
of all videos, which is how a recall-versus-gap curve is measured (many episodes, each with its gaps).
"""

from __future__ import annotations

from typing import Any

from contextforcing.eval.recall import effective_context_length, recall_curve

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


def _world_summary(videos: list[dict[str, Any]]) -> dict[str, Any]:
    worlds = [video["world"] for video in videos if "world" in video]
    if not worlds:
        return {}
    events = [event for world in worlds for event in world["recall_events"]]
    curve = recall_curve(events, "recalled")
    return {
        "num_returns": len(events),
        "identity_recall": sum(e["recalled"] for e in events) / len(events) if events else None,
        "identity_matches_truth": sum(e["matches_truth"] for e in events) / len(events) if events else None,
        "identity_recall_curve": curve,
        "truth_recall_curve": recall_curve(events, "matches_truth"),
        "colour_recall_curve": recall_curve(events, "colour_recalled"),
        "short_gap_recall": curve[0]["recall"] if curve else None,
        "effective_context_seconds": effective_context_length(curve),
        "background_drift_from_start": mean_curves([w["background"]["drift_from_start"] for w in worlds]),
        "background_error_vs_truth": mean_curves([w["background"]["error_vs_truth"] for w in worlds]),
        "background_final_drift": sum(w["background"]["final_drift"] for w in worlds) / len(worlds),
    }


def summarise(videos: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of per-video reports from `evaluate.evaluate_frames` (plus "path")."""
    summary = {"num_videos": len(videos), "num_frames": sum(video["num_frames"] for video in videos)}
    summary.update(_backbone_summary(videos))
    summary.update(_world_summary(videos))
    return summary

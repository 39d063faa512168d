"""PNG plots of an evaluation result (matplotlib figures drawn on the Agg canvas, no pyplot state).

Written files, each only when its data exists: ``recall_vs_gap.png``, ``first_frame_similarity.png``,
``background_drift.png``, ``frame_quality.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = ["label_seconds", "write_plots"]

logger = logging.getLogger(__name__)


def label_seconds(label: str) -> float:
    """Time of a curve label: "10s" -> 10.0, "0-10s" -> 5.0 (the window's middle)."""
    parts = label.rstrip("s").split("-")
    return sum(float(p) for p in parts) / len(parts)


def _plot_curve(ax, curve: dict[str, float], **style) -> None:
    items = sorted((label_seconds(k), v) for k, v in curve.items() if v is not None)
    if items:
        ax.plot([t for t, _ in items], [v for _, v in items], marker="o", **style)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    logger.info("wrote %s", path)
    return path


def _recall_plot(summary: dict[str, Any], path: Path) -> Path | None:
    if not summary.get("identity_recall_curve"):
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key, name in (
        ("identity_recall_curve", "identity kept"),
        ("truth_recall_curve", "matches truth"),
        ("colour_recall_curve", "colour kept"),
    ):
        points = summary[key]
        ax.plot(
            [p["mean_gap_seconds"] for p in points], [p["recall"] for p in points], marker="o", label=name
        )
    effective = summary.get("effective_context_seconds")
    if effective:
        ax.axvline(effective, color="grey", linestyle="--", label=f"effective context {effective:g} s")
    ax.set(
        xscale="log",
        xlabel="gap (s)",
        ylabel="recall",
        ylim=(-0.02, 1.02),
        title="identity recall after a gap",
    )
    ticks = [p["mean_gap_seconds"] for p in summary["identity_recall_curve"]]
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend()
    return _save(fig, path)


def _curves_plot(result: dict[str, Any], prefix: str, path: Path, ylabel: str, title: str) -> Path | None:
    keys = sorted({k for video in result["videos"] for k in video if k.startswith(prefix) and video[k]})
    if not keys:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key in keys:
        backbone = key[len(prefix) : -1]
        for video in result["videos"]:
            curve = video.get(key)
            if curve and "frechet" in curve:
                _plot_curve(ax, curve["frechet"], alpha=0.4, color="C0")
                _plot_curve(ax, curve["reference_floor"], alpha=0.4, color="grey", linestyle=":")
            elif curve:
                _plot_curve(ax, curve, alpha=0.4)
        summary_curve = result["summary"].get(key)
        if summary_curve and "frechet" in summary_curve:
            _plot_curve(
                ax, summary_curve["reference_floor"], color="black", linestyle=":", label="reference floor"
            )
            summary_curve = summary_curve["frechet"]
        if summary_curve:
            _plot_curve(ax, summary_curve, color="black", linewidth=2, label=f"mean [{backbone}]")
    ax.set(xlabel="time (s)", ylabel=ylabel, title=title)
    ax.legend()
    return _save(fig, path)


def _drift_plot(result: dict[str, Any], path: Path) -> Path | None:
    worlds = [video["world"] for video in result["videos"] if "world" in video]
    if not worlds:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for world in worlds:
        _plot_curve(ax, world["background"]["drift_from_start"], alpha=0.4, color="C0")
        _plot_curve(ax, world["background"]["error_vs_truth"], alpha=0.4, color="C1")
    _plot_curve(
        ax, result["summary"]["background_drift_from_start"], color="C0", linewidth=2, label="from start"
    )
    _plot_curve(ax, result["summary"]["background_error_vs_truth"], color="C1", linewidth=2, label="vs truth")
    ax.set(xlabel="time (s)", ylabel="mean abs difference [0, 1]", title="background drift")
    ax.legend()
    return _save(fig, path)


def write_plots(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots of an `evaluate_videos` result into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    written = [
        _recall_plot(result["summary"], out_dir / "recall_vs_gap.png"),
        _curves_plot(
            result,
            "first_frame_similarity[",
            out_dir / "first_frame_similarity.png",
            "cos(f_0, f_t), 1 s window",
            "similarity to the first frame",
        ),
        _drift_plot(result, out_dir / "background_drift.png"),
        _curves_plot(
            result,
            "frame_quality_frechet[",
            out_dir / "frame_quality.png",
            "Frechet distance to ground truth",
            "frame quality per window (dotted: reference floor)",
        ),
    ]
    return [path for path in written if path is not None]

"""PNG plots of an evaluation result (matplotlib figures drawn on the Agg canvas, no pyplot state).

Written files, each only when its data exists: ``first_frame_similarity.png``, ``frame_quality.png``.
A reference adds its own (see `evaluate.Reference.plot`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

__all__ = ["label_seconds", "plot_curve", "save_figure", "write_plots"]

logger = logging.getLogger(__name__)


def label_seconds(label: str) -> float:
    """Time of a curve label: "10s" -> 10.0, "0-10s" -> 5.0 (the window's middle)."""
    parts = label.rstrip("s").split("-")
    return sum(float(p) for p in parts) / len(parts)


def plot_curve(ax, curve: dict[str, float], **style) -> None:
    items = sorted((label_seconds(k), v) for k, v in curve.items() if v is not None)
    if items:
        ax.plot([t for t, _ in items], [v for _, v in items], marker="o", **style)


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    logger.info("wrote %s", path)
    return path


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
                plot_curve(ax, curve["frechet"], alpha=0.4, color="C0")
                plot_curve(ax, curve["reference_floor"], alpha=0.4, color="grey", linestyle=":")
            elif curve:
                plot_curve(ax, curve, alpha=0.4)
        summary_curve = result["summary"].get(key)
        if summary_curve and "frechet" in summary_curve:
            plot_curve(
                ax, summary_curve["reference_floor"], color="black", linestyle=":", label="reference floor"
            )
            summary_curve = summary_curve["frechet"]
        if summary_curve:
            plot_curve(ax, summary_curve, color="black", linewidth=2, label=f"mean [{backbone}]")
    ax.set(xlabel="time (s)", ylabel=ylabel, title=title)
    ax.legend()
    return save_figure(fig, path)


def write_plots(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots of an `evaluate_videos` result into `out_dir`; returns the files written."""
    out_dir = Path(out_dir)
    written = [
        _curves_plot(
            result,
            "first_frame_similarity[",
            out_dir / "first_frame_similarity.png",
            "cos(f_0, f_t), 1 s window",
            "similarity to the first frame",
        ),
        _curves_plot(
            result,
            "frame_quality_frechet[",
            out_dir / "frame_quality.png",
            "Frechet distance to ground truth",
            "frame quality per window (dotted: reference floor)",
        ),
    ]
    return [path for path in written if path is not None]

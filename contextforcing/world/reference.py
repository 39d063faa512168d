"""World episodes as evaluation references: ground truth for `contextforcing.eval.evaluate`.

A `WorldReference` is read from an episode's metadata (meta.json, written by `contextforcing world`).
It checks a video's size, rate and length against the episode, measures identity recall and background
drift on pixels (`metrics.world_video_metrics`), pools recall over the returns of all videos (how a
recall-versus-gap curve is measured: many episodes, each with its gaps; split by whether the answer lies
in the first 10 s), and plots both. It also says whether the videos live: their presence and visits
against the world's own (`dynamics.world_dynamics`, passing within 25 %), the returns they make on their
own and the share that come back as they left, and the transitions the world cannot make per minute. A
video in which nothing happens fails the dynamics check; a shuffled episode is incoherent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import Tensor

from contextforcing.eval.plots import plot_curve, save_figure
from contextforcing.eval.summary import mean_curves
from contextforcing.world.dynamics import living
from contextforcing.world.meta import episode_from_metadata
from contextforcing.world.metrics import world_video_metrics
from contextforcing.world.recall import effective_context_length, recall_curve
from contextforcing.world.render import render_episode_uint8
from contextforcing.world.types import Episode, WorldConfig

__all__ = ["KIND", "WorldReference", "load_reference"]

KIND = "world"
"""Key of the world metrics in a video's report."""


@dataclass(frozen=True, eq=False)
class WorldReference:
    """One world episode as the ground truth of a video (`contextforcing.eval.evaluate.Reference`)."""

    episode: Episode
    config: WorldConfig
    name: str = ""
    """Where it was read from."""
    kind: str = field(default=KIND, init=False)

    def check(self, frames: Tensor, fps: float, name: str) -> None:
        num_frames, height, width = frames.shape[:3]
        config = self.config
        if (height, width) != (config.height, config.width):
            raise ValueError(f"{name} is {height}x{width}, the reference is {config.height}x{config.width}")
        if abs(fps - config.fps) > 1e-3:
            raise ValueError(f"{name} runs at {fps:g} fps, the reference at {config.fps:g} fps")
        if num_frames != self.episode.num_frames:
            raise ValueError(f"{name} has {num_frames} frames, the reference has {self.episode.num_frames}")

    def frames(self) -> Tensor:
        return render_episode_uint8(self.episode, self.config)

    def metrics(self, frames: Tensor, fps: float, window_seconds: float) -> dict[str, Any]:
        return world_video_metrics(frames, self.episode, self.config, window_seconds)

    def summarise(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        return _summary(reports, self.config, self.episode.num_frames)

    def plot(self, result: dict[str, Any], out_dir: Path) -> list[Path]:
        written = [
            _recall_plot(result["summary"], out_dir / "recall_vs_gap.png"),
            _drift_plot(result, out_dir / "background_drift.png"),
        ]
        return [path for path in written if path is not None]


def load_reference(path: str | Path) -> WorldReference:
    """The world reference of a metadata JSON file (meta.json); raises ValueError naming the file and the
    key when it is not JSON, not world metadata, or contradicts itself."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference metadata not found: {path}")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"reference {path} is not JSON: {error}") from None
    try:
        episode, config = episode_from_metadata(metadata)
        _check_metadata(metadata, episode, config)
    except ValueError as error:
        raise ValueError(f"reference {path}: {error}") from None
    return WorldReference(episode, config, str(path))


def _check_metadata(metadata: dict[str, Any], episode: Episode, config: WorldConfig) -> None:
    """The summary keys of meta.json must agree with the episode they describe."""
    subjects = metadata.get("subjects")
    if not isinstance(subjects, list) or not subjects:
        raise ValueError(
            "'subjects' is missing or empty: expected one entry per subject, with its identity and visits"
        )
    for index, subject in enumerate(subjects):
        if not isinstance(subject, dict) or not {"identity", "visits"} <= set(subject):
            raise ValueError(f"subjects[{index}] lacks 'identity' or 'visits'")
    visits = [v for v in episode.visits if v.enter_frame < episode.num_frames]
    listed = sum(len(subject["visits"]) for subject in subjects)
    if listed != len(visits):
        raise ValueError(f"the subjects list {listed} visits in all, the episode has {len(visits)}")
    frames = metadata.get("frames")
    counts = {
        "num_frames": metadata.get("num_frames"),
        "frames": len(frames) if isinstance(frames, list) else None,
    }
    if any(count != episode.num_frames for count in counts.values()):
        raise ValueError(
            f"wrong frame count: num_frames is {counts['num_frames']!r} and 'frames' lists {counts['frames']!r} "
            f"entries, the episode has {episode.num_frames} frames"
        )
    for key in ("fps", "height", "width"):
        if metadata.get(key) != getattr(config, key):
            raise ValueError(
                f"{key} is {metadata.get(key)!r}, the episode's config says {getattr(config, key)!r}"
            )


def _share(events: list[dict[str, Any]], key: str) -> float | None:
    return sum(bool(e[key]) for e in events) / len(events) if events else None


def _summary(worlds: list[dict[str, Any]], config: WorldConfig, num_frames: int) -> dict[str, Any]:
    if not worlds:
        return {}
    events = [event for world in worlds for event in world["recall_events"]]
    curve = recall_curve(events, "recalled")
    return {
        **living(worlds, config, num_frames / config.fps),
        "recall_answer_early": _share([e for e in events if e["answer_early"]], "matches_truth"),
        "recall_answer_late": _share([e for e in events if not e["answer_early"]], "matches_truth"),
        "stale_returns": _share(events, "stale"),
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
    return save_figure(fig, path)


def _drift_plot(result: dict[str, Any], path: Path) -> Path | None:
    worlds = [video[KIND] for video in result["videos"] if KIND in video]
    if not worlds:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for world in worlds:
        plot_curve(ax, world["background"]["drift_from_start"], alpha=0.4, color="C0")
        plot_curve(ax, world["background"]["error_vs_truth"], alpha=0.4, color="C1")
    plot_curve(
        ax, result["summary"]["background_drift_from_start"], color="C0", linewidth=2, label="from start"
    )
    plot_curve(ax, result["summary"]["background_error_vs_truth"], color="C1", linewidth=2, label="vs truth")
    ax.set(xlabel="time (s)", ylabel="mean abs difference [0, 1]", title="background drift")
    ax.legend()
    return save_figure(fig, path)

"""Evaluation of videos: backbone consistency curves, a dynamic-degree proxy, and ground truth.

Every number produced with a feature backbone carries the backbone's name in its key, for example
``feature_consistency[efficientnet-lite0]`` (VBench's formula on a proxy backbone) or
``subject_consistency[dinov2:dinov2-base]`` (VBench's formula and preprocessing on a DINO folder).

A video may come with a `Reference`: ground truth that checks the video's size, rate and length, adds
its own metrics under its `kind` (the miniature's world references measure identity recall and
background drift on pixels, `contextforcing.world.reference`), summarises and plots them, and gives
the true frames against which frame quality is measured.

Shape legend:
    T  frames        H, W  frame height / width        D  feature width
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from contextforcing.eval.backbones import FeatureBackbone
from contextforcing.eval.frechet import frame_quality
from contextforcing.eval.plots import write_plots
from contextforcing.eval.summary import summarise
from contextforcing.eval.vbench import (
    FLOW_NAME,
    consistency_sums,
    dynamic_degree_proxy,
    first_frame_similarity,
)
from contextforcing.video_io import read_video

__all__ = ["EvalConfig", "Reference", "evaluate_frames", "evaluate_videos"]

logger = logging.getLogger(__name__)


class Reference(Protocol):
    """Ground truth for one video."""

    kind: str
    """Key of this reference's metrics in a video's report."""
    name: str
    """Where the reference was read from (recorded beside each video)."""

    def check(self, frames: Tensor, fps: float, name: str) -> None:
        """Raise ValueError naming `name` unless uint8 frames [T, H, W, 3] at `fps` fit the truth."""
        ...

    def frames(self) -> Tensor:
        """The true frames, uint8 [T, H, W, 3]."""
        ...

    def metrics(self, frames: Tensor, fps: float, window_seconds: float) -> dict[str, Any]:
        """Ground-truth metrics of uint8 frames [T, H, W, 3]."""
        ...

    def summarise(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Summary over the `metrics` of several videos with references of this kind."""
        ...

    def plot(self, result: dict[str, Any], out_dir: Path) -> list[Path]:
        """PNG plots of an `evaluate_videos` result; returns the files written."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalConfig:
    """Knobs of the evaluation."""

    similarity_step_seconds: float = 10.0
    """Spacing of the first-frame similarity timestamps (the paper uses 10 s)."""
    window_seconds: float = 10.0
    """Window of the background-drift and frame-quality curves."""
    frechet_components: int = 16
    """Principal components of the reference features kept for the Frechet distance."""
    dynamic_degree: bool = True
    """Whether to compute the optical-flow dynamic-degree proxy (needs OpenCV)."""

    def __post_init__(self) -> None:
        for name in ("similarity_step_seconds", "window_seconds"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if self.frechet_components < 1:
            raise ValueError(f"frechet_components must be >= 1, got {self.frechet_components}")


def _backbone_metrics(
    frames: Tensor,
    fps: float,
    backbone: FeatureBackbone,
    reference_features: Tensor | None,
    config: EvalConfig,
) -> dict[str, Any]:
    features = backbone.features(frames)
    total, pairs = consistency_sums(features)
    tag = f"[{backbone.name}]"
    out: dict[str, Any] = {
        f"{backbone.consistency_name}{tag}": total / pairs if pairs else None,
        f"{backbone.consistency_name}_sums{tag}": [total, pairs],
        f"first_frame_similarity{tag}": first_frame_similarity(features, fps, config.similarity_step_seconds),
    }
    if reference_features is not None:
        out[f"frame_quality_frechet{tag}"] = frame_quality(
            features, reference_features, fps, config.window_seconds
        )
    return out


def evaluate_frames(
    frames: Tensor,
    fps: float,
    *,
    backbones: list[FeatureBackbone],
    reference: Reference | None = None,
    config: EvalConfig | None = None,
    cache: dict | None = None,
) -> dict[str, Any]:
    """All metrics of one video.

    Args:
        frames: uint8 [T, H, W, 3].
        fps: frames per second.
        backbones: feature extractors for the consistency and quality metrics.
        reference: ground truth; enables its metrics and frame quality.
        config: evaluation knobs.
        cache: optional dictionary in which ground-truth features are kept between calls that share a
            reference and a backbone.

    Returns:
        A JSON-serialisable dictionary (see the module docstring for the key names).
    """
    config = config or EvalConfig()
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty uint8 [T, H, W, 3], got {tuple(frames.shape)}")
    report: dict[str, Any] = {
        "num_frames": len(frames),
        "fps": fps,
        "height": frames.shape[1],
        "width": frames.shape[2],
    }
    cache = {} if cache is None else cache
    if reference is not None:
        reference.check(frames, fps, "video")
        report[reference.kind] = reference.metrics(frames, fps, config.window_seconds)
    for backbone in backbones:
        reference_features = None
        if reference is not None:
            key = (id(reference), backbone.name)
            if key not in cache:
                cache[key] = backbone.features(reference.frames())
            reference_features = cache[key]
        report.update(_backbone_metrics(frames, fps, backbone, reference_features, config))
    if config.dynamic_degree:
        report[f"dynamic_degree[{FLOW_NAME}]"] = dynamic_degree_proxy(frames, fps)
    return report


def evaluate_videos(
    paths: list[str | Path],
    *,
    backbones: list[FeatureBackbone],
    references: list[Reference] | None = None,
    config: EvalConfig | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate video files and summarise them; with `out_dir`, write metrics.json and PNG plots there.

    Args:
        paths: videos to judge (at least one).
        backbones: feature extractors.
        references: none, one for all videos, or one per video.
        config: evaluation knobs.
        out_dir: output folder.

    Returns:
        {"backbones": [...], "videos": [per-video reports], "summary": {...}}.
    """
    if not paths:
        raise ValueError("no video to evaluate")
    references = list(references or [])
    if len(references) not in (0, 1, len(paths)):
        raise ValueError(
            f"give one reference for all videos or one per video; got {len(references)} for {len(paths)}"
        )
    videos, cache = [], {}
    for index, path in enumerate(paths):
        frames, fps = read_video(path)
        reference = references[0 if len(references) == 1 else index] if references else None
        if reference is not None:
            reference.check(frames, fps, str(path))
        logger.info("evaluating %s (%d frames at %g fps)", path, len(frames), fps)
        report = evaluate_frames(
            frames, fps, backbones=backbones, reference=reference, config=config, cache=cache
        )
        videos.append(
            {"path": str(path), "reference": None if reference is None else reference.name, **report}
        )
    summary = summarise(videos)
    kinds = {reference.kind: reference for reference in references}
    for kind, reference in kinds.items():
        summary.update(reference.summarise([video[kind] for video in videos if kind in video]))
    result = {"backbones": [b.name for b in backbones], "videos": videos, "summary": summary}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=1))
        written = write_plots(result, out_dir)
        for reference in kinds.values():
            written += reference.plot(result, out_dir)
    return result

"""Ground-truth metadata of world episodes: JSON-serialisable, and enough to re-render the episode.

Shape legend:
    T  frames
"""

from __future__ import annotations

import dataclasses
from typing import Any

from contextforcing.world.assets import SCENE_CLASSES, SubjectIdentity
from contextforcing.world.render import cue_frames, subject_boxes
from contextforcing.world.types import Episode, Visit, WorldConfig

__all__ = ["METADATA_FORMAT", "episode_from_metadata", "episode_metadata"]

METADATA_FORMAT = "contextforcing-world/1"


def _identity_dict(identity: SubjectIdentity) -> dict[str, Any]:
    return {
        "index": identity.index,
        "colour": identity.colour,
        "shape": identity.shape,
        "texture": identity.texture,
    }


def _frame_records(episode: Episode, config: WorldConfig) -> list[dict[str, Any]]:
    """Per-frame ground truth: time, cue, and the subject's visibility and box."""
    cues = cue_frames(episode)
    records = []
    for frame, box in enumerate(subject_boxes(episode, config)):
        subject = {"id": 0, "visible": box is not None, "bbox": list(box) if box is not None else None}
        records.append(
            {"index": frame, "time": frame / config.fps, "cue": frame in cues, "subjects": [subject]}
        )
    return records


def _visit_record(visit: Visit, fps: float) -> dict[str, Any]:
    record = dataclasses.asdict(visit)
    record["gap_seconds"] = visit.gap_frames / fps
    record["cue_frame"] = visit.enter_frame - 1
    return record


def episode_metadata(episode: Episode, config: WorldConfig) -> dict[str, Any]:
    """JSON-serialisable ground truth of an episode.

    Keys: ``format``; ``fps``, ``num_frames``, ``height``, ``width``, ``chunk_frames``, ``num_sink_frames``;
    ``scene`` (index, name, prompt); ``background`` (identity, scene pattern, palette); ``subjects`` (one
    entry: identity, ``visits`` with enter/exit frames and the gap before each, and ``returns``: the visits
    after a gap, with the frame and the gap in frames and seconds); ``frames`` (per frame: time, whether a
    cue is lit, and per subject whether it is visible and its box ``[x0, y0, x1, y1]``); ``episode`` and
    ``config``, from which `episode_from_metadata` rebuilds the episode exactly.
    """
    scene = SCENE_CLASSES[episode.scene]
    visits = [v for v in episode.visits if v.enter_frame < episode.num_frames]
    returns = [
        {"frame": v.enter_frame, "gap_frames": v.gap_frames, "gap_seconds": v.gap_frames / config.fps}
        for v in visits[1:]
    ]
    subject = {
        "id": 0,
        "identity": _identity_dict(config.identities[episode.identity]),
        "visits": [_visit_record(v, config.fps) for v in visits],
        "returns": returns,
    }
    return {
        "format": METADATA_FORMAT,
        "fps": config.fps,
        "num_frames": episode.num_frames,
        "height": config.height,
        "width": config.width,
        "chunk_frames": config.chunk_frames,
        "num_sink_frames": config.num_sink_frames,
        "scene": {"index": episode.scene, "name": scene.name, "prompt": scene.prompt},
        "background": {
            "identity": episode.background_identity,
            "pattern": scene.pattern,
            "palette": episode.palette,
        },
        "subjects": [subject],
        "frames": _frame_records(episode, config),
        "episode": dataclasses.asdict(episode),
        "config": dataclasses.asdict(config),
    }


def episode_from_metadata(metadata: dict[str, Any]) -> tuple[Episode, WorldConfig]:
    """Rebuild the episode and world of `episode_metadata` output.

    Raises:
        ValueError: if the dictionary is not world metadata.
    """
    if not isinstance(metadata, dict) or metadata.get("format") != METADATA_FORMAT:
        raise ValueError(f"not world metadata: expected format {METADATA_FORMAT!r}")
    try:
        config = WorldConfig(**metadata["config"])
        fields = dict(metadata["episode"])
        fields["visits"] = tuple(Visit(**v) for v in fields["visits"])
        return Episode(**fields), config
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed world metadata: {error}") from error

"""Ground-truth metadata of world episodes: JSON-serialisable, and enough to re-render the episode.

Shape legend:
    T  frames
"""

from __future__ import annotations

import dataclasses
from typing import Any

from contextforcing.world.assets import SCENE_CLASSES, SubjectIdentity
from contextforcing.world.render import (
    charge_levels,
    cue_frames,
    gate_frames,
    subject_boxes,
    subject_identities,
)
from contextforcing.world.timeline import EARLY_SECONDS, returns, visit_identities, world_events
from contextforcing.world.types import Episode, Visit, WorldConfig

__all__ = ["METADATA_FORMAT", "episode_from_metadata", "episode_metadata"]

METADATA_FORMAT = "contextforcing-world/2"
_READABLE_FORMATS = ("contextforcing-world/1", METADATA_FORMAT)


def _identity_dict(identity: SubjectIdentity) -> dict[str, Any]:
    return {
        "index": identity.index,
        "colour": identity.colour,
        "shape": identity.shape,
        "texture": identity.texture,
    }


def _frame_records(episode: Episode, config: WorldConfig) -> list[dict[str, Any]]:
    """Per-frame ground truth: time, cue, gate, door charge (with `door_charge`: the charging subject
    and its level, else null) and every subject's visibility, box and identity."""
    cues, gates = cue_frames(episode), set(gate_frames(episode))
    charges = (
        charge_levels(episode, config.charge_floor) if config.version == 2 and config.door_charge else {}
    )
    who = [None] * episode.num_frames
    for visit in episode.visits:
        for frame in range(visit.enter_frame, min(visit.exit_frame, episode.num_frames)):
            who[frame] = visit.subject
    records = []
    shown = subject_identities(episode)
    for frame, box in enumerate(subject_boxes(episode, config)):
        subjects = [
            {"id": k, "visible": who[frame] == k, "bbox": list(box) if who[frame] == k else None,
             "identity": shown[frame] if who[frame] == k else None}
            for k in range(episode.num_subjects)
        ]  # fmt: skip
        charge = charges.get(frame)
        records.append({"index": frame, "time": frame / config.fps, "cue": frame in cues,
                        "gate": frame in gates, "subjects": subjects,
                        "charge": None if charge is None else {"subject": charge[0].subject,
                                                               "level": charge[1]}})  # fmt: skip
    return records


def _visit_record(visit: Visit, fps: float) -> dict[str, Any]:
    record = dataclasses.asdict(visit)
    record["gap_seconds"] = visit.gap_frames / fps
    record["cue_frame"] = visit.enter_frame - 1
    return record


def _subject_record(episode: Episode, config: WorldConfig, subject: int) -> dict[str, Any]:
    """A subject's identity at the start, doorway, visits (with the identities shown) and returns."""
    identities = visit_identities(episode)
    visits = []
    for visit, (entry, leaving) in zip(episode.visits, identities, strict=True):
        if visit.subject == subject and visit.enter_frame < episode.num_frames:
            visits.append({**_visit_record(visit, config.fps), "identity_in": entry, "identity_out": leaving})
    early = round(EARLY_SECONDS * config.fps)
    subject_returns = [
        {"frame": r.frame, "gap_frames": r.gap_frames, "gap_seconds": r.gap_frames / config.fps,
         "answer_frame": r.answer_frame, "answer": r.answer, "first_identity": r.first_identity,
         "answer_early": r.answer_frame < early}
        for r in returns(episode) if r.subject == subject
    ]  # fmt: skip
    door = episode.doorways[subject] if episode.doorways else None
    return {
        "id": subject,
        "identity": _identity_dict(config.identities[episode.start_identities[subject]]),
        "doorway": None if door is None else {"door": door[0], "y": door[1]},
        "visits": visits,
        "returns": subject_returns,
    }


def episode_metadata(episode: Episode, config: WorldConfig) -> dict[str, Any]:
    """JSON-serialisable ground truth of an episode.

    Keys: ``format``; ``fps``, ``num_frames``, ``height``, ``width``, ``chunk_frames``, ``num_sink_frames``;
    ``scene`` (index, name, prompt); ``background`` (identity, scene pattern, palette); ``subjects`` (per
    subject: identity at the start, doorway (version 2), ``visits`` with enter/exit frames, the gap before
    each, the change at the gate and the identities shown on entry and exit, and ``returns``: its visits
    after an earlier one, with the frame, the gap, the answer (the identity it left with), the frame of
    its last sighting, its first identity and whether the answer lies in the first 10 s); ``events``
    (entries, exits and changes in frame order); ``frames`` (per frame: time, whether a cue or the gate is
    lit, and per subject whether it is visible, its box ``[x0, y0, x1, y1]`` and identity); ``episode``
    and ``config``, from which `episode_from_metadata` rebuilds the episode exactly.
    """
    scene = SCENE_CLASSES[episode.scene]
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
        "subjects": [_subject_record(episode, config, k) for k in range(episode.num_subjects)],
        "events": [{"frame": e.frame, "kind": e.kind, "subject": e.subject} for e in world_events(episode)],
        "frames": _frame_records(episode, config),
        "episode": dataclasses.asdict(episode),
        "config": dataclasses.asdict(config),
    }


def episode_from_metadata(metadata: dict[str, Any]) -> tuple[Episode, WorldConfig]:
    """Rebuild the episode and world of `episode_metadata` output.

    Raises:
        ValueError: if the dictionary is not world metadata.
    """
    if not isinstance(metadata, dict) or metadata.get("format") not in _READABLE_FORMATS:
        raise ValueError(f"not world metadata: expected format {METADATA_FORMAT!r}")
    try:
        config = WorldConfig(**metadata["config"])
        fields = dict(metadata["episode"])
        fields["visits"] = tuple(Visit(**v) for v in fields["visits"])
        fields["identities"] = tuple(fields.get("identities", ()))
        fields["doorways"] = tuple((door, y) for door, y in fields.get("doorways", ()))
        fields["upcoming"] = Visit(**fields["upcoming"]) if fields.get("upcoming") else None
        return Episode(**fields), config
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed world metadata: {error}") from error

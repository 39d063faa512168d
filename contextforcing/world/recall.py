"""Identity recall in videos of the world: does a subject come back after a gap as what it was before?

The recall decoder reads the subject's identity from the frames at its ground-truth box. For every
candidate identity it composites that identity's sprite onto an estimate of the background taken from the
video itself (the per-pixel median of the hidden frames just before the visit), and picks the candidate
with the smallest squared error summed over the frames read. On ground-truth frames it is exact.

A return is a subject's visit after an earlier one of its own. It is *recalled* when the first chunk
after the gap decodes to the identity decoded from that subject's previous visit in the same video (from
its change at the gate on, if it changed there: memory of what the video showed, whoever drew it);
`matches_truth` compares with the identity it left with in the episode instead, and `stale` marks a
return that shows the subject's first identity after it has changed (what a memory of the first frames
would give). The recall curve pools returns from any number of videos
into gap bins; the effective context length is the longest gap, over the contiguous run of bins from the
shortest, whose recall is at least 90 % of the shortest-gap bin's.

Shape legend:
    n  frames read        H, W  frame height / width        K  candidate identities
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from contextforcing.world.assets import sprite_image
from contextforcing.world.episodes import Episode, WorldConfig
from contextforcing.world.render import Box, subject_boxes
from contextforcing.world.timeline import EARLY_SECONDS, returns

__all__ = [
    "GAP_BIN_EDGES",
    "decode_identity",
    "effective_context_length",
    "is_drawn",
    "recall_curve",
    "recall_events",
]

GAP_BIN_EDGES: tuple[float, ...] = (0.0, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0, math.inf)
_BACKGROUND_FRAMES = 8


def _templates(background_crop: Tensor, config: WorldConfig) -> Tensor:
    """Every identity's sprite over a background crop [3, S, S] -> [K, 3, S, S]."""
    out = []
    for identity in config.identities:
        image, mask = sprite_image(identity, config.sprite_size)
        out.append(torch.where(mask.unsqueeze(0), image, background_crop))
    return torch.stack(out)


def decode_identity(
    frames: Tensor, boxes: list[Box], background: Tensor, config: WorldConfig
) -> tuple[int, Tensor]:
    """Decode the identity shown in `frames` at `boxes`.

    Args:
        frames: float [n, 3, H, W] in [0, 255].
        boxes: the subject's box in each frame (length n).
        background: float [3, H, W] in [0, 255], the scene without the subject.
        config: the world (its identity catalogue and sprite size).

    Returns:
        (decoded identity index, squared errors [K + 1] summed over the frames; the last entry is the
        background alone, with no subject).
    """
    errors = torch.zeros(len(config.identities) + 1)
    for frame, (x0, y0, x1, y1) in zip(frames, boxes, strict=True):
        crop = background[:, y0:y1, x0:x1]
        candidates = torch.cat([_templates(crop, config), crop[None]])  # (K + 1, 3, S, S)
        errors += (candidates - frame[:, y0:y1, x0:x1]).square().mean(dim=(1, 2, 3))
    return int(errors[:-1].argmin()), errors


def is_drawn(errors: Tensor) -> bool:
    """Whether the best identity explains the frames better than the background alone."""
    return bool(errors[:-1].min() < errors[-1])


def _hidden_before(boxes: list[Box | None], start: int) -> list[int]:
    """Up to 8 frames right before `start` in which no subject is visible (in the ground truth)."""
    frames = []
    for frame in range(start - 1, max(-1, start - 1 - _BACKGROUND_FRAMES), -1):
        if boxes[frame] is not None:
            break
        frames.append(frame)
    return frames


def recall_events(frames: Tensor, episode: Episode, config: WorldConfig) -> list[dict[str, Any]]:
    """One record per return inside the video: a subject's visit after an earlier one of its own.

    Args:
        frames: float [T, 3, H, W] in [0, 255], the video judged (T == episode.num_frames).
        episode: the ground-truth schedule.
        config: its world.

    Returns:
        Records with frame, subject, gap_frames, gap_seconds, answer_frame (the subject's last sighting
        before the return), answer_early (it lies in the first `timeline.EARLY_SECONDS`), decoded, previous
        (decoded from the previous visit, after its change at the gate if it changed), truth (the identity
        it left with), first_identity, drawn (a subject is drawn at the return and in the previous visit),
        recalled, matches_truth, colour_recalled, stale (it shows its first identity, which it has since
        changed; the last four false when either is not drawn).
    """
    boxes = subject_boxes(episode, config)
    identities, early = config.identities, round(EARLY_SECONDS * config.fps)
    num_frames = len(frames)
    events = []
    for ret in returns(replace(episode, num_frames=min(num_frames, episode.num_frames))):
        before, visit = episode.visits[ret.previous], episode.visits[ret.visit]
        first = before.change_frame if before.change_frame is not None else before.enter_frame
        previous, previous_errors = _read(frames, boxes, first, before.exit_frame, before.enter_frame, config)
        stop = min(visit.enter_frame + config.chunk_frames, visit.exit_frame, num_frames)
        decoded, errors = _read(frames, boxes, visit.enter_frame, stop, visit.enter_frame, config)
        drawn = is_drawn(errors) and is_drawn(previous_errors)
        events.append({
            "frame": visit.enter_frame, "subject": ret.subject, "gap_frames": ret.gap_frames,
            "gap_seconds": ret.gap_frames / config.fps, "answer_frame": ret.answer_frame,
            "answer_early": ret.answer_frame < early, "decoded": decoded, "previous": previous,
            "truth": ret.answer, "first_identity": ret.first_identity, "drawn": drawn,
            "recalled": drawn and decoded == previous, "matches_truth": drawn and decoded == ret.answer,
            "colour_recalled": drawn and identities[decoded].colour == identities[previous].colour,
            "stale": drawn and decoded == ret.first_identity != ret.answer,
        })  # fmt: skip
    return events


def _read(frames: Tensor, boxes: list[Box | None], start: int, stop: int, entry: int, config: WorldConfig):
    """Decode frames [start, stop) against the median of the hidden frames right before `entry`."""
    hidden = _hidden_before(boxes, entry)
    background = frames[hidden].median(dim=0).values if hidden else frames[entry]
    return decode_identity(frames[start:stop], boxes[start:stop], background, config)


def recall_curve(events: list[dict[str, Any]], key: str = "recalled") -> list[dict[str, float]]:
    """Recall per gap bin (GAP_BIN_EDGES, seconds), over non-empty bins in increasing gap order."""
    curve = []
    for low, high in itertools.pairwise(GAP_BIN_EDGES):
        members = [e for e in events if low <= e["gap_seconds"] < high]
        if members:
            gaps = [e["gap_seconds"] for e in members]
            curve.append(
                {
                    "gap_min_seconds": low,
                    "gap_max_seconds": high,
                    "mean_gap_seconds": sum(gaps) / len(gaps),
                    "longest_gap_seconds": max(gaps),
                    "count": len(members),
                    "recall": sum(bool(e[key]) for e in members) / len(members),
                }
            )
    return curve


def effective_context_length(curve: list[dict[str, float]], fraction: float = 0.9) -> float | None:
    """The effective context length of a recall-versus-gap curve: the longest gap (s), over the
    contiguous run from the shortest, recalled at `fraction` (90 %) or more of the shortest gap's
    recall; 0 when the shortest gap is never recalled, None for an empty curve.

    Points are {"gap_seconds" or "longest_gap_seconds": gap, "recall": value}, in increasing gap. The
    comparison applies it to the seed-averaged curve of each row; `evaluate` to the pooled curve.
    """
    if not curve:
        return None
    short = curve[0]["recall"]
    if short <= 0:
        return 0.0
    longest = 0.0
    for entry in curve:
        if entry["recall"] < fraction * short:
            break
        longest = entry.get("longest_gap_seconds", entry.get("gap_seconds"))
    return longest

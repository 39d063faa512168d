"""Whether a world video lives: subjects found in the pixels alone, and what they do over time.

Nothing here needs the episode: a video generated from the prompt alone is judged against the world's
kinematics and its own statistics. A frame shows a subject where at least `_MIN_PIXELS` pixels (away from
the doors and the gate) depart from the video's background by more than `_DIFFERENT` (mean |RGB|,
0-255); its identity is read with the recall decoder at the sprite-sized box centred on them.
Consecutive frames with a subject form a visit.

The background is the video's per-pixel temporal median, except where a subject stands in the same place
in more than half of the frames: the median then shows the subject, and it would be missed in every one
of those frames. Given the empty room the prompt names (`render.background_frame`), the room stands in
for the median wherever the two differ (`video_background`), unless they differ on more pixels
than a subject covers (`_OTHER_ROOM_SPRITES`): then the video shows another room, and the median alone is used.

* dynamics: presence (share of frames with a subject), visits per minute, dwell time per visit;
* free-running recall: on the visits that come out of a doorway used before (any doorway in version 1),
  the share that show the identity the previous visit from there left with;
* temporal coherence: transitions the world cannot make, per minute: a subject that moves farther
  between two frames than any visit does, appears or vanishes away from the doors, or changes identity
  away from the gate. A world episode makes none; the same episode cut into pieces and shuffled makes many;
* events: entries, exits and identity changes, and the precision and recall of other event frames
  (a memory's promotions) against them.

Shape legend: T frames, H x W frame size.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall import decode_identity, is_drawn
from contextforcing.world.render import background_frame, fixture_mask, render_episode_uint8
from contextforcing.world.types import WorldConfig

__all__ = [
    "Background",
    "Sighting",
    "coherence",
    "detect_subjects",
    "dynamics",
    "dynamics_check",
    "event_scores",
    "free_recall",
    "living",
    "living_against",
    "max_step_pixels",
    "short_visits",
    "switch_rate",
    "video_background",
    "video_events",
    "visits_of",
    "world_dynamics",
]

_DIFFERENT = 40.0
_MIN_PIXELS = 150
_OTHER_ROOM_SPRITES = 1.25
"""A median that departs from the prompt's room on more pixels than this many sprites cover shows another
room, not a subject standing still: one subject is in the room at a time and covers at most one sprite's
square, and the second world's rooms that differ at all differ on some 860 pixels, 1.5 sprites."""
_DOOR_MARGIN = 4  # an entry or exit touches a door when its box lies within this many pixels of it
_GATE_MARGIN = 4  # a change happens at the gate when the box centre lies within this many pixels of it


@dataclass(frozen=True, slots=True)
class Sighting:
    """A subject found in one frame."""

    x: float
    """Centre column of the departing pixels."""
    y: float
    """Centre row."""
    x0: int
    """Leftmost and rightmost departing columns."""
    x1: int
    identity: int | None
    """The identity read there; None where no identity explains it better than the background."""


def _to_float(frames: Tensor) -> Tensor:
    """uint8 [T, H, W, 3] or float [T, 3, H, W] (0-255) -> float [T, 3, H, W]."""
    return frames.permute(0, 3, 1, 2).float() if frames.dtype == torch.uint8 else frames.float()


@dataclass(frozen=True, slots=True)
class Background:
    """What a video's subjects are found against."""

    image: Tensor
    """[3, H, W] float, 0-255."""
    source: str
    """"median" (no room given), "room" (the median, with the room wherever the two differ) or
    "other room" (the median: the video does not show the prompt's room)."""
    still_pixels: int
    """Pixels where the room stood in for the median: a subject standing there most of the time."""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "still_pixels": self.still_pixels}


def video_background(frames: Tensor, config: WorldConfig, room: Tensor | None = None) -> Background:
    """The background of frames uint8 [T, H, W, 3] or float [T, 3, H, W], given the empty room [3, H, W]
    (0-255) the prompt names, if known; see the module docstring."""
    median = _to_float(frames).median(dim=0).values
    if room is None:
        return Background(median, "median", 0)
    departs = ((median - room.float()).abs().mean(dim=0) > _DIFFERENT) & ~fixture_mask(config)
    if departs.sum() > _OTHER_ROOM_SPRITES * config.sprite_size**2:
        return Background(median, "other room", 0)
    return Background(torch.where(departs, room.float(), median), "room", int(departs.sum()))


def detect_subjects(
    frames: Tensor, config: WorldConfig, background: Background | None = None
) -> list[Sighting | None]:
    """Per frame, the subject found there or None; frames uint8 [T, H, W, 3] or float [T, 3, H, W],
    against `background` (default: the video's median, `video_background` without a room)."""
    images = _to_float(frames)
    background = (background or video_background(images, config)).image
    away = ((images - background).abs().mean(dim=1) > _DIFFERENT) & ~fixture_mask(config)
    size, out = config.sprite_size, []
    for image, mask in zip(images, away, strict=True):
        if mask.sum() < _MIN_PIXELS:
            out.append(None)
            continue
        ys, xs = torch.nonzero(mask, as_tuple=True)
        x, y = float(xs.float().mean()), float(ys.float().mean())
        bx = min(max(0, round(x) - size // 2), config.width - size)
        by = min(max(0, round(y) - size // 2), config.height - size)
        identity, errors = decode_identity(image[None], [(bx, by, bx + size, by + size)], background, config)
        out.append(Sighting(x, y, int(xs.min()), int(xs.max()), identity if is_drawn(errors) else None))
    return out


def visits_of(sightings: list[Sighting | None]) -> list[tuple[int, int]]:
    """Maximal runs [start, stop) of frames with a subject."""
    runs, start = [], None
    for frame, sighting in enumerate([*sightings, None]):
        if sighting is not None and start is None:
            start = frame
        elif sighting is None and start is not None:
            runs.append((start, frame))
            start = None
    return runs


def short_visits(runs: list[tuple[int, int]], config: WorldConfig) -> int:
    """How many runs (`visits_of`) are shorter than the world's shortest visit."""
    return sum(stop - start < config.min_visit_frames for start, stop in runs)


def dynamics(sightings: list[Sighting | None], config: WorldConfig) -> dict[str, Any]:
    """Presence, visits per minute and dwell times (s) of a video's sightings, and how many visits a minute
    are shorter than the world's shortest (its episodes' only at the minute's edges) and longer than its
    longest and a chunk, which its episodes never are: a subject that stays on, or subjects that follow one
    another in view without a frame between them."""
    fps = config.fps
    minutes = len(sightings) / fps / 60.0
    runs = visits_of(sightings)
    dwell = [(stop - start) / fps for start, stop in runs]
    longest = config.max_visit_seconds + config.chunk_frames / fps
    return {
        "presence": sum(s is not None for s in sightings) / max(1, len(sightings)),
        "visits_per_minute": len(runs) / minutes if minutes else 0.0,
        "mean_dwell_seconds": sum(dwell) / len(dwell) if dwell else 0.0,
        "short_visits_per_minute": short_visits(runs, config) / minutes if minutes else 0.0,
        "long_visits_per_minute": sum(d > longest for d in dwell) / minutes if minutes else 0.0,
        "dwell_seconds": dwell,
    }


def _majority(sightings: list[Sighting | None]) -> int | None:
    readings = [s.identity for s in sightings if s is not None and s.identity is not None]
    return Counter(readings).most_common(1)[0][0] if readings else None


def _doorway(sighting: Sighting, config: WorldConfig) -> tuple[str, str]:
    """Which doorway a visit came out of: its side, and in version 2 its lane ("any" in version 1)."""
    side = "left" if sighting.x < config.width / 2 else "right"
    lane = ("upper" if sighting.y < config.height / 2 else "lower") if config.version == 2 else "any"
    return (side, lane) if config.version == 2 else ("any", lane)


def free_recall(sightings: list[Sighting | None], config: WorldConfig) -> dict[str, Any]:
    """The returns a video makes on its own, and the share that come back as they left.

    A return is a visit out of a doorway that an earlier visit used; it comes back as it left when the
    identity read on its first chunk is the one read on the last chunk of that earlier visit. Each return
    also names the frame at which that earlier visit ended (`left_at`), so recall can be read by gap.
    """
    chunk, last_exit, records = config.chunk_frames, {}, []
    for start, stop in visits_of(sightings):
        door = _doorway(sightings[start], config)
        entry = _majority(sightings[start : min(stop, start + chunk)])
        left_as, left_at = last_exit.get(door, (None, None))
        if entry is not None and left_as is not None:
            records.append({"frame": start, "identity": entry, "left_as": left_as, "left_at": left_at,
                            "recalled": entry == left_as})  # fmt: skip
        last_exit[door] = (_majority(sightings[max(start, stop - chunk) : stop]), stop)
    recalled = sum(r["recalled"] for r in records)
    return {"returns": records, "num_returns": len(records),
            "recall": recalled / len(records) if records else None, "chance": shuffled_recall(records)}  # fmt: skip


def shuffled_recall(returns: list[dict[str, Any]]) -> float | None:
    """The recall one video's returns would have if the identities they come back with were dealt among
    them at random: the mean, over its returns, of the share of its returns that come back as the identity
    this one left as. A video that draws one identity has chance 1; the world's own episodes, about 0.5."""
    if not returns:
        return None
    entries = Counter(r["identity"] for r in returns)
    return sum(entries[r["left_as"]] for r in returns) / len(returns) ** 2


def pooled_chance(videos_returns: list[list[dict[str, Any]]]) -> float | None:
    """`shuffled_recall` of several videos pooled over their returns (each video shuffled on its own)."""
    total = sum(len(returns) for returns in videos_returns)
    if not total:
        return None
    return sum(len(r) * shuffled_recall(r) for r in videos_returns if r) / total


def pooled_free_recall(videos_returns: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The free returns of several videos (`free_recall`'s records, per video): how many, the share that
    come back as they left, and its chance (`pooled_chance`); None where there is no return."""
    returns = [r for video in videos_returns for r in video]
    return {
        "free_returns": len(returns),
        "free_recall": sum(r["recalled"] for r in returns) / len(returns) if returns else None,
        "free_recall_chance": pooled_chance(videos_returns),
    }


def mean_cast(casts: list[dict[str, int]]) -> dict[str, float]:
    """`cast_of` averaged over videos."""
    return {key: sum(cast[key] for cast in casts) / len(casts) for key in ("doorways", "identities")}


def cast_of(sightings: list[Sighting | None], config: WorldConfig) -> dict[str, int]:
    """How many doorways a video's visits come out of, and how many identities its visits show (read on
    each visit's first and last chunk). A video that brings one subject back and back keeps every return
    as it left; these say whether it holds the world's cast of two or three."""
    chunk, doorways, identities = config.chunk_frames, set(), set()
    for start, stop in visits_of(sightings):
        doorways.add(_doorway(sightings[start], config))
        identities.add(_majority(sightings[start : min(stop, start + chunk)]))
        identities.add(_majority(sightings[max(start, stop - chunk) : stop]))
    return {"doorways": len(doorways), "identities": len(identities - {None})}


GAP_EDGES_SECONDS = (0.0, 4.0, 8.0, 16.0)


def recall_by_gap(
    returns: list[dict[str, Any]], fps: float, edges: tuple[float, ...] = GAP_EDGES_SECONDS
) -> list[dict]:
    """Free returns (`free_recall`'s records) grouped by the seconds between the exit they are compared
    with and the return: per group [from_s, to_s) (the last open-ended), the returns and those recalled."""
    bounds = [*edges, math.inf]
    groups = []
    for low, high in itertools.pairwise(bounds):
        inside = [r for r in returns if low <= (r["frame"] - r["left_at"]) / fps < high]
        groups.append({"from_s": low, "to_s": None if high == math.inf else high, "returns": len(inside),
                       "recalled": sum(r["recalled"] for r in inside)})  # fmt: skip
    return groups


def max_step_pixels(config: WorldConfig) -> float:
    """The farthest a subject's centre moves between two frames in this world, with room for rounding."""
    shortest = config.min_visit_frames
    room = config.width - 2 * config.door_width - config.sprite_size
    return 2.0 * room / (shortest - 1) + 2.0


def _at_door(sighting: Sighting, config: WorldConfig) -> bool:
    return (
        sighting.x0 <= config.door_width + _DOOR_MARGIN
        or sighting.x1 >= config.width - 1 - config.door_width - _DOOR_MARGIN
    )


def coherence(sightings: list[Sighting | None], config: WorldConfig) -> dict[str, Any]:
    """Transitions the world cannot make: jumps, appearances and vanishings away from doors, identity
    changes away from the gate (version 2) or at all (version 1), and visits shorter than the world's
    shortest (a subject that turns back in a doorway); counts and the total per minute. The video's first
    and last frames are no transitions (a visit may be cut there). `subject_pairs` counts the consecutive
    frames that both show a subject, against which the switches are a rate (`switch_rate`);
    `switch_frames` names the frame each switch lands on."""
    limit, counts = max_step_pixels(config), Counter(jumps=0, appearances=0, vanishings=0, switches=0)
    pairs, switch_frames = 0, []
    inner = [(start, stop) for start, stop in visits_of(sightings) if start > 0 and stop < len(sightings)]
    counts["short_visits"] = short_visits(inner, config)  # a visit cut by the video's edges may be short
    for frame, (before, after) in enumerate(itertools.pairwise(sightings), start=1):
        if before is None and after is not None:
            counts["appearances"] += not _at_door(after, config)
        elif before is not None and after is None:
            counts["vanishings"] += not _at_door(before, config)
        elif before is not None and after is not None:
            pairs += 1
            if math.hypot(after.x - before.x, after.y - before.y) > limit:
                counts["jumps"] += 1
            elif _switches(before, after):
                at_gate = config.version == 2 and abs(after.x - config.width / 2) <= _GATE_MARGIN
                if not at_gate:
                    counts["switches"] += 1
                    switch_frames.append(frame)
    minutes = len(sightings) / config.fps / 60.0
    return {**counts, "incoherent_per_minute": sum(counts.values()) / minutes if minutes else 0.0,
            "subject_pairs": pairs, "switch_frames": switch_frames}  # fmt: skip


def switch_rate(coherences: list[dict[str, Any]]) -> float | None:
    """Identity changes away from the gate per consecutive pair of frames that both show a subject, pooled
    over videos (`coherence`); None where no two consecutive frames show one. Unlike the switches a
    minute, it does not fall with presence."""
    pairs = sum(c["subject_pairs"] for c in coherences)
    return sum(c["switches"] for c in coherences) / pairs if pairs else None


def _switches(before: Sighting, after: Sighting) -> bool:
    """Whether two sightings read as two different identities."""
    return None not in (before.identity, after.identity) and before.identity != after.identity


def video_events(sightings: list[Sighting | None]) -> list[int]:
    """Frames where something happens in a video: entries, exits (first frame after) and identity changes."""
    events = []
    for frame, (before, after) in enumerate(itertools.pairwise(sightings), start=1):
        appears_or_leaves = (before is None) != (after is None)
        if appears_or_leaves or (before is not None and _switches(before, after)):
            events.append(frame)
    return events


def event_scores(predicted: list[int], truth: list[int], tolerance: int, num_frames: int, fps: float) -> dict:
    """Precision and recall of event frames (e.g. promotions) against true ones, within `tolerance` frames."""
    near = [any(abs(p - t) <= tolerance for t in truth) for p in predicted]
    found = [any(abs(p - t) <= tolerance for p in predicted) for t in truth]
    minutes = num_frames / fps / 60.0
    return {
        "per_minute": len(predicted) / minutes if minutes else 0.0,
        "precision": sum(near) / len(near) if near else None,
        "recall": sum(found) / len(found) if found else None,
    }


_AVERAGED = ("presence", "visits_per_minute", "mean_dwell_seconds", "short_visits_per_minute",
             "long_visits_per_minute")  # fmt: skip
"""The figures of `dynamics` that a set of videos (or the world's episodes) averages."""


@functools.lru_cache(maxsize=4)
def world_dynamics(config: WorldConfig, seconds: float = 60.0, episodes: int = 16, seed: int = 0) -> dict:
    """The world's own dynamics, measured with the same detector on its rendered episodes: mean, min and
    max of presence, visits per minute, mean dwell, doorways and identities (`cast_of`) over `episodes`
    videos of `seconds`; and their free-running recall and its chance (`shuffled_recall`), pooled over the
    returns."""
    num_frames = round(seconds * config.fps)
    rows, returns = [], []
    for index in range(episodes):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        episode = sample_episode(num_frames, generator, config)
        frames = render_episode_uint8(episode, config)
        background = video_background(frames, config, background_frame(episode, config))
        sightings = detect_subjects(frames, config, background)
        rows.append({**dynamics(sightings, config), **cast_of(sightings, config)})
        returns.append(free_recall(sightings, config)["returns"])
    keys = (*_AVERAGED, "doorways", "identities")
    free = pooled_free_recall(returns)
    return {
        **{key: {"mean": sum(r[key] for r in rows) / len(rows), "min": min(r[key] for r in rows),
                 "max": max(r[key] for r in rows)} for key in keys},
        "free_recall": free["free_recall"],
        "free_recall_chance": free["free_recall_chance"],
    }  # fmt: skip


def dynamics_check(measured: dict[str, Any], world: dict[str, Any], tolerance: float = 0.25) -> dict:
    """Whether presence and visits per minute (of one video, or averaged over several) lie within
    `tolerance` (relative) of the world's means; `in_range` says whether they lie within the spread of the
    world's own episodes (what one video of the world passes; the 25 % test is for averages)."""
    out = {}
    for key in ("presence", "visits_per_minute"):
        mean, value = world[key]["mean"], measured[key]
        out[key] = {"measured": value, "world": mean, "passes": abs(value - mean) <= tolerance * mean,
                    "in_range": world[key]["min"] <= value <= world[key]["max"]}  # fmt: skip
    out["passes"] = all(entry["passes"] for entry in out.values())
    return out


def living(videos: list[dict[str, Any]], config: WorldConfig, seconds: float) -> dict[str, Any]:
    """What `free-run` and `evaluate` say of videos of `seconds` each, measured one by one (each with
    "dynamics", "free_recall", "cast" and "coherence"): dynamics averaged and checked against the world's
    own, pooled free-running recall and its chance, the mean cast, and coherence."""
    return living_against(videos, world_dynamics(config, seconds=seconds))


def living_against(videos: list[dict[str, Any]], world: dict[str, Any]) -> dict[str, Any]:
    """`living` against the world's own dynamics measured once (`world_dynamics`). Videos measured before
    the short and long visits were counted are averaged without them."""
    keys = tuple(key for key in _AVERAGED if all(key in v["dynamics"] for v in videos))
    mean = {key: sum(v["dynamics"][key] for v in videos) / len(videos) for key in keys}
    return {
        "dynamics": mean,
        "world_dynamics": world,
        "dynamics_check": dynamics_check(mean, world),
        **pooled_free_recall([v["free_recall"]["returns"] for v in videos]),
        "cast": mean_cast([v["cast"] for v in videos]),
        "incoherent_per_minute": sum(v["coherence"]["incoherent_per_minute"] for v in videos) / len(videos),
        "switch_rate": switch_rate([v["coherence"] for v in videos]),
    }

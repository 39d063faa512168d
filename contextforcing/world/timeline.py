"""Who is where, showing what: the identity timeline of an episode, and its ground-truth events.

Pure functions of an `Episode`. A subject's identity changes only at the gate (`Visit.change_frame`),
so a return must show the identity the subject had when it last left, which is not the one of its first
entrance once it has changed in between. These functions say, for every visit, what it shows on entry
and on exit, which earlier visit holds the answer of a return, and when the world's events happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contextforcing.world.types import Episode, Visit

__all__ = [
    "EARLY_SECONDS",
    "Return",
    "WorldEvent",
    "identity_at",
    "novel_frames",
    "returns",
    "visit_identities",
    "world_events",
]

EARLY_SECONDS = 10.0
"""An answer "lies early" when the subject's last sighting before its return is in the first 10 s."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Return:
    """A visit of a subject that was seen before: what it must show, and where the answer lies."""

    visit: int
    """Index of the returning visit in `Episode.visits`."""
    previous: int
    """Index of the same subject's previous visit (the one that holds the answer)."""
    subject: int
    frame: int
    """Entry frame of the return (a chunk boundary; the cue is lit the frame before)."""
    gap_frames: int
    """Frames the subject was away."""
    answer_frame: int
    """The subject's last visible frame before the return."""
    answer: int
    """The identity it must come back with: the one it left with."""
    first_identity: int
    """The identity of the subject's first entrance (the answer of a memory that kept only that)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldEvent:
    """Something the memory should notice: an entry, an exit, or a change at the gate."""

    frame: int
    kind: Literal["entry", "exit", "change"]
    subject: int


def visit_identities(episode: Episode) -> list[tuple[int, int]]:
    """Per visit, (identity shown on entry, identity shown on exit)."""
    current = list(episode.start_identities)
    out = []
    for visit in episode.visits:
        entry = current[visit.subject]
        if visit.change_to is not None:
            current[visit.subject] = visit.change_to
        out.append((entry, current[visit.subject]))
    return out


def identity_at(visit: Visit, identities: tuple[int, int], frame: int) -> int:
    """The identity a visit shows at `frame`, given its (entry, exit) identities."""
    changed = visit.change_frame is not None and frame >= visit.change_frame
    return identities[1] if changed else identities[0]


def returns(episode: Episode) -> list[Return]:
    """Every visit starting inside the episode whose subject was seen before, in time order."""
    identities = visit_identities(episode)
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    out = []
    for index, visit in enumerate(episode.visits):
        if visit.enter_frame >= episode.num_frames:
            break
        if visit.subject in last:
            previous = episode.visits[last[visit.subject]]
            out.append(
                Return(
                    visit=index,
                    previous=last[visit.subject],
                    subject=visit.subject,
                    frame=visit.enter_frame,
                    gap_frames=visit.enter_frame - previous.exit_frame,
                    answer_frame=previous.exit_frame - 1,
                    answer=identities[last[visit.subject]][1],
                    first_identity=first[visit.subject],
                )
            )
        first.setdefault(visit.subject, identities[index][0])
        last[visit.subject] = index
    return out


def frames_showing(episode: Episode, subject: int, identity: int, stop: int) -> set[int]:
    """The frames before `stop` in which `subject` is in view showing `identity`."""
    frames = set()
    for visit, shown in zip(episode.visits, visit_identities(episode), strict=True):
        if visit.subject == subject:
            end = min(visit.exit_frame, stop)
            frames.update(
                f for f in range(visit.enter_frame, end) if identity_at(visit, shown, f) == identity
            )
    return frames


def novel_frames(episode: Episode) -> list[int]:
    """Frames inside the episode on which a subject shows an identity that nothing before tells: its
    first entry, and its change at the gate. A model must draw these identities, not recall them."""
    seen: set[int] = set()
    frames = []
    for visit in episode.visits:
        if visit.subject not in seen:
            frames.append(visit.enter_frame)
            seen.add(visit.subject)
        if visit.change_frame is not None:
            frames.append(visit.change_frame)
    return sorted(frame for frame in frames if frame < episode.num_frames)


def world_events(episode: Episode) -> list[WorldEvent]:
    """Entries, exits and changes inside the episode, in frame order (an exit is the first hidden frame)."""
    events = []
    for visit in episode.visits:
        candidates = [(visit.enter_frame, "entry"), (visit.exit_frame, "exit")]
        if visit.change_frame is not None:
            candidates.append((visit.change_frame, "change"))
        events += [
            WorldEvent(frame=frame, kind=kind, subject=visit.subject)
            for frame, kind in candidates
            if frame < episode.num_frames
        ]
    return sorted(events, key=lambda e: e.frame)

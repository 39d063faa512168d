"""The second world: a cast of subjects whose memory must stay current.

An episode has two or three subjects, each with its own identity and its own doorway: one of four,
the left or right door on the upper or lower lane. Doorways look alike and give nothing of the identity
away; which identity comes out of a doorway has to be remembered from the last time its subject was
seen. One subject is in view at a time. It comes out of its doorway, walks into the room and back out
the same way. On some visits (`WorldConfig.change_prob`) it walks up to the gate, a bar in the middle of
the room. The gate lights up and the subject takes a new identity, one that no subject holds. It then
leaves with that identity, and it must come back with it.

What made the first world learnable is kept: large flat-coloured subjects, a cue on the doorway the frame
before every entry, entries on chunk boundaries, nothing in the sink. What makes first-frame memory fail:
the first entrance shows one subject of several, and often an identity it has since given up.

`sample_cast_episode` draws an episode; `sample_return_episode` builds the recall probe's episodes, in
which a chosen subject comes back after an exact gap and its last sighting lies in the first 10 s or after.

All randomness comes from an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from contextforcing.world.assets import BACKGROUND_PALETTES, SCENE_CLASSES
from contextforcing.world.timeline import EARLY_SECONDS
from contextforcing.world.types import DOORS, Episode, Visit, WorldConfig

__all__ = ["centre_column", "lane_rows", "sample_cast_episode", "sample_return_episode"]

Answer = Literal["early", "late"]
_NEAR_GATE = 6  # a visit that does not reach the gate keeps its centre this many pixels short of it


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _log_uniform(generator: torch.Generator, low: int, high: int) -> int:
    value = float(torch.rand((), generator=generator)) * (math.log(high + 1) - math.log(low)) + math.log(low)
    return min(high, max(low, int(math.exp(value))))


def lane_rows(config: WorldConfig) -> tuple[int, int]:
    """Top row of the sprite on the upper and on the lower lane."""
    half = config.height / 2
    return round(half / 2 - config.sprite_size / 2), round(1.5 * half - config.sprite_size / 2)


def centre_column(config: WorldConfig) -> int:
    """Left column of the sprite when it stands at the gate (its centre on the room's centre)."""
    return (config.width - config.sprite_size) // 2


def _doorways(config: WorldConfig) -> tuple[tuple[str, int], ...]:
    return tuple((door, y) for y in lane_rows(config) for door in DOORS)


def _home_column(door: str, config: WorldConfig) -> int:
    return config.door_width if door == "left" else config.width - config.door_width - config.sprite_size


def _turn_column(generator: torch.Generator, door: str, to_gate: bool, config: WorldConfig) -> int:
    """Where a visit turns back: at the gate, or short of it on its own side (at a drawn column, or with
    `fixed_turns` just short of the gate)."""
    home, centre = _home_column(door, config), centre_column(config)
    if to_gate:
        return centre
    short = centre - _NEAR_GATE if door == "left" else centre + _NEAR_GATE
    drawn = _randint(generator, min(home, short), max(home, short))  # drawn either way: one random stream
    return short if config.fixed_turns else drawn


def _visit_length(generator: torch.Generator, config: WorldConfig) -> int:
    low = config.min_visit_frames
    return _randint(generator, low, max(low, round(config.max_visit_seconds * config.fps)))


def _new_identity(generator: torch.Generator, held: list[int], config: WorldConfig) -> int:
    """An identity that no subject holds."""
    free = [i for i in range(len(config.identities)) if i not in held]
    return free[_randint(generator, 0, len(free) - 1)]


def _visit(
    generator: torch.Generator, config: WorldConfig, *, enter: int, length: int, subject: int,
    doorway: tuple[str, int], gap: int, change_to: int | None,
) -> Visit:  # fmt: skip
    """A visit of `subject` out of its doorway; with `change_to`, to the gate and back changed."""
    door, y = doorway
    change_frame = enter + math.ceil((length - 1) / 2) if change_to is not None else None
    return Visit(
        enter_frame=enter, exit_frame=enter + length, gap_frames=gap, door_in=door, door_out=door,
        y_in=y, y_out=y, x_turn=_turn_column(generator, door, change_to is not None, config),
        subject=subject, change_frame=change_frame, change_to=change_to,
    )  # fmt: skip


class _Schedule:
    """Visits added in time order, keeping every subject's current identity and last exit."""

    def __init__(self, generator: torch.Generator, config: WorldConfig, identities: list[int],
                 doorways: tuple[tuple[str, int], ...]) -> None:  # fmt: skip
        self.generator, self.config = generator, config
        self.current, self.doorways = list(identities), doorways
        self.last_exit: list[int | None] = [None] * len(identities)
        self.visits: list[Visit] = []

    def add(
        self, subject: int, enter: int, length: int, change: bool | None = None, avoid: tuple[int, ...] = ()
    ) -> Visit:
        """Append a visit; `change` None draws it with `change_prob`; a change avoids `avoid` too."""
        if change is None:
            change = float(torch.rand((), generator=self.generator)) < self.config.change_prob
        held = [*self.current, *avoid]
        change_to = _new_identity(self.generator, held, self.config) if change else None
        last = self.last_exit[subject]
        visit = _visit(self.generator, self.config, enter=enter, length=length, subject=subject,
                       doorway=self.doorways[subject], gap=enter - (last if last is not None else 0),
                       change_to=change_to)  # fmt: skip
        if change_to is not None:
            self.current[subject] = change_to
        self.last_exit[subject] = visit.exit_frame
        self.visits.append(visit)
        return visit

    def upcoming(self, enter: int) -> Visit:
        """The visit of a subject drawn at random entering at `enter`, after the episode's last frame: not
        added, no change (only its doorway and entry frame are rendered, as its charge)."""
        subject = _randint(self.generator, 0, len(self.current) - 1)
        last = self.last_exit[subject]
        return _visit(self.generator, self.config, enter=enter, length=self.config.min_visit_frames,
                      subject=subject, doorway=self.doorways[subject],
                      gap=enter - (last if last is not None else 0), change_to=None)  # fmt: skip

    def fill(self, start: int, stop: int, subjects: list[int]) -> None:
        """Visits of `subjects` (drawn at random) between `start` and `stop`, leaving at least the
        shortest gap before `stop`; entries on chunk boundaries."""
        config, chunk = self.config, self.config.chunk_frames
        low = config.min_visit_frames
        enter = _ceil_to(
            start + _log_uniform(self.generator, config.min_gap_frames, config.max_gap_frames), chunk
        )
        while subjects and enter + low + config.min_gap_frames <= stop:
            length = min(_visit_length(self.generator, config), stop - config.min_gap_frames - enter)
            visit = self.add(subjects[_randint(self.generator, 0, len(subjects) - 1)], enter, length)
            gap = _log_uniform(self.generator, config.min_gap_frames, config.max_gap_frames)
            enter = _ceil_to(visit.exit_frame + gap, chunk)


def _ceil_to(frame: int, step: int) -> int:
    return -(-frame // step) * step


def _cast(generator: torch.Generator, config: WorldConfig, scene: int | None):
    """Scene, palette, the subjects' identities and doorways, drawn in a fixed order (the palette is drawn
    even when the scene fixes it, so that the rest of the episode does not depend on `scene_palettes`)."""
    drawn_scene = _randint(generator, 0, len(SCENE_CLASSES) - 1)
    palette = _randint(generator, 0, len(BACKGROUND_PALETTES) - 1)
    count = _randint(generator, config.min_subjects, config.max_subjects)
    identities = torch.randperm(len(config.identities), generator=generator)[:count].tolist()
    doorways = _doorways(config)
    order = torch.randperm(len(doorways), generator=generator)[:count].tolist()
    scene = drawn_scene if scene is None else scene
    return scene, (scene if config.scene_palettes else palette), identities, tuple(doorways[i] for i in order)


def _episode(
    num_frames: int, scene: int, palette: int, identities: list[int], schedule: _Schedule,
    upcoming: Visit | None = None,
) -> Episode:  # fmt: skip
    return Episode(num_frames=num_frames, scene=scene, palette=palette, identity=identities[0],
                   visits=tuple(schedule.visits), identities=tuple(identities),
                   doorways=schedule.doorways, upcoming=upcoming)  # fmt: skip


def _first_entry(generator: torch.Generator, config: WorldConfig) -> int:
    return config.first_entry_frame + config.chunk_frames * _randint(
        generator, 0, config.max_first_entry_chunks - 1
    )


def sample_cast_episode(
    num_frames: int, generator: torch.Generator, config: WorldConfig, *, gap_frames: int | None = None,
    scene: int | None = None,
) -> Episode:  # fmt: skip
    """A version-2 episode of `num_frames` frames; arguments as in `episodes.sample_episode`, where
    `gap_frames` fixes the hidden time between consecutive visits (of any subjects)."""
    scene, palette, identities, doorways = _cast(generator, config, scene)
    schedule = _Schedule(generator, config, identities, doorways)
    enter = _first_entry(generator, config)
    while enter < num_frames:
        subject = _randint(generator, 0, len(identities) - 1)
        next_gap = gap_frames if gap_frames is not None else _log_uniform(
            generator, config.min_gap_frames, config.max_gap_frames)  # fmt: skip
        length = _visit_length(generator, config)
        length += (-(enter + length + next_gap)) % config.chunk_frames
        visit = schedule.add(subject, enter, length)
        enter = visit.exit_frame + next_gap
    upcoming = None
    if config.charge_ahead:  # drawn after the episode's own draws, which it leaves as they were
        upcoming = schedule.upcoming(enter)
    return _episode(num_frames, scene, palette, identities, schedule, upcoming)


def sample_return_episode(
    gap_frames: int, answer: Answer, generator: torch.Generator, config: WorldConfig, *, target_frames: int
) -> tuple[Episode, int]:
    """An episode in which subject 0 comes back after exactly `gap_frames` hidden frames.

    With `answer="early"` its last sighting before the return lies in the first `EARLY_SECONDS`; with
    "late" it lies after them, and the subject changed at the gate on that last visit, so that its first
    entrance shows another identity. The other subjects come and go in between.

    Returns:
        (the episode, cut `target_frames` after the return; the return frame).
    """
    if config.version != 2:
        raise ValueError(f"return episodes need a version-2 world, got version {config.version}")
    scene, palette, identities, doorways = _cast(generator, config, None)
    schedule = _Schedule(generator, config, identities, doorways)
    others = list(range(1, len(identities)))
    early, chunk = round(EARLY_SECONDS * config.fps), config.chunk_frames
    enter = _first_entry(generator, config)
    length = _visit_length(generator, config)
    if answer == "early":
        length = min(length, early - enter)
        pad = (-(enter + length + gap_frames)) % chunk
        length += pad if enter + length + pad <= early else pad - chunk
        last = schedule.add(0, enter, length)
    else:
        schedule.add(0, enter, length)
        schedule.fill(enter + length, early + 4 * chunk, others)
        enter = _ceil_to(
            max(early + 4 * chunk, schedule.visits[-1].exit_frame + config.min_gap_frames), chunk
        )
        length += (-(enter + length + gap_frames)) % chunk
        last = schedule.add(0, enter, length, change=True, avoid=(identities[0],))
    start = last.exit_frame + gap_frames
    schedule.fill(last.exit_frame, start, others)
    back = schedule.add(0, start, _visit_length(generator, config), change=False)
    upcoming, stop = None, start + target_frames
    if config.charge_ahead:  # who comes after the return (after the cut), should the cut pass its exit
        gap = _log_uniform(generator, config.min_gap_frames, config.max_gap_frames)
        enter = _ceil_to(max(back.exit_frame + gap, stop), chunk)
        upcoming = schedule.upcoming(enter)
    return _episode(stop, scene, palette, identities, schedule, upcoming), start

"""Rendering of world episodes: where the subject is in each frame, and the frames themselves.

One subject is in view at a time. In version 2 a gate (a bar in the middle of the room) lights up on the
frame where a subject standing at it changes identity; the subject is drawn over it.

Pure functions of an `Episode` and its `WorldConfig` (no randomness).

Shape legend:
    T  frames        H, W  frame height / width in pixels        S  sprite side in pixels

A box is ``(x0, y0, x1, y1)`` in pixels, exclusive at the high end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from contextforcing.world.assets import (
    CUE_COLOUR,
    DOOR_COLOUR,
    GATE_COLOUR,
    GATE_LIT_COLOUR,
    SCENE_CLASSES,
    background_image,
    sprite_image,
)
from contextforcing.world.timeline import identity_at, visit_identities

if TYPE_CHECKING:
    from contextforcing.world.types import Episode, Visit, WorldConfig

__all__ = [
    "Box",
    "background_frame",
    "charge_levels",
    "composite_sprite",
    "cue_frames",
    "door_mask",
    "fixture_mask",
    "gate_frames",
    "gate_mask",
    "render_episode",
    "render_episode_uint8",
    "subject_boxes",
    "subject_identities",
]

Box = tuple[int, int, int, int]


def _door_x(door: str, config: WorldConfig) -> int:
    """Left column of the sprite when it stands at a door."""
    return config.door_width if door == "left" else config.width - config.door_width - config.sprite_size


def _visit_position(visit: Visit, frame: int, config: WorldConfig) -> tuple[int, int]:
    """Top-left corner (x, y) of the sprite at `frame` inside `visit`."""
    length = visit.exit_frame - visit.enter_frame
    u = (frame - visit.enter_frame) / max(1, length - 1)
    x_in, x_out = _door_x(visit.door_in, config), _door_x(visit.door_out, config)
    if visit.door_in == visit.door_out:
        # Out to the turning column and back: a triangle wave in u.
        x = x_in + (visit.x_turn - x_in) * (1.0 - abs(2.0 * u - 1.0))
    else:
        x = x_in + (x_out - x_in) * u
    y = visit.y_in + (visit.y_out - visit.y_in) * u
    return round(x), round(y)


def subject_boxes(episode: Episode, config: WorldConfig) -> list[Box | None]:
    """The subject's box in every frame, or None where it is hidden; length T."""
    boxes: list[Box | None] = [None] * episode.num_frames
    size = config.sprite_size
    for visit in episode.visits:
        for frame in range(visit.enter_frame, min(visit.exit_frame, episode.num_frames)):
            x, y = _visit_position(visit, frame, config)
            boxes[frame] = (x, y, x + size, y + size)
    return boxes


def subject_identities(episode: Episode) -> list[int | None]:
    """The identity shown in every frame (it changes only at the gate), or None where no subject is; length T."""
    shown: list[int | None] = [None] * episode.num_frames
    for visit, identities in zip(episode.visits, visit_identities(episode), strict=True):
        for frame in range(visit.enter_frame, min(visit.exit_frame, episode.num_frames)):
            shown[frame] = identity_at(visit, identities, frame)
    return shown


def gate_frames(episode: Episode) -> list[int]:
    """Frames in which the gate lights up: those in which a subject changes identity."""
    return [
        v.change_frame
        for v in episode.visits
        if v.change_frame is not None and v.change_frame < episode.num_frames
    ]


def cue_frames(episode: Episode) -> dict[int, Visit]:
    """Frames in which a door lights up, mapped to the visit they announce (the frame before its entry)."""
    return {v.enter_frame - 1: v for v in episode.visits if 0 <= v.enter_frame - 1 < episode.num_frames}


def charge_levels(episode: Episode, floor: float = 0.0) -> dict[int, tuple[Visit, float]]:
    """With `door_charge`: every frame from the last exit (or frame 0) up to a cue (also that of the
    episode's upcoming visit, after its last frame), mapped to the visit whose doorway charges and its level in (floor, 1], rising steadily from `floor` (the level it jumps to
    when the charge starts) to 1 on the cue frame (the frame before the entry)."""
    levels, start = {}, 0
    ahead = () if episode.upcoming is None else (episode.upcoming,)
    for visit in (*sorted(episode.visits, key=lambda v: v.enter_frame), *ahead):
        span = visit.enter_frame - start
        for frame in range(start, min(visit.enter_frame, episode.num_frames)):
            levels[frame] = (visit, floor + (1.0 - floor) * (frame - start + 1) / span)
        start = visit.exit_frame
    return levels


def door_mask(config: WorldConfig) -> Tensor:
    """Boolean mask [H, W] of the two door strips."""
    mask = torch.zeros(config.height, config.width, dtype=torch.bool)
    mask[:, : config.door_width] = True
    mask[:, config.width - config.door_width :] = True
    return mask


def gate_mask(config: WorldConfig) -> Tensor:
    """Boolean mask [H, W] of the gate (version 2; empty in version 1)."""
    mask = torch.zeros(config.height, config.width, dtype=torch.bool)
    if config.version == 2:
        x0 = (config.width - config.gate_width) // 2
        mask[:, x0 : x0 + config.gate_width] = True
    return mask


def fixture_mask(config: WorldConfig) -> Tensor:
    """Boolean mask [H, W] of what lights up but is no subject: the doors and the gate."""
    return door_mask(config) | gate_mask(config)


def background_frame(episode: Episode, config: WorldConfig) -> Tensor:
    """The static scene [3, H, W] float in [0, 255]: background pattern plus the unlit doors."""
    image = background_image(
        SCENE_CLASSES[episode.scene].pattern, episode.palette, config.height, config.width
    )
    door = torch.tensor(DOOR_COLOUR, dtype=torch.float32).view(3, 1, 1)
    gate = torch.tensor(GATE_COLOUR, dtype=torch.float32).view(3, 1, 1)
    image = torch.where(gate_mask(config).unsqueeze(0), gate, image)
    return torch.where(door_mask(config).unsqueeze(0), door, image)


def composite_sprite(frame: Tensor, identity_index: int, box: Box, config: WorldConfig) -> Tensor:
    """A copy of `frame` [3, H, W] (0-255) with the sprite of `identity_index` drawn in `box`."""
    image, mask = sprite_image(config.identities[identity_index], config.sprite_size)
    x0, y0, x1, y1 = box
    out = frame.clone()
    out[:, y0:y1, x0:x1] = torch.where(mask.unsqueeze(0), image, out[:, y0:y1, x0:x1])
    return out


def _light_cue(frame: Tensor, visit: Visit, config: WorldConfig, level: float = 1.0) -> None:
    """Light the door of `visit` on the rows where the sprite will appear (in place), at `level` of the
    way from the unlit door to the cue (rounded to whole values)."""
    x0 = 0 if visit.door_in == "left" else config.width - config.door_width
    door, cue = (torch.tensor(c, dtype=torch.float32).view(3, 1, 1) for c in (DOOR_COLOUR, CUE_COLOUR))
    frame[:, visit.y_in : visit.y_in + config.sprite_size, x0 : x0 + config.door_width] = torch.round(
        door + level * (cue - door)
    )


def _render_float(episode: Episode, config: WorldConfig) -> Tensor:
    """Frames [T, 3, H, W] float in [0, 255] (integer valued)."""
    static = background_frame(episode, config)
    frames = static.unsqueeze(0).repeat(episode.num_frames, 1, 1, 1)
    if config.version == 2 and config.door_charge:
        for frame, (visit, level) in charge_levels(episode, config.charge_floor).items():
            _light_cue(frames[frame], visit, config, level)
    else:
        for frame, visit in cue_frames(episode).items():
            _light_cue(frames[frame], visit, config)
    lit = torch.tensor(GATE_LIT_COLOUR, dtype=torch.float32).view(3, 1, 1)
    for frame in gate_frames(episode):
        frames[frame] = torch.where(gate_mask(config).unsqueeze(0), lit, frames[frame])
    shown = subject_identities(episode)
    for frame, box in enumerate(subject_boxes(episode, config)):
        if box is not None:
            frames[frame] = composite_sprite(frames[frame], shown[frame], box, config)
    return frames


def render_episode(episode: Episode, config: WorldConfig) -> Tensor:
    """The episode's frames [3, T, H, W] float32 in [-1, 1]."""
    return (_render_float(episode, config) / 127.5 - 1.0).permute(1, 0, 2, 3).contiguous()


def render_episode_uint8(episode: Episode, config: WorldConfig) -> Tensor:
    """The episode's frames [T, H, W, 3] uint8."""
    return _render_float(episode, config).permute(0, 2, 3, 1).to(torch.uint8).contiguous()

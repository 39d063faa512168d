"""Value types of the synthetic world: its configuration, an episode's schedule, and a rendered clip.

See `contextforcing.world.episodes` for what the world is; these types only hold data and validate it.

Shape legend:
    T  frames        H, W  frame height / width in pixels
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from contextforcing.world.assets import (
    BACKGROUND_PALETTES,
    SCENE_CLASSES,
    SubjectIdentity,
    identity_catalogue,
)

__all__ = ["DOORS", "Episode", "Visit", "WorldClip", "WorldConfig"]

DOORS: tuple[str, ...] = ("left", "right")


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldConfig:
    """Geometry, timing and vocabulary of the world."""

    height: int = 64
    """Frame height in pixels."""
    width: int = 64
    """Frame width in pixels."""
    fps: float = 4.0
    """Nominal frames per second (one frame per latent frame)."""
    chunk_frames: int = 3
    """Frames per autoregressive chunk; entries land on multiples of it."""
    num_sink_frames: int = 3
    """Leading frames in which the subject is never visible."""
    sprite_size: int = 24
    """Side of the subject's sprite in pixels."""
    door_width: int = 4
    """Width of the doors at the left and right edges, in pixels."""
    num_colours: int = 4
    """Subject colours in use (identities = colours x shapes x textures)."""
    num_shapes: int = 2
    """Subject shapes in use."""
    num_textures: int = 1
    """Subject textures in use."""
    min_gap_seconds: float = 1.0
    """Shortest time the subject stays away when gaps are sampled."""
    max_gap_seconds: float = 40.0
    """Longest time the subject stays away when gaps are sampled (log-uniform in between)."""
    min_visit_seconds: float = 2.0
    """Shortest time the subject stays in view."""
    max_visit_seconds: float = 6.0
    """Longest time the subject stays in view (before rounding the next entry to a chunk boundary)."""
    max_first_entry_chunks: int = 2
    """The first entry is at one of this many chunk boundaries after the sink."""

    def __post_init__(self) -> None:
        for name in ("height", "width", "chunk_frames", "sprite_size", "num_colours", "num_shapes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _check_range("num_colours", self.num_colours, 1, 8)
        _check_range("num_shapes", self.num_shapes, 1, 3)
        _check_range("num_textures", self.num_textures, 1, 2)
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.num_sink_frames < 0 or self.door_width < 0:
            raise ValueError("num_sink_frames and door_width must be >= 0")
        if self.sprite_size > self.height or self.sprite_size + 2 * self.door_width > self.width:
            raise ValueError(
                f"sprite_size {self.sprite_size} does not fit a {self.height}x{self.width} frame"
            )
        if not 0 < self.min_gap_seconds <= self.max_gap_seconds:
            raise ValueError(
                f"need 0 < min_gap_seconds <= max_gap_seconds, got {self.min_gap_seconds}, "
                f"{self.max_gap_seconds}"
            )
        if not 0 < self.min_visit_seconds <= self.max_visit_seconds:
            raise ValueError(
                f"need 0 < min_visit_seconds <= max_visit_seconds, got {self.min_visit_seconds}, "
                f"{self.max_visit_seconds}"
            )
        if self.max_first_entry_chunks < 1:
            raise ValueError(f"max_first_entry_chunks must be >= 1, got {self.max_first_entry_chunks}")

    @property
    def identities(self) -> tuple[SubjectIdentity, ...]:
        """The identity catalogue of this world."""
        return identity_catalogue(self.num_colours, self.num_shapes, self.num_textures)

    @property
    def min_gap_frames(self) -> int:
        """Shortest sampled gap in frames."""
        return max(1, round(self.min_gap_seconds * self.fps))

    @property
    def max_gap_frames(self) -> int:
        """Longest sampled gap in frames."""
        return max(self.min_gap_frames, round(self.max_gap_seconds * self.fps))

    @property
    def first_entry_frame(self) -> int:
        """The earliest frame the subject may appear: the first chunk boundary after the sink."""
        return max(1, math.ceil(self.num_sink_frames / self.chunk_frames)) * self.chunk_frames


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Visit:
    """One stay of the subject in view: frames [enter_frame, exit_frame)."""

    enter_frame: int
    """First visible frame; always a chunk boundary."""
    exit_frame: int
    """First frame after the visit in which the subject is hidden again."""
    gap_frames: int
    """Hidden frames just before this visit (for the first visit: frames since the start)."""
    door_in: str
    """Door the subject comes out of ("left" or "right")."""
    door_out: str
    """Door the subject leaves through."""
    y_in: int
    """Top row of the sprite when it comes out."""
    y_out: int
    """Top row of the sprite when it leaves."""
    x_turn: int
    """Left column where the subject turns back, used when door_in == door_out."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Episode:
    """Everything needed to render an episode; the world renders it deterministically."""

    num_frames: int
    """Length of the episode in frames."""
    scene: int
    """Index into SCENE_CLASSES."""
    palette: int
    """Index into BACKGROUND_PALETTES."""
    identity: int
    """Index into the config's identity catalogue."""
    visits: tuple[Visit, ...]
    """The subject's visits in time order; the last ones may run past the end."""

    @property
    def prompt(self) -> str:
        """The scene-class prompt of the episode."""
        return SCENE_CLASSES[self.scene].prompt

    @property
    def background_identity(self) -> int:
        """Index of the background: scene class x palette."""
        return self.scene * len(BACKGROUND_PALETTES) + self.palette


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldClip:
    """A rendered clip: what `sample_clip` returns."""

    frames: Tensor
    """[3, T, H, W] float32 in [-1, 1]."""
    prompt: str
    """The scene-class prompt."""
    metadata: dict
    """JSON-serialisable ground truth (see `world_render.episode_metadata`)."""
    episode: Episode
    """The episode that was rendered."""

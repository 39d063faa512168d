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

__all__ = ["DOORS", "WORLD_VERSIONS", "Episode", "Visit", "WorldClip", "WorldConfig", "world_version"]

DOORS: tuple[str, ...] = ("left", "right")
WORLD_VERSIONS: tuple[int, ...] = (1, 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldConfig:
    """Geometry, timing and vocabulary of the world.

    The defaults are the first world (version 1: one subject, free doors). Version 2 is a cast of
    subjects, each with its own doorway, whose identities change at a gate (`contextforcing.world.cast`);
    `world_version(2)` gives its settings. Fields marked "version 2" are ignored by version 1.
    """

    version: int = 1
    """1: one subject of fixed identity, entering and leaving through either door; 2: a cast (see above)."""
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
    min_subjects: int = 2
    """Version 2: fewest subjects in an episode."""
    max_subjects: int = 3
    """Version 2: most subjects in an episode (at most the four doorways: two doors x two lanes)."""
    change_prob: float = 0.4
    """Version 2: probability that a visit walks to the gate, where the subject changes identity."""
    gate_width: int = 2
    """Version 2: width in pixels of the gate, a vertical bar in the middle of the room."""
    door_charge: bool = False
    """Version 2: the doorway of the next visitor brightens steadily from the last exit (or the first
    frame) up to its cue, so that when the next subject enters is visible from the moment the last one
    left; without it the cue lights up on the frame before the entry only."""
    charge_floor: float = 0.0
    """Version 2, with `door_charge`: the level a doorway jumps to when it starts charging (at the last
    exit, or the first frame), from which it rises to 1 on its cue. At 0 a long gap's first seconds of
    charge are a few grey levels on a 4-pixel strip, which a coded frame loses: which doorway charges is
    then invisible until late in the gap, and a model sees an empty room it never saw in the world."""
    charge_ahead: bool = False
    """Version 2, with `door_charge`: the doorway of the visit after the last frame charges too, as it
    does in a longer episode, so that a clip cut short (every training clip) ends as the world would go
    on; without it, a clip whose next entry falls after its end shows an unlit room from the last exit
    on, a room no longer episode shows."""
    fixed_turns: bool = False
    """Version 2: a visit that does not reach the gate turns just short of it, not at a column drawn
    between its door and there; with visits of one length (min_visit_seconds = max_visit_seconds), where
    a visit turns and when it leaves then follow from its first two frames (a visit to the gate moves
    faster), and the only things drawn during a visit are whether it changes and into what."""
    scene_palettes: bool = False
    """Version 2: each scene class has its own palette (scene i, palette i), so that the prompt fixes the
    whole background and a video made from the prompt alone has one background to draw, not four."""

    def __post_init__(self) -> None:
        for name in ("height", "width", "chunk_frames", "sprite_size", "num_colours", "num_shapes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        _check_range("num_colours", self.num_colours, 1, 8)
        _check_range("num_shapes", self.num_shapes, 1, 3)
        _check_range("num_textures", self.num_textures, 1, 2)
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 0.0 <= self.charge_floor < 1.0:
            raise ValueError(f"charge_floor must lie in [0, 1), got {self.charge_floor}")
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
        self._check_cast()

    def _check_cast(self) -> None:
        if self.version not in WORLD_VERSIONS:
            raise ValueError(f"version must be one of {WORLD_VERSIONS}, got {self.version}")
        _check_range("min_subjects", self.min_subjects, 1, 4)
        _check_range("max_subjects", self.max_subjects, self.min_subjects, 4)
        if not 0.0 <= self.change_prob <= 1.0:
            raise ValueError(f"change_prob must lie in [0, 1], got {self.change_prob}")
        if self.gate_width < 1:
            raise ValueError(f"gate_width must be >= 1, got {self.gate_width}")
        if self.version == 2 and len(self.identities) < self.max_subjects + 1:
            raise ValueError(
                f"max_subjects {self.max_subjects} needs at least {self.max_subjects + 1} identities "
                f"(a change draws one no subject holds), got {len(self.identities)}"
            )
        if self.version == 2 and 2 * self.sprite_size > self.height:
            raise ValueError(f"sprite_size {self.sprite_size} leaves no room for two lanes")

    @property
    def identities(self) -> tuple[SubjectIdentity, ...]:
        """The identity catalogue of this world."""
        return identity_catalogue(self.num_colours, self.num_shapes, self.num_textures)

    @property
    def min_visit_frames(self) -> int:
        """Shortest visit in frames (at least two: one in, one out)."""
        return max(2, round(self.min_visit_seconds * self.fps))

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


def world_version(version: int) -> WorldConfig:
    """The settings of a world version: 1 is `WorldConfig()`; 2 is the cast world, whose visits last
    4 s (so that at least 6 frames follow a change at the gate, half a visit in) and turn at fixed
    columns (`fixed_turns`), whose gaps between visits are 1-20 s (each subject's own absences are then
    about 5-40 s), whose doors charge
    (`door_charge`, from 0.4 of the cue's level: `charge_floor`) from one exit to the next entry, also
    when that entry lies after the last frame (`charge_ahead`), and whose prompt fixes the palette
    (`scene_palettes`)."""
    if version == 1:
        return WorldConfig()
    if version == 2:
        return WorldConfig(
            version=2, min_visit_seconds=4.0, max_visit_seconds=4.0, max_gap_seconds=20.0, door_charge=True,
            scene_palettes=True, fixed_turns=True, charge_floor=0.4, charge_ahead=True,
        )  # fmt: skip
    raise ValueError(f"version must be one of {WORLD_VERSIONS}, got {version}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Visit:
    """One stay of a subject in view: frames [enter_frame, exit_frame)."""

    enter_frame: int
    """First visible frame; always a chunk boundary."""
    exit_frame: int
    """First frame after the visit in which the subject is hidden again."""
    gap_frames: int
    """Frames since this subject was last visible (for its first visit: frames since the start)."""
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
    subject: int = 0
    """Which subject of the episode visits."""
    change_frame: int | None = None
    """Version 2: the frame at the gate from which the subject shows `change_to` (None: no change)."""
    change_to: int | None = None
    """Version 2: the identity the subject takes at the gate."""


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
    """Index into the config's identity catalogue: the first subject's identity at the start."""
    visits: tuple[Visit, ...]
    """The visits in time order; the last ones may run past the end."""
    identities: tuple[int, ...] = ()
    """Version 2: every subject's identity at the start (the first is `identity`); empty for one subject."""
    doorways: tuple[tuple[str, int], ...] = ()
    """Version 2: every subject's doorway, (door, top row of its lane); empty for one subject."""
    upcoming: Visit | None = None
    """Version 2 with `charge_ahead`: the visit that enters after the last frame, never shown; its doorway
    charges from the last exit."""

    @property
    def num_subjects(self) -> int:
        """How many subjects the episode has."""
        return max(1, len(self.identities))

    @property
    def start_identities(self) -> tuple[int, ...]:
        """Every subject's identity at the start."""
        return self.identities or (self.identity,)

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

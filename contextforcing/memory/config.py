"""MemoryConfig: how the KV context of a streamed video is split into sink, slow and fast tiers.

One mechanism serves every memory policy; a policy is a preset of this config (`memory_preset`):

    context        Context Forcing: 3 sink + 12 slow + 6 fast = 21 frames, surprisal promotion, bounded
                   (`keyframe_interval` adds a promotion every so many chunks, whatever the similarity)
    context-released  the same tiers kept as the released code keeps them (`bookkeeping="released"`):
                   every call of a chunk is tested, promotions land before the chunk attends, in slot
                   order, duplicates and positions as released (see `released.py`, docs/design.md)
    uniform        as `context`, but a frame is promoted every `promotion_interval` chunks (Table 3)
    (`promotion="grid"` keeps the first frame of every chunk and lets a chunk read those a context teacher
                   would see: one every `promotion_interval` chunks counted back from its fast tier)
    sink           LongLive: 3 sink frames + a rolling window, 12 frames in all, absolute positions
    window         Self-Forcing: a rolling window of 21 frames, no sink, absolute positions
    infinity-rope  Infinity-RoPE: 1 sink frame + a rolling window, 6 frames in all, block-relative
    full           keep every frame (tests and short clips), absolute positions

Counts are latent frames. `num_fast_frames` counts the chunk being generated, as the paper's
N_l = 6 does: between chunks the fast tier keeps `num_fast_frames - frames_per_chunk` past frames,
and the chunk itself fills the rest while it is denoised. The cache the query sees therefore holds
at most `num_cache_frames = sink + slow + fast` frames (21 for Context Forcing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from contextforcing.config import coerce

__all__ = ["MEMORY_POLICIES", "MemoryConfig", "memory_preset"]

Promotion = Literal["surprisal", "uniform", "grid", "none"]
PositionMode = Literal["bounded", "absolute", "block-relative"]
DecisionPass = Literal["refresh", "first-pass"]
Bookkeeping = Literal["clean", "released"]
_CHOICES = {"promotion": Promotion, "positions": PositionMode, "decide_on": DecisionPass,
            "bookkeeping": Bookkeeping}  # fmt: skip
"""The fields that take one of a few words, and their words."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryConfig:
    """Sizes of the memory tiers, the promotion rule and the RoPE position mode."""

    num_sink_frames: int = 3
    """Frames from the start of the video that are kept forever (the attention sink)."""
    num_slow_frames: int = 12
    """Capacity of the slow tier of promoted keyframes; the oldest is evicted when it overflows."""
    num_fast_frames: int | None = 6
    """Most recent frames, first-in first-out, counting the chunk being generated; None keeps all."""
    frames_per_chunk: int = 3
    """Latent frames generated per autoregressive step."""
    promotion: Promotion = "surprisal"
    """How frames reach the slow tier: a similarity test, a fixed interval, or never. "grid": the first frame
    of every chunk enters the slow tier as it leaves the fast tier (the newest `num_kept_slow_frames`), and a
    chunk reads, of these, at most `num_slow_frames`: those one every `promotion_interval` chunks counted back
    from the oldest frame of its fast tier, the frames a context teacher with `slow_interval` =
    `promotion_interval * frames_per_chunk` and as many recent frames as the fast tier keeps is given
    before the same target (`training.plan.context_teacher_indices`). The frames a chunk reads change from
    chunk to chunk, so "grid" re-encodes them before every read (`reencode=True`)."""
    similarity_threshold: float = 0.95
    """Surprisal promotion fires when the cosine similarity of mean chunk keys is below this (tau)."""
    layer_thresholds: tuple[float, ...] = ()
    """Surprisal with per-layer decisions: one tau per layer, in place of `similarity_threshold` (empty: that
    one in every layer). Layers' key similarities differ, so one tau can leave a layer that never promotes;
    thresholds fitted per layer make every layer promote on about the same share of its tests."""
    fill_slow: bool = True
    """Frames leaving the fast tier take the slow slots no promotion has filled yet (the released code
    keeps the same frames), so every frame stays visible until the cache is full; False keeps only
    promoted frames in the slow tier (clean bookkeeping only)."""
    promotion_interval: int = 1
    """The promotion test (or uniform promotion) runs every this many chunks (released: 1, paper: 2)."""
    num_promoted_frames: int = 1
    """Leading frames of a chunk copied into the slow tier on promotion (the paper keeps the first)."""
    keyframe_interval: int = 0
    """Surprisal only: also promote every this many chunks, whatever the similarity (0: never), so that
    the slow tier holds frames spaced through the past beside the frames promoted at changes."""
    reencode: bool = False
    """Before each chunk, recompute the K/V of every kept frame from its clean latent, each frame seeing
    all the kept frames (bidirectional) at the positions the chunk reads them, so that the chunk reads
    its context as a bidirectional teacher reads a history, not as each frame saw its own past when it
    was made. One more forward over the kept frames a chunk (clean bookkeeping only)."""
    decide_on: DecisionPass = "refresh"
    """Pass whose keys decide and are promoted: the clean refresh pass, or the first noisy pass. Neither is
    the released rule, which tests every call (`bookkeeping="released"`)."""
    per_layer_decisions: bool = True
    """Decide promotions in every layer independently (released code) or once for all layers."""
    positions: PositionMode = "bounded"
    """Temporal RoPE positions: bounded slot ranks (Eq. 8), absolute frame ids, or block-relative."""
    bookkeeping: Bookkeeping = "clean"
    """How the tiers are kept: this library's policy (`policy.py`), or the released code's slot array,
    tested and written at every model call (`released.py`); "released" needs the Context Forcing rule."""

    def __post_init__(self) -> None:
        for name in ("num_sink_frames", "num_slow_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"MemoryConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("frames_per_chunk", "promotion_interval", "num_promoted_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"MemoryConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_fast_frames is not None and self.num_fast_frames < self.frames_per_chunk:
            raise ValueError(
                f"MemoryConfig.num_fast_frames={self.num_fast_frames} must hold at least the chunk being "
                f"generated (frames_per_chunk={self.frames_per_chunk})"
            )
        if self.keyframe_interval < 0 or (self.keyframe_interval and self.promotion != "surprisal"):
            raise ValueError(
                f"MemoryConfig.keyframe_interval={self.keyframe_interval} must be >= 0, and non-zero only with "
                f"promotion='surprisal' (got promotion={self.promotion!r})"
            )
        if self.num_promoted_frames > self.frames_per_chunk:
            raise ValueError(
                f"MemoryConfig.num_promoted_frames={self.num_promoted_frames} exceeds "
                f"frames_per_chunk={self.frames_per_chunk}"
            )
        if not 0.0 <= self.similarity_threshold <= 1.0 and self.promotion == "surprisal":
            raise ValueError(
                f"MemoryConfig.similarity_threshold must lie in [0, 1], got {self.similarity_threshold}"
            )
        self._check_layer_thresholds()
        self._check_grid()
        if (self.promotion == "none") != (self.num_slow_frames == 0):
            raise ValueError(
                f"MemoryConfig.promotion={self.promotion!r} does not fit num_slow_frames={self.num_slow_frames}: "
                "a slow tier needs a promotion rule and a promotion rule needs a slow tier"
            )
        self._check_positions()
        if self.bookkeeping == "released":
            self._check_released()

    def _check_layer_thresholds(self) -> None:
        if not self.layer_thresholds:
            return
        if self.promotion != "surprisal" or not self.per_layer_decisions:
            raise ValueError(
                "MemoryConfig.layer_thresholds needs promotion='surprisal' and per_layer_decisions=True, got "
                f"promotion={self.promotion!r}, per_layer_decisions={self.per_layer_decisions}"
            )
        outside = [tau for tau in self.layer_thresholds if not 0.0 <= tau <= 1.0]
        if outside:
            raise ValueError(f"MemoryConfig.layer_thresholds must lie in [0, 1], got {outside[0]}")

    def _check_grid(self) -> None:
        if self.promotion != "grid":
            return
        needs = {"reencode": True, "num_promoted_frames": 1, "bookkeeping": "clean"}
        for name, value in needs.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"MemoryConfig.{name}={getattr(self, name)!r}: promotion='grid' needs {name}={value!r} (it "
                    "keeps the first frame of each chunk and re-encodes the frames a chunk reads)"
                )
        if self.num_fast_frames is not None and self.num_fast_frames % self.frames_per_chunk:
            raise ValueError(
                f"MemoryConfig.num_fast_frames={self.num_fast_frames} must be whole chunks of frames_per_chunk="
                f"{self.frames_per_chunk} for promotion='grid' (its grid is counted back from the fast tier)"
            )

    def threshold(self, layer: int | None = None) -> float:
        """The surprisal threshold of a layer (`layer_thresholds`, else `similarity_threshold`)."""
        return (
            self.layer_thresholds[layer]
            if self.layer_thresholds and layer is not None
            else self.similarity_threshold
        )

    def _check_released(self) -> None:
        """The released slot array is defined only for its own rule; name the first field that departs."""
        required = {"promotion": "surprisal", "promotion_interval": 1, "num_promoted_frames": 1,
                    "decide_on": "refresh", "per_layer_decisions": True, "positions": "bounded",
                    "layer_thresholds": (), "fill_slow": True, "keyframe_interval": 0,
                    "reencode": False}  # fmt: skip
        for name, value in required.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"MemoryConfig.{name}={getattr(self, name)!r}: bookkeeping='released' tests every call "
                    f"of every layer with the released rule and needs {name}={value!r}"
                )
        assert self.num_fast_frames is not None  # promotion='surprisal' implies a slow tier, so bounded
        if self.num_sink_frames >= self.num_fast_frames:
            raise ValueError(
                f"MemoryConfig.num_sink_frames={self.num_sink_frames} must be below num_fast_frames="
                f"{self.num_fast_frames} for bookkeeping='released' (a promotion must land on a filled slot)"
            )
        if self.num_cache_frames % self.frames_per_chunk:
            raise ValueError(
                f"MemoryConfig: bookkeeping='released' needs the cache ({self.num_cache_frames} frames) to "
                f"hold whole chunks of frames_per_chunk={self.frames_per_chunk}"
            )

    def _check_positions(self) -> None:
        if self.num_fast_frames is None and self.positions != "absolute":
            raise ValueError(
                f"MemoryConfig.positions={self.positions!r} needs a bounded cache; num_fast_frames=None "
                "(keep everything) only works with absolute positions"
            )
        if self.num_fast_frames is None and self.num_slow_frames:
            raise ValueError(
                "MemoryConfig.num_slow_frames must be 0 when num_fast_frames=None keeps every frame"
            )
        for name, choices in _CHOICES.items():
            coerce(choices, getattr(self, name), f"MemoryConfig.{name}")

    @property
    def promotes(self) -> bool:
        """Whether frames are promoted into the slow tier ("surprisal", "uniform"); "grid" keeps the first
        frame of every chunk without a decision, "none" has no slow tier."""
        return self.promotion in ("surprisal", "uniform")

    @property
    def bounded(self) -> bool:
        """Whether the cache has a fixed size (everything but `full`)."""
        return self.num_fast_frames is not None

    @property
    def num_cache_frames(self) -> int | None:
        """Frames a query chunk sees at most, itself included (R = 21 for Context Forcing); None if unbounded."""
        if self.num_fast_frames is None:
            return None
        return self.num_sink_frames + self.num_slow_frames + self.num_fast_frames

    @property
    def num_kept_slow_frames(self) -> int:
        """Slow frames kept between chunks: `num_slow_frames`, or under promotion='grid' as many as the
        grid reaches back, `num_slow_frames * promotion_interval` chunks' first frames."""
        if self.promotion == "grid":
            return self.num_slow_frames * self.promotion_interval
        return self.num_slow_frames

    @property
    def num_past_fast_frames(self) -> int | None:
        """Fast-tier frames kept between chunks: the fast tier minus the chunk being generated."""
        return None if self.num_fast_frames is None else self.num_fast_frames - self.frames_per_chunk

    def context_capacity(self, max_frames: int | None = None) -> int:
        """Frames the store must hold between chunks; `max_frames` (the video length) sizes an unbounded one.

        The released bookkeeping keeps the last chunk in its slots until the next chunk's first call,
        so it holds the whole cache, `num_cache_frames`.
        """
        if self.bookkeeping == "released":
            assert self.num_cache_frames is not None  # checked in __post_init__
            return self.num_cache_frames
        if self.num_past_fast_frames is not None:
            return self.num_sink_frames + self.num_kept_slow_frames + self.num_past_fast_frames
        if max_frames is None:
            raise ValueError(
                "an unbounded memory (num_fast_frames=None) needs the video length to preallocate"
            )
        return max_frames

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryConfig:
        """Rebuild from `to_dict` output; unknown keys raise a ValueError naming them."""
        from contextforcing.config import from_dict

        return from_dict(cls, data)


MEMORY_POLICIES: dict[str, MemoryConfig] = {
    "context": MemoryConfig(),
    "context-released": MemoryConfig(bookkeeping="released"),
    "uniform": MemoryConfig(promotion="uniform", promotion_interval=2),
    "sink": MemoryConfig(num_sink_frames=3, num_slow_frames=0, num_fast_frames=9, promotion="none",
                         positions="absolute"),
    "window": MemoryConfig(num_sink_frames=0, num_slow_frames=0, num_fast_frames=21, promotion="none",
                           positions="absolute"),
    "infinity-rope": MemoryConfig(num_sink_frames=1, num_slow_frames=0, num_fast_frames=5, promotion="none",
                                  positions="block-relative"),
    "full": MemoryConfig(num_sink_frames=0, num_slow_frames=0, num_fast_frames=None, promotion="none",
                         positions="absolute"),
}  # fmt: skip


def memory_preset(name: str, **overrides: Any) -> MemoryConfig:
    """The MemoryConfig of a named policy, with optional field overrides.

    Raises:
        ValueError: for an unknown policy or field, or an override that makes the config invalid.
    """
    if name not in MEMORY_POLICIES:
        raise ValueError(f"unknown memory policy {name!r}; choose one of {sorted(MEMORY_POLICIES)}")
    base = MEMORY_POLICIES[name]
    if not overrides:
        return base
    return MemoryConfig.from_dict({**base.to_dict(), **overrides})

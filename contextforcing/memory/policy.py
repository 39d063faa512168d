"""Pure memory policy: which frame ids sit in the sink, slow and fast tiers after each chunk.

Everything here works on tuples of frame ids and Python floats; no keys or values pass through.
A `MemoryLayout` lists the frames of each tier in slot order (oldest first); the store keeps its
buffers in the same order: sink slots, then slow slots, then fast slots.

Rules (paper Sec. 4; the released code's own bookkeeping is `released.py`, and docs/design.md lists
where the two differ):
- the first `num_sink_frames` frames of the video enter the sink and are never evicted;
- every other frame enters the fast tier, a FIFO of `num_past_fast_frames` frames; frames leaving it
  take the slow slots no promotion has filled yet, so every frame stays visible until the cache is
  full and the early ones stay on until promotions replace them (the released code keeps the same
  frames, in another slot order; `fill_slow=False` keeps only promoted frames there);
- when a chunk is promoted, its first `num_promoted_frames` frames are also copied into the slow tier
  (so a promoted frame sits in slow and fast until it leaves the fast tier); when the slow tier
  overflows its oldest entry is evicted;
- the promotion test runs on chunks whose previous chunk holds no sink frame, every
  `promotion_interval` chunks; surprisal promotes when similarity < tau, uniform always promotes;
  surprisal with a `keyframe_interval` also promotes every so many chunks, whatever the similarity;
- "grid" promotes nothing: the first frame of every chunk enters the slow tier as it leaves the fast
  tier, and a chunk reads a subset of it (`read_layout`), the frames a context teacher would see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from contextforcing.memory.config import MemoryConfig

__all__ = [
    "MemoryLayout",
    "append_chunk",
    "kept_after",
    "promotion_due",
    "read_layout",
    "read_slots",
    "should_promote",
    "slot_sources",
]

Tier = str  # "sink" | "slow" | "fast"
_TIERS: tuple[Tier, ...] = ("sink", "slow", "fast")


@dataclass(frozen=True, slots=True)
class MemoryLayout:
    """Frame ids held by each tier, oldest first. A frame may sit in slow and fast at once."""

    sink: tuple[int, ...] = ()
    slow: tuple[int, ...] = ()
    fast: tuple[int, ...] = ()

    @property
    def slots(self) -> tuple[tuple[Tier, int], ...]:
        """(tier, frame id) of every store slot, in slot order: sink, slow, fast."""
        return tuple((tier, frame) for tier in _TIERS for frame in getattr(self, tier))

    @property
    def frames(self) -> tuple[int, ...]:
        """Frame ids in slot order (duplicates kept)."""
        return self.sink + self.slow + self.fast

    def __len__(self) -> int:
        return len(self.sink) + len(self.slow) + len(self.fast)

    def to_dict(self) -> dict[str, list[int]]:
        return {"sink": list(self.sink), "slow": list(self.slow), "fast": list(self.fast)}


def promotion_due(config: MemoryConfig, chunk_index: int) -> bool:
    """Whether chunk `chunk_index` takes the promotion test (surprisal) or is promoted (uniform).

    The test compares a chunk with its predecessor, so it starts once the predecessor lies wholly
    outside the sink (chunk 2 for Context Forcing, as in the released code), and then runs every
    `promotion_interval` chunks; a chunk that `keyframe_interval` promotes is due as well.
    """
    if not config.promotes or not _past_sink(config, chunk_index):
        return False
    return chunk_index % config.promotion_interval == 0 or _keyframe(config, chunk_index)


def _past_sink(config: MemoryConfig, chunk_index: int) -> bool:
    """Whether the chunk before `chunk_index` lies wholly outside the sink."""
    return chunk_index >= 1 and (chunk_index - 1) * config.frames_per_chunk >= config.num_sink_frames


def _keyframe(config: MemoryConfig, chunk_index: int) -> bool:
    """Whether `keyframe_interval` promotes chunk `chunk_index` whatever its similarity."""
    return bool(config.keyframe_interval) and chunk_index % config.keyframe_interval == 0


def should_promote(
    config: MemoryConfig, chunk_index: int, similarity: float | None, layer: int | None = None
) -> bool:
    """The promotion decision for one chunk (one layer, or all layers when decisions are shared).

    Args:
        config: the memory config.
        chunk_index: index of the chunk that was just generated.
        similarity: cosine similarity of its mean key with the previous chunk's; needed for surprisal.
        layer: the deciding layer, for `MemoryConfig.layer_thresholds` (None: decisions are shared).
    """
    if not promotion_due(config, chunk_index):
        return False
    if config.promotion == "uniform" or _keyframe(config, chunk_index):
        return True
    if similarity is None:
        raise ValueError(f"surprisal promotion of chunk {chunk_index} needs a similarity")
    return similarity < config.threshold(layer)


def append_chunk(
    layout: MemoryLayout, chunk_frames: Sequence[int], config: MemoryConfig, *, promote: bool
) -> MemoryLayout:
    """The layout after a chunk's clean K/V are written.

    Args:
        layout: the layout the chunk was generated against.
        chunk_frames: frame ids of the chunk, consecutive and newer than every stored frame.
        config: tier sizes.
        promote: copy the chunk's leading frames into the slow tier (see `should_promote`).
    """
    frames = tuple(chunk_frames)
    room = config.num_sink_frames - len(layout.sink)
    sink = layout.sink + frames[:room]
    rest = frames[room:] if room > 0 else frames
    fast, slow = layout.fast + rest, layout.slow
    keep = config.num_past_fast_frames
    if keep is not None:
        leaving = fast[:-keep] if keep else fast
        fast = fast[-keep:] if keep else ()
        if config.promotion == "grid":
            firsts = tuple(f for f in leaving if f % config.frames_per_chunk == 0)
            return MemoryLayout(sink=sink, slow=(slow + firsts)[-config.num_kept_slow_frames :], fast=fast)
        # Frames leaving the fast tier fill slow slots nobody was promoted into yet (oldest first), so
        # until the cache is full every frame stays visible and the early ones stay on.
        if config.fill_slow:
            free = config.num_slow_frames - len(slow)
            slow = tuple(sorted(slow + tuple(f for f in leaving if f not in slow)[: max(free, 0)]))
    if promote and rest:
        promoted = tuple(f for f in rest[: config.num_promoted_frames] if f not in slow)
        slow = (slow + promoted)[-config.num_slow_frames :]
    return MemoryLayout(sink=sink, slow=slow, fast=fast)


def read_layout(layout: MemoryLayout, config: MemoryConfig, chunk_start: int) -> MemoryLayout:
    """The frames a chunk starting at frame `chunk_start` reads of a layout: all of them, or under
    promotion='grid' the sink, the fast tier and the newest `num_slow_frames` slow frames that lie a whole
    number of `promotion_interval` chunks before the fast tier's oldest frame (`chunk_start -
    num_past_fast_frames`), where a context teacher's slow frames lie before its recent frames."""
    if config.promotion != "grid":
        return layout
    assert config.num_past_fast_frames is not None  # a slow tier implies a bounded cache
    oldest_fast = chunk_start - config.num_past_fast_frames
    spacing = config.promotion_interval * config.frames_per_chunk
    slow = tuple(f for f in layout.slow if f < oldest_fast and (oldest_fast - f) % spacing == 0)
    return replace(layout, slow=slow[-config.num_slow_frames :])


def read_slots(layout: MemoryLayout, read: MemoryLayout) -> list[int] | None:
    """Slot indices of `layout` that `read` (a `read_layout` of it) holds, in slot order; None when it
    holds them all."""
    if read == layout:
        return None
    wanted = set(read.slots)
    return [slot for slot, entry in enumerate(layout.slots) if entry in wanted]


def kept_after(config: MemoryConfig, num_chunks: int, decisions: Sequence[Sequence[bool]]) -> tuple[int, ...]:
    """The frames the next chunk reads in any layer (sorted ids; every kept frame but under promotion='grid',
    `read_layout`) once `num_chunks` chunks are written, given
    each layer's promotion decision for every chunk (read only where `promotion_due`): what the
    memory's `kept_frames` returns after a rollout that decided so. One row of `decisions` per layer
    that decides on its own (a single row when decisions are shared)."""
    chunk = config.frames_per_chunk
    kept: set[int] = set()
    for layer in decisions:
        layout = MemoryLayout()
        for c in range(num_chunks):
            promote = promotion_due(config, c) and bool(layer[c])
            layout = append_chunk(layout, range(c * chunk, (c + 1) * chunk), config, promote=promote)
        kept.update(read_layout(layout, config, num_chunks * chunk).frames)
    return tuple(sorted(kept))


def slot_sources(
    old: MemoryLayout, new: MemoryLayout, chunk_start: int, *, promoted_offset: int = 0
) -> list[int]:
    """Where each slot of `new` comes from, for the store to rewrite its buffers.

    Sources index the concatenation [old slots..., new frames...]: a value below len(old) is an old
    slot; len(old) + i is frame i of the incoming K/V. Slow entries taken from the incoming chunk are
    read at `promoted_offset + i`, so that a caller can pass the promoted K/V separately (the
    first-pass option appends them after the chunk's own frames).
    """
    old_index = {slot: i for i, slot in enumerate(old.slots)}
    old_frame = {frame: i for i, (_, frame) in reversed(list(enumerate(old.slots)))}
    sources = []
    for tier, frame in new.slots:
        if (tier, frame) in old_index:
            sources.append(old_index[(tier, frame)])
            continue
        if frame in old_frame:  # moved between tiers (a frame leaving fast for a free slow slot)
            sources.append(old_frame[frame])
            continue
        offset = frame - chunk_start
        assert offset >= 0, f"frame {frame} of tier {tier} is neither stored nor new"
        sources.append(len(old) + offset + (promoted_offset if tier == "slow" else 0))
    return sources

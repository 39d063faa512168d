"""Pure mapping from a memory layout to temporal RoPE positions (paper Sec. 5, Eq. 8).

Keys are stored un-rotated; the model rotates every cached key at the position given here on each
read, so positions may change from chunk to chunk (a slow entry slides down as older ones leave).

With s the chunk's first frame id, F frames per chunk and R = `num_cache_frames`:

    absolute        key = frame id; queries s .. s+F-1 (grows without bound)
    bounded         anchor = min(s+F-1, R-1); queries anchor-F+1 .. anchor; sink keys 0 .. n_sink-1;
                    the m other cached keys, in slot order, at anchor-F-m+1 .. anchor-F, clamped to
                    >= n_sink so that no other key shares a sink position (before the cache is full
                    the clean policy may hold one frame more than there are positions below the
                    queries, and the oldest two then share position n_sink). This is Eq. 8 as
                    released: once the cache is full, slot j sits at position j and queries at
                    R-F .. R-1 (18..20 for Context Forcing).
    block-relative  as Infinity-RoPE: queries as in `bounded`; sink keys 0 .. n_sink-1; any other key
                    keeps its time offset to the chunk, g - (s+F-1 - anchor), clamped >= 0.

Every bounded and block-relative position lies in [0, R-1].
"""

from __future__ import annotations

from dataclasses import dataclass

from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.policy import MemoryLayout

__all__ = ["ChunkPositions", "rope_positions"]


@dataclass(frozen=True, slots=True)
class ChunkPositions:
    """Temporal RoPE positions of one chunk's read: cached keys in slot order, then the chunk's queries."""

    context: tuple[int, ...]
    query: tuple[int, ...]


def rope_positions(layout: MemoryLayout, config: MemoryConfig, chunk_start: int) -> ChunkPositions:
    """Positions of the cached frames (slot order) and of the chunk starting at frame `chunk_start`.

    Args:
        layout: the layout the chunk reads.
        config: supplies the mode, the chunk size and R.
        chunk_start: frame id of the chunk's first frame.
    """
    size = config.frames_per_chunk
    if config.positions == "absolute":
        return ChunkPositions(context=layout.frames, query=tuple(range(chunk_start, chunk_start + size)))
    limit = config.num_cache_frames
    assert limit is not None, "bounded positions need a bounded cache (checked by MemoryConfig)"
    anchor = min(chunk_start + size - 1, limit - 1)
    query = tuple(range(anchor - size + 1, anchor + 1))
    sink = tuple(range(len(layout.sink)))
    others = layout.slow + layout.fast
    if config.positions == "bounded":
        top = anchor - size
        lowest = len(sink)  # the released code never reads a non-sink key below the sink
        packed = tuple(max(top - len(others) + 1 + i, lowest) for i in range(len(others)))
        return ChunkPositions(context=sink + packed, query=query)
    shift = chunk_start + size - 1 - anchor
    relative = tuple(max(frame - shift, 0) for frame in others)
    return ChunkPositions(context=sink + relative, query=query)

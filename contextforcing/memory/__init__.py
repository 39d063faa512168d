"""Sink / slow / fast KV memory for streamed generation: config, pure policy and positions, store, facade."""

from contextforcing.memory.config import MEMORY_POLICIES, MemoryConfig, memory_preset
from contextforcing.memory.context import ContextMemory, MemoryRead, build_memory, chunk_similarity
from contextforcing.memory.policy import (
    MemoryLayout,
    append_chunk,
    promotion_due,
    read_layout,
    should_promote,
    slot_sources,
)
from contextforcing.memory.positions import ChunkPositions, rope_positions
from contextforcing.memory.released import ReleasedMemory, released_test_due
from contextforcing.memory.store import KVStore, StoreShape
from contextforcing.memory.trace import ChunkRecord, LayerRecord, MemoryTrace, plot_trace

__all__ = [
    "MEMORY_POLICIES",
    "ChunkPositions",
    "ChunkRecord",
    "ContextMemory",
    "KVStore",
    "LayerRecord",
    "MemoryConfig",
    "MemoryLayout",
    "MemoryRead",
    "MemoryTrace",
    "ReleasedMemory",
    "StoreShape",
    "append_chunk",
    "build_memory",
    "chunk_similarity",
    "memory_preset",
    "plot_trace",
    "promotion_due",
    "read_layout",
    "released_test_due",
    "rope_positions",
    "should_promote",
    "slot_sources",
]

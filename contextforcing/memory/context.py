"""ContextMemory: the facade the streaming loop uses. The model reads memory; the loop writes it.

    read()   -> MemoryRead: per-layer `LayerContext` views (un-rotated K/V + RoPE positions) and the
                chunk's query layout; nothing is copied
    read_static() -> StaticRead: the same read as fixed-size tensors (the whole store, a position and
                a filled flag per slot), so a compiled chunk step sees one shape from the first chunk on
    append() <- the chunk's clean K/V and latents (and, optionally, its first-pass K/V); runs the
                promotion test, updates the layouts (policy.py), reorders the store, records the trace

Promotion test (Eq. 7): r = mean over the chunk's tokens of the un-rotated keys [B, N*Dh]; the
similarity is the batch mean of cos(r, r_prev), with r_prev the previous chunk's clean keys. When
decisions are shared by all layers, the per-layer similarities are averaged into one.

Which pass decides: by default the clean refresh pass (t = 0) decides and its K/V are promoted;
`MemoryConfig.decide_on="first-pass"` decides on, and promotes, the first noisy pass instead, against
the previous chunk's clean keys. Neither is the released code's bookkeeping, which tests every call
against the call before it and writes promotions before the chunk attends: that is `ReleasedMemory`
(`bookkeeping="released"`, `released.py`); `build_memory` picks the class a config needs.

Shape legend: B batch, F frames per chunk, T tokens per frame, N heads, Dh head dim, C latent channels,
H x W latent size, U kept frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.policy import (
    MemoryLayout,
    append_chunk,
    promotion_due,
    read_layout,
    read_slots,
    should_promote,
    slot_sources,
)
from contextforcing.memory.positions import ChunkPositions, rope_positions
from contextforcing.memory.store import KVStore, StoreShape
from contextforcing.memory.trace import ChunkRecord, LayerRecord, MemoryTrace
from contextforcing.model.layout import FrameAttention, LayerContext, bidirectional

__all__ = ["ContextMemory", "MemoryRead", "StaticRead", "build_memory", "chunk_similarity"]

KV = tuple[Tensor, Tensor]


@dataclass(frozen=True, slots=True)
class MemoryRead:
    """What the next chunk reads.

    Attributes:
        context: one LayerContext per layer, or None while the memory is empty.
        layout: the chunk's own attention layout (bidirectional at its query positions).
        positions: per-layer positions (one entry when decisions are shared).
    """

    context: list[LayerContext] | None
    layout: FrameAttention
    positions: tuple[ChunkPositions, ...]
    in_call_writes: bool = False
    """The memory rewrites itself during the calls that read it (released bookkeeping): every call of
    the chunk must go through `context`, in order and without autograd."""


@dataclass(frozen=True, slots=True)
class StaticRead:
    """What the next chunk reads, in tensors whose shapes never change (a compiled step's inputs).

    Attributes:
        keys: [Y, B, S, T, N, Dh] the store's whole un-rotated key buffer (S = capacity slots).
        values: [Y, B, S, T, N, Dh] the store's whole value buffer.
        positions: [Y, S] long temporal RoPE position of every slot (0 for an empty one).
        filled: [Y, S] bool, which slots hold a frame; None once every slot of every layer does.
        query_positions: [F] long positions of the chunk's frames.
    """

    keys: Tensor
    values: Tensor
    positions: Tensor
    filled: Tensor | None
    query_positions: Tensor


def chunk_similarity(keys: Sequence[Tensor], previous: Sequence[Tensor]) -> list[float]:
    """Per-layer cosine similarity of mean chunk keys, averaged over the batch.

    Args:
        keys: per layer, this chunk's un-rotated keys [B, L, N, Dh].
        previous: per layer, the previous chunk's mean keys [B, N*Dh] (see `mean_key`).
    """
    current = torch.stack([_mean_key(k) for k in keys])  # (Y, B, N*Dh)
    return F.cosine_similarity(current, torch.stack(list(previous)), dim=-1).mean(dim=1).tolist()


def _mean_key(keys: Tensor) -> Tensor:
    return keys.float().mean(dim=1).flatten(1)  # (B, N*Dh)


def build_memory(config: MemoryConfig, store_shape: StoreShape, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> ContextMemory:  # fmt: skip
    """The memory a config asks for: `ContextMemory`, or `ReleasedMemory` for bookkeeping='released'."""
    if config.bookkeeping == "released":
        from contextforcing.memory.released import ReleasedMemory

        return ReleasedMemory(config, store_shape, device=device, dtype=dtype)
    return ContextMemory(config, store_shape, device=device, dtype=dtype)


class ContextMemory:
    """Sink / slow / fast memory over a preallocated KVStore, for one streamed batch of videos."""

    bookkeeping: ClassVar[str] = "clean"
    """The `MemoryConfig.bookkeeping` this class implements."""

    def __init__(self, config: MemoryConfig, store_shape: StoreShape, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        if config.bookkeeping != self.bookkeeping:
            raise ValueError(
                f"{type(self).__name__} keeps the {self.bookkeeping!r} bookkeeping, the config asks for "
                f"{config.bookkeeping!r}; build the memory with build_memory(config, ...)"
            )
        if config.layer_thresholds and len(config.layer_thresholds) != store_shape.num_layers:
            raise ValueError(
                f"MemoryConfig.layer_thresholds holds {len(config.layer_thresholds)} thresholds for a model "
                f"of {store_shape.num_layers} layers"
            )
        self.config = config
        self.store = KVStore(store_shape, device=device, dtype=dtype)
        self.num_layers = store_shape.num_layers
        self.layouts = [MemoryLayout()] * self.num_layers
        self.num_frames = 0
        self.trace = MemoryTrace(config)
        self._device = torch.device(device)
        self._previous_mean_keys: list[Tensor] | None = None
        self._recached_before_next = False

    @property
    def num_chunks(self) -> int:
        return self.num_frames // self.config.frames_per_chunk

    @property
    def recached(self) -> bool:
        """Whether the kept frames were re-encoded since the last chunk was written."""
        return self._recached_before_next

    @property
    def shared(self) -> bool:
        return not self.config.per_layer_decisions

    def read_layouts(self) -> list[MemoryLayout]:
        """Per layer, the frames the next chunk reads (`policy.read_layout`: all kept frames but under
        promotion='grid'). Layers that share a layout share its read, worked out once."""
        reads: dict[int, MemoryLayout] = {}
        for layout in self.layouts:
            if id(layout) not in reads:
                reads[id(layout)] = read_layout(layout, self.config, self.num_frames)
        return [reads[id(layout)] for layout in self.layouts]

    def _read_slots(self, layer: int, read: MemoryLayout) -> Sequence[int]:
        """The layer's store slots that `read` (its entry of `read_layouts`) holds, in slot order."""
        layout = self.layouts[layer]
        slots = read_slots(layout, read)
        return range(len(layout)) if slots is None else slots

    def _positions(self, reads: Sequence[MemoryLayout]) -> tuple[ChunkPositions, ...]:
        reads = reads[:1] if self.shared else reads
        return tuple(rope_positions(read, self.config, self.num_frames) for read in reads)

    def positions(self) -> tuple[ChunkPositions, ...]:
        """Per-layer positions of the next chunk's read (one entry when decisions are shared)."""
        return self._positions(self.read_layouts())

    def read(self) -> MemoryRead:
        """Views of the cached K/V at their RoPE positions, for the next chunk."""
        reads = self.read_layouts()
        positions = self._positions(reads)
        query = torch.tensor(positions[0].query, device=self._device)
        layout = bidirectional(self.config.frames_per_chunk, query)
        if all(len(layout) == 0 for layout in self.layouts):
            return MemoryRead(None, layout, positions)
        tensors: dict[tuple[int, ...], Tensor] = {}  # equal positions share one tensor, so one RoPE table
        context = []
        for layer in range(self.num_layers):
            key = positions[0 if self.shared else layer].context
            if key not in tensors:
                tensors[key] = torch.tensor(key, device=self._device, dtype=torch.long)
            slots = self._read_slots(layer, reads[layer])
            keys, values = self.store.read(layer, None if isinstance(slots, range) else slots)  # all: a view
            context.append(LayerContext(keys, values, tensors[key]))
        return MemoryRead(context, layout, positions)

    def read_static(self) -> StaticRead:
        """The read of `read()` over the whole store: empty slots are flagged, not cut off."""
        if type(self).read is not ContextMemory.read:
            raise ValueError(f"{type(self).__name__} rewrites itself during the calls; it has no static read")
        reads = self.read_layouts()
        positions = self._positions(reads)
        capacity = self.store.shape.capacity
        rows, flags = [], []
        for layer in range(self.num_layers):
            slots = self._read_slots(layer, reads[layer])
            row = [0] * capacity  # a slot the chunk does not read is flagged, at position 0
            for slot, position in zip(slots, positions[0 if self.shared else layer].context, strict=True):
                row[slot] = position
            rows.append(row)
            flags.append([False] * capacity)
            for slot in slots:
                flags[-1][slot] = True
        filled = None if all(all(row) for row in flags) else torch.tensor(flags, device=self._device)
        return StaticRead(
            keys=self.store.keys_YBSTNDh,
            values=self.store.values_YBSTNDh,
            positions=torch.tensor(rows, device=self._device, dtype=torch.long),
            filled=filled,
            query_positions=torch.tensor(positions[0].query, device=self._device),
        )

    def append(self, kv: Sequence[KV], latents: Tensor, *, first_pass_kv: Sequence[KV] | None = None,
               prompt_index: int = 0) -> ChunkRecord:  # fmt: skip
        """Write a generated chunk: decide promotions, update the layouts, reorder the store.

        Args:
            kv: per layer, the chunk's clean (refresh-pass) un-rotated (keys, values), each [B, F*T, N, Dh].
            latents: the chunk's clean latents [B, C, F, H, W].
            first_pass_kv: per layer, the K/V of the chunk's first denoising pass; required when
                `config.decide_on == "first-pass"`, which then decides on and promotes these.
            prompt_index: index of the prompt the chunk was generated with (for the trace).

        Returns:
            The chunk's trace record (also appended to `self.trace`).
        """
        cfg, chunk_index = self.config, self.num_chunks
        if len(kv) != self.num_layers:
            raise ValueError(f"got K/V of {len(kv)} layers, the memory has {self.num_layers}")
        if latents.shape[2] != cfg.frames_per_chunk:
            raise ValueError(f"a chunk has {cfg.frames_per_chunk} frames, got latents {tuple(latents.shape)}")
        deciding = kv
        if cfg.decide_on == "first-pass":
            if first_pass_kv is None:
                raise ValueError("decide_on='first-pass' needs the chunk's first-pass K/V")
            deciding = first_pass_kv
        similarities = self._similarities(deciding, chunk_index)
        decisions = self._decisions(chunk_index, similarities)
        record = self._record(chunk_index, similarities, decisions, prompt_index)
        self._write(kv, latents, decisions, deciding if cfg.decide_on == "first-pass" else None)
        self._previous_mean_keys = [_mean_key(k) for k, _ in kv]
        self.num_frames += cfg.frames_per_chunk
        self.trace.records.append(record)
        return record

    def _similarities(self, kv: Sequence[KV], chunk_index: int) -> list[float | None]:
        if self.config.promotion != "surprisal" or not promotion_due(self.config, chunk_index):
            return [None] * self.num_layers
        assert self._previous_mean_keys is not None, "a due promotion test always has a previous chunk"
        return list(chunk_similarity([k for k, _ in kv], self._previous_mean_keys))

    def _decisions(self, chunk_index: int, similarities: list[float | None]) -> list[bool]:
        if self.shared:
            known = [s for s in similarities if s is not None]
            shared = sum(known) / len(known) if known else None
            return [should_promote(self.config, chunk_index, shared)] * self.num_layers
        return [should_promote(self.config, chunk_index, s, layer) for layer, s in enumerate(similarities)]

    def _record(self, chunk_index: int, similarities: list[float | None], decisions: list[bool],
                prompt_index: int) -> ChunkRecord:  # fmt: skip
        start, cfg = self.num_frames, self.config
        frames = tuple(range(start, start + cfg.frames_per_chunk))
        reads = self.read_layouts()
        positions = self._positions(reads)
        layers = []
        for layer in range(1 if self.shared else self.num_layers):
            known = [s for s in similarities if s is not None]
            similarity = (sum(known) / len(known) if known else None) if self.shared else similarities[layer]
            promoted = self._promoted_frames(self.layouts[layer], frames) if decisions[layer] else ()
            layers.append(LayerRecord(reads[layer], positions[layer].context, similarity, promoted))
        recached, self._recached_before_next = self._recached_before_next, False
        return ChunkRecord(chunk_index, frames, positions[0].query, tuple(layers), prompt_index, recached)

    def _promoted_frames(self, layout: MemoryLayout, frames: tuple[int, ...]) -> tuple[int, ...]:
        room = max(self.config.num_sink_frames - len(layout.sink), 0)
        return frames[room : room + self.config.num_promoted_frames]

    def _write(
        self, kv: Sequence[KV], latents: Tensor, decisions: list[bool], promoted_kv: Sequence[KV] | None
    ) -> None:
        cfg, start = self.config, self.num_frames
        frames = range(start, start + cfg.frames_per_chunk)
        new_layouts: dict[tuple[int, bool], MemoryLayout] = {}
        for layer in range(self.num_layers):
            old = self.layouts[layer]
            memo_key = (id(old), decisions[layer])
            if memo_key not in new_layouts:
                new_layouts[memo_key] = append_chunk(old, frames, cfg, promote=decisions[layer])
            new = new_layouts[memo_key]
            keys, values = kv[layer]
            new_latents = latents
            offset = 0
            if promoted_kv is not None and decisions[layer]:
                keys = torch.cat([keys, promoted_kv[layer][0]], dim=1)
                values = torch.cat([values, promoted_kv[layer][1]], dim=1)
                new_latents = torch.cat([latents, latents], dim=2)
                offset = cfg.frames_per_chunk
            self.store.rewrite(
                layer, slot_sources(old, new, start, promoted_offset=offset), keys, values, new_latents
            )
        self.layouts = [new_layouts[(id(self.layouts[y]), decisions[y])] for y in range(self.num_layers)]

    def kept_frames(self) -> tuple[tuple[int, ...], Tensor]:
        """Frame ids the next chunk reads in any layer (sorted) and their clean latents [B, C, U, H, W]:
        every kept frame, but under promotion='grid' (`read_layouts`)."""
        found: dict[int, Tensor] = {}
        for layer, (layout, read) in enumerate(zip(self.layouts, self.read_layouts(), strict=True)):
            latents, ids = self.store.latents(layer), layout.frames
            for slot in self._read_slots(layer, read):
                found.setdefault(ids[slot], latents[:, :, slot])
        frames = tuple(sorted(found))
        if not frames:
            return (), self.store.latents(0)
        return frames, torch.stack([found[f] for f in frames], dim=2)

    def recache_layout(self, frames: Sequence[int], *, bidirectional: bool = False) -> FrameAttention:
        """Attention layout of a re-cache pass over the kept frames (sorted ids, as from `kept_frames`).

        Each frame sees the kept frames of its own and earlier chunks (block-causal, as they were made),
        or every kept frame (`bidirectional`), at the positions the next chunk would read them, so
        bounded runs stay within [0, R-1].
        """
        sink_frames = set(self.layouts[0].sink)
        sink = tuple(f for f in frames if f in sink_frames)
        others = tuple(f for f in frames if f not in sink_frames)
        layout = MemoryLayout(sink=sink, fast=others)
        position = torch.tensor(
            rope_positions(layout, self.config, self.num_frames).context, device=self._device
        )
        chunk = torch.tensor(frames, device=self._device) // self.config.frames_per_chunk
        return FrameAttention(
            query_positions=position,
            key_frames=torch.arange(len(frames), device=self._device),
            key_positions=position,
            visible=None if bidirectional else chunk[:, None] >= chunk[None, :],
        )

    def overwrite_frames(self, frames: Sequence[int], kv: Sequence[KV], *, refresh_sink: bool) -> None:
        """Replace the stored K/V of `frames` (re-encoded under a new prompt) in every layer; under
        promotion='grid' only in the slots the next chunk reads (`frames` holds no other).

        Args:
            frames: frame ids, as from `kept_frames`.
            kv: per layer, their (keys, values), each [B, U*T, N, Dh], frames in the order given.
            refresh_sink: also replace the sink frames; else the sink keeps its old K/V.
        """
        tokens = self.store.shape.tokens_per_frame
        position = {frame: i for i, frame in enumerate(frames)}
        for layer, (layout, read) in enumerate(zip(self.layouts, self.read_layouts(), strict=True)):
            slots, picks, entries = [], [], layout.slots
            for slot in self._read_slots(layer, read):
                tier, frame = entries[slot]
                if tier == "sink" and not refresh_sink:
                    continue
                slots.append(slot)
                picks.append(position[frame])
            keys, values = (t.unflatten(1, (-1, tokens))[:, picks].flatten(1, 2) for t in kv[layer])
            self.store.overwrite(layer, slots, keys, values)
        self._recached_before_next = True
        # The next promotion test compares against the re-encoded previous chunk.
        if self._previous_mean_keys is not None and self.num_frames:
            last = [
                position.get(f)
                for f in range(self.num_frames - self.config.frames_per_chunk, self.num_frames)
            ]
            if all(p is not None for p in last):
                self._previous_mean_keys = [
                    _mean_key(k.unflatten(1, (-1, tokens))[:, last].flatten(1, 2)) for k, _ in kv
                ]

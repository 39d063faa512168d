"""The released code's bookkeeping of the sink / slow / fast memory (`bookkeeping="released"`).

The released pipeline keeps, per layer, one array of R = sink + slow + fast frame slots:

    [0, S)       sink: the first S frames
    [S, R-L)     slow: promoted frames, at S, S+1, ... in the order they were promoted
    [R-L, R)     local: the newest L frames (L = num_fast_frames), the chunk being generated included

and differs from the clean policy (`policy.py`) in when and where it writes:

- Every model call of a chunk (each denoising step and the refresh) is tested in every layer: the
  cosine similarity of its mean key with the previous call's (the previous chunk's refresh, for the
  first call). The first call below tau promotes; later calls of the chunk do not promote again.
- Tests start with the chunk that begins at frame `num_fast_frames` (chunk 2 for Context Forcing).
- The promoting call writes its own first frame's K/V into the slow region *before* it attends, so
  that call and the later ones of the chunk already read the promotion.
- Before the cache is full, frames are written one after another, so the slots after the sink hold
  ordinary frames; promotion k (counting from 0) overwrites slot S+k, the oldest ordinary frame left.
  A frame promoted before the cache is full thus sits ahead of older ordinary frames, and also stays
  in its own ordinary slot (a second copy) until that slot leaves.
- Once the slow region holds its N_slow promotions, a promotion shifts slots S+1 .. R-L-1 down by one
  (the oldest promotion leaves) and writes the new one at R-L-1.
- Once the cache is full, each chunk's first call drops the oldest chunk of the local region; ordinary
  frames left in the slow region stay until promotions overwrite them.
- Slot j is read at RoPE position j; the chunk's queries sit at its own slots' positions.

Here the slot array is a `MemoryLayout` in slot order: `sink` the sink slots, `slow` the promoted
slots, `fast` every other slot (ordinary frames in the slow region first, then the local region), so
`rope_positions` in bounded mode gives slot j position j. The layout functions below are pure;
`ReleasedMemory` applies them to the store through the `on_keys` hook of each layer's context.

Shape legend: B batch, L call tokens, N heads, Dh head dim, C latent channels, F frames per chunk,
H x W latent size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.context import KV, ContextMemory, MemoryRead, _mean_key
from contextforcing.memory.policy import MemoryLayout
from contextforcing.memory.positions import ChunkPositions, rope_positions
from contextforcing.memory.trace import ChunkRecord, LayerRecord

__all__ = ["ReleasedMemory", "released_append", "released_promote", "released_read", "released_test_due"]


def released_test_due(config: MemoryConfig, chunk_start: int) -> bool:
    """Whether the calls of the chunk starting at frame `chunk_start` take the similarity test."""
    assert config.num_fast_frames is not None, "the released bookkeeping needs a bounded cache"
    return chunk_start >= config.num_fast_frames


def released_read(layout: MemoryLayout, config: MemoryConfig) -> tuple[MemoryLayout, list[int]]:
    """The layout a chunk reads, and where its slots come from (old slot indices).

    Once the cache is full the chunk's first call drops the oldest chunk of the local region (slots
    R-L .. R-L+F-1); the rest of the local region moves down, and the chunk takes the last F slots.
    """
    limit, size, fast = config.num_cache_frames, config.frames_per_chunk, config.num_fast_frames
    assert limit is not None and fast is not None, "the released bookkeeping needs a bounded cache"
    count = len(layout)
    if count + size <= limit:
        return layout, list(range(count))
    assert count == limit, f"a released cache fills in whole chunks, got {count} of {limit} slots"
    dropped = range(limit - fast, limit - fast + size)
    sources = [slot for slot in range(count) if slot not in dropped]
    return _split([layout.frames[slot] for slot in sources], len(layout.sink), len(layout.slow)), sources


def released_promote(
    layout: MemoryLayout, frame: int, config: MemoryConfig
) -> tuple[MemoryLayout, list[int]]:
    """The layout after a call promotes `frame`, the first frame of its chunk, and the slot sources.

    Sources index [old slots..., the call's frames...]: the value len(layout) is the call's first frame.
    """
    count, sink, slow = len(layout), len(layout.sink), len(layout.slow)
    sources = list(range(count))
    if slow < config.num_slow_frames:
        # Overwrite slot S+k, the oldest ordinary frame left (config validation keeps one there).
        assert layout.fast, "a promotion needs an ordinary frame to overwrite"
        sources[sink + slow] = count
        return MemoryLayout(layout.sink, (*layout.slow, frame), layout.fast[1:]), sources
    # The slow region is full: shift it down by one, evicting the oldest, and write the new frame last.
    sources[sink : sink + slow] = [*range(sink + 1, sink + slow), count]
    return MemoryLayout(layout.sink, (*layout.slow[1:], frame), layout.fast), sources


def released_append(layout: MemoryLayout, frames: Sequence[int], config: MemoryConfig) -> MemoryLayout:
    """The layout after a chunk's frames are written into the slots after the ones it read."""
    room = max(config.num_sink_frames - len(layout.sink), 0)
    frames = tuple(frames)
    assert not room or not (layout.slow or layout.fast), "the sink fills before any other slot"
    return MemoryLayout(layout.sink + frames[:room], layout.slow, layout.fast + frames[room:])


def _split(frames: Sequence[int], sink: int, slow: int) -> MemoryLayout:
    frames = tuple(frames)
    return MemoryLayout(frames[:sink], frames[sink : sink + slow], frames[sink + slow :])


def _deciding_similarity(calls: Sequence[float | None], promoted_at: int | None) -> float | None:
    """The lowest similarity up to the decision: below tau exactly when the chunk promoted."""
    tested = [s for s in (calls if promoted_at is None else calls[: promoted_at + 1]) if s is not None]
    return min(tested) if tested else None


class ReleasedMemory(ContextMemory):
    """The memory kept as the released code keeps it; the loop drives it exactly like `ContextMemory`.

    `read()` opens the chunk (drops the oldest local chunk once the cache is full) and hands out
    contexts whose `on_keys` hook tests every model call and writes a promotion into the store before
    the call attends. `append()` writes the chunk's refresh K/V into its own slots and closes it.
    """

    bookkeeping = "released"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._open = False
        self._last_call_keys: list[Tensor | None] = [None] * self.num_layers
        self._read_layouts: list[MemoryLayout] = list(self.layouts)
        self._calls: list[list[float | None]] = [[] for _ in range(self.num_layers)]
        self._promoted_at: list[int | None] = [None] * self.num_layers

    def positions(self) -> tuple[ChunkPositions, ...]:
        """Per-layer positions of the next chunk's read: slot j at position j."""
        layouts = self.layouts if self._open else [released_read(lay, self.config)[0] for lay in self.layouts]
        return tuple(rope_positions(layout, self.config, self.num_frames) for layout in layouts)

    def read(self) -> MemoryRead:
        """Open the chunk and return its contexts, each with the promotion hook of its layer."""
        self._open_chunk()
        read = super().read()
        if read.context is None:
            return replace(read, in_call_writes=True)
        context = [replace(c, on_keys=self._hook(layer)) for layer, c in enumerate(read.context)]
        return replace(read, context=context, in_call_writes=True)

    def append(self, kv: Sequence[KV], latents: Tensor, *, first_pass_kv: Sequence[KV] | None = None,
               prompt_index: int = 0) -> ChunkRecord:  # fmt: skip
        """Write the chunk's clean (refresh) K/V into its own slots; `first_pass_kv` is not used.

        A promoted slot keeps the K/V of the call that promoted it; its latent is the chunk's clean one.
        """
        cfg, start = self.config, self.num_frames
        if len(kv) != self.num_layers:
            raise ValueError(f"got K/V of {len(kv)} layers, the memory has {self.num_layers}")
        if latents.shape[2] != cfg.frames_per_chunk:
            raise ValueError(f"a chunk has {cfg.frames_per_chunk} frames, got latents {tuple(latents.shape)}")
        self._open_chunk()
        frames = tuple(range(start, start + cfg.frames_per_chunk))
        record = self._released_record(frames, prompt_index)
        for layer, (keys, values) in enumerate(kv):
            old = self.layouts[layer]
            new = released_append(old, frames, cfg)
            sources = [*range(len(old)), *range(len(old), len(old) + len(frames))]
            self.store.rewrite(layer, sources, keys, values, latents)
            if self._promoted_at[layer] is not None:
                self.store.write_latent(layer, new.slots.index(("slow", start)), latents[:, :, 0])
            self.layouts[layer] = new
        # The refresh is the chunk's last call; with no context (the first chunk) no hook saw it.
        self._last_call_keys = [_mean_key(k) for k, _ in kv]
        self.num_frames += cfg.frames_per_chunk
        self._open = False
        self.trace.records.append(record)
        return record

    def _open_chunk(self) -> None:
        if self._open:
            return
        for layer, layout in enumerate(self.layouts):
            new, sources = released_read(layout, self.config)
            if sources != list(range(len(layout))):
                self.store.reorder(layer, sources)
            self.layouts[layer] = new
        self._read_layouts = list(self.layouts)
        self._calls = [[] for _ in range(self.num_layers)]
        self._promoted_at = [None] * self.num_layers
        self._open = True

    def _hook(self, layer: int) -> Callable[[Tensor, Tensor], None]:
        def on_keys(keys: Tensor, values: Tensor) -> None:
            self._on_call(layer, keys, values)

        return on_keys

    def _on_call(self, layer: int, keys: Tensor, values: Tensor) -> None:
        """Test one call of one layer against the previous call; promote before the call attends."""
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the released bookkeeping writes the cache during the forward; run it without autograd"
            )
        cfg, start = self.config, self.num_frames
        mean, previous = _mean_key(keys), self._last_call_keys[layer]
        self._last_call_keys[layer] = mean
        similarity = None
        if released_test_due(cfg, start) and previous is not None:
            similarity = F.cosine_similarity(mean, previous, dim=-1).mean().item()
        self._calls[layer].append(similarity)
        if (
            similarity is None
            or similarity >= cfg.similarity_threshold
            or self._promoted_at[layer] is not None
        ):
            return
        self._promoted_at[layer] = len(self._calls[layer]) - 1
        new, sources = released_promote(self.layouts[layer], start, cfg)
        tokens, (channels, height, width) = self.store.shape.tokens_per_frame, self.store.shape.latent_shape
        latent = self.store.latents_YBCSHW.new_zeros(
            (keys.shape[0], channels, 1, height, width)
        )  # set at append
        self.store.rewrite(layer, sources, keys[:, :tokens], values[:, :tokens], latent)
        self.layouts[layer] = new

    def _released_record(self, frames: tuple[int, ...], prompt_index: int) -> ChunkRecord:
        positions = [rope_positions(layout, self.config, frames[0]) for layout in self._read_layouts]
        layers = []
        for layer, layout in enumerate(self._read_layouts):
            calls, at = tuple(self._calls[layer]), self._promoted_at[layer]
            promoted = () if at is None else frames[:1]
            layers.append(
                LayerRecord(
                    layout, positions[layer].context, _deciding_similarity(calls, at), promoted, calls, at
                )
            )
        recached, self._recached_before_next = self._recached_before_next, False
        return ChunkRecord(self.num_chunks, frames, positions[0].query, tuple(layers), prompt_index, recached)

"""Who attends to whom, and where: the frame-level attention layouts of the DiT.

The DiT runs in three ways, all through one code path:

(a) bidirectional: every frame sees every frame (teacher, critic);
(b) block-causal: a frame sees its own chunk and all earlier chunks (parallel student training);
(c) one chunk against an external, read-only `LayerContext` of cached, un-rotated keys and values.

(a) and (b) are `FrameAttention` values. A `FrameAttention` lists key entries, each naming a frame of
the current call and the temporal RoPE position it is read at, plus a [query frame, key entry]
visibility matrix. A frame may appear several times as a key at different positions, so one forward
can reproduce a streaming run in which the same cached frame was read at different bounded
positions by different chunks.

Shape legend: Fq query frames, Fk key entries, B batch, Lc cached tokens, N heads, D head dim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["FrameAttention", "LayerContext", "QueryGroup", "bidirectional", "block_causal", "query_groups"]


@dataclass(frozen=True, slots=True)
class FrameAttention:
    """Frame-level attention layout of one forward call.

    Attributes:
        query_positions: [Fq] temporal RoPE position of each frame of the call.
        key_frames: [Fk] long, the frame of the call behind each key entry.
        key_positions: [Fk] temporal RoPE position at which each key entry is read.
        visible: [Fq, Fk] bool, or None when every query sees every key entry.
        own_keys_in_order: derived: the key entries are the call's frames in order, at the query
            positions (so the model reuses the queries' rotation for them). Checked once here, so
            that a forward reading the layout needs no host synchronisation.
    """

    query_positions: Tensor
    key_frames: Tensor
    key_positions: Tensor
    visible: Tensor | None = None
    own_keys_in_order: bool = field(init=False)

    def __post_init__(self) -> None:
        num_queries, num_keys = self.query_positions.shape[0], self.key_frames.shape[0]
        if self.key_positions.shape != (num_keys,):
            raise ValueError(f"key_positions must be [{num_keys}], got {tuple(self.key_positions.shape)}")
        if self.visible is not None and self.visible.shape != (num_queries, num_keys):
            raise ValueError(f"visible must be [{num_queries}, {num_keys}], got {tuple(self.visible.shape)}")
        if num_keys and (self.key_frames.min() < 0 or self.key_frames.max() >= num_queries):
            raise ValueError(f"key_frames must index the call's {num_queries} frames")
        in_order = num_keys == num_queries and (
            self.key_positions is self.query_positions
            or torch.equal(self.key_positions, self.query_positions)
        )
        in_order = in_order and torch.equal(self.key_frames.cpu(), torch.arange(num_queries))
        object.__setattr__(self, "own_keys_in_order", in_order)


@dataclass(frozen=True, slots=True)
class LayerContext:
    """Cached keys and values one layer reads in mode (c); never written by the model.

    Attributes:
        keys: [B, Lc, N, D] un-rotated keys (after the RMS q/k norm).
        values: [B, Lc, N, D].
        positions: [Lc // tokens_per_frame] temporal RoPE position of each cached frame.
        filled: [Lc // tokens_per_frame] bool, which cached frames hold keys (a fixed-size read of a
            store that is not full yet: the others are never attended to); None when all do.
        on_keys: called by self-attention with the call's own un-rotated (keys, values), each
            [B, L, N, D], before it reads `keys` and `values`. The owner of the cache may rewrite
            them in place there (the released bookkeeping promotes a frame before the chunk
            attends); it must keep their shape and `positions`. None for a plain read.
    """

    keys: Tensor
    values: Tensor
    positions: Tensor
    on_keys: Callable[[Tensor, Tensor], None] | None = None
    filled: Tensor | None = None

    def __post_init__(self) -> None:
        if self.keys.shape != self.values.shape or self.keys.ndim != 4:
            raise ValueError(
                f"context keys and values must both be [B, L, N, D], got {tuple(self.keys.shape)} "
                f"and {tuple(self.values.shape)}"
            )


def bidirectional(num_frames: int, positions: Tensor | None = None) -> FrameAttention:
    """Mode (a): every frame sees every frame; positions default to 0..F-1."""
    if positions is None:
        positions = torch.arange(num_frames)
    frames = torch.arange(num_frames, device=positions.device)
    return FrameAttention(query_positions=positions, key_frames=frames, key_positions=positions)


def block_causal(num_frames: int, chunk_size: int, positions: Tensor | None = None) -> FrameAttention:
    """Mode (b): a frame sees its own chunk (bidirectionally) and every earlier chunk."""
    if chunk_size <= 0 or num_frames % chunk_size:
        raise ValueError(f"{num_frames} frames do not split into chunks of {chunk_size}")
    if positions is None:
        positions = torch.arange(num_frames)
    frames = torch.arange(num_frames, device=positions.device)
    chunk = frames // chunk_size
    visible = chunk[:, None] >= chunk[None, :]
    return FrameAttention(
        query_positions=positions, key_frames=frames, key_positions=positions, visible=visible
    )


@dataclass(frozen=True, slots=True)
class QueryGroup:
    """A run of consecutive query frames that see the same key entries.

    `keys` is None when the group sees every key entry, else the [k] long indices of its entries.
    """

    start: int
    stop: int
    keys: Tensor | None


def query_groups(visible: Tensor | None, num_queries: int) -> list[QueryGroup]:
    """Split the queries into runs with identical visibility rows, so that attention needs no mask."""
    if visible is None or bool(visible.all()):
        return [QueryGroup(0, num_queries, None)]
    groups: list[QueryGroup] = []
    start = 0
    for frame in range(1, num_queries + 1):
        if frame == num_queries or not torch.equal(visible[frame], visible[start]):
            row = visible[start]
            if not bool(row.any()):
                raise ValueError(f"query frame {start} sees no key")
            keys = None if bool(row.all()) else row.nonzero().squeeze(1)
            groups.append(QueryGroup(start, frame, keys))
            start = frame
    return groups

"""KVStore: preallocated per-layer buffers of un-rotated keys, values and clean latents, by frame slot.

The store is a container. It does not decide what to keep (`policy.py`) nor where keys sit in time
(`positions.py`); it only reorders its slots as told and hands out views. Buffers are allocated once,
so once the cache is full memory stays flat however long the video runs.

Each layer has its own slot order (per-layer promotion decisions make slow tiers differ), and keeps
the clean latent of every slot so the frames can be re-encoded under a new prompt.

Shape legend: Y layers, B batch, S slots (frames), T tokens per frame, N heads, Dh head dim,
C latent channels, H x W latent size, F incoming frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KVStore", "StoreShape"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreShape:
    """Sizes of a KVStore."""

    num_layers: int
    batch: int
    capacity: int
    """Frame slots per layer."""
    tokens_per_frame: int
    num_heads: int
    head_dim: int
    latent_shape: tuple[int, int, int]
    """(C, H, W) of one latent frame."""


class KVStore:
    """Per-layer frame slots of keys/values [Y, B, S, T, N, Dh] and clean latents [Y, B, C, S, H, W]."""

    def __init__(self, shape: StoreShape, *, device: torch.device | str = "cpu", dtype: torch.dtype) -> None:
        if shape.capacity < 0 or shape.num_layers < 1 or shape.batch < 1:
            raise ValueError(f"invalid store shape {shape}")
        self.shape = shape
        kv_shape = (shape.num_layers, shape.batch, shape.capacity, shape.tokens_per_frame, shape.num_heads,
                    shape.head_dim)  # fmt: skip
        channels, height, width = shape.latent_shape
        self.keys_YBSTNDh = torch.zeros(kv_shape, device=device, dtype=dtype)
        self.values_YBSTNDh = torch.zeros(kv_shape, device=device, dtype=dtype)
        self.latents_YBCSHW = torch.zeros(
            (shape.num_layers, shape.batch, channels, shape.capacity, height, width),
            device=device,
            dtype=dtype,
        )
        self.counts = [0] * shape.num_layers

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(
            t.numel() * t.element_size()
            for t in (self.keys_YBSTNDh, self.values_YBSTNDh, self.latents_YBCSHW)
        )

    def read(self, layer: int, slots: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """The layer's filled slots as un-rotated (keys, values), each [B, n*T, N, Dh]: views, no copy; or
        copies of the given `slots` alone, in that order."""
        if slots is not None:
            index = torch.tensor(list(slots), device=self.keys_YBSTNDh.device, dtype=torch.long)
            return (self.keys_YBSTNDh[layer][:, index].flatten(1, 2),
                    self.values_YBSTNDh[layer][:, index].flatten(1, 2))  # fmt: skip
        count = self.counts[layer]
        keys = self.keys_YBSTNDh[layer, :, :count].flatten(1, 2)  # (B, n*T, N, Dh)
        values = self.values_YBSTNDh[layer, :, :count].flatten(1, 2)  # (B, n*T, N, Dh)
        return keys, values

    def latents(self, layer: int) -> Tensor:
        """View of the layer's filled slots' clean latents [B, C, n, H, W]."""
        return self.latents_YBCSHW[layer, :, :, : self.counts[layer]]

    def rewrite(
        self, layer: int, sources: Sequence[int], keys: Tensor, values: Tensor, latents: Tensor
    ) -> None:
        """Reorder one layer's slots: slot i takes `sources[i]` of [old slots..., incoming frames...].

        Args:
            layer: the layer.
            sources: one source per new slot; < count: an old slot, else count + incoming frame index.
            keys, values: incoming un-rotated frames [B, F*T, N, Dh].
            latents: incoming clean latents [B, C, F, H, W].
        """
        count, tokens = self.counts[layer], self.shape.tokens_per_frame
        if len(sources) > self.shape.capacity:
            raise ValueError(f"{len(sources)} slots exceed the store's capacity {self.shape.capacity}")
        moves = [(dst, src) for dst, src in enumerate(sources) if src < count and src != dst]
        fresh = [(dst, src - count) for dst, src in enumerate(sources) if src >= count]
        buffers = (self.keys_YBSTNDh[layer], self.values_YBSTNDh[layer])
        incoming = (keys.unflatten(1, (-1, tokens)), values.unflatten(1, (-1, tokens)))  # (B, F, T, N, Dh)
        if moves:
            dst, src = (torch.tensor(index, device=keys.device) for index in zip(*moves, strict=True))
            for buffer in buffers:
                buffer[:, dst] = buffer[:, src]  # the gather on the right is a copy, so overlaps are safe
            self.latents_YBCSHW[layer][:, :, dst] = self.latents_YBCSHW[layer][:, :, src]
        if fresh:
            dst, src = (torch.tensor(index, device=keys.device) for index in zip(*fresh, strict=True))
            for buffer, new in zip(buffers, incoming, strict=True):
                buffer[:, dst] = new[:, src].to(buffer.dtype)
            self.latents_YBCSHW[layer][:, :, dst] = latents[:, :, src].to(self.latents_YBCSHW.dtype)
        self.counts[layer] = len(sources)

    def reorder(self, layer: int, sources: Sequence[int]) -> None:
        """Keep only old slots, in a new order: slot i takes old slot `sources[i]` (all below the count)."""
        if any(not 0 <= s < self.counts[layer] for s in sources):
            raise ValueError(f"sources {list(sources)} are not all filled slots of layer {layer}")
        shape = self.shape
        empty = self.keys_YBSTNDh.new_zeros((shape.batch, 0, shape.num_heads, shape.head_dim))
        no_latents = self.latents_YBCSHW.new_zeros(
            (shape.batch, shape.latent_shape[0], 0, *shape.latent_shape[1:])
        )
        self.rewrite(layer, sources, empty, empty, no_latents)

    def write_latent(self, layer: int, slot: int, latent: Tensor) -> None:
        """Set the clean latent [B, C, H, W] of one filled slot (the K/V stay as they are)."""
        if not 0 <= slot < self.counts[layer]:
            raise ValueError(f"slot {slot} is not filled (layer {layer} has {self.counts[layer]})")
        self.latents_YBCSHW[layer][:, :, slot] = latent.to(self.latents_YBCSHW.dtype)

    def overwrite(self, layer: int, slots: Sequence[int], keys: Tensor, values: Tensor) -> None:
        """Replace the keys and values of some filled slots (prompt re-cache); keys/values [B, len(slots)*T, N, Dh]."""
        if any(not 0 <= s < self.counts[layer] for s in slots):
            raise ValueError(
                f"slots {list(slots)} are not all filled (layer {layer} has {self.counts[layer]})"
            )
        if not slots:
            return
        index = torch.tensor(list(slots), device=keys.device)
        tokens = self.shape.tokens_per_frame
        self.keys_YBSTNDh[layer][:, index] = keys.unflatten(1, (-1, tokens)).to(self.keys_YBSTNDh.dtype)
        self.values_YBSTNDh[layer][:, index] = values.unflatten(1, (-1, tokens)).to(self.values_YBSTNDh.dtype)

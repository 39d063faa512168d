"""ContextMemory (the clean bookkeeping) on scripted keys: per-layer decisions, eviction, store order."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor

from contextforcing.memory import StoreShape, build_memory, memory_preset

CHUNK = 3


def _kv(angle: float, start: int) -> tuple[Tensor, Tensor]:
    """A chunk's keys along one direction [1, 3, 1, 2]; values carry each frame's id."""
    keys = torch.tensor([math.cos(angle), math.sin(angle)]).expand(1, CHUNK, 1, 2).clone()
    values = torch.tensor([[0.0, float(start + i)] for i in range(CHUNK)]).view(1, CHUNK, 1, 2)
    return keys, values


def test_layers_decide_on_their_own_keys_and_the_slow_tier_evicts_its_oldest() -> None:
    config = memory_preset("context", num_slow_frames=2)
    shape = StoreShape(num_layers=2, batch=1, capacity=config.context_capacity(), tokens_per_frame=1,
                       num_heads=1, head_dim=2, latent_shape=(1, 1, 1))  # fmt: skip
    memory = build_memory(config, shape)
    for chunk in range(8):
        start = chunk * CHUNK
        # Layer 0 turns by 0.6 rad a chunk (cos 0.83 < tau), layer 1 stays put (cos 1).
        memory.append([_kv(0.6 * chunk, start), _kv(0.0, start)], torch.zeros(1, 1, CHUNK, 1, 1))
    records = memory.trace.records
    assert [r.layer(0).promoted for r in records] == [(), ()] + [(3 * c,) for c in range(2, 8)]
    assert all(r.layer(1).promoted == () for r in records)
    assert memory.layouts[0].slow == (18, 21)  # the two newest promotions; older ones evicted
    assert memory.layouts[1].slow == (3, 4)  # frames that left the fast tier into free slots stay on
    assert memory.layouts[0].fast == memory.layouts[1].fast == (21, 22, 23)
    for layer, layout in enumerate(memory.layouts):  # the store holds what the layout names, in order
        _, values = memory.store.read(layer)
        assert values[0, :, 0, 1].tolist() == list(map(float, layout.frames))


def test_one_threshold_per_layer_decides_each_layer_against_its_own() -> None:
    """Both layers see the same keys, turning by 0.3 rad a chunk (cos 0.955): layer 0's tau 0.95 never
    fires, layer 1's tau 0.96 fires at every test."""
    config = memory_preset("context", num_slow_frames=2, layer_thresholds=(0.95, 0.96))
    shape = StoreShape(num_layers=2, batch=1, capacity=config.context_capacity(), tokens_per_frame=1,
                       num_heads=1, head_dim=2, latent_shape=(1, 1, 1))  # fmt: skip
    memory = build_memory(config, shape)
    for chunk in range(6):
        kv = _kv(0.3 * chunk, chunk * CHUNK)
        memory.append([kv, kv], torch.zeros(1, 1, CHUNK, 1, 1))
    records = memory.trace.records
    assert all(r.layer(0).promoted == () for r in records)
    assert [r.layer(1).promoted for r in records] == [(), ()] + [(3 * c,) for c in range(2, 6)]
    with pytest.raises(ValueError, match="layer_thresholds holds 2 thresholds for a model of 3 layers"):
        build_memory(config, dataclasses.replace(shape, num_layers=3))

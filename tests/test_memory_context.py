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


def _shape(config) -> StoreShape:
    """A store of two layers, one head of two channels and one token a frame."""
    return StoreShape(num_layers=2, batch=1, capacity=config.context_capacity(), tokens_per_frame=1,
                      num_heads=1, head_dim=2, latent_shape=(1, 1, 1))  # fmt: skip


def _turn_and_stay(memory, num_chunks: int) -> None:
    """Layer 0's keys turn by 0.6 rad a chunk (cos 0.83 < tau), layer 1's stay put (cos 1)."""
    for chunk in range(num_chunks):
        start = chunk * CHUNK
        memory.append([_kv(0.6 * chunk, start), _kv(0.0, start)], torch.zeros(1, 1, CHUNK, 1, 1))


def test_layers_decide_on_their_own_keys_and_the_slow_tier_evicts_its_oldest() -> None:
    config = memory_preset("context", num_slow_frames=2)
    memory = build_memory(config, _shape(config))
    _turn_and_stay(memory, 8)
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
    memory = build_memory(config, _shape(config))
    for chunk in range(6):
        kv = _kv(0.3 * chunk, chunk * CHUNK)
        memory.append([kv, kv], torch.zeros(1, 1, CHUNK, 1, 1))
    records = memory.trace.records
    assert all(r.layer(0).promoted == () for r in records)
    assert [r.layer(1).promoted for r in records] == [(), ()] + [(3 * c,) for c in range(2, 6)]
    with pytest.raises(ValueError, match="layer_thresholds holds 2 thresholds for a model of 3 layers"):
        build_memory(config, dataclasses.replace(_shape(config), num_layers=3))


def test_keyframes_reach_the_slow_tier_of_a_layer_whose_keys_never_change() -> None:
    """With keyframe_interval=3, the layer whose keys stay put (no test fires) still promotes chunks 3 and
    6, recorded with their similarity; the turning layer promotes at every test as before."""
    config = memory_preset("context", num_slow_frames=4, keyframe_interval=3, fill_slow=False)
    memory = build_memory(config, _shape(config))
    _turn_and_stay(memory, 8)
    records = memory.trace.records
    assert [r.layer(1).promoted for r in records] == [(), (), (), (9,), (), (), (18,), ()]
    assert records[3].layer(1).similarity == pytest.approx(1.0)
    assert [r.layer(0).promoted for r in records] == [(), ()] + [(3 * c,) for c in range(2, 8)]
    assert memory.layouts[1].slow == (9, 18) and memory.layouts[0].slow == (12, 15, 18, 21)
    _, values = memory.store.read(1)
    assert values[0, :, 0, 1].tolist() == list(map(float, memory.layouts[1].frames))

"""The released bookkeeping, pinned call by call on scripted keys whose similarities the test controls.

Expected frames and positions are written out by hand from a reading of the released code,
TIGER-AI-Lab/Context-Forcing at commit f44bac69: `wan/modules/causal_model.py`, the `rope_length > 0`
branch of `CausalWanSelfAttention.forward` (cited by the names used there), and
`pipeline/causal_long_inference.py`.

[T] The similarity test (the `keyframe_sample == "sim"` block): the call's mean raw key against
    `last_saved_k_repr`, skipped while the chunk starts before `local_attn_size`. The block returns
    a new cache dict holding the call's own mean key under that name, and `_forward_inference` keeps
    that dict for the next call, so every call is compared with the call before it.
[A] `already_added`: the newest promoted slot's `token_source_frame` equals the chunk's start, so a
    chunk promotes once at most.
[P] The `can_fill_context` branch writes the call's first frame at the sink plus
    `dynamic_context_tokens`, slot 3 + k for promotion k, before `attention` runs; its `elif` branch,
    once the slow region is full, shifts it down by one and writes at `context_token_max_end` - 1.
[L] "Evict the local tokens": once the cache is full, a chunk's first call moves the newer part of the
    local region down by one chunk and writes the chunk last; its later calls overwrite the chunk's
    own slots in place (no new tokens past `global_end_index`).
[R] RoPE: sink keys start at position 0; the slots from the sink to `local_end_index` start at
    `calculated_start`, which puts slot j at position j; queries start at `q_start_frame`, below the
    anchor min(end frame, `rope_length` - 1).
[C] `causal_long_inference.py`: four denoising calls, then the refresh call on the clean prediction,
    all at the same `current_start`.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contextforcing.memory import (
    MemoryLayout,
    ReleasedMemory,
    StoreShape,
    build_memory,
    memory_preset,
    promotion_due,
    released_test_due,
)
from contextforcing.memory.context import ContextMemory

CHUNK, CALLS, LAYERS = 3, 5, 2
SAME, DRIFT, SURPRISE = 0.1, 0.25, 0.6
"""Angle steps between consecutive calls' mean keys: cos 0.995, 0.969 (both >= tau) and 0.825 (< tau)."""

# Layer 0's angle step from the previous call, per chunk and call (call 4 is the refresh). Layer 1 only
# ever takes SAME steps and never promotes: each layer decides on its own keys.
STEPS = [
    [0.0] * 5,  # chunk 0: no context, no test
    [SURPRISE] * 5,  # chunk 1 starts at frame 3 < local_attn_size = 6: no test [T]
    [SURPRISE, SAME, SURPRISE, SAME, SAME],  # promotes at call 0; call 2 is stopped by [A]
    [SAME, SAME, SURPRISE, SAME, SAME],  # promotes at call 2, the noisy t = 833 pass
    [DRIFT] * 5,  # 1.25 rad in all, yet every call is near the call before it: no promotion [T]
    [SAME, SAME, SAME, SAME, SURPRISE],  # promotes at the refresh (call 4): fills the last slow slot
    [SAME, SURPRISE, SAME, SAME, SAME],  # slow region full: evicts its oldest entry [P]
    [SURPRISE, SAME, SAME, SAME, SAME],  # and again
]

# What layer 0 reads at every call: frames in slot order (slot j at position j [R]), for calls before
# and from the promoting call on; chunks without promotion read one layout. Small config: 3 sink +
# 3 slow + 6 local = 12 slots, so the cache is full from chunk 4 on.
READS = {
    1: [(0, 1, 2)],
    2: [(0, 1, 2, 6, 4, 5)],  # frame 3, the oldest ordinary frame, is overwritten at call 0 [P]
    3: [(0, 1, 2, 6, 4, 5, 6, 7, 8), (0, 1, 2, 6, 9, 5, 6, 7, 8)],  # frame 6 twice; 9 lands on 4
    4: [(0, 1, 2, 6, 9, 5, 9, 10, 11)],  # [L] dropped 6, 7, 8 from the local slots; 5 stays on
    5: [(0, 1, 2, 6, 9, 5, 12, 13, 14), (0, 1, 2, 6, 9, 15, 12, 13, 14)],
    6: [(0, 1, 2, 6, 9, 15, 15, 16, 17), (0, 1, 2, 9, 15, 18, 15, 16, 17)],  # 6 evicted, 18 last [P]
    7: [(0, 1, 2, 9, 15, 18, 18, 19, 20), (0, 1, 2, 15, 18, 21, 18, 19, 20)],
}
PROMOTED_AT = [None, None, 0, 2, None, 4, 1, 0]
QUERIES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)] + [(9, 10, 11)] * 4  # [R], anchor R - 1 = 11

# Whose K/V each slot of layer 0 holds at chunk 7's last call: (chunk * 10 + call, frame id). Sink and
# ordinary slots hold refresh (call 4) K/V; a promoted slot keeps the K/V of the call that promoted it.
CHUNK_7_VALUES = [(4, 0), (4, 1), (4, 2), (54, 15), (61, 18), (70, 21), (64, 18), (64, 19), (64, 20)]


def _config(**overrides):
    return memory_preset("context-released", **{"num_slow_frames": 3, **overrides})


def _memory(config) -> ContextMemory:
    shape = StoreShape(num_layers=LAYERS, batch=1, capacity=config.context_capacity(), tokens_per_frame=1,
                       num_heads=1, head_dim=2, latent_shape=(1, 1, 1))  # fmt: skip
    return build_memory(config, shape)


def _kv(angle: float, code: int, start: int) -> tuple[Tensor, Tensor]:
    """A chunk's keys, all along one direction, and values naming (call code, frame id): [1, 3, 1, 2]."""
    keys = torch.tensor([math.cos(angle), math.sin(angle)]).expand(1, CHUNK, 1, 2).clone()
    values = torch.tensor([[float(code), float(start + i)] for i in range(CHUNK)]).view(1, CHUNK, 1, 2)
    return keys, values


@torch.no_grad()
def _run(num_chunks: int):
    """Drive the memory as the released pipeline calls the model: per chunk, 5 calls, then the append.

    Returns, per chunk, per call, layer 0's (frames, positions, slot values) and the memory.
    """
    memory = _memory(_config())
    angles = [0.0, 0.0]
    seen: list[list[tuple]] = []
    for chunk in range(num_chunks):
        start = chunk * CHUNK
        read = memory.read()
        calls = []
        for call in range(CALLS):
            angles = [angles[0] + STEPS[chunk][call], angles[1] + SAME]
            kv = [_kv(angle, 10 * chunk + call, start) for angle in angles]
            if read.context is not None:
                for layer, context in enumerate(read.context):
                    context.on_keys(*kv[layer])  # what the model does in each layer before attending
                values = read.context[0].values[0, :, 0]
                calls.append((memory.layouts[0].frames, tuple(read.context[0].positions.tolist()),
                              [(int(c), int(f)) for c, f in values.tolist()]))  # fmt: skip
        assert read.positions[0].query == QUERIES[chunk]
        memory.append(kv, torch.zeros(1, 1, CHUNK, 1, 1))  # the refresh (call 4) K/V
        seen.append(calls)
    return seen, memory


def test_released_bookkeeping_call_by_call() -> None:
    seen, memory = _run(len(STEPS))
    for chunk, reads in READS.items():
        at = PROMOTED_AT[chunk]
        expected = [reads[0] if at is None or call < at else reads[-1] for call in range(CALLS)]
        assert [frames for frames, _, _ in seen[chunk]] == expected, f"chunk {chunk}"
        assert all(positions == tuple(range(len(frames))) for frames, positions, _ in seen[chunk])
        # The store agrees with the layout: every slot holds the frame the layout names.
        assert all([f for _, f in values] == list(frames) for frames, _, values in seen[chunk])
    assert seen[7][-1][2] == CHUNK_7_VALUES
    records = memory.trace.records
    assert [r.layer(0).promoted_at for r in records] == PROMOTED_AT
    assert [r.layer(0).promoted for r in records] == [
        () if a is None else (3 * i,) for i, a in enumerate(PROMOTED_AT)
    ]
    assert all(r.layer(1).promoted_at is None for r in records)  # layer 1 decides on its own keys
    assert records[6].layer(1).layout.frames == (0, 1, 2, 3, 4, 5, 15, 16, 17)  # early frames stay on


def test_every_call_is_tested_against_the_call_before_it() -> None:
    _, memory = _run(len(STEPS))
    calls = [r.layer(0).calls for r in memory.trace.records]
    assert calls[0] == () and calls[1] == (None,) * CALLS  # no context, then too early [T]
    steps = {SAME: math.cos(SAME), DRIFT: math.cos(DRIFT), SURPRISE: math.cos(SURPRISE)}
    for chunk in range(2, len(STEPS)):
        assert calls[chunk] == pytest.approx([steps[s] for s in STEPS[chunk]], abs=1e-6)
    # The record's similarity is the lowest up to the decision: below tau exactly when promoted.
    tau = memory.config.similarity_threshold
    assert all((r.layer(0).similarity < tau) == bool(r.layer(0).promoted) for r in memory.trace.records[2:])


def test_first_test_follows_the_fast_tier_not_the_sink() -> None:
    """The released test starts at the chunk beginning at frame num_fast_frames [T]; the clean policy
    once the previous chunk lies outside the sink. Equal for 3/12/6, not for other sizes."""
    default = memory_preset("context-released")
    assert [released_test_due(default, 3 * i) for i in range(4)] == [False, False, True, True]
    assert [promotion_due(memory_preset("context"), i) for i in range(4)] == [False, False, True, True]
    wide = _config(num_fast_frames=9)
    assert [released_test_due(wide, 3 * i) for i in range(4)] == [False, False, False, True]
    assert [promotion_due(memory_preset("context", num_fast_frames=9), i) for i in range(4)] == [
        False, False, True, True,
    ]  # fmt: skip


def test_default_released_positions_pin_eq_8() -> None:
    """With 3 + 12 + 6 and a full cache: sink at 0..2, slot j at j, queries at 18..20."""
    memory = _memory(memory_preset("context-released"))
    for chunk in range(9):
        memory.read()
        memory.append([_kv(0.0, 0, 3 * chunk)] * LAYERS, torch.zeros(1, 1, CHUNK, 1, 1))
    positions = memory.positions()[0]
    assert positions.query == (18, 19, 20)
    assert positions.context == tuple(range(18))
    assert memory.layouts[0] == MemoryLayout(
        (0, 1, 2), (), (*range(3, 15), *range(21, 27))
    )  # before the roll


def test_released_config_is_validated_and_built() -> None:
    assert isinstance(_memory(_config()), ReleasedMemory)
    assert type(_memory(memory_preset("context"))) is ContextMemory
    with pytest.raises(ValueError, match="build_memory"):
        ContextMemory(_config(), StoreShape(num_layers=1, batch=1, capacity=12, tokens_per_frame=1,
                                            num_heads=1, head_dim=2, latent_shape=(1, 1, 1)))  # fmt: skip
    for overrides, field in [({"promotion_interval": 2}, "promotion_interval"),
                             ({"per_layer_decisions": False}, "per_layer_decisions"),
                             ({"decide_on": "first-pass"}, "decide_on"),
                             ({"num_slow_frames": 2}, "whole chunks"),
                             ({"num_sink_frames": 6}, "num_sink_frames")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            _config(**overrides)


def test_released_memory_refuses_autograd() -> None:
    memory = _memory(_config())
    memory.read()
    memory.append([_kv(0.0, 0, 0)] * LAYERS, torch.zeros(1, 1, CHUNK, 1, 1))
    context = memory.read().context
    assert context is not None
    keys, values = _kv(0.0, 0, 3)
    with torch.enable_grad(), pytest.raises(RuntimeError, match="autograd"):
        context[0].on_keys(keys.requires_grad_(), values)

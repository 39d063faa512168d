"""Streaming through the memory equals one forward under the layout the memory trace describes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from contextforcing.inference import (
    PromptSchedule,
    SamplerConfig,
    StreamingGenerator,
    denoise_chunk,
    recache_memory,
    stream_all,
)
from contextforcing.inference.rollout import new_memory, reencode_memory, write_clean_chunk
from contextforcing.memory import ContextMemory, MemoryConfig, memory_preset
from contextforcing.memory.trace import ChunkRecord, LayerRecord
from contextforcing.model.dit import CausalDiT, TextCache
from contextforcing.model.layout import FrameAttention, block_causal
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.plan import history_indices
from contextforcing.training.rollout import self_rollout

from helpers import assert_close, assert_far_from_zero

LATENT = (4, 4)
CHUNK = 3


@pytest.fixture(scope="module")
def model(random_tiny_model: CausalDiT) -> Iterator[CausalDiT]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared
    yield random_tiny_model
    torch.set_num_threads(threads)


def _text(seed: int) -> Tensor:
    return torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(seed))


def _stream(model: CausalDiT, config: MemoryConfig, num_chunks: int, seed: int = 0) -> StreamingGenerator:
    streamer = StreamingGenerator(model, config, latent_size=LATENT)
    streamer.video = stream_all(
        streamer, _text(1), num_chunks=num_chunks, rng=torch.Generator().manual_seed(seed)
    )
    return streamer


def _next_chunk_record(streamer: StreamingGenerator) -> ChunkRecord:
    """The record the next chunk would get: the memory's current layouts and positions."""
    memory = streamer.memory
    positions = memory.positions()
    layers = tuple(LayerRecord(memory.read_layouts()[i], p.context) for i, p in enumerate(positions))
    frames = tuple(range(memory.num_frames, memory.num_frames + CHUNK))
    return ChunkRecord(memory.num_chunks, frames, positions[0].query, layers)


def _layout_from_trace(records: list[ChunkRecord], layer: int) -> FrameAttention:
    """One layer's attention over all frames: each chunk sees its context entries and itself."""
    query_positions, key_frames, key_positions, owners = [], [], [], []
    for record in records:
        query_positions += record.query_positions
        entry = record.layer(layer)
        key_frames += list(entry.layout.frames) + list(record.frames)
        key_positions += list(entry.context_positions) + list(record.query_positions)
        owners += [record.chunk] * (len(entry.layout) + len(record.frames))
    chunk_of_query = torch.arange(len(query_positions)) // CHUNK
    return FrameAttention(
        query_positions=torch.tensor(query_positions),
        key_frames=torch.tensor(key_frames),
        key_positions=torch.tensor(key_positions),
        visible=chunk_of_query[:, None] == torch.tensor(owners)[None, :],
    )


def _noisy_last(streamer: StreamingGenerator) -> tuple[Tensor, Tensor, Tensor]:
    noisy = torch.randn(1, 4, CHUNK, *LATENT, generator=torch.Generator().manual_seed(7))
    t_last = torch.tensor([625.0])
    read = streamer.memory.read()
    text = streamer.model.encode_text(_text(1))
    with torch.no_grad():
        streamed = streamer.model(noisy, t_last, text, layout=read.layout, context=read.context)
    return noisy, t_last, streamed


def _single_forward(streamer: StreamingGenerator, noisy: Tensor, t_last: Tensor, layout) -> Tensor:
    frames = streamer.video.shape[2]
    x = torch.cat([streamer.video, noisy], dim=2)
    t = torch.cat([torch.zeros(frames), t_last.expand(CHUNK)])[None]
    with torch.no_grad():
        return streamer.model(x, t, _text(1), layout=layout)[:, :, frames:]


def test_full_memory_equals_block_causal_forward(model: CausalDiT) -> None:
    streamer = _stream(model, memory_preset("full"), num_chunks=4)
    noisy, t_last, streamed = _noisy_last(streamer)
    total = streamer.video.shape[2] + CHUNK
    reference = _single_forward(streamer, noisy, t_last, block_causal(total, CHUNK))
    assert_close(streamed, reference, atol=1e-5)


POLICIES = {
    **{
        name: memory_preset(name)
        for name in ("context", "uniform", "sink", "window", "infinity-rope", "full")
    },
    # Small slow tier and a mid threshold: evictions and layers that disagree.
    "context-small-per-layer": memory_preset("context", num_slow_frames=3, similarity_threshold=0.85),
    "context-shared": memory_preset("context", num_slow_frames=3, per_layer_decisions=False),
    "context-paper-interval": memory_preset("context", num_slow_frames=2, promotion_interval=2),
    "window-bounded": memory_preset("window", num_fast_frames=6, positions="bounded"),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_streaming_equals_forward_rebuilt_from_trace(model: CausalDiT, name: str) -> None:
    config = POLICIES[name]
    streamer = _stream(model, config, num_chunks=10)
    records = [*streamer.memory.trace.records, _next_chunk_record(streamer)]
    noisy, t_last, streamed = _noisy_last(streamer)
    layers = model.config.num_layers
    layout = [_layout_from_trace(records, layer) for layer in range(layers)]
    reference = _single_forward(streamer, noisy, t_last, layout)
    assert_close(streamed, reference, atol=1e-5)
    if config.bounded and config.positions != "absolute":
        limit = config.num_cache_frames
        assert all(0 <= p < limit for r in records for layer in r.layers for p in layer.context_positions)


def test_per_layer_decisions_can_disagree(model: CausalDiT) -> None:
    streamer = _stream(model, POLICIES["context-small-per-layer"], num_chunks=10)
    promoted = [[bool(layer.promoted) for layer in r.layers] for r in streamer.memory.trace.records]
    assert any(any(row) for row in promoted)
    assert any(len(set(row)) > 1 for row in promoted) or all(all(row) for row in promoted[2:])


def test_same_seed_same_frames(model: CausalDiT) -> None:
    first = _stream(model, memory_preset("context"), num_chunks=3, seed=5).video
    again = _stream(model, memory_preset("context"), num_chunks=3, seed=5).video
    other = _stream(model, memory_preset("context"), num_chunks=3, seed=6).video
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_first_pass_decisions_run_and_differ_only_in_slow_memory(model: CausalDiT) -> None:
    config = memory_preset("context", decide_on="first-pass")
    streamer = _stream(model, config, num_chunks=8)
    assert streamer.video.shape == (1, 4, 24, *LATENT)
    assert any(layer.promoted for r in streamer.memory.trace.records for layer in r.layers)


def test_recache_equals_block_causal_under_new_prompt(model: CausalDiT) -> None:
    streamer = _stream(model, memory_preset("full"), num_chunks=3)
    new_text = model.encode_text(_text(2))
    with torch.no_grad():
        recache_memory(model, streamer.memory, new_text, refresh_sink=True)
        t = torch.zeros(1)
        _, kv = model(streamer.video, t, new_text, layout=block_causal(9, CHUNK), return_kv=True)
    for layer, (keys, values) in enumerate(kv):
        stored_keys, stored_values = streamer.memory.store.read(layer)
        assert_close(stored_keys, keys, atol=1e-5)
        assert_close(stored_values, values, atol=1e-5)


def test_reencoding_holds_the_kept_frames_as_one_bidirectional_forward_encodes_them(model: CausalDiT) -> None:
    """With `reencode`, every chunk after the first reads K/V of its kept frames as one bidirectional
    forward over their clean latents gives them (under 'full', at positions 0..F-1); the video then
    differs from the causal cache's after its first chunk."""
    config = memory_preset("full", reencode=True)
    streamer = _stream(model, config, num_chunks=4)
    assert [r.recached for r in streamer.memory.trace.records] == [False, True, True, True]
    text = model.encode_text(_text(1))
    reencode_memory(model, streamer.memory, text)
    with torch.no_grad():
        _, kv = model(streamer.video, torch.zeros(1), text, return_kv=True)
    for layer, (keys, values) in enumerate(kv):
        stored_keys, stored_values = streamer.memory.store.read(layer)
        assert_close(stored_keys, keys, atol=1e-5)
        assert_close(stored_values, values, atol=1e-5)
    causal = _stream(model, memory_preset("full"), num_chunks=4).video
    assert torch.equal(streamer.video[:, :, :CHUNK], causal[:, :, :CHUNK])
    assert (streamer.video[:, :, CHUNK:] - causal[:, :, CHUNK:]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="refresh_sink=True"):
        next(StreamingGenerator(model, config, latent_size=LATENT).stream(
            PromptSchedule((_text(1), _text(2)), (0, 2)), num_chunks=3, generator=torch.Generator()))  # fmt: skip


def test_a_grid_memory_reads_the_teacher_layout_encoded_together(model: CausalDiT) -> None:
    """Under promotion='grid' the next chunk equals one forward over the frames a context teacher is given
    before it (`plan.history_indices`) and the chunk: those frames see each other at the positions the
    chunk reads them at, and the chunk sees them and itself."""
    config = memory_preset(
        "context", promotion="grid", promotion_interval=2, num_slow_frames=2, reencode=True
    )
    streamer = _stream(model, config, num_chunks=12)
    memory = streamer.memory
    reencode_memory(model, memory, model.encode_text(_text(1)))
    noisy, t_last, streamed = _noisy_last(streamer)
    teacher = ContextTeacherConfig(num_slow_frames=2, slow_interval=2 * CHUNK, num_recent_frames=3)
    frames = history_indices(teacher, 12 * CHUNK)
    assert memory.kept_frames()[0] == tuple(frames) and len(frames) < len(memory.layouts[0])
    read = memory.positions()[0]
    positions, n = torch.tensor(read.context + read.query), len(frames)
    visible = torch.ones(n + CHUNK, n + CHUNK, dtype=torch.bool)
    visible[:n, n:] = False  # the kept frames do not see the chunk
    layout = FrameAttention(query_positions=positions, key_frames=torch.arange(n + CHUNK),
                            key_positions=positions, visible=visible)  # fmt: skip
    x = torch.cat([streamer.video[:, :, frames], noisy], dim=2)
    t = torch.cat([torch.zeros(n), t_last.expand(CHUNK)])[None]
    with torch.no_grad():
        reference = model(x, t, _text(1), layout=layout)[:, :, n:]
    assert_close(streamed, reference, atol=1e-5)
    assert_far_from_zero(streamed)


def _write_prefix(
    model: CausalDiT, config: MemoryConfig, prefix: Tensor, text: TextCache, *, every_chunk: bool
) -> tuple[ContextMemory, int]:
    """Write a prefix chunk by chunk, re-encoding before every chunk or as `write_clean_chunk` decides, then
    re-encode for the next read; the number of model forwards it took."""
    memory = new_memory(model, config, 1, prefix.shape[2], LATENT)
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    for start in range(0, prefix.shape[2], CHUNK):
        if every_chunk:
            recache_memory(model, memory, text, refresh_sink=True, bidirectional=True)
        write_clean_chunk(model, memory, prefix[:, :, start : start + CHUNK], text)
    reencode_memory(model, memory, text)
    handle.remove()
    return memory, len(calls)


@pytest.mark.parametrize("promotion", ["uniform", "surprisal"])
def test_a_prefix_is_re_encoded_only_where_its_keys_decide(model: CausalDiT, promotion: str) -> None:
    """Under a uniform memory a prefix is written without re-encoding before each chunk, and the memory
    the next chunk reads is the same as with it; under surprisal each chunk re-encodes first."""
    config = memory_preset(
        "uniform" if promotion == "uniform" else "context", num_slow_frames=3, reencode=True
    )
    prefix = torch.randn(1, 4, 8 * CHUNK, *LATENT, generator=torch.Generator().manual_seed(5))
    text = model.encode_text(_text(1))
    lean, lean_calls = _write_prefix(model, config, prefix, text, every_chunk=False)
    full, full_calls = _write_prefix(model, config, prefix, text, every_chunk=True)
    assert lean.kept_frames()[0] == full.kept_frames()[0]
    for layer in range(model.config.num_layers):
        for ours, theirs in zip(lean.store.read(layer), full.store.read(layer), strict=True):
            assert_close(ours, theirs, atol=1e-5)
    assert (lean_calls, full_calls) == ((9, 16) if promotion == "uniform" else (16, 16))


@pytest.mark.parametrize("memory", ["context", "reencode", "grid"])
def test_the_training_rollout_streams_as_inference_does(model: CausalDiT, memory: str) -> None:
    """`self_rollout` and the streaming generator make the same video from the same noise (a one-step
    sampler, so that no re-noising draw differs), the re-encoded and grid memories included."""
    config = memory_preset("context", num_slow_frames=3, reencode=memory != "context")
    if memory == "grid":
        config = replace(config, promotion="grid", num_slow_frames=1, promotion_interval=2)
    sampler = SamplerConfig(denoising_steps=(1000.0,))
    streamer = StreamingGenerator(model, config, latent_size=LATENT, sampler=sampler)
    streamed = stream_all(streamer, _text(1), num_chunks=8, rng=torch.Generator().manual_seed(4))
    draws = torch.Generator().manual_seed(4)
    noise = torch.cat([torch.randn(1, 4, CHUNK, *LATENT, generator=draws) for _ in range(8)], dim=2)
    with torch.no_grad():
        rollout = self_rollout(model, config, model.encode_text(_text(1)), noise, timesteps=sampler.timesteps,
                               generator=torch.Generator(), exit_steps=[1] * 8, grad_chunks=[False] * 8)  # fmt: skip
    assert_close(rollout.video, streamed, atol=1e-5)


def test_prompt_switch_keeps_or_refreshes_the_sink(model: CausalDiT) -> None:
    schedules = {
        keep: PromptSchedule((_text(1), _text(2)), (0, 4), refresh_sink=not keep) for keep in (True, False)
    }
    sinks = {}
    for keep, schedule in schedules.items():
        streamer = StreamingGenerator(model, memory_preset("context"), latent_size=LATENT)
        video = stream_all(streamer, schedule, num_chunks=6, rng=torch.Generator().manual_seed(0))
        records = streamer.memory.trace.records
        assert [r.prompt_index for r in records] == [0, 0, 0, 0, 1, 1]
        assert [r.recached for r in records] == [False] * 4 + [True, False]
        sinks[keep] = (video, streamer.memory.store.read(model.config.num_layers - 1)[0][:, :12].clone())
    assert torch.equal(sinks[True][0][:, :, :12], sinks[False][0][:, :, :12])  # same until the switch
    assert not torch.equal(sinks[True][1], sinks[False][1])


def test_denoise_chunk_gradient_flows_only_at_the_exit(model: CausalDiT) -> None:
    noise = torch.randn(1, 4, CHUNK, *LATENT, generator=torch.Generator().manual_seed(0))
    text = model.encode_text(_text(1))
    timesteps = [1000.0, 937.5, 833.3, 625.0]
    result = denoise_chunk(model, noise, text, None, timesteps=timesteps, generator=torch.Generator(), exit_step=2,
                           grad_at_exit=True)  # fmt: skip
    assert result.x0.requires_grad
    result.x0.sum().backward()
    assert model.head.modulation.grad is not None
    model.zero_grad(set_to_none=True)
    frozen = denoise_chunk(model, noise, text, None, timesteps=timesteps, generator=torch.Generator())
    assert not frozen.x0.requires_grad


@pytest.mark.parametrize("name", ["context", "full"])
def test_continuing_a_prefix_equals_continuing_the_stream(model: CausalDiT, name: str) -> None:
    """A video continued from its own first chunks, given as a prefix, goes on exactly as it did."""
    streamer = StreamingGenerator(model, memory_preset(name), latent_size=LATENT)
    generator = torch.Generator().manual_seed(3)
    chunks = streamer.stream(_text(1), num_chunks=4, generator=generator)
    prefix = torch.cat([next(chunks), next(chunks)], dim=2)
    state = generator.get_state()
    expected = torch.cat(list(chunks), dim=2)
    assert_far_from_zero(expected)
    resumed = torch.Generator()
    resumed.set_state(state)
    continued = StreamingGenerator(model, memory_preset(name), latent_size=LATENT)
    got = torch.cat(list(continued.stream(_text(1), num_chunks=2, generator=resumed, prefix=prefix)), dim=2)
    assert torch.equal(got, expected)
    assert len(continued.memory.trace.records) == 4
    with pytest.raises(ValueError, match="multiple"):
        next(continued.stream(_text(1), num_chunks=1, generator=resumed, prefix=prefix[:, :, :2]))


def test_released_bookkeeping_streams_and_keeps_noisy_promotions(model: CausalDiT) -> None:
    """Through the model, the released memory promotes during a chunk's calls and keeps that call's K/V."""
    config = memory_preset("context-released", num_slow_frames=3)
    streamer = _stream(model, config, num_chunks=6)
    assert_far_from_zero(streamer.video)
    memory = streamer.memory
    records = memory.trace.records
    assert all(len(layer.calls) == 5 for r in records[1:] for layer in r.layers)
    assert any(layer.promoted for r in records for layer in r.layers)
    # A frame held twice (promoted, and still in its own slot) has two different K/V: the promoting
    # call's and the clean refresh's.
    doubled = 0
    for layer, layout in enumerate(memory.layouts):
        keys, _ = memory.store.read(layer)
        slots = keys.unflatten(1, (len(layout), -1))
        for frame in set(layout.slow) & set(layout.fast):
            a, b = (i for i, f in enumerate(layout.frames) if f == frame)
            doubled += 1
            assert (slots[:, a] - slots[:, b]).abs().max() > 1e-4
    assert doubled
    read = memory.read()
    noise = torch.randn(1, 4, CHUNK, *LATENT, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="autograd"):
        denoise_chunk(model, noise, model.encode_text(_text(1)), read, timesteps=[1000.0],
                      generator=torch.Generator(), grad_at_exit=True)  # fmt: skip

"""The planned chunk step equals the per-call loop, the fixed-size read equals the plain read, and the
compiled step is one graph that never recompiles once the store is full."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contextforcing.inference import (
    SamplerConfig,
    StreamingGenerator,
    denoise_chunk,
    refresh_chunk,
    stream_all,
)
from contextforcing.inference.rollout import ChunkStep, static_contexts
from contextforcing.memory import memory_preset
from contextforcing.model import dit as dit_module
from contextforcing.model.attention import TokenGroup, _grouped_attention
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.model.layout import FrameAttention
from contextforcing.model.rope import _apply_rotary_real, apply_rotary, rotary_for_frames

from helpers import assert_close, randomize

LATENT = (4, 4)
CHUNK = 3


@pytest.fixture(scope="module")
def model(random_tiny_model: CausalDiT) -> Iterator[CausalDiT]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield random_tiny_model
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_model() -> CausalDiT:
    """One layer: the compiled tests trace every call of a chunk, so the graph stays small."""
    torch.manual_seed(0)
    return randomize(CausalDiT(dataclasses.replace(model_preset("tiny"), num_layers=1))).eval()


def _text(seed: int = 1) -> Tensor:
    return torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(seed))


def _per_call_stream(model: CausalDiT, config, num_chunks: int, seed: int = 0) -> Tensor:
    """The loop as written before the chunk plan: `denoise_chunk`, then `refresh_chunk`, a plan per call."""
    streamer = StreamingGenerator(model, config, latent_size=LATENT)
    memory = streamer.new_memory(1, num_chunks)
    generator, text = torch.Generator().manual_seed(seed), model.encode_text(_text())
    chunks = []
    with torch.no_grad():
        for _ in range(num_chunks):
            noise = torch.randn(1, 4, CHUNK, *LATENT, generator=generator)
            read = memory.read()
            result = denoise_chunk(model, noise, text, read, timesteps=streamer.sampler.timesteps,
                                   generator=generator, keep_first_pass_kv=config.decide_on == "first-pass")  # fmt: skip
            kv = refresh_chunk(model, result.x0, text, read)
            memory.append(kv, result.x0, first_pass_kv=result.first_pass_kv)
            chunks.append(result.x0)
    return torch.cat(chunks, dim=2)


@pytest.mark.parametrize(
    "config",
    [
        memory_preset("context", num_slow_frames=3, similarity_threshold=0.85),
        memory_preset("context-released", num_slow_frames=3),
        memory_preset("context", num_slow_frames=3, decide_on="first-pass"),
        memory_preset("full"),
    ],
    ids=["context", "released", "first-pass", "full"],
)
def test_planned_chunk_step_equals_the_per_call_loop(model: CausalDiT, config) -> None:
    """One plan per chunk (cached keys rotated once, noise drawn up front) changes no bit of the video."""
    expected = _per_call_stream(model, config, num_chunks=7)
    got = stream_all(StreamingGenerator(model, config, latent_size=LATENT), _text(), num_chunks=7,
                     rng=torch.Generator().manual_seed(0))  # fmt: skip
    assert_close(got, expected, atol=0.0)


def _reference_attention(q: Tensor, k: Tensor, v: Tensor, visible: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D) masked) v, written out; q [B, L, N, D], visible [L, Lk] bool."""
    scores = torch.einsum("blnd,bknd->bnlk", q, k) / q.shape[-1] ** 0.5
    weights = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    return torch.einsum("bnlk,bknd->blnd", weights, v)


def test_every_attention_path_equals_the_written_out_softmax() -> None:
    """The masked single call, per-group slices and per-group gathers against the formula."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 2, 8, generator=g) for _ in range(3))
    visible = torch.zeros(6, 6, dtype=torch.bool)
    visible[:2, :2] = True  # a prefix (slice)
    visible[2:4, :4] = True
    visible[4:, [0, 1, 4, 5]] = True  # not contiguous (gather)
    reference = _reference_attention(q, k, v, visible)
    masked = _grouped_attention(q, k, v, (TokenGroup(0, 6, None),), visible)
    groups = (TokenGroup(0, 2, slice(0, 2)), TokenGroup(2, 4, slice(0, 4)),
              TokenGroup(4, 6, torch.tensor([0, 1, 4, 5])))  # fmt: skip
    grouped = _grouped_attention(q, k, v, groups, None)
    assert_close(masked, reference, atol=1e-5, floor=0.5)
    assert_close(grouped, reference, atol=1e-5, floor=0.5)


def test_masked_and_grouped_block_causal_forwards_agree(model: CausalDiT, monkeypatch) -> None:
    """Mode (b) runs one masked SDPA call when the mask is small and query groups when not; both agree."""
    frames = 4 * CHUNK
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, frames, *LATENT, generator=g)
    t = torch.rand(1, frames, generator=g) * 1000
    chunk = torch.arange(frames) // CHUNK
    # Each chunk sees itself and every other earlier chunk: groups that are neither prefixes nor all.
    visible = (chunk[:, None] == chunk[None, :]) | (
        (chunk[:, None] > chunk[None, :]) & (chunk[None, :] % 2 == 0)
    )
    layout = FrameAttention(torch.arange(frames), torch.arange(frames), torch.arange(frames), visible)
    plan = model.plan_forward(layout, None, frames, (2, 2))
    assert plan.attention[0].mask is not None and len(plan.attention[0].groups) == 1
    with torch.no_grad():
        masked = model(x, t, _text(), layout=layout)
        monkeypatch.setattr(dit_module, "MASK_LIMIT", 0)
        assert model.plan_forward(layout, None, frames, (2, 2)).attention[0].mask is None
        grouped = model(x, t, _text(), layout=layout)
    assert_close(masked, grouped, atol=1e-5)


def test_real_rotation_equals_the_complex_one() -> None:
    """The rotation written out for the compiler equals the eager complex product."""
    x = torch.randn(2, 5 * 6, 3, 12, generator=torch.Generator().manual_seed(0))
    rotation = rotary_for_frames(torch.tensor([0, 3, 7, 2, 20]), (2, 3), (4, 4, 4), 10000.0)
    assert_close(_apply_rotary_real(x, rotation), apply_rotary(x, rotation), atol=1e-6)


def _static_forward(model: CausalDiT, memory, x: Tensor, t: Tensor, text) -> Tensor:
    """A forward over the memory's fixed-size read, as the compiled step builds it."""
    read = memory.read_static()
    _, ph, pw = model.config.patch_size
    context = static_contexts(read.keys, read.values, read.positions, read.filled)
    plan = model.plan_chunk(read.query_positions, context, (x.shape[3] // ph, x.shape[4] // pw))
    return model(x, t, text, plan=plan)


@pytest.mark.parametrize("grid", [False, True], ids=["context", "grid"])
def test_fixed_size_read_equals_the_plain_read(model: CausalDiT, grid: bool) -> None:
    """The whole store with a filled flag per slot reads as the filled slots alone, filling and full; under
    promotion='grid' as the slots the chunk reads alone, the others flagged."""
    config = memory_preset("context", num_slow_frames=3, similarity_threshold=0.85)
    if grid:
        config = memory_preset(
            "context", num_slow_frames=2, promotion="grid", promotion_interval=2, reencode=True
        )
    streamer = StreamingGenerator(model, config, latent_size=LATENT)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(1, 4, CHUNK, *LATENT, generator=g), torch.tensor([700.0])
    text = model.encode_text(_text())
    seen_filling = seen_full = False
    chunks = streamer.stream(_text(), num_chunks=9, generator=torch.Generator().manual_seed(0))
    for _ in range(9):
        memory = streamer.memory
        if memory is not None:
            static = memory.read_static()
            seen_filling |= static.filled is not None and bool(static.filled.any())
            seen_full |= static.filled is None
            if grid and static.filled is not None:  # a kept slot the chunk does not read
                seen_full |= int(static.filled.sum()) < sum(memory.store.counts)
            read = memory.read()
            with torch.no_grad():
                plain = model(x, t, text, layout=read.layout, context=read.context)
                assert_close(_static_forward(model, memory, x, t, text), plain, atol=1e-5)
        next(chunks)
    assert seen_filling and seen_full


def test_compiling_needs_the_clean_bookkeeping(model: CausalDiT) -> None:
    with pytest.raises(ValueError, match="bookkeeping='clean'"):
        StreamingGenerator(model, memory_preset("context-released"), latent_size=LATENT, compile=True)
    released = StreamingGenerator(model, memory_preset("context-released"), latent_size=LATENT)
    with pytest.raises(ValueError, match="no static read"):
        released.new_memory(1, 2).read_static()


def test_compiled_step_is_one_graph_that_never_recompiles_once_full(small_model: CausalDiT) -> None:
    """fullgraph=True compiles (no graph break); two graphs (filling, full); none over 30 chunks after.

    Dynamo's guards and graph breaks do not depend on the backend, so this runs dynamo alone
    (backend="eager"); the generated code is checked against eager in the slow test below.
    """
    import torch._dynamo
    from torch._dynamo.utils import counters

    config = memory_preset("context", num_slow_frames=3, similarity_threshold=0.85)
    sampler = SamplerConfig(denoising_steps=(1000.0, 500.0))
    torch._dynamo.reset()
    counters.clear()
    streamer = StreamingGenerator(small_model, config, latent_size=LATENT, sampler=sampler, compile=True)
    streamer.step = ChunkStep(small_model, timesteps=sampler.timesteps, compile=True, backend="eager")
    eager = StreamingGenerator(small_model, config, latent_size=LATENT, sampler=sampler)
    fill = config.context_capacity() // CHUNK + 1  # chunks until a read finds the store full
    num_chunks = fill + 30
    chunks = streamer.stream(_text(), num_chunks=num_chunks, generator=torch.Generator().manual_seed(0))
    compiled = [next(chunks) for _ in range(fill + 1)]
    assert counters["stats"]["unique_graphs"] == 2
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled += list(chunks)
    assert counters["stats"]["unique_graphs"] == 2
    assert not counters["graph_break"]
    expected = stream_all(eager, _text(), num_chunks=num_chunks, rng=torch.Generator().manual_seed(0))
    assert_close(torch.cat(compiled, dim=2), expected, atol=1e-5)
    assert streamer.memory.layouts == eager.memory.layouts


@pytest.mark.inductor
def test_inductor_step_matches_eager(small_model: CausalDiT) -> None:
    """The generated code of the whole step (inductor, fullgraph) against eager, filling and full."""
    import torch._dynamo

    config = memory_preset("context", num_slow_frames=3, similarity_threshold=0.85)
    sampler = SamplerConfig(denoising_steps=(1000.0, 500.0))
    torch._dynamo.reset()
    compiled = StreamingGenerator(small_model, config, latent_size=LATENT, sampler=sampler, compile=True)
    eager = StreamingGenerator(small_model, config, latent_size=LATENT, sampler=sampler)
    got, expected = (stream_all(s, _text(), num_chunks=6, rng=torch.Generator().manual_seed(0))
                     for s in (compiled, eager))  # fmt: skip
    assert_close(got, expected, atol=1e-4)


def test_the_method_imports_no_heavy_library() -> None:
    """Importing the model, the memory and the streaming loop loads no diffusers, transformers,
    matplotlib or OpenCV (start-up time)."""
    code = (
        "import sys, contextforcing.model.dit, contextforcing.memory, contextforcing.inference.streaming\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers', 'matplotlib', 'cv2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sdpa_mask_broadcasts_over_queries() -> None:
    """A [1, Lk] key mask hides the same keys from every query."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    keep = torch.tensor([[True, False, True, True]])
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    cut = F.scaled_dot_product_attention(q, k[:, :, [0, 2, 3]], v[:, :, [0, 2, 3]])
    assert_close(masked, cut, atol=1e-6, floor=0.1)

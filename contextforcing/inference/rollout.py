"""The one autoregressive step shared by inference and training: denoise a chunk against a read-only
memory, then re-encode it clean so the loop can write its K/V.

    denoise_chunk   few-step sampling (x0-prediction, fresh noise at every step) of one chunk
    refresh_chunk   the clean pass at t = context_timestep (0) whose K/V the memory keeps
    run_chunk       both at once over one prebuilt plan, with the noise drawn up front (tensors only)
    ChunkStep       `run_chunk` over a memory's fixed-size read, optionally one compiled graph
    write_clean_chunk  write a given clean chunk (a prefix) into the memory through that pass
    recache_memory  re-encode the kept frames under a new prompt (LongLive's KV re-cache)
    reencode_memory re-encode them bidirectionally before a chunk reads them (`MemoryConfig.reencode`)

The streaming loop runs `run_chunk`: the same sampler and refresh as `denoise_chunk` then
`refresh_chunk`, but with positions, rotations and the cached keys' rotation planned once for the
chunk's five calls, and with no random generator inside, so that it traces into one graph.
`ChunkStep(compile=True)` compiles it with `torch.compile(fullgraph=True)` over a `StaticRead`:
the whole store with a filled flag per slot, so every chunk has the same shapes, a first graph
serves the chunks before the store is full and a second every chunk after, however long the video.

Training reuses `denoise_chunk` with gradient-step selection: `exit_step` stops sampling early (DMD's
random exit) and `grad_at_exit` lets gradients flow through that last prediction only; every earlier
step runs without autograd.

Shape legend: B batch, C latent channels, F frames per chunk, H x W latent size, U kept frames,
T tokens per frame, N heads, Dh head dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from contextforcing.diffusion.flow import add_noise, x0_from_velocity
from contextforcing.diffusion.sampling import few_step_sample
from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.context import ContextMemory, MemoryRead, StaticRead, build_memory
from contextforcing.memory.store import StoreShape
from contextforcing.model.dit import CausalDiT, ForwardPlan, TextCache
from contextforcing.model.layout import LayerContext

__all__ = [
    "ChunkResult",
    "ChunkStep",
    "DenoiseResult",
    "denoise_chunk",
    "new_memory",
    "recache_memory",
    "reencode_memory",
    "refresh_chunk",
    "run_chunk",
    "static_contexts",
    "write_clean_chunk",
]

KV = tuple[Tensor, Tensor]


@dataclass(frozen=True, slots=True)
class DenoiseResult:
    """x0: the chunk's last x0 prediction [B, C, F, H, W]; first_pass_kv: per-layer K/V of the first pass."""

    x0: Tensor
    first_pass_kv: list[KV] | None = None


def new_memory(
    model: CausalDiT, config: MemoryConfig, batch: int, num_frames: int, latent_size: tuple[int, int]
) -> ContextMemory:
    """A preallocated memory for a batch of `num_frames`-frame videos with the model's shapes and dtype."""
    cfg = model.config
    parameter = next(model.parameters())
    shape = StoreShape(
        num_layers=cfg.num_layers, batch=batch, capacity=config.context_capacity(num_frames),
        tokens_per_frame=cfg.tokens_per_frame(*latent_size), num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        latent_shape=(cfg.in_channels, *latent_size),
    )  # fmt: skip
    return build_memory(config, shape, device=parameter.device, dtype=parameter.dtype)


def denoise_chunk(
    model: CausalDiT,
    noise: Tensor,
    text: TextCache,
    read: MemoryRead | None,
    *,
    timesteps: Sequence[float] | Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    exit_step: int | None = None,
    grad_at_exit: bool = False,
    keep_first_pass_kv: bool = False,
) -> DenoiseResult:
    """Few-step sampling of one chunk against the memory's read-only context.

    Args:
        model: the causal DiT.
        noise: [B, C, F, H, W] pure noise at timesteps[0].
        text: the prompt's cross-attention cache (`model.encode_text`).
        read: what the chunk sees (`ContextMemory.read()`), or None for no context at positions 0..F-1.
        timesteps: decreasing timesteps, e.g. `warped_timesteps([1000, 750, 500, 250])`.
        generator: draws the fresh noise of every re-noising (one per sample, or one for the batch).
        exit_step: number of predictions to run (1-based exit); default all of them.
        grad_at_exit: run the exit prediction with autograd enabled; earlier ones never are.
        keep_first_pass_kv: also return the K/V of the first prediction (for decide_on='first-pass').

    Returns:
        DenoiseResult with the exit step's x0 prediction.
    """
    num_steps = len(timesteps) if exit_step is None else exit_step
    if grad_at_exit and read is not None and read.in_call_writes:
        raise ValueError(
            "this memory rewrites itself during the calls that read it (bookkeeping='released'), "
            "which autograd cannot follow; use the clean bookkeeping for training"
        )
    first_pass: list[list[KV]] = []
    calls = 0

    def predict(x: Tensor, t: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        want_kv = keep_first_pass_kv and calls == 1
        with torch.set_grad_enabled(grad_at_exit and calls == num_steps):
            out = model(
                x, t, text, layout=None if read is None else read.layout,
                context=None if read is None else read.context, return_kv=want_kv,
            )  # fmt: skip
        if want_kv:
            out, kv = out
            first_pass.append(kv)
        return out

    with torch.set_grad_enabled(grad_at_exit):
        x0 = few_step_sample(predict, noise, timesteps, generator, num_steps=num_steps)
    return DenoiseResult(x0, first_pass[0] if first_pass else None)


def refresh_chunk(
    model: CausalDiT, x0: Tensor, text: TextCache, read: MemoryRead | None, *, timestep: float = 0.0
) -> list[KV]:
    """The clean pass: per-layer un-rotated (keys, values) of the chunk x0 [B, C, F, H, W] at `timestep`."""
    t = torch.full((x0.shape[0],), float(timestep), device=x0.device, dtype=torch.float32)
    _, kv = model(
        x0, t, text, layout=None if read is None else read.layout,
        context=None if read is None else read.context, return_kv=True,
    )  # fmt: skip
    return kv


@torch.no_grad()
def write_clean_chunk(
    model: CausalDiT,
    memory: ContextMemory,
    x0: Tensor,
    text: TextCache,
    *,
    timestep: float = 0.0,
    prompt_index: int = 0,
) -> None:
    """Write a given clean chunk x0 [B, C, F, H, W] (a prefix) into the memory through the refresh pass;
    its K/V also stand for the first pass where promotions are decided there.

    A re-encoded memory is re-encoded before the chunk only where its keys decide a promotion (surprisal):
    otherwise the next read re-encodes every kept frame from its clean latent, and the chunk's K/V, which
    alone depend on the context it read, are overwritten before any chunk reads them."""
    if memory.config.promotion == "surprisal":
        reencode_memory(model, memory, text)
    kv = refresh_chunk(model, x0, text, memory.read(), timestep=timestep)
    memory.append(kv, x0, first_pass_kv=kv, prompt_index=prompt_index)


def recache_memory(
    model: CausalDiT,
    memory: ContextMemory,
    text: TextCache,
    *,
    refresh_sink: bool,
    bidirectional: bool = False,
) -> None:
    """Re-encode every kept frame's clean latent (under a new prompt) and overwrite its K/V.

    Args:
        model: the causal DiT.
        memory: the memory to refresh in place.
        text: the new prompt's cross-attention cache.
        refresh_sink: also refresh the sink; otherwise the sink keeps the old prompt's K/V.
        bidirectional: each kept frame sees every kept frame, not only those of its own and earlier chunks.
    """
    frames, latents = memory.kept_frames()
    if not frames:
        return
    layout = memory.recache_layout(frames, bidirectional=bidirectional)
    t = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.float32)
    _, kv = model(latents, t, text, layout=layout, return_kv=True)
    memory.overwrite_frames(frames, kv, refresh_sink=refresh_sink)


@torch.no_grad()
def reencode_memory(model: CausalDiT, memory: ContextMemory, text: TextCache) -> None:
    """Before a chunk reads the memory: its kept frames re-encoded bidirectionally where the memory asks
    for it (`MemoryConfig.reencode`) and they were not since the last write, else nothing."""
    if memory.config.reencode and not memory.recached:
        recache_memory(model, memory, text, refresh_sink=True, bidirectional=True)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk: x0 [B, C, F, H, W], the refresh pass's per-layer K/V, and the first pass's if kept."""

    x0: Tensor
    kv: list[KV]
    first_pass_kv: list[KV] | None = None


def run_chunk(
    model: CausalDiT,
    noises: Sequence[Tensor],
    text: TextCache,
    plan: ForwardPlan,
    *,
    timesteps: Sequence[float],
    context_timestep: float = 0.0,
    keep_first_pass_kv: bool = False,
) -> ChunkResult:
    """`denoise_chunk` then `refresh_chunk`, all calls over one plan, without autograd.

    Args:
        model: the causal DiT.
        noises: one [B, C, F, H, W] noise per timestep: the start, then each re-noising, in the order
            `few_step_sample` draws them (so one generator gives the same video either way).
        text: the prompt's cross-attention cache.
        plan: the chunk's plan (`CausalDiT.plan_forward` of the memory's read, or `plan_chunk`).
        timesteps: decreasing timesteps (Python floats: they are constants of a compiled graph).
        context_timestep: timestep of the refresh pass.
        keep_first_pass_kv: also return the first pass's K/V (decide_on='first-pass').
    """
    if len(noises) != len(timesteps):
        raise ValueError(f"got {len(noises)} noises for {len(timesteps)} timesteps")
    x, first = noises[0], None
    batch = x.shape[0]
    for i, step in enumerate(timesteps):
        t = torch.full((batch,), step, device=x.device, dtype=torch.float32)
        out = model(x, t, text, plan=plan, return_kv=keep_first_pass_kv and i == 0)
        if keep_first_pass_kv and i == 0:
            out, first = out
        x0 = x0_from_velocity(x, out, t)
        if i + 1 < len(timesteps):
            t_next = torch.full((batch,), timesteps[i + 1], device=x.device, dtype=torch.float32)
            x = add_noise(x0, noises[i + 1], t_next)
    t = torch.full((batch,), context_timestep, device=x.device, dtype=torch.float32)
    _, kv = model(x0, t, text, plan=plan, return_kv=True)
    return ChunkResult(x0, kv, first)


def static_contexts(
    keys: Tensor, values: Tensor, positions: Tensor, filled: Tensor | None
) -> list[LayerContext]:
    """Per-layer contexts over a `StaticRead`'s tensors: keys, values [Y, B, S, T, N, Dh], positions
    and filled [Y, S]; views only."""
    flags = [None] * keys.shape[0] if filled is None else list(filled.unbind(0))
    views = zip(keys.flatten(2, 3).unbind(0), values.flatten(2, 3).unbind(0), positions.unbind(0), flags,
                strict=True)  # fmt: skip
    return [LayerContext(k, v, p, filled=f) for k, v, p, f in views]  # keys, values (B, S*T, N, Dh)


class ChunkStep:
    """`run_chunk` over a memory's `StaticRead` (clean bookkeeping), compiled or eager.

    With `compile=True` the whole step (the plan, every denoising pass and the refresh) is one
    `torch.compile(fullgraph=True, dynamic=False)` graph: no graph break, no host synchronisation
    inside. Its inputs keep their shapes from the first chunk on (the store's whole buffers and a
    filled flag per slot), so it compiles twice in a video: once for the chunks before the store is
    full (a key mask hides the empty slots) and once for those after (no mask). `mode` passes on to
    `torch.compile` ("reduce-overhead" captures the step as a CUDA graph on a GPU); `backend` too.
    """

    def __init__(
        self,
        model: CausalDiT,
        *,
        timesteps: Sequence[float] | Tensor,
        context_timestep: float = 0.0,
        keep_first_pass_kv: bool = False,
        compile: bool = False,
        mode: str | None = None,
        backend: str = "inductor",
    ) -> None:
        self.model = model
        self.timesteps = tuple(float(t) for t in timesteps)
        self.context_timestep = float(context_timestep)
        self.keep_first_pass_kv = keep_first_pass_kv
        self.compiled = compile
        self.cuda_graphs = compile and mode in ("reduce-overhead", "max-autotune")
        self._step = self._static_step
        if compile:
            self._step = torch.compile(
                self._static_step, fullgraph=True, dynamic=False, mode=mode, backend=backend
            )

    def __call__(self, noises: Sequence[Tensor], text: TextCache, read: StaticRead) -> ChunkResult:
        """The chunk for `noises` (see `run_chunk`) against the memory's fixed-size read."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            x0, kv, first = self._step(tuple(noises), text.kv, read.keys, read.values, read.positions,
                                       read.filled, read.query_positions)  # fmt: skip
        if self.cuda_graphs:  # a replay overwrites the graph's outputs: hand out copies
            x0 = x0.clone()
            kv = [(k.clone(), v.clone()) for k, v in kv]
            first = None if first is None else [(k.clone(), v.clone()) for k, v in first]
        return ChunkResult(x0, list(kv), None if first is None else list(first))

    def _static_step(
        self,
        noises: tuple[Tensor, ...],
        text_kv: tuple[KV, ...],
        keys: Tensor,
        values: Tensor,
        positions: Tensor,
        filled: Tensor | None,
        query_positions: Tensor,
    ) -> tuple[Tensor, list[KV], list[KV] | None]:
        """Tensors in, tensors out: the traced function. keys, values [Y, B, S, T, N, Dh]."""
        _, ph, pw = self.model.config.patch_size
        grid = (noises[0].shape[3] // ph, noises[0].shape[4] // pw)
        context = static_contexts(keys, values, positions, filled)
        plan = self.model.plan_chunk(query_positions, context, grid)
        result = run_chunk(self.model, noises, TextCache(text_kv), plan, timesteps=self.timesteps,
                           context_timestep=self.context_timestep,
                           keep_first_pass_kv=self.keep_first_pass_kv)  # fmt: skip
        return result.x0, result.kv, result.first_pass_kv

"""StreamingGenerator: chunk-by-chunk video generation with a sink / slow / fast memory.

Per chunk: draw noise, run the few-step sampler against the memory (4 warped steps, fresh noise at
each step), run one clean refresh pass at t = 0, and append that pass's K/V to the memory (the
released bookkeeping also tests and promotes inside each of these calls, see `memory/released.py`). Chunks
are yielded as soon as they exist, so a caller can decode and show them while generation goes on.
The memory is preallocated, so once it is full, time and memory per chunk stay flat.

The chunk step (the sampler's passes and the refresh, `inference/rollout.py::run_chunk`) plans
positions once per chunk. `compile=True` runs it as one `torch.compile(fullgraph=True)` graph over
the memory's fixed-size read (`ChunkStep`), which compiles twice per video (before and after the
store is full) and never again; `compile_mode="reduce-overhead"` also captures it as a CUDA graph.
The memory's own bookkeeping (the promotion test, the store's reordering) runs between steps.

Prompts follow a `PromptSchedule`; at each switch the kept frames are re-encoded under the new
prompt (`recache_memory`), optionally keeping the sink's old K/V.

Shape legend: B batch, C latent channels, F frames per chunk, H x W latent size, S text tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from contextforcing.diffusion.flow import warped_timesteps
from contextforcing.inference.rollout import (
    ChunkResult,
    ChunkStep,
    new_memory,
    recache_memory,
    reencode_memory,
    run_chunk,
    write_clean_chunk,
)
from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.context import ContextMemory
from contextforcing.model.dit import CausalDiT, TextCache

__all__ = ["PromptSchedule", "SamplerConfig", "StreamStats", "StreamingGenerator", "stream_all"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class SamplerConfig:
    """The few-step sampler of each chunk."""

    denoising_steps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    """Nominal denoising steps, strictly decreasing in (0, 1000]."""
    shift: float = 5.0
    """Timestep shift of the flow schedule."""
    warp: bool = True
    """Read the nominal steps off the shifted schedule (about [1000, 937.5, 833.3, 625])."""
    context_timestep: float = 0.0
    """Timestep of the clean refresh pass whose K/V the memory keeps."""

    def __post_init__(self) -> None:
        warped_timesteps(self.denoising_steps, self.shift)  # raises ValueError on a bad list
        if not 0.0 <= self.context_timestep < 1000.0:
            raise ValueError(
                f"SamplerConfig.context_timestep must lie in [0, 1000), got {self.context_timestep}"
            )

    @property
    def timesteps(self) -> Tensor:
        """The actual timesteps of the sampler (float64)."""
        if self.warp:
            return warped_timesteps(self.denoising_steps, self.shift)
        return torch.tensor(self.denoising_steps, dtype=torch.float64)


@dataclass(frozen=True, slots=True)
class PromptSchedule:
    """Text features and the chunk at which each prompt takes over.

    Attributes:
        texts: per prompt, text features [B, S, text_dim].
        starts: first chunk of each prompt; starts[0] must be 0 and starts must increase.
        refresh_sink: at a switch, also re-encode the sink (else it keeps the old prompt's K/V).
    """

    texts: tuple[Tensor, ...]
    starts: tuple[int, ...] = (0,)
    refresh_sink: bool = False

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.starts) or not self.texts:
            raise ValueError(
                f"PromptSchedule needs one start per prompt, got {len(self.texts)} and {self.starts}"
            )
        if self.starts[0] != 0 or any(b <= a for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise ValueError(f"PromptSchedule.starts must begin at 0 and increase, got {self.starts}")

    def prompt_at(self, chunk: int) -> int:
        """Index of the prompt in force at `chunk`."""
        return max(i for i, start in enumerate(self.starts) if start <= chunk)


@dataclass(slots=True)
class StreamStats:
    """Wall time of every chunk (seconds), filled while streaming."""

    chunk_seconds: list[float] = field(default_factory=list)


class StreamingGenerator:
    """Generates a video chunk by chunk with a preallocated memory; see the module docstring."""

    def __init__(self, model: CausalDiT, memory: MemoryConfig, *, latent_size: tuple[int, int],
                 sampler: SamplerConfig | None = None, compile: bool = False,
                 compile_mode: str | None = None) -> None:  # fmt: skip
        """Args beyond the model, memory and latent size:
        sampler: the few-step sampler (default `SamplerConfig()`).
        compile: run each chunk step as one compiled graph (`ChunkStep`); needs bookkeeping='clean'.
        compile_mode: `torch.compile`'s mode, e.g. "reduce-overhead" for CUDA graphs on a GPU.
        """
        height, width = latent_size
        _, ph, pw = model.config.patch_size
        if height % ph or width % pw or height <= 0 or width <= 0:
            raise ValueError(f"latent size {latent_size} is not a positive multiple of the patch {(ph, pw)}")
        if compile and memory.bookkeeping != "clean":
            raise ValueError(
                f"compile=True needs bookkeeping='clean': the {memory.bookkeeping!r} bookkeeping rewrites "
                "the memory inside each model call, which a compiled graph cannot hold"
            )
        if compile_mode is not None and not compile:
            raise ValueError(f"compile_mode={compile_mode!r} needs compile=True")
        self.model = model
        self.memory_config = memory
        self.sampler = sampler or SamplerConfig()
        self.latent_size = (height, width)
        self.memory: ContextMemory | None = None
        self.stats = StreamStats()
        self.step: ChunkStep | None = None
        """The compiled chunk step, kept across videos (its graphs too); None when not compiling."""
        if compile:
            self.step = ChunkStep(model, timesteps=self.sampler.timesteps,
                                  context_timestep=self.sampler.context_timestep,
                                  keep_first_pass_kv=memory.decide_on == "first-pass", compile=True,
                                  mode=compile_mode)  # fmt: skip

    def new_memory(self, batch: int, num_chunks: int) -> ContextMemory:
        """A fresh, preallocated memory for `num_chunks` chunks of a batch of `batch` videos."""
        num_frames = num_chunks * self.memory_config.frames_per_chunk
        return new_memory(self.model, self.memory_config, batch, num_frames, self.latent_size)

    def stream(self, prompts: PromptSchedule | Tensor, *, num_chunks: int, generator: torch.Generator,
               prefix: Tensor | None = None) -> Iterator[Tensor]:  # fmt: skip
        """Yield the clean latents [B, C, F, H, W] of each chunk as soon as it is made.

        Args:
            prompts: a schedule, or text features [B, S, text_dim] for a single prompt.
            num_chunks: chunks to generate.
            generator: draws all noise (on the model's device).
            prefix: clean latents [B, C, P, H, W] (P a multiple of the chunk) written into the memory
                first, chunk by chunk through the refresh pass, so the video continues them. They
                count as the first chunks for the memory and the prompt schedule, and are not yielded.
        """
        schedule = prompts if isinstance(prompts, PromptSchedule) else PromptSchedule((prompts,))
        if num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
        chunk_frames = self.memory_config.frames_per_chunk
        num_prefix = 0 if prefix is None else prefix.shape[2] // chunk_frames
        if prefix is not None and (prefix.shape[2] % chunk_frames or prefix.shape[2] == 0):
            raise ValueError(
                f"prefix of {prefix.shape[2]} frames is not a positive multiple of {chunk_frames}"
            )
        if self.memory_config.reencode and len(schedule.texts) > 1 and not schedule.refresh_sink:
            raise ValueError(
                "MemoryConfig.reencode re-encodes the sink under the current prompt before every chunk, "
                "so a prompt switch cannot keep the old prompt's sink: give refresh_sink=True (generate --refresh-sink)"
            )
        batch = schedule.texts[0].shape[0]
        self.memory = memory = self.new_memory(batch, num_prefix + num_chunks)
        self.stats = StreamStats()
        timesteps = self.sampler.timesteps
        with torch.no_grad():
            caches = [self.model.encode_text(text) for text in schedule.texts]  # once per prompt
            for chunk in range(num_prefix):
                clean = prefix[:, :, chunk * chunk_frames : (chunk + 1) * chunk_frames]
                prompt = schedule.prompt_at(chunk)
                write_clean_chunk(self.model, memory, clean, caches[prompt],
                                  timestep=self.sampler.context_timestep, prompt_index=prompt)  # fmt: skip
        for chunk in range(num_prefix, num_prefix + num_chunks):
            start = time.perf_counter()
            prompt = schedule.prompt_at(chunk)
            with torch.no_grad():
                if chunk and prompt != schedule.prompt_at(chunk - 1):
                    logger.info("chunk %d: switching to prompt %d, re-caching the memory", chunk, prompt)
                    recache_memory(self.model, memory, caches[prompt], refresh_sink=schedule.refresh_sink,
                                   bidirectional=self.memory_config.reencode)  # fmt: skip
                x0 = self._chunk(memory, caches[prompt], batch, timesteps, generator, prompt)
            _synchronize(x0)
            self.stats.chunk_seconds.append(time.perf_counter() - start)
            yield x0

    def _chunk(self, memory: ContextMemory, text: TextCache, batch: int, timesteps: Tensor,
               generator: torch.Generator, prompt: int) -> Tensor:  # fmt: skip
        parameter = next(self.model.parameters())
        shape = (batch, self.model.config.in_channels, self.memory_config.frames_per_chunk, *self.latent_size)
        # All of the sampler's noise, drawn in the order `few_step_sample` draws it.
        noises = [torch.randn(shape, generator=generator, device=parameter.device, dtype=parameter.dtype)
                  for _ in range(len(timesteps))]  # fmt: skip
        reencode_memory(self.model, memory, text)
        if self.step is not None:
            result = self.step(noises, text, memory.read_static())
        else:
            result = self._eager_chunk(memory, noises, text, timesteps)
        memory.append(result.kv, result.x0, first_pass_kv=result.first_pass_kv, prompt_index=prompt)
        return result.x0

    def _eager_chunk(self, memory: ContextMemory, noises: list[Tensor], text: TextCache,
                     timesteps: Tensor) -> ChunkResult:  # fmt: skip
        read = memory.read()
        frames = self.memory_config.frames_per_chunk
        _, ph, pw = self.model.config.patch_size
        grid = (self.latent_size[0] // ph, self.latent_size[1] // pw)
        plan = self.model.plan_forward(read.layout, read.context, frames, grid, device=noises[0].device)
        return run_chunk(self.model, noises, text, plan, timesteps=[float(t) for t in timesteps],
                         context_timestep=self.sampler.context_timestep,
                         keep_first_pass_kv=self.memory_config.decide_on == "first-pass")  # fmt: skip


def _synchronize(like: Tensor) -> None:
    """Wait for the accelerator, so per-chunk wall times are real."""
    if like.device.type != "cpu":
        torch.accelerator.synchronize(like.device)


def stream_all(generator: StreamingGenerator, prompts: PromptSchedule | Tensor, *, num_chunks: int,
               rng: torch.Generator) -> Tensor:  # fmt: skip
    """The whole latent video [B, C, num_chunks*F, H, W] (convenience for tests and scripts)."""
    chunks: Sequence[Tensor] = list(generator.stream(prompts, num_chunks=num_chunks, generator=rng))
    return torch.cat(list(chunks), dim=2)

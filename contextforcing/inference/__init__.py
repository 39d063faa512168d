"""Streamed inference: the shared denoising step and the chunk-by-chunk generator."""

from contextforcing.inference.rollout import DenoiseResult, denoise_chunk, recache_memory, refresh_chunk
from contextforcing.inference.streaming import PromptSchedule, SamplerConfig, StreamingGenerator, stream_all

__all__ = [
    "DenoiseResult",
    "PromptSchedule",
    "SamplerConfig",
    "StreamingGenerator",
    "denoise_chunk",
    "recache_memory",
    "refresh_chunk",
    "stream_all",
]

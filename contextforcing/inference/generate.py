"""Generate one video to a folder: video.mp4, report.json (settings, per-chunk wall time, peak memory,
memory trace) and memory.png (the trace drawn). The library side of `contextforcing generate`.

Everything that can be wrong with the request (length, policy, memory split, prompts, checkpoint,
codec) raises ValueError in `prepare` before any chunk is generated.

Sizes: 4 latent frames per second nominal; the length is rounded up to whole chunks. Without a codec,
the first three latent channels are written as colours, one video frame per latent frame.

Shape legend: B batch (1 here), C latent channels, F latent frames, H x W latent size, S text tokens.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import resource
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.inference.streaming import PromptSchedule, StreamingGenerator
from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.memory.trace import plot_trace
from contextforcing.model.config import DiTConfig, model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.text_encoder import TextEncoder

__all__ = [
    "LATENT_FRAMES_PER_SECOND",
    "GenerateSettings",
    "Prepared",
    "generate",
    "parse_prompt_lines",
    "prepare",
]

logger = logging.getLogger(__name__)

LATENT_FRAMES_PER_SECOND = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerateSettings:
    """One generation request."""

    out: Path
    """Output folder."""
    prompts: tuple[str, ...] = ("",)
    """Prompts in order."""
    prompt_starts: tuple[float, ...] = (0.0,)
    """Second at which each prompt takes over (rounded to whole chunks)."""
    seconds: float = 10.0
    """Video length in seconds (4 latent frames per second, rounded up to whole chunks)."""
    memory: str = "context"
    """Memory policy preset."""
    memory_overrides: tuple[tuple[str, Any], ...] = ()
    """(field, value) overrides of the preset's MemoryConfig."""
    seed: int = 0
    """Seed of all noise."""
    checkpoint: Path | None = None
    """Model folder (`contextforcing.model.weights.load_model`); else `model_preset`."""
    model_preset: str = "tiny"
    """Random-weight model preset, used when there is no checkpoint (smoke tests)."""
    codec: Path | None = None
    """Codec folder to decode with (recorded; `prepare` loads a Wan VAE from it unless given the codec);
    without one the latents are drawn directly."""
    latent_size: tuple[int, int] = (8, 8)
    """(H, W) of the latents."""
    refresh_sink: bool = False
    """At a prompt switch, also re-encode the sink."""
    gif_scale: int = 0
    """Also write video.gif, each pixel this many pixels wide (0: no GIF)."""
    prefix: Path | None = None
    """A video whose first `prefix_seconds` the model continues (encoded with the codec into its memory)."""
    prefix_seconds: float = 3.0
    """Length of the prefix, rounded to whole chunks; it counts towards `seconds`."""
    device: str = "cpu"
    """Torch device."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.prompts or len(self.prompts) != len(self.prompt_starts):
            raise ValueError(
                f"need one start per prompt, got {len(self.prompts)} prompts, {self.prompt_starts}"
            )
        if self.prompt_starts[0] != 0 or any(
            b <= a for a, b in zip(self.prompt_starts, self.prompt_starts[1:], strict=False)
        ):
            raise ValueError(f"prompt starts must begin at 0 and increase, got {self.prompt_starts}")
        if min(self.latent_size) <= 0:
            raise ValueError(f"latent_size must be positive, got {self.latent_size}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything resolved and validated, ready to generate."""

    settings: GenerateSettings
    model: CausalDiT
    memory: MemoryConfig
    schedule: PromptSchedule
    num_chunks: int
    codec: Codec | None
    prefix: Tensor | None = None
    """Clean latents [1, C, P, H, W] the video continues (its first P frames), or None."""


def parse_prompt_lines(text: str, seconds: float) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Prompts from a file: one per line, optionally `START_SECONDS|prompt`; bare lines split the video evenly."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise ValueError("the prompts file holds no prompt")
    timed = ["|" in line for line in lines]
    if any(timed) and not all(timed):
        raise ValueError("either every prompt line has a 'SECONDS|' prefix or none does")
    if not any(timed):
        return tuple(lines), tuple(i * seconds / len(lines) for i in range(len(lines)))
    starts, prompts = [], []
    for line in lines:
        start, prompt = line.split("|", 1)
        try:
            starts.append(float(start))
        except ValueError:
            raise ValueError(f"bad prompt start {start!r} in line {line!r}") from None
        prompts.append(prompt.strip())
    return tuple(prompts), tuple(starts)


def prepare(
    settings: GenerateSettings,
    *,
    codec: Codec | None = None,
    text_encoder: Callable[[DiTConfig], TextEncoder] | None = None,
) -> Prepared:
    """Resolve and validate the request: memory, model, codec, prompts. Raises ValueError on any problem.

    `codec` decodes (and encodes a prefix); without it, `settings.codec` is loaded as a Wan VAE.
    `text_encoder` builds the prompt encoder for the loaded model's config; a checkpoint needs one,
    random weights take a seeded embedding per prompt.
    """
    overrides = dict(settings.memory_overrides)
    memory = memory_preset(settings.memory, **overrides)
    frames = math.ceil(settings.seconds * LATENT_FRAMES_PER_SECOND)
    num_chunks = math.ceil(frames / memory.frames_per_chunk)
    model = _load_model(settings)
    codec = _check_codec(settings, model, codec)
    _, ph, pw = model.config.patch_size
    if settings.latent_size[0] % ph or settings.latent_size[1] % pw:
        raise ValueError(f"latent size {settings.latent_size} is not divisible by the patch {(ph, pw)}")
    texts = _encode_prompts(settings, model, text_encoder)
    chunk_seconds = memory.frames_per_chunk / LATENT_FRAMES_PER_SECOND
    starts = tuple(round(s / chunk_seconds) for s in settings.prompt_starts)
    if any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= num_chunks:
        raise ValueError(
            f"prompt starts {settings.prompt_starts} s do not map to distinct chunks of this video"
        )
    schedule = PromptSchedule(tuple(t[None] for t in texts), starts, refresh_sink=settings.refresh_sink)
    prefix = None if settings.prefix is None else _encode_prefix(settings, codec, memory, num_chunks)
    if prefix is not None:
        num_chunks -= prefix.shape[2] // memory.frames_per_chunk
    return Prepared(settings, model, memory, schedule, num_chunks, codec, prefix)


def _encode_prefix(
    settings: GenerateSettings, codec: Codec | None, memory: MemoryConfig, num_chunks: int
) -> Tensor:
    """The first `prefix_seconds` of the prefix video as latents [1, C, P, H, W], P whole chunks."""
    from contextforcing.codec.base import num_pixel_frames
    from contextforcing.video_io import read_video

    if codec is None:
        raise ValueError("a prefix video needs --codec to encode it")
    if not settings.prefix.is_file():
        raise ValueError(f"no prefix video at {settings.prefix}")
    chunk = memory.frames_per_chunk
    num_prefix = max(1, round(settings.prefix_seconds * LATENT_FRAMES_PER_SECOND / chunk))
    if num_prefix >= num_chunks:
        raise ValueError(
            f"a prefix of {settings.prefix_seconds} s leaves nothing to generate in {settings.seconds} s"
        )
    frames, fps = read_video(settings.prefix)
    expected = LATENT_FRAMES_PER_SECOND * codec.temporal_factor
    if abs(fps - expected) > 1e-3:
        raise ValueError(f"the prefix video runs at {fps:g} fps, the codec expects {expected:g}")
    needed = num_pixel_frames(codec, num_prefix * chunk)
    if len(frames) < needed:
        raise ValueError(f"the prefix video has {len(frames)} frames, {needed} are needed")
    pixels = frames[:needed].permute(3, 0, 1, 2).float().div(127.5).sub(1.0)[None]  # [1, 3, T, H, W]
    with torch.no_grad():
        latents = codec.encode(pixels.to(settings.device))
    if tuple(latents.shape[3:]) != settings.latent_size:
        raise ValueError(
            f"the prefix encodes to latents {tuple(latents.shape[3:])}, not {settings.latent_size}"
        )
    return latents


def _load_model(settings: GenerateSettings) -> CausalDiT:
    if settings.checkpoint is not None:
        from contextforcing.model.weights import load_model

        return load_model(settings.checkpoint, device=settings.device).eval()
    model = CausalDiT(model_preset(settings.model_preset))
    # Seeded random weights (the default init zeroes the output head, which would draw plain noise).
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.05, generator=generator)
    return model.to(settings.device).eval()


def _check_codec(settings: GenerateSettings, model: CausalDiT, codec: Codec | None) -> Codec | None:
    if codec is None and settings.codec is None:
        return None
    if codec is None:
        from contextforcing.codec.loading import load_codec

        codec = load_codec(settings.codec)
    if isinstance(codec, torch.nn.Module):
        codec = codec.to(settings.device).eval()
    if codec.latent_channels != model.config.in_channels:
        raise ValueError(
            f"the codec has {codec.latent_channels} latent channels, the model reads {model.config.in_channels}"
        )
    return codec


def _encode_prompts(
    settings: GenerateSettings, model: CausalDiT, text_encoder: Callable[[DiTConfig], TextEncoder] | None
) -> Tensor:
    """[P, S, text_dim]: the text encoder's features, or a seeded embedding per prompt for random weights."""
    cfg = model.config
    if text_encoder is not None:
        return text_encoder(cfg).encode(list(settings.prompts)).to(settings.device)
    if settings.checkpoint is not None:
        raise ValueError("a checkpoint needs a text encoder to encode its prompts")
    rows = []
    for prompt in settings.prompts:
        generator = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
        rows.append(torch.randn(cfg.text_len, cfg.text_dim, generator=generator))
    return torch.stack(rows).to(settings.device)


def latents_to_frames(latents: Tensor) -> Tensor:
    """Draw the first three latent channels: [B, C, F, H, W] -> [3, F, H*k, W*k] in [-1, 1], k >= 1."""
    rgb = latents[0, :3].float()
    if rgb.shape[0] < 3:
        rgb = torch.cat([rgb, rgb[:1].expand(3 - rgb.shape[0], -1, -1, -1)])
    scale = max(1, 64 // min(rgb.shape[-2:]))
    rgb = rgb.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return (rgb / 3).clamp(-1, 1)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory allocated on `device`, or the process's peak RSS on CPU."""
    if device.type != "cpu":
        return int(torch.accelerator.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generate(prepared: Prepared, *, progress: bool | None = None) -> dict[str, Any]:
    """Generate, decode chunk by chunk, and write video.mp4, report.json and memory.png; returns the report."""
    from tqdm import tqdm

    from contextforcing.video_io import write_gif, write_video

    settings, out = prepared.settings, prepared.settings.out
    out.mkdir(parents=True, exist_ok=True)
    streamer = StreamingGenerator(prepared.model, prepared.memory, latent_size=settings.latent_size)
    device = next(prepared.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    decoder = None if prepared.codec is None else prepared.codec.stream_decoder()
    pieces, started = [], time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    stream = streamer.stream(
        prepared.schedule, num_chunks=prepared.num_chunks, generator=generator, prefix=prepared.prefix
    )
    if prepared.prefix is not None:  # the video shows the prefix as the codec reproduces it
        with torch.no_grad():
            pieces.append(decoder.decode(prepared.prefix)[0].float().cpu())
    for chunk in tqdm(stream, total=prepared.num_chunks, unit="chunk", disable=not show):
        if decoder is None:
            pieces.append(latents_to_frames(chunk).cpu())
        else:
            with torch.no_grad():
                pieces.append(decoder.decode(chunk)[0].float().cpu())
    frames = torch.cat(pieces, dim=1)
    fps = LATENT_FRAMES_PER_SECOND * (1 if prepared.codec is None else prepared.codec.temporal_factor)
    write_video(out / "video.mp4", frames, fps)
    if settings.gif_scale > 0:
        write_gif(out / "video.gif", frames, fps, scale=settings.gif_scale)
    assert streamer.memory is not None
    report = {
        "settings": settings.to_dict(), "model": prepared.model.config.to_dict(),
        "memory": prepared.memory.to_dict(), "sampler": dataclasses.asdict(streamer.sampler),
        "num_chunks": prepared.num_chunks, "num_latent_frames": streamer.memory.num_frames, "fps": fps,
        "wall_seconds": time.perf_counter() - started, "chunk_seconds": streamer.stats.chunk_seconds,
        "peak_memory_bytes": peak_memory_bytes(device), "store_bytes": streamer.memory.store.nbytes,
        "trace": streamer.memory.trace.to_dict(),
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_trace(streamer.memory.trace, out / "memory.png")
    logger.info(
        "wrote %s (%d chunks, %.1f s)", out / "video.mp4", prepared.num_chunks, report["wall_seconds"]
    )
    return report

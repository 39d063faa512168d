"""Generate one video into a folder, streamed: video.mp4 (and video.gif), memory.png, report.json.

The library side of `contextforcing generate`. A `ContextForcingPipeline` makes the video chunk by
chunk and every decoded chunk goes straight into the mp4 (and the GIF), so memory does not grow with
the video's length. Every output is written under a temporary name and renamed once complete, the
report last; outputs of an earlier run in the same folder are removed first, and a run that stops
half-way removes what it wrote, so the folder never holds a truncated video or a stale report.

The report holds the settings, the components, the time of every chunk, end-to-end frames per
second (decoded frames over the wall time, decoding and encoding included), denoising-only frames
per second, the time to the first chunk, peak memory (resident and accelerator) and the memory trace.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contextforcing.memory.trace import plot_trace
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.pipeline import LATENT_FRAMES_PER_SECOND, ContextForcingPipeline, Plan
from contextforcing.runtime import peak_memory
from contextforcing.video_io import GifWriter, VideoWriter, partial_path

__all__ = [
    "LATENT_FRAMES_PER_SECOND",
    "OUTPUTS",
    "GenerateSettings",
    "generate",
    "parse_prompt_lines",
    "prepare",
    "random_model",
]

logger = logging.getLogger(__name__)

OUTPUTS = ("video.mp4", "video.gif", "memory.png", "report.json")
"""What `generate` writes into its folder (and removes there first)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerateSettings:
    """One generation request (the pipeline's components are chosen separately)."""

    out: Path
    """Output folder."""
    prompts: tuple[str, ...] = ("",)
    """Prompts in order."""
    prompt_starts: tuple[float, ...] = (0.0,)
    """Second at which each prompt takes over (rounded to whole chunks)."""
    seconds: float = 10.0
    """Video length in seconds (4 latent frames per second, rounded up to whole chunks)."""
    height: int | None = None
    """Pixel height (default: the pipeline's)."""
    width: int | None = None
    """Pixel width (default: the pipeline's)."""
    seed: int = 0
    """Seed of all noise."""
    refresh_sink: bool = False
    """At a prompt switch, also re-encode the sink."""
    gif_scale: int = 0
    """Also write video.gif, each pixel this many pixels wide (0: no GIF)."""
    prefix: Path | None = None
    """An image or a video the model continues (encoded with the codec into its memory)."""
    prefix_seconds: float = 3.0
    """Length of a video prefix, rounded to whole chunks; it counts towards `seconds`."""

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
        if self.gif_scale < 0:
            raise ValueError(f"gif_scale must be >= 0, got {self.gif_scale}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


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


def random_model(preset: str, seed: int) -> CausalDiT:
    """Seeded random weights of a model preset (smoke tests; the default init zeroes the output head)."""
    model = CausalDiT(model_preset(preset))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.05, generator=generator)
    return model.eval()


def prepare(pipeline: ContextForcingPipeline, settings: GenerateSettings) -> Plan:
    """Validate the request against the pipeline and encode its prompts and prefix (ValueError on any problem)."""
    return pipeline.prepare(
        settings.prompts, prompt_starts=settings.prompt_starts, seconds=settings.seconds,
        height=settings.height, width=settings.width, seed=settings.seed, prefix=settings.prefix,
        prefix_seconds=settings.prefix_seconds, refresh_sink=settings.refresh_sink,
    )  # fmt: skip


def remove_outputs(out: Path) -> None:
    """Delete the outputs of a previous run (and any unfinished ones) in `out`."""
    for name in OUTPUTS:
        for path in (out / name, partial_path(out / name)):
            path.unlink(missing_ok=True)


def generate(pipeline: ContextForcingPipeline, plan: Plan, settings: GenerateSettings, *,
             components: dict[str, Any] | None = None, progress: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """Stream the video into settings.out and write the memory plot and the report; returns the report.

    `components` (names and paths of what the pipeline was built from) goes into the report as is.
    On any exception, KeyboardInterrupt included, the outputs of this run are removed and it re-raises.
    """
    from tqdm import tqdm

    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    remove_outputs(out)
    device = pipeline.device
    if device.type != "cpu":
        torch.accelerator.reset_peak_memory_stats(device)
    writers: list[VideoWriter | GifWriter] = [VideoWriter(out / "video.mp4", pipeline.fps)]
    if settings.gif_scale > 0:
        writers.append(GifWriter(out / "video.gif", pipeline.fps, scale=settings.gif_scale))
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    try:
        total = plan.num_chunks + (plan.prefix is not None)
        for chunk in tqdm(pipeline.stream(plan), total=total, unit="chunk", disable=not show):
            for writer in writers:
                writer.write(chunk.frames)
        for writer in writers:
            writer.close()
        wall = time.perf_counter() - started
        report = _report(pipeline, plan, settings, components or {}, wall)
        plot = out / ".memory.partial.png"  # matplotlib reads the format off the suffix
        plot_trace(pipeline.record.streamer.memory.trace, plot)
        plot.replace(out / "memory.png")
        partial = partial_path(out / "report.json")
        partial.write_text(json.dumps(report, indent=1))
        partial.replace(out / "report.json")
    except BaseException:
        for writer in writers:
            writer.abort()
        (out / ".memory.partial.png").unlink(missing_ok=True)
        remove_outputs(out)
        raise
    logger.info(
        "wrote %s: %d frames in %.1f s (%.1f frames/s end to end, %.1f denoising)", out / "video.mp4",
        report["num_frames"], wall, report["frames_per_second"], report["denoising_frames_per_second"],
    )  # fmt: skip
    return report


def _report(pipeline: ContextForcingPipeline, plan: Plan, settings: GenerateSettings,
            components: dict[str, Any], wall: float) -> dict[str, Any]:  # fmt: skip
    record = pipeline.record
    assert record is not None and record.streamer.memory is not None
    memory, denoise = record.streamer.memory, sum(record.streamer.stats.chunk_seconds)
    peaks = peak_memory(pipeline.device)
    return {
        "settings": settings.to_dict(), "components": components, "device": str(pipeline.device),
        "dtype": str(pipeline.dtype).removeprefix("torch."), "size": list(plan.size),
        "model": pipeline.model.config.to_dict(), "memory": pipeline.memory.to_dict(),
        "sampler": dataclasses.asdict(pipeline.sampler), "num_chunks": plan.num_chunks,
        "num_prefix_chunks": 0 if plan.prefix is None else plan.prefix.shape[2] // pipeline.memory.frames_per_chunk,
        "num_latent_frames": memory.num_frames, "num_frames": record.num_frames, "fps": pipeline.fps,
        "wall_seconds": wall, "frames_per_second": record.num_frames / wall,
        "denoising_frames_per_second": record.num_generated_frames / denoise if denoise else None,
        "time_to_first_chunk_seconds": record.first_chunk_seconds,
        "chunk_seconds": record.streamer.stats.chunk_seconds, "decode_seconds": record.decode_seconds,
        **peaks, "store_bytes": memory.store.nbytes, "trace": memory.trace.to_dict(),
    }  # fmt: skip

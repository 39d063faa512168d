"""ContextForcingPipeline: text (and an optional prefix) to a streamed video, in diffusers' manner.

One object holds the components of a generation: the causal student (`CausalDiT`), its memory policy
and sampler, a codec (pixels <-> latents) and a text encoder. `from_pretrained(DIR)` builds it from a
Wan2.1 text-to-video folder in the diffusers layout (`model_index.json`, `transformer/`, `vae/`,
`text_encoder/`, `tokenizer/`), optionally with another student (any layout `load_model` reads), or
from a folder `save_pretrained` wrote. Other components (the synthetic world's codec and text
encoder, for instance) are handed to the constructor; there is one code path for all of them.

    pipe = ContextForcingPipeline.from_pretrained("Wan2.1-T2V-1.3B-Diffusers", student="model.pt",
                                                  torch_dtype=torch.bfloat16, device="cuda")
    for chunk in pipe.stream("a red fox runs through snow", seconds=60):
        ...  # chunk.frames: uint8 [T, H, W, 3], decoded as soon as the chunk is made
    video = pipe("a red fox runs through snow", seconds=10).frames

`prepare(...)` validates a request and encodes its prompts (once per distinct prompt) and prefix
before any chunk is generated; `stream` and `__call__` accept its `Plan`. Sizes are pixels and must
be multiples of the codec's spatial factor times the patch size. Time: 4 latent frames per second,
so the Wan VAE's 4 pixel frames per latent frame give Wan's 16 fps. Without a codec the latents'
first three channels are drawn, each latent pixel as an 8 x 8 block.

Shape legend: T pixel frames, H x W pixels, C latent channels, F latent frames, h x w latent size.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contextforcing.codec.base import Codec, num_pixel_frames
from contextforcing.inference.streaming import PromptSchedule, SamplerConfig, StreamingGenerator
from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import load_model, save_model
from contextforcing.runtime import resolve_device
from contextforcing.text_encoder import SeededTextEncoder, TextEncoder, UMT5TextEncoder
from contextforcing.video_io import IMAGE_SUFFIXES, read_image, read_video, to_uint8_frames

__all__ = [
    "LATENT_FRAMES_PER_SECOND",
    "WAN_COMPONENTS",
    "ComponentSource",
    "ContextForcingPipeline",
    "PipelineOutput",
    "Plan",
    "VideoChunk",
    "parse_dtype",
]

logger = logging.getLogger(__name__)

LATENT_FRAMES_PER_SECOND = 4
WAN_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer")
"""The subfolders of a Wan2.1 text-to-video folder (diffusers layout) that the pipeline reads."""
WAN_SIZE = (480, 832)
"""Wan2.1's pixel size (height, width)."""
_FORMAT = "contextforcing-pipeline/1"
_INDEX = "pipeline.json"
_NO_CODEC_SCALE = 8
"""Without a codec, each latent pixel is drawn as an 8 x 8 block (the Wan VAE's spatial factor)."""
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}  # fmt: skip


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """'bfloat16' (or 'bf16'), 'float16', 'float32' -> the torch dtype; raises ValueError naming the choices."""
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(_DTYPES)}")
    return _DTYPES[name]


@dataclass(frozen=True, kw_only=True, slots=True)
class ComponentSource:
    """Where a component comes from, so a saved pipeline can refer to it instead of copying it.

    `loader` names a function `"contextforcing.<module>:<name>"` called as
    `loader(path, model_config=..., dtype=..., device=...)`.
    """

    loader: str
    path: str = ""

    def load(self, model_config: DiTConfig, *, dtype: torch.dtype, device: torch.device) -> Any:
        module, _, name = self.loader.partition(":")
        if not module.startswith("contextforcing.") or not name:
            raise ValueError(
                f"component loader {self.loader!r} is not a 'contextforcing.<module>:<function>'"
            )
        function = getattr(importlib.import_module(module), name, None)
        if function is None:
            raise ValueError(f"component loader {self.loader!r} does not exist")
        return function(self.path, model_config=model_config, dtype=dtype, device=device)


def load_wan_vae(path: str, *, model_config: DiTConfig, dtype: torch.dtype, device: torch.device) -> Codec:
    """The Wan VAE of a Wan folder (or a VAE folder), as a `ComponentSource` loader."""
    from contextforcing.codec.wan_vae import WanVAECodec

    return WanVAECodec.from_pretrained(path, dtype=dtype).to(device)


def load_umt5(path: str, *, model_config: DiTConfig, dtype: torch.dtype, device: torch.device) -> TextEncoder:
    """The UMT5 encoder and tokenizer of a Wan folder, padding to the model's text length."""
    return UMT5TextEncoder.from_pretrained(path, max_length=model_config.text_len, dtype=dtype, device=device)


def load_seeded_text(
    path: str, *, model_config: DiTConfig, dtype: torch.dtype, device: torch.device
) -> TextEncoder:
    """A `SeededTextEncoder` at the model's text width and length (random-weight models)."""
    return SeededTextEncoder(model_config.text_dim, model_config.text_len)


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated request with its prompts and prefix encoded, ready to stream."""

    prompts: tuple[str, ...]
    schedule: PromptSchedule
    """Text features [1, S, text_dim] per prompt and the chunk where each takes over."""
    num_chunks: int
    """Chunks to generate (after the prefix)."""
    size: tuple[int, int]
    """Pixel (height, width)."""
    latent_size: tuple[int, int]
    seed: int
    prefix: Tensor | None = None
    """Clean latents [1, C, P, h, w] the video continues, P whole chunks, or None."""


@dataclass(frozen=True, slots=True)
class VideoChunk:
    """One decoded piece of the video, yielded by `stream`."""

    index: int
    """Chunk index in the video (the prefix's chunks come first, as one piece with index 0)."""
    frames: Tensor
    """uint8 [T, H, W, 3] on the CPU."""
    latents: Tensor
    """[1, C, F, h, w] the frames decode from."""
    is_prefix: bool = False


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    frames: Tensor
    """uint8 [T, H, W, 3]: the whole video, prefix included."""
    fps: float


@dataclass(slots=True)
class StreamRecord:
    """What the last `stream` measured (read by the report writer)."""

    streamer: StreamingGenerator
    started: float = field(default_factory=time.perf_counter)
    decode_seconds: list[float] = field(default_factory=list)
    first_chunk_seconds: float | None = None
    """From the start of the stream to the first generated chunk decoded."""
    num_frames: int = 0
    num_generated_frames: int = 0


class ContextForcingPipeline:
    """Streams videos from a causal student with a memory; see the module docstring.

    Args:
        model: the student.
        codec: decodes latents (and encodes a prefix); None draws the latents.
        text_encoder: encodes prompts; may be None when `sources` names a "text_encoder" to load on
            first use.
        memory: the memory policy (a `MemoryConfig` or a preset name).
        sampler: the few-step sampler of each chunk.
        size: the default pixel (height, width).
        sources: where the codec and text encoder come from (`save_pretrained` writes them).
    """

    def __init__(self, model: CausalDiT, *, codec: Codec | None = None, text_encoder: TextEncoder | None = None,
                 memory: MemoryConfig | str = "context", sampler: SamplerConfig | None = None,
                 size: tuple[int, int] | None = None, sources: dict[str, ComponentSource] | None = None,
                 text_dtype: torch.dtype | None = None, text_device: torch.device | str | None = None) -> None:  # fmt: skip
        self.model = model.eval().requires_grad_(False)
        self.codec = codec
        self.memory = memory_preset(memory) if isinstance(memory, str) else memory
        self.sampler = sampler or SamplerConfig()
        self.sources = dict(sources or {})
        self.size = tuple(size) if size is not None else self._default_size()
        self._text_encoder = text_encoder
        self._text_dtype = text_dtype or self.dtype
        self._text_device = torch.device(text_device) if text_device is not None else self.device
        self.record: StreamRecord | None = None
        self.compile = False
        """Run each chunk step as one compiled graph (`torch.compile(fullgraph=True)`)."""
        self.compile_mode: str | None = None
        """`torch.compile` mode of the chunk step; "reduce-overhead" captures CUDA graphs on a GPU."""
        self._streamers: dict[tuple, StreamingGenerator] = {}
        """One streamer per latent size and settings, kept across videos (with its compiled graphs)."""
        cfg = model.config
        if codec is not None and not codec.latent_channels == cfg.in_channels == cfg.out_channels:
            raise ValueError(
                f"the codec has {codec.latent_channels} latent channels; the student reads "
                f"{cfg.in_channels} and writes {cfg.out_channels}"
            )
        self.check_size(*self.size)

    # -- construction and saving --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, student: str | Path | None = None,
                        memory: MemoryConfig | str | None = None, torch_dtype: torch.dtype | str = torch.float32,
                        device: str | torch.device = "cpu", vae_dtype: torch.dtype | str = torch.float32,
                        text_encoder_device: str | torch.device | None = None) -> ContextForcingPipeline:  # fmt: skip
        """A Wan2.1 text-to-video folder (diffusers layout) or a folder written by `save_pretrained`.

        Args:
            folder: the folder.
            student: weights to use instead of the folder's transformer (any `load_model` layout).
            memory: memory policy; default the saved one, or "context".
            torch_dtype: dtype of the student and the text encoder.
            device: where the student and the codec run.
            vae_dtype: dtype of a Wan VAE (float32 by default, as the Wan pipelines run it).
            text_encoder_device: where the text encoder runs (default: `device`); it is loaded on the
                first prompt and can be freed with `release_text_encoder()`.

        Raises:
            ValueError: naming a missing component, or a student whose shapes do not fit the folder,
                before the large components are loaded.
        """
        folder, device = Path(folder), resolve_device(str(device))
        dtypes = {"model": parse_dtype(torch_dtype), "vae": parse_dtype(vae_dtype)}
        text_device = resolve_device(str(text_encoder_device)) if text_encoder_device else device
        if (folder / _INDEX).is_file():
            return cls._from_saved(folder, student, memory, dtypes, device, text_device)
        if not (folder / "model_index.json").is_file():
            raise ValueError(
                f"{folder} is neither a Wan2.1 folder (model_index.json, "
                f"{', '.join(f'{c}/' for c in WAN_COMPONENTS)}) nor a saved pipeline ({_INDEX})"
            )
        _check_wan_folder(folder, need_transformer=student is None)
        student_path = Path(student) if student else folder / "transformer"
        model = load_model(student_path, dtype=dtypes["model"], device=device)
        _check_student_fits(model.config, folder, student_path)
        root = str(folder.resolve())
        sources = {"codec": ComponentSource(loader=f"{__name__}:load_wan_vae", path=root),
                   "text_encoder": ComponentSource(loader=f"{__name__}:load_umt5", path=root)}  # fmt: skip
        codec = sources["codec"].load(model.config, dtype=dtypes["vae"], device=device)
        return cls(model, codec=codec, memory=memory or "context", size=WAN_SIZE, sources=sources,
                   text_dtype=dtypes["model"], text_device=text_device)  # fmt: skip

    @classmethod
    def _from_saved(cls, folder: Path, student: str | Path | None, memory: MemoryConfig | str | None,
                    dtypes: dict[str, torch.dtype], device: torch.device,
                    text_device: torch.device) -> ContextForcingPipeline:  # fmt: skip
        saved = _read_json(folder / _INDEX)
        if saved.get("format") != _FORMAT:
            raise ValueError(f"{folder / _INDEX} is not a contextforcing pipeline ({saved.get('format')!r})")
        model = load_model(
            Path(student) if student else folder / "student", dtype=dtypes["model"], device=device
        )
        sources = {name: ComponentSource(**spec) for name, spec in saved.get("components", {}).items()}
        codec = None
        if "codec" in sources:
            wan = sources["codec"].loader.endswith(":load_wan_vae")
            codec = sources["codec"].load(
                model.config, dtype=dtypes["vae" if wan else "model"], device=device
            )
        memory = memory if memory is not None else MemoryConfig.from_dict(saved["memory"])
        sampler = SamplerConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in saved["sampler"].items()}
        )
        return cls(model, codec=codec, memory=memory, sampler=sampler, size=tuple(saved["size"]),
                   sources=sources, text_dtype=dtypes["model"], text_device=text_device)  # fmt: skip

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the student (folder/student/), the memory and sampler settings and references to the
        other components (folder/pipeline.json, written last); `from_pretrained(folder)` reads it back."""
        folder = Path(folder)
        missing = [n for n, c in (("codec", self.codec), ("text_encoder", self._text_encoder))
                   if c is not None and n not in self.sources]  # fmt: skip
        if missing:
            raise ValueError(f"cannot save a pipeline whose {' and '.join(missing)} has no ComponentSource")
        save_model(self.model, folder / "student")
        record = {
            "format": _FORMAT, "memory": self.memory.to_dict(), "sampler": dataclasses.asdict(self.sampler),
            "size": list(self.size), "components": {n: dataclasses.asdict(s) for n, s in self.sources.items()},
        }  # fmt: skip
        partial = folder / f".{_INDEX}.partial"
        partial.write_text(json.dumps(record, indent=2, sort_keys=True))
        partial.replace(folder / _INDEX)
        return folder

    # -- properties -----------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def spatial_factor(self) -> int:
        return self.codec.spatial_factor if self.codec is not None else _NO_CODEC_SCALE

    @property
    def fps(self) -> float:
        """Frames per second of the video: 4 latent frames per second times the codec's temporal factor."""
        return float(LATENT_FRAMES_PER_SECOND * (self.codec.temporal_factor if self.codec is not None else 1))

    def _default_size(self) -> tuple[int, int]:
        return WAN_SIZE if self.codec is not None and self.codec.temporal_factor > 1 else (64, 64)

    def check_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent size of a pixel size; raises ValueError naming the grid it must lie on."""
        _, ph, pw = self.model.config.patch_size
        grid_h, grid_w = self.spatial_factor * ph, self.spatial_factor * pw
        if height <= 0 or width <= 0 or height % grid_h or width % grid_w:
            raise ValueError(
                f"height x width {height} x {width} is off the grid: both must be positive multiples of "
                f"{grid_h} x {grid_w} (the codec's spatial factor {self.spatial_factor} times the patch "
                f"{ph} x {pw})"
            )
        return height // self.spatial_factor, width // self.spatial_factor

    # -- text -----------------------------------------------------------------------------------------------

    @property
    def text_encoder(self) -> TextEncoder:
        """The text encoder, loaded from its source on first use."""
        if self._text_encoder is None:
            if "text_encoder" not in self.sources:
                raise ValueError("this pipeline has no text encoder to encode its prompts")
            self._text_encoder = self.sources["text_encoder"].load(
                self.model.config, dtype=self._text_dtype, device=self._text_device
            )
        return self._text_encoder

    def release_text_encoder(self) -> None:
        """Free the text encoder (UMT5-XXL is about 11 GB in bf16); it is loaded again if needed."""
        if self._text_encoder is None or "text_encoder" not in self.sources:
            return
        self._text_encoder = None
        gc.collect()
        if self._text_device.type != "cpu":
            torch.accelerator.empty_cache()

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        """Each distinct prompt, encoded once: prompt -> features [1, S, text_dim] on the student's device."""
        distinct = list(dict.fromkeys(prompts))
        features = self.text_encoder.encode(distinct)
        text_dim = self.model.config.text_dim
        if features.ndim != 3 or features.shape[-1] != text_dim:
            raise ValueError(
                f"the text encoder gives features {tuple(features.shape)}; the student reads {text_dim}-wide text"
            )
        features = features.to(self.device, self.dtype)
        return {prompt: features[i : i + 1] for i, prompt in enumerate(distinct)}

    # -- generation -----------------------------------------------------------------------------------------

    def prepare(self, prompt: str | Sequence[str], *, prompt_starts: Sequence[float] | None = None,
                seconds: float = 10.0, height: int | None = None, width: int | None = None, seed: int = 0,
                prefix: str | Path | Tensor | None = None, prefix_seconds: float = 3.0,
                refresh_sink: bool = False) -> Plan:  # fmt: skip
        """Validate a request and encode its prompts and prefix (see `stream` for the arguments)."""
        prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
        if not prompts:
            raise ValueError("need at least one prompt")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        if prompt_starts is None:
            prompt_starts = tuple(i * seconds / len(prompts) for i in range(len(prompts)))
        size = (height or self.size[0], width or self.size[1])
        latent_size = self.check_size(*size)
        chunk = self.memory.frames_per_chunk
        num_chunks = math.ceil(seconds * LATENT_FRAMES_PER_SECOND / chunk)
        starts = tuple(round(s * LATENT_FRAMES_PER_SECOND / chunk) for s in prompt_starts)
        if len(starts) != len(prompts) or prompt_starts[0] != 0:
            raise ValueError(f"need one start per prompt, the first at 0 s; got {tuple(prompt_starts)}")
        if any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= num_chunks:
            raise ValueError(
                f"prompt starts {tuple(prompt_starts)} s do not map to distinct chunks of this video"
            )
        latents = None if prefix is None else self._encode_prefix(prefix, prefix_seconds, size, num_chunks)
        encoded = self.encode_prompts(prompts)
        schedule = PromptSchedule(tuple(encoded[p] for p in prompts), starts, refresh_sink=refresh_sink)
        if latents is not None:
            num_chunks -= latents.shape[2] // chunk
        return Plan(prompts, schedule, num_chunks, size, latent_size, seed, latents)

    def stream(self, prompt: str | Sequence[str] | Plan, **request: Any) -> Iterator[VideoChunk]:
        """Yield the video as decoded chunks, each as soon as it is made.

        Args:
            prompt: one prompt, several (switching at `prompt_starts`, evenly by default), or a `Plan`.
            prompt_starts: second at which each prompt takes over (rounded to whole chunks).
            seconds: video length, prefix included (4 latent frames per second, whole chunks).
            height, width: pixel size (default `self.size`).
            seed: seed of all noise.
            prefix: an image (held for one chunk: image-to-video) or a video, as a file or as uint8
                [T, H, W, 3] / float [3, T, H, W] frames, whose first `prefix_seconds` the video
                continues; resized and centre-cropped to the pixel size. It is yielded first, as the
                codec reproduces it.
            refresh_sink: at a prompt switch, also re-encode the sink.
        """
        plan = prompt if isinstance(prompt, Plan) else self.prepare(prompt, **request)
        streamer = self._streamer(plan.latent_size)
        record = self.record = StreamRecord(streamer)
        generator = torch.Generator(device=self.device).manual_seed(plan.seed)
        decode = self._decoder()
        if plan.prefix is not None:
            frames = decode(plan.prefix)
            record.num_frames += len(frames)
            yield VideoChunk(0, frames, plan.prefix, is_prefix=True)
        first = 0 if plan.prefix is None else plan.prefix.shape[2] // self.memory.frames_per_chunk
        chunks = streamer.stream(
            plan.schedule, num_chunks=plan.num_chunks, generator=generator, prefix=plan.prefix
        )
        for index, latents in enumerate(chunks, start=first):
            started = time.perf_counter()
            frames = decode(latents)
            record.decode_seconds.append(time.perf_counter() - started)
            if record.first_chunk_seconds is None:
                record.first_chunk_seconds = time.perf_counter() - record.started
            record.num_frames += len(frames)
            record.num_generated_frames += len(frames)
            yield VideoChunk(index, frames, latents)

    def _streamer(self, latent_size: tuple[int, int]) -> StreamingGenerator:
        """The streamer of this latent size and the current memory, sampler and compile settings: made once
        and kept, so that a compiled chunk step compiles once for every video of that size. A pipeline
        streams one video at a time."""
        key = (tuple(latent_size), self.memory, self.sampler, self.compile, self.compile_mode)
        if key not in self._streamers:
            self._streamers[key] = StreamingGenerator(
                self.model, self.memory, latent_size=tuple(latent_size), sampler=self.sampler,
                compile=self.compile, compile_mode=self.compile_mode,
            )  # fmt: skip
        return self._streamers[key]

    def __call__(self, prompt: str | Sequence[str] | Plan, **request: Any) -> PipelineOutput:
        """The whole video at once (`stream`'s arguments); for long videos, stream to a file instead."""
        frames = torch.cat([chunk.frames for chunk in self.stream(prompt, **request)])
        return PipelineOutput(frames, self.fps)

    def _decoder(self):
        """A function latents [1, C, F, h, w] -> uint8 frames [T, H, W, 3], carrying the codec's state."""
        if self.codec is None:
            return _draw_latents
        decoder = self.codec.stream_decoder()

        def decode(latents: Tensor) -> Tensor:
            with torch.no_grad():
                return to_uint8_frames(decoder.decode(latents.float())[0].float().cpu())

        return decode

    def _encode_prefix(self, prefix: str | Path | Tensor, seconds: float, size: tuple[int, int],
                       num_chunks: int) -> Tensor:  # fmt: skip
        """The prefix as clean latents [1, C, P, h, w], P whole chunks."""
        if self.codec is None:
            raise ValueError("a prefix needs a codec to encode it")
        chunk = self.memory.frames_per_chunk
        is_image = _is_image(prefix)
        num_prefix = 1 if is_image else max(1, round(seconds * LATENT_FRAMES_PER_SECOND / chunk))
        if num_prefix >= num_chunks:
            raise ValueError(f"a prefix of {num_prefix * chunk} latent frames leaves nothing to generate")
        frames = _read_prefix(prefix, self.fps)
        is_image = is_image or len(frames) == 1
        needed = num_pixel_frames(self.codec, num_prefix * chunk)
        if is_image:  # image-to-video: the image held still for the first chunk
            frames = frames[:1].expand(needed, -1, -1, -1)
        elif len(frames) < needed:
            raise ValueError(f"the prefix video has {len(frames)} frames, {needed} are needed")
        pixels = frames[:needed].permute(3, 0, 1, 2).float().div(127.5).sub(1.0)[None]  # [1, 3, T, H, W]
        pixels = _fit(pixels, size)
        with torch.no_grad():
            latents = self.codec.encode(pixels.to(self.device))
        return latents.to(self.dtype)


def _is_image(prefix: str | Path | Tensor) -> bool:
    if isinstance(prefix, Tensor):
        return to_uint8_frames(prefix).shape[0] == 1
    return Path(prefix).suffix.lower() in IMAGE_SUFFIXES


def _read_prefix(prefix: str | Path | Tensor, fps: float) -> Tensor:
    """uint8 [T, H, W, 3] frames of a prefix image or video."""
    if isinstance(prefix, Tensor):
        return to_uint8_frames(prefix)
    path = Path(prefix)
    if not path.is_file():
        raise ValueError(f"no prefix image or video at {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path)
    frames, rate = read_video(path)
    if abs(rate - fps) > 1e-3 and len(frames) > 1:
        raise ValueError(f"the prefix video runs at {rate:g} fps, the codec expects {fps:g}")
    return frames


def _fit(pixels: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize [1, 3, T, H', W'] to cover `size`, then crop the centre to exactly `size`."""
    height, width = size
    h, w = pixels.shape[-2:]
    if (h, w) == (height, width):
        return pixels
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    frames = pixels[0].transpose(0, 1)  # [T, 3, H', W']
    frames = torch.nn.functional.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[:, :, top : top + height, left : left + width].transpose(0, 1)[None].clamp(-1, 1)


def _draw_latents(latents: Tensor) -> Tensor:
    """Without a codec: the first three latent channels as colours, each latent pixel 8 x 8."""
    rgb = latents[0, :3].float().cpu()
    if rgb.shape[0] < 3:
        rgb = torch.cat([rgb, rgb[:1].expand(3 - rgb.shape[0], -1, -1, -1)])
    rgb = rgb.repeat_interleave(_NO_CODEC_SCALE, dim=-2).repeat_interleave(_NO_CODEC_SCALE, dim=-1)
    return to_uint8_frames((rgb / 3).clamp(-1, 1))


def _check_wan_folder(folder: Path, *, need_transformer: bool) -> None:
    needed = WAN_COMPONENTS if need_transformer else WAN_COMPONENTS[1:]
    for name in needed:
        sub = folder / name
        if not sub.is_dir() or (name != "tokenizer" and not (sub / "config.json").is_file()):
            raise ValueError(
                f"the Wan folder {folder} has no {name}/ component (with its config.json): expected "
                f"model_index.json and {', '.join(f'{c}/' for c in needed)} as Wan2.1-T2V-1.3B-Diffusers ships them"
            )


def _check_student_fits(config: DiTConfig, folder: Path, student: Path) -> None:
    """Compare the student's shapes with the folder's VAE and text encoder configs, before loading them."""
    vae = _read_json(folder / "vae" / "config.json")
    text = _read_json(folder / "text_encoder" / "config.json")
    z_dim, d_model = vae.get("z_dim", 16), text.get("d_model")
    if z_dim != config.in_channels or z_dim != config.out_channels:
        raise ValueError(
            f"the student {student} reads {config.in_channels} and writes {config.out_channels} latent "
            f"channels, but the VAE in {folder / 'vae'} has z_dim={z_dim}"
        )
    if d_model is not None and d_model != config.text_dim:
        raise ValueError(
            f"the student {student} reads {config.text_dim}-wide text, but the text encoder in "
            f"{folder / 'text_encoder'} gives d_model={d_model}"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"missing {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None

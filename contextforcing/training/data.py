"""Training batches: clips of latent frames with their text features.

Each sample of a batch is drawn from its own generator (see `runtime.step_generator`), so a batch is
the same whichever process draws which samples, and a resumed run draws what an uninterrupted run
would. A clip source hands the trainer latents [B, C, F, h, w] and text features; the library's own
source reads a folder of mp4 files through a codec (`VideoFolderSource`), and `CachedSource` reads the
prompt and latent caches encoded once (`training.caches`), with neither a codec nor a text encoder in
memory. The miniature's world clips are another (`contextforcing.world.clips.WorldClipSource`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from contextforcing.codec.base import Codec, num_pixel_frames
from contextforcing.text_encoder import TextEncoder
from contextforcing.training.config import DataConfig, ExperimentConfig
from contextforcing.video_io import read_video

__all__ = [
    "Batch",
    "CachedSource",
    "ClipSource",
    "SourceFactory",
    "VideoFolderSource",
    "cache_source",
    "check_codec",
    "library_source",
    "video_folder_source",
]


@dataclass(frozen=True, slots=True)
class Batch:
    """latents [B, C, F, h, w]; text [B, S, D] features; prompts, one per sample."""

    latents: Tensor
    text: Tensor
    prompts: tuple[str, ...]


@runtime_checkable
class ClipSource(Protocol):
    """What the step functions draw from: clips with their prompts, prompts alone, the empty prompt."""

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of one latent frame."""
        ...

    def sample(self, num_frames: int, generators: list[torch.Generator], *, target_frames: int = 0) -> Batch:
        """One clip of `num_frames` latent frames per generator; `target_frames` > 0 marks the last
        frames as the denoised target (a source may draw clips whose target holds what it tests)."""
        ...

    def sample_prompts(self, generators: list[torch.Generator]) -> Batch:
        """Prompts only (data-free distillation), one per generator; `latents` is empty."""
        ...

    def unconditional(self, batch: int) -> Tensor:
        """The empty prompt's features [B, S, D], what classifier-free dropout replaces a prompt with."""
        ...

    def negative(self, batch: int) -> Tensor:
        """The negative prompt's features [B, S, D] (`data.negative_prompt`), the unconditional branch of
        the teacher's guidance."""
        ...


class VideoFolderSource:
    """Random windows of the mp4 files of a folder, captioned by the text file beside each.

    Args:
        data: `data.video_folder` names the folder.
        codec: frames -> latents.
        text_encoder: prompts -> features.
        device: where batches are put.
    """

    def __init__(
        self, data: DataConfig, codec: Codec, text_encoder: TextEncoder, device: torch.device
    ) -> None:
        if not data.video_folder:
            raise ValueError("data.video_folder must name a folder of .mp4 files when data.source='videos'")
        self.codec, self.text_encoder, self.device = codec, text_encoder, device
        self.negative_prompt = data.negative_prompt
        self._videos = sorted(Path(data.video_folder).glob("*.mp4"))
        if not self._videos:
            raise ValueError(f"no .mp4 files in {data.video_folder}")

    @property
    def latent_size(self) -> tuple[int, int]:
        frames, _ = read_video(self._videos[0])
        factor = self.codec.spatial_factor
        return frames.shape[1] // factor, frames.shape[2] // factor

    def sample_prompts(self, generators: list[torch.Generator]) -> Batch:
        prompts = [_caption(self._pick(g)) for g in generators]
        text = self.text_encoder.encode(prompts).to(self.device)
        return Batch(torch.empty(0, device=self.device), text, tuple(prompts))

    def sample(self, num_frames: int, generators: list[torch.Generator], *, target_frames: int = 0) -> Batch:
        clips, prompts = zip(*(self._clip(num_frames, g) for g in generators), strict=True)
        return encode_batch(self.codec, self.text_encoder, clips, prompts, self.device)

    def unconditional(self, batch: int) -> Tensor:
        return self.text_encoder.encode([""] * batch).to(self.device)

    def negative(self, batch: int) -> Tensor:
        return self.text_encoder.encode([self.negative_prompt] * batch).to(self.device)

    def _pick(self, generator: torch.Generator) -> Path:
        return self._videos[int(torch.randint(len(self._videos), (1,), generator=generator))]

    def _clip(self, num_frames: int, generator: torch.Generator) -> tuple[Tensor, str]:
        """A random window of a random video; its prompt is the text file beside it, if any."""
        path = self._pick(generator)
        frames, _ = read_video(path)  # [T, H, W, 3] uint8
        needed = num_pixel_frames(self.codec, num_frames)
        if frames.shape[0] < needed:
            raise ValueError(f"{path} has {frames.shape[0]} frames, a clip needs {needed}")
        start = int(torch.randint(frames.shape[0] - needed + 1, (1,), generator=generator))
        window = frames[start : start + needed].permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return window, _caption(path)


def _caption(path: Path) -> str:
    caption = path.with_suffix(".txt")
    return caption.read_text().strip() if caption.is_file() else ""


def encode_batch(
    codec: Codec, text_encoder: TextEncoder, clips: tuple[Tensor, ...], prompts: tuple[str, ...], device
) -> Batch:
    """Pixel clips [3, T, H, W] in [-1, 1] and their prompts -> a Batch of latents and text features."""
    with torch.no_grad():
        latents = torch.cat([codec.encode(frames[None]) for frames in clips])
    text = text_encoder.encode(list(prompts))
    return Batch(latents.to(device), text.to(device), tuple(prompts))


SourceFactory = Callable[[ExperimentConfig, torch.device], ClipSource]
"""Builds a run's clip source (codec and text encoder included) for its config and device."""


def check_codec(codec: Codec, config: ExperimentConfig, where: str) -> Codec:
    """`codec`, after checking that it makes the latents the model reads."""
    if codec.latent_channels != config.model.in_channels:
        raise ValueError(
            f"codec {where} has {codec.latent_channels} latent channels, the model reads {config.model.in_channels}"
        )
    return codec


def video_folder_source(config: ExperimentConfig, device: torch.device) -> ClipSource:
    """The library's own source: `data.video_folder` through the Wan VAE of `data.codec`, captions
    encoded with the UMT5 of `data.text_encoder`."""
    data = config.data
    if data.source != "videos":
        raise ValueError(
            f"data.source={data.source!r} is not the library's own; pass the trainer that source's factory"
        )
    if not data.codec or not data.text_encoder:
        raise ValueError("data.source='videos' needs data.codec (a Wan VAE) and data.text_encoder (UMT5)")
    from contextforcing.codec.loading import load_codec
    from contextforcing.text_encoder import UMT5TextEncoder

    codec = check_codec(load_codec(data.codec), config, data.codec)
    return VideoFolderSource(data, codec, UMT5TextEncoder.from_pretrained(data.text_encoder), device)


class CachedSource:
    """Clips and prompts from the caches of `training.caches`.

    Prompt-only stages draw from `data.prompt_cache` (or, without one, the captions of the latent
    cache); stages that read clips draw a clip of `data.latent_cache` and take its leading latents,
    with its caption. Text features are padded with zeros to the model's `text_len`, as UMT5's are.

    Args:
        data: `prompt_cache`, `latent_cache` and `latent_size`.
        text_len: tokens the model's text is padded to.
        device: where batches are put.
    """

    def __init__(self, data: DataConfig, text_len: int, device: torch.device) -> None:
        from contextforcing.training.caches import LatentCache, PromptCache

        if not data.prompt_cache and not data.latent_cache:
            raise ValueError(
                "data.source='cache' needs data.prompt_cache (--prompts) or data.latent_cache (--videos)"
            )
        self.latents = LatentCache(data.latent_cache) if data.latent_cache else None
        self.prompts = PromptCache(data.prompt_cache) if data.prompt_cache else self.latents.prompts
        if self.prompts.negative_prompt != data.negative_prompt:
            raise ValueError(
                f"the prompt cache {self.prompts.folder} holds the negative prompt "
                f"{_short(self.prompts.negative_prompt)}, data.negative_prompt is {_short(data.negative_prompt)}: "
                "encode the prompts again with --negative-prompt, or set data.negative_prompt to the cache's"
            )
        self.text_len, self.device = text_len, device
        self._size = tuple(data.latent_size)
        if self.latents is not None and self.latents.latent_size != self._size:
            raise ValueError(
                f"the latent cache {data.latent_cache} holds {self.latents.latent_size} latents, "
                f"data.latent_size is {self._size}"
            )

    @property
    def latent_size(self) -> tuple[int, int]:
        return self._size

    def _text(self, features: list[Tensor], cache) -> Tensor:
        longest = max(f.shape[0] for f in features)
        if longest > self.text_len:
            raise ValueError(
                f"{cache.folder} holds {longest}-token features, the model reads {self.text_len}"
            )
        text = torch.zeros(len(features), self.text_len, cache.dim)
        for row, feature in zip(text, features, strict=True):
            row[: feature.shape[0]] = feature
        return text.to(self.device)

    def sample_prompts(self, generators: list[torch.Generator]) -> Batch:
        picks = [int(torch.randint(len(self.prompts), (1,), generator=g)) for g in generators]
        text = self._text([self.prompts.features(i) for i in picks], self.prompts)
        prompts = tuple(self.prompts.prompt(i) for i in picks)
        return Batch(torch.empty(0, device=self.device), text, prompts)

    def sample(self, num_frames: int, generators: list[torch.Generator], *, target_frames: int = 0) -> Batch:
        cache = self.latents
        if cache is None:
            raise ValueError("this stage reads clips: data.latent_cache (--videos) must name a latent cache")
        if num_frames > cache.clip_frames:
            raise ValueError(
                f"a clip of {num_frames} latent frames was asked for; {cache.folder} holds clips of "
                f"{cache.clip_frames} (encode the videos again with --clip-frames {num_frames} or more)"
            )
        picks = [int(torch.randint(len(cache), (1,), generator=g)) for g in generators]
        latents = torch.stack([cache.clip(i, num_frames) for i in picks]).to(self.device)
        captions = [cache.caption(i) for i in picks]
        text = self._text([cache.prompts.features(c) for c in captions], cache.prompts)
        return Batch(latents, text, tuple(cache.prompts.prompt(c) for c in captions))

    def unconditional(self, batch: int) -> Tensor:
        return self._text([self.prompts.empty()] * batch, self.prompts)

    def negative(self, batch: int) -> Tensor:
        return self._text([self.prompts.negative()] * batch, self.prompts)


def _short(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:24] + "...")


def cache_source(config: ExperimentConfig, device: torch.device) -> ClipSource:
    """The source of `data.source='cache'`, checked against the model and the stage up front."""
    from contextforcing.training.stages import stage_spec

    source = CachedSource(config.data, config.model.text_len, device)
    if source.prompts.dim != config.model.text_dim:
        raise ValueError(
            f"the prompt cache {source.prompts.folder} holds {source.prompts.dim}-d features, "
            f"the model reads {config.model.text_dim}-d text (model.text_dim)"
        )
    if source.latents is not None and source.latents.latent_channels != config.model.in_channels:
        raise ValueError(
            f"the latent cache {source.latents.folder} holds {source.latents.latent_channels} channels, "
            f"the model reads {config.model.in_channels}"
        )
    spec = stage_spec(config.stage)
    if spec.reads_clips(config.distill) and source.latents is None:
        raise ValueError(f"stage {config.stage} trains on clips: pass --videos (data.latent_cache)")
    return source


def library_source(config: ExperimentConfig) -> SourceFactory:
    """The factory of the library's own sources, by `data.source`: "videos" or "cache"."""
    factories = {"videos": video_folder_source, "cache": cache_source}
    if config.data.source not in factories:
        raise ValueError(
            f"data.source={config.data.source!r} is not the library's own ({sorted(factories)}); "
            "pass the trainer that source's factory"
        )
    return factories[config.data.source]

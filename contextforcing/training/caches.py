"""Prompt and latent caches: text features and video latents encoded once, read by training.

Training at scale holds neither the 11 GB UMT5 encoder nor the VAE: `encode_prompts` turns a prompt
file (one prompt a line) into UMT5 features, and `encode_videos` turns a folder of videos (or a JSONL
manifest) into clips of VAE latents with their captions' features. Both write sharded safetensors
and resume where an interrupted run stopped (a finished shard is never rewritten); both report what
they skipped and why.

Prompt cache (folder):
    manifest.json              format, encoder, source file and its sha256, counts, shards, skipped
    prompts.jsonl              {"index", "line", "prompt"} per kept prompt
    features-NNNNN.safetensors prompt i -> [n_i, D], the features up to the prompt's last non-zero
                               token (UMT5 features are exactly zero after it; readers pad with zeros)
    empty.safetensors          the empty prompt's features (the prompt of classifier-free dropout)
    negative.safetensors       the negative prompt's features (the unconditional branch of guidance; the
                               manifest names the prompt, "" when it is the empty one)

Latent cache (folder):
    manifest.json              format, latent shape, clip length, codec, shards, skipped videos
    latents-NNNNN.safetensors  clip j -> [C, F, h, w]
    latents-NNNNN.json         per clip: key, video, first pixel frame, caption index
    prompts/                   a prompt cache of the captions

Each clip of F latent frames is encoded from 1 + 4 (F - 1) pixel frames in one pass, so its first
latent is the first pixel frame alone, the Wan VAE's convention; the VAE is causal in time, so the
first k latents of a clip are what encoding its first 1 + 4 (k - 1) frames alone would give, and
readers take clips' leading latents.

Shape legend: C latent channels, F latent frames, h x w latent size, n tokens, D text width.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from contextforcing.codec.base import Codec, num_pixel_frames
from contextforcing.text_encoder import TextEncoder
from contextforcing.video_io import read_video

__all__ = [
    "CacheReport",
    "LatentCache",
    "PromptCache",
    "VideoClips",
    "cache_folder",
    "encode_prompts",
    "encode_videos",
    "find_cache",
    "list_videos",
    "read_prompt_file",
    "source_hash",
]

logger = logging.getLogger(__name__)

PROMPT_FORMAT = "contextforcing-prompt-cache"
LATENT_FORMAT = "contextforcing-latent-cache"
_MANIFEST = "manifest.json"
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(slots=True)
class CacheReport:
    """What an encoding run did: items written now, items found from an earlier run, items skipped."""

    folder: Path
    written: int = 0
    reused: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)


def cache_folder(source: str | Path) -> Path:
    """The default cache of a prompt file, video folder or manifest: a sibling named SOURCE.cache."""
    source = Path(source)
    return source.parent / f"{source.name}.cache"


def find_cache(source: str | Path, kind: str) -> Path:
    """The cache of `kind` ("prompt" or "latent") for `source`: `source` itself when it is one, else
    its default folder `cache_folder(source)`; raises a ValueError naming the command that makes it."""
    source = Path(source)
    form, command = {"prompt": (PROMPT_FORMAT, "encode-prompts"), "latent": (LATENT_FORMAT, "encode-videos")}[
        kind
    ]
    for folder in (source, cache_folder(source)):
        if _is_cache(folder, form):
            return folder
    if not source.exists():
        raise ValueError(f"{source} does not exist")
    raise ValueError(
        f"no {kind} cache for {source}: run `contextforcing {command} {source} --wan DIR` first "
        f"(it writes {cache_folder(source)})"
    )


def _is_cache(folder: Path, kind: str) -> bool:
    manifest = folder / _MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()).get("format") == kind


def _atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    tmp.replace(path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _trim(features: Tensor) -> Tensor:
    """[S, D] -> [n, D]: drop the zero rows after the last non-zero one (at least one row is kept)."""
    nonzero = features.abs().sum(-1).nonzero()
    return features[: max(1, int(nonzero[-1]) + 1 if len(nonzero) else 1)]


# ----------------------------------------------------------------------------------------- prompts


def read_prompt_file(path: str | Path) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    """(kept (line number, prompt) pairs, skipped lines with the reason); raises for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt file not found: {path}")
    kept, skipped = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        prompt = line.strip()
        if prompt:
            kept.append((number, prompt))
        else:
            skipped.append({"line": number, "reason": "empty line"})
    if not kept:
        raise ValueError(f"no prompts in {path}: every line is empty")
    return kept, skipped


def encode_prompts(
    prompts: Sequence[tuple[int, str]],
    out: str | Path,
    encoder: TextEncoder,
    *,
    identity: dict[str, Any],
    skipped: Sequence[dict[str, Any]] = (),
    shard_size: int = 1024,
    batch_size: int = 16,
    dtype: str = "bfloat16",
    negative_prompt: str = "",
) -> CacheReport:
    """Encode (line, prompt) pairs into the prompt cache `out`; resumes an interrupted run.

    Args:
        prompts: the prompts with the line (or item) they came from.
        out: the cache folder.
        encoder: prompts -> [B, S, D] features.
        identity: what the cache was made from (source, its hash, the encoder); a folder written for
            another identity is refused, so a cache never mixes two sources.
        skipped: inputs left out before encoding, recorded in the manifest.
        shard_size, batch_size: prompts per file, prompts per encoder call.
        dtype: "bfloat16" or "float32" features on disk.
        negative_prompt: the unconditional branch of guidance, encoded beside the empty prompt.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {**identity, "dtype": dtype, "shard_size": shard_size, "num_prompts": len(prompts),
                "negative_prompt": negative_prompt}  # fmt: skip
    _claim(out, PROMPT_FORMAT, identity)
    report = CacheReport(out, skipped=list(skipped))
    store = _DTYPES[dtype]
    for name, text in (("empty", ""), ("negative", negative_prompt)):
        if not (out / f"{name}.safetensors").is_file():
            _atomic_save({name: _trim(encoder.encode([text])[0]).to(store)}, out / f"{name}.safetensors")
    shards = []
    for first in range(0, len(prompts), shard_size):
        name = f"features-{first // shard_size:05d}.safetensors"
        shards.append({"file": name, "first": first, "count": min(shard_size, len(prompts) - first)})
        if (out / name).is_file():
            report.reused += shards[-1]["count"]
            continue
        tensors = {}
        for start in range(first, first + shards[-1]["count"], batch_size):
            batch = prompts[start : min(start + batch_size, first + shards[-1]["count"])]
            features = encoder.encode([text for _, text in batch])
            for offset, row in enumerate(features):
                tensors[str(start + offset)] = _trim(row).to(store)
        _atomic_save(tensors, out / name)
        report.written += len(tensors)
        logger.info("%s: %d of %d prompts encoded", out, first + len(tensors), len(prompts))
    lines = [json.dumps({"index": i, "line": line, "prompt": text}) for i, (line, text) in enumerate(prompts)]
    _atomic_write(out / "prompts.jsonl", "\n".join(lines) + "\n")
    manifest = {**identity, "format": PROMPT_FORMAT, "complete": True, "shards": shards,
                "skipped": report.skipped}  # fmt: skip
    _atomic_write(out / _MANIFEST, json.dumps(manifest, indent=2))
    return report


def _claim(out: Path, kind: str, identity: dict[str, Any]) -> None:
    """Record what `out` is being written from, or refuse a folder that holds another cache."""
    claim = out / "identity.json"
    if claim.is_file():
        previous = json.loads(claim.read_text())
        if previous != {"format": kind, **identity}:
            changed = sorted(k for k in {*previous, *identity} if previous.get(k) != identity.get(k))
            raise ValueError(
                f"{out} holds a cache made from other inputs (differences in {changed}): "
                "choose another --out, or delete it to start over"
            )
        return
    if any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no cache: choose another --out")
    _atomic_write(claim, json.dumps({"format": kind, **identity}, indent=2, sort_keys=True))


def _read_manifest(folder: Path, kind: str, what: str) -> dict[str, Any]:
    manifest_path = folder / _MANIFEST
    if not manifest_path.is_file():
        partial = (
            " (an interrupted run: encode again to finish it)" if (folder / "identity.json").is_file() else ""
        )
        raise ValueError(f"no {what} at {folder}: expected {manifest_path}{partial}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != kind:
        raise ValueError(f"{manifest_path} is not a {what} (format {manifest.get('format')!r})")
    return manifest


class PromptCache:
    """Reads a prompt cache: `prompt(i)`, `features(i)` [n_i, D] float32, `empty()` and `negative()`
    [n, D], and `negative_prompt` (a cache written before negative prompts has the empty one)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder, PROMPT_FORMAT, "prompt cache")
        self._where = [
            (shard["file"], str(i)) for shard in manifest["shards"]
            for i in range(shard["first"], shard["first"] + shard["count"])
        ]  # fmt: skip
        lines = (self.folder / "prompts.jsonl").read_text().splitlines()
        self._prompts = [json.loads(line)["prompt"] for line in lines]
        self._empty = self._read("empty.safetensors", "empty")
        self.negative_prompt: str = manifest.get("negative_prompt", "")
        self._negative = (
            self._read("negative.safetensors", "negative")
            if (self.folder / "negative.safetensors").is_file()
            else self._empty
        )
        self.dim = self._empty.shape[-1]

    def __len__(self) -> int:
        return len(self._where)

    def _read(self, file: str, key: str) -> Tensor:
        with safe_open(self.folder / file, framework="pt") as handle:
            return handle.get_tensor(key).float()

    def prompt(self, index: int) -> str:
        return self._prompts[index]

    def features(self, index: int) -> Tensor:
        return self._read(*self._where[index])

    def empty(self) -> Tensor:
        return self._empty

    def negative(self) -> Tensor:
        return self._negative


# ------------------------------------------------------------------------------------------ videos


def list_videos(source: str | Path) -> tuple[list[tuple[Path, str]], list[dict[str, Any]]]:
    """(video, caption) pairs of a folder of mp4 files with `NAME.txt` captions beside them, or of a
    JSONL manifest of {"video": path, "caption": text} lines (paths relative to the manifest); and the
    entries skipped, with the reason."""
    source = Path(source)
    kept, skipped = [], []
    if source.is_dir():
        videos = sorted(source.glob("*.mp4"))
        if not videos:
            raise ValueError(f"no .mp4 files in {source}")
        for video in videos:
            caption = video.with_suffix(".txt")
            text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
            if text:
                kept.append((video, text))
            else:
                reason = "empty caption" if caption.is_file() else f"no caption {caption.name}"
                skipped.append({"video": str(video), "reason": reason})
        return kept, skipped
    if not source.is_file():
        raise ValueError(f"no video folder or JSONL manifest at {source}")
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            video, caption = entry["video"], str(entry["caption"]).strip()
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            skipped.append({"line": number, "reason": f"not a {{'video', 'caption'}} JSON line ({error})"})
            continue
        if not caption:
            skipped.append({"video": video, "line": number, "reason": "empty caption"})
            continue
        kept.append((source.parent / video, caption))
    return kept, skipped


def _prepare(frames: Tensor, fps: float, target_fps: float, size: tuple[int, int]) -> Tensor:
    """uint8 [T, H, W, 3] at `fps` -> float [3, T', H', W'] in [-1, 1] at `target_fps` (nearest frames;
    0 keeps the video's rate), resized so it covers `size` and centre-cropped to it."""
    if target_fps and abs(fps - target_fps) > 1e-3:
        count = math.floor(frames.shape[0] * target_fps / fps)
        index = (torch.arange(count, dtype=torch.float64) * fps / target_fps).round().long()
        frames = frames[index.clamp(max=frames.shape[0] - 1)]
    video = frames.permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    height, width = size
    scale = max(height / video.shape[2], width / video.shape[3])
    resized = (max(height, round(video.shape[2] * scale)), max(width, round(video.shape[3] * scale)))
    if resized != tuple(video.shape[2:]):
        video = torch.nn.functional.interpolate(video, size=resized, mode="bilinear", antialias=True)
    top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
    video = video[:, :, top : top + height, left : left + width]
    return (video / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3)


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoClips:
    """How videos become clips: clip length in latents, stride and size in pixels, frame rate."""

    clip_frames: int
    """Latent frames per clip (the longest clip the stages that read the cache ask for)."""
    stride: int = 0
    """Pixel frames between the starts of two clips of one video; 0 = one clip after another."""
    latent_size: tuple[int, int] = (60, 104)
    """(h, w) of the latents; videos are resized and centre-cropped to h x w times the codec's factor."""
    fps: float = 16.0
    """Frame rate the videos are resampled to (nearest frames); 0 keeps each video's own."""
    max_clips_per_video: int = 0
    """At most this many clips of one video; 0 = as many as fit."""


def encode_videos(
    videos: Sequence[tuple[Path, str]],
    out: str | Path,
    codec: Codec,
    text_encoder: Callable[[], TextEncoder],
    clips: VideoClips,
    *,
    identity: dict[str, Any],
    skipped: Sequence[dict[str, Any]] = (),
    videos_per_shard: int = 16,
    dtype: str = "bfloat16",
    negative_prompt: str = "",
) -> CacheReport:
    """Encode (video, caption) pairs into the latent cache `out`; resumes an interrupted run.

    The captions (and `negative_prompt`) are encoded first (`out/prompts`) with the encoder
    `text_encoder()` builds, which is dropped before the videos are encoded (and never built when the
    captions are cached already).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"clip_frames": clips.clip_frames, "stride": clips.stride, "latent_size": list(clips.latent_size),
                "fps": clips.fps, "max_clips_per_video": clips.max_clips_per_video}  # fmt: skip
    identity = {**identity, **settings, "dtype": dtype, "videos_per_shard": videos_per_shard,
                "num_videos": len(videos), "negative_prompt": negative_prompt}  # fmt: skip
    _claim(out, LATENT_FORMAT, identity)
    captions = sorted({caption for _, caption in videos})
    caption_index = {caption: i for i, caption in enumerate(captions)}
    if not _is_cache(out / "prompts", PROMPT_FORMAT):
        encode_prompts(list(enumerate(captions)), out / "prompts", text_encoder(),
                       identity={"captions_sha256": hashlib.sha256("\n".join(captions).encode()).hexdigest()},
                       dtype=dtype, negative_prompt=negative_prompt)  # fmt: skip
    report = CacheReport(out, skipped=list(skipped))
    size = (clips.latent_size[0] * codec.spatial_factor, clips.latent_size[1] * codec.spatial_factor)
    needed = num_pixel_frames(codec, clips.clip_frames)
    stride = clips.stride or needed
    shards = []
    for number, first in enumerate(range(0, len(videos), videos_per_shard)):
        name = f"latents-{number:05d}"
        shards.append(name)
        if (out / f"{name}.json").is_file():
            record = json.loads((out / f"{name}.json").read_text())
            report.reused += len(record["clips"])
            report.skipped.extend(record["skipped"])
            continue
        tensors, record = {}, {"clips": [], "skipped": []}
        for video, caption in videos[first : first + videos_per_shard]:
            try:
                frames, fps = read_video(video)
            except ValueError as error:
                record["skipped"].append({"video": str(video), "reason": f"unreadable: {error}"})
                continue
            pixels = _prepare(frames, fps, clips.fps, size)
            if pixels.shape[1] < needed:
                reason = (f"too short: {pixels.shape[1]} frames at {clips.fps or fps:g} fps, a clip of "
                          f"{clips.clip_frames} latents needs {needed}")  # fmt: skip
                record["skipped"].append({"video": str(video), "reason": reason})
                continue
            starts = list(range(0, pixels.shape[1] - needed + 1, stride))
            if clips.max_clips_per_video:
                starts = starts[: clips.max_clips_per_video]
            for start in starts:
                latents = codec.encode(pixels[None, :, start : start + needed])[0]
                key = f"{number}.{len(tensors)}"
                tensors[key] = latents.to(_DTYPES[dtype])
                record["clips"].append({"key": key, "video": str(video), "start": start,
                                        "caption": caption_index[caption]})  # fmt: skip
        _atomic_save(tensors or {"none": torch.zeros(0)}, out / f"{name}.safetensors")
        _atomic_write(out / f"{name}.json", json.dumps(record, indent=1))
        report.written += len(record["clips"])
        report.skipped.extend(record["skipped"])
        logger.info(
            "%s: %d of %d videos encoded", out, min(first + videos_per_shard, len(videos)), len(videos)
        )
    manifest = {**identity, "format": LATENT_FORMAT, "complete": True, "shards": shards,
                "latent_channels": codec.latent_channels, "skipped": report.skipped}  # fmt: skip
    _atomic_write(out / _MANIFEST, json.dumps(manifest, indent=2))
    return report


class LatentCache:
    """Reads a latent cache: `clip(i)` [C, F, h, w] float32 and `caption(i)`, an index of `prompts`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder, LATENT_FORMAT, "latent cache")
        self.clip_frames: int = manifest["clip_frames"]
        self.latent_size: tuple[int, int] = tuple(manifest["latent_size"])
        self.latent_channels: int = manifest["latent_channels"]
        self._clips = []
        for shard in manifest["shards"]:
            for clip in json.loads((self.folder / f"{shard}.json").read_text())["clips"]:
                self._clips.append((f"{shard}.safetensors", clip["key"], clip["caption"]))
        if not self._clips:
            raise ValueError(f"the latent cache {self.folder} holds no clips (see its manifest's 'skipped')")
        self.prompts = PromptCache(self.folder / "prompts")

    def __len__(self) -> int:
        return len(self._clips)

    def clip(self, index: int, num_frames: int | None = None) -> Tensor:
        """Clip `index`, or its first `num_frames` latents."""
        file, key, _ = self._clips[index]
        with safe_open(self.folder / file, framework="pt") as handle:
            if num_frames is None:
                return handle.get_tensor(key).float()
            return handle.get_slice(key)[:, :num_frames].float()

    def caption(self, index: int) -> int:
        return self._clips[index][2]


def source_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's sorted file names and sizes."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(path.iterdir()):
            digest.update(f"{item.name}:{item.stat().st_size}\n".encode())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()

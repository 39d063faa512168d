"""The world's components for the library: its codec, its text encoder and its clip source.

The trainer, the generator and the evaluations are written against interfaces (`Codec`,
`TextEncoder`, `ClipSource`); these functions hand them the world's implementations.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from contextforcing.codec.base import Codec
from contextforcing.model.config import DiTConfig
from contextforcing.training.config import ExperimentConfig
from contextforcing.training.data import check_codec
from contextforcing.world.clips import WorldClipSource
from contextforcing.world.config import WorldExperimentConfig
from contextforcing.world.shipped import codec_folder
from contextforcing.world.text import WorldTextEncoder

__all__ = ["load_any_codec", "train_world", "world_codec", "world_source", "world_text_encoder"]


def load_any_codec(folder: str | Path) -> Codec:
    """A world codec or a Wan VAE, whichever `folder` holds."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if config_path.is_file():
        try:
            record = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path} is not JSON: {error}") from None
        if str(record.get("format", "")).startswith("contextforcing-world-codec"):
            from contextforcing.world.codec import load_world_codec

            return load_world_codec(folder)
    from contextforcing.codec.loading import load_codec

    return load_codec(folder)


def world_codec(folder: str | Path = "") -> Codec:
    """The codec in `folder`: a shipped codec's name (`shipped.SHIPPED_NAMES`), a folder, or "" for
    the shipped codec of the first world."""
    return load_any_codec(codec_folder(folder))


def world_text_encoder(config: DiTConfig) -> WorldTextEncoder:
    """The world's prompt encoder at the model's text width and length."""
    return WorldTextEncoder(config.text_dim, config.text_len)


def world_source(config: ExperimentConfig, device: torch.device) -> WorldClipSource:
    """The trainer's clip source for a world experiment (`training.data.SourceFactory`)."""
    if not isinstance(config, WorldExperimentConfig):
        raise ValueError(f"a world run needs a WorldExperimentConfig, got {type(config).__name__}")
    codec = check_codec(world_codec(config.data.codec), config, config.data.codec or "world (shipped)")
    return WorldClipSource(config.data, codec, world_text_encoder(config.model), device)


def train_world(config: WorldExperimentConfig, folder: str | Path, *, resume: bool = False) -> Path:
    """`training.trainer.train` on world clips."""
    from contextforcing.training.trainer import train

    return train(config, folder, resume=resume, source=world_source)

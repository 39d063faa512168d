"""The world's components in a `ContextForcingPipeline`: its codec and its text encoder.

The pipeline is the library's one generation path; the world hands it a student, the world codec (or
any codec folder `load_any_codec` reads) and `WorldTextEncoder`. The loaders below are the
`ComponentSource` loaders a saved world pipeline refers to.
"""

from __future__ import annotations

from pathlib import Path

import torch

from contextforcing.codec.base import Codec
from contextforcing.memory.config import MemoryConfig
from contextforcing.model.config import DiTConfig
from contextforcing.model.dit import CausalDiT
from contextforcing.pipeline import ComponentSource, ContextForcingPipeline
from contextforcing.world.components import load_any_codec, world_text_encoder
from contextforcing.world.text import WorldTextEncoder

__all__ = ["load_world_codec_component", "load_world_text_component", "world_pipeline"]


def load_world_codec_component(path: str, *, model_config: DiTConfig, dtype: torch.dtype,
                               device: torch.device) -> Codec:  # fmt: skip
    """The codec in `path` (a world codec or a Wan VAE), on `device`."""
    codec = load_any_codec(path)
    return codec.to(device) if hasattr(codec, "to") else codec


def load_world_text_component(path: str, *, model_config: DiTConfig, dtype: torch.dtype,
                              device: torch.device) -> WorldTextEncoder:  # fmt: skip
    """The world's prompt encoder at the model's text width and length."""
    return world_text_encoder(model_config)


def world_pipeline(model: CausalDiT, *, codec: str | Path | None, memory: MemoryConfig | str = "context",
                   world_text: bool = True) -> ContextForcingPipeline:  # fmt: skip
    """A pipeline of `model` with the codec in `codec` (None: latents are drawn) and the world's text
    encoder (or, with `world_text=False`, a seeded embedding per prompt, for random weights)."""
    sources = {
        "text_encoder": ComponentSource(
            loader=f"{__name__}:load_world_text_component"
            if world_text
            else "contextforcing.pipeline:load_seeded_text"
        )
    }
    loaded = None
    if codec is not None:
        sources["codec"] = ComponentSource(
            loader=f"{__name__}:load_world_codec_component", path=str(Path(codec).resolve())
        )
        parameter = next(model.parameters())
        loaded = sources["codec"].load(model.config, dtype=parameter.dtype, device=parameter.device)
    return ContextForcingPipeline(model, codec=loaded, memory=memory, sources=sources)

"""Load any codec from a folder: the world codec, or a Wan VAE (a VAE folder or a pipeline's vae/)."""

from __future__ import annotations

import json
from pathlib import Path

from contextforcing.codec.base import Codec

__all__ = ["load_codec"]


def load_codec(folder: str | Path) -> Codec:
    """The codec saved in `folder`; raises ValueError naming what was expected."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if (folder / "vae" / "config.json").is_file():
        config_path = folder / "vae" / "config.json"
    if not config_path.is_file():
        raise ValueError(f"no codec at {folder}: expected a world codec or a Wan VAE folder with config.json")
    config = json.loads(config_path.read_text())
    if str(config.get("format", "")).startswith("contextforcing-world-codec"):
        from contextforcing.codec.world_codec import load_world_codec

        return load_world_codec(folder)
    if config.get("_class_name") == "AutoencoderKLWan":
        from contextforcing.codec.wan_vae import WanVAECodec

        return WanVAECodec.from_pretrained(folder)
    raise ValueError(f"{config_path} describes neither a world codec nor an AutoencoderKLWan")

"""Load the Wan VAE from a folder: a VAE folder, or a Wan pipeline folder with vae/."""

from __future__ import annotations

import json
from pathlib import Path

from contextforcing.codec.base import Codec

__all__ = ["load_codec"]


def load_codec(folder: str | Path) -> Codec:
    """The Wan VAE saved in `folder` (or `folder/vae`); raises ValueError naming what was expected."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if (folder / "vae" / "config.json").is_file():
        config_path = folder / "vae" / "config.json"
    if not config_path.is_file():
        raise ValueError(f"no codec at {folder}: expected a Wan VAE folder with config.json")
    config = json.loads(config_path.read_text())
    if config.get("_class_name") != "AutoencoderKLWan":
        raise ValueError(f"{config_path} does not describe an AutoencoderKLWan")
    from contextforcing.codec.wan_vae import WanVAECodec

    return WanVAECodec.from_pretrained(folder)

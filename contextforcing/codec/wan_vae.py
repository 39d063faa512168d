"""The Wan2.1 VAE (diffusers' `AutoencoderKLWan`) behind the `Codec` interface.

Latents are normalised per channel with the VAE's `latents_mean` / `latents_std`, as the Wan
pipelines do, so the DiT sees roughly unit-scale latents. The VAE is causal in time: the first
latent frame encodes one pixel frame and every later one encodes four. Its decoder keeps a cache
of past features per causal convolution, which `WanStreamDecoder` carries from chunk to chunk, so
a streamed video decodes to exactly the frames of a one-shot decode.

Shape legend: B batch, T pixel frames, F latent frames, H x W pixels, h x w = H/8 x W/8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["WanStreamDecoder", "WanVAECodec"]


class WanVAECodec:
    """Wraps an `AutoencoderKLWan`; build it from a module or with `from_pretrained(folder)`."""

    first_frame_alone = True

    def __init__(self, vae: Any) -> None:
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.latent_channels = config.z_dim
        self.spatial_factor = config.scale_factor_spatial
        self.temporal_factor = config.scale_factor_temporal
        self._mean = torch.tensor(config.latents_mean[: config.z_dim]).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(config.latents_std[: config.z_dim]).view(1, -1, 1, 1, 1)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, dtype: torch.dtype = torch.float32) -> WanVAECodec:
        """Load from a local folder: a VAE folder, or a pipeline folder with a `vae/` subfolder."""
        from diffusers import AutoencoderKLWan

        folder = Path(folder)
        if (folder / "vae").is_dir():
            folder = folder / "vae"
        if not (folder / "config.json").is_file():
            raise ValueError(f"no Wan VAE at {folder}: expected config.json and weights")
        return cls(AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype))

    def to(self, device: str | torch.device) -> WanVAECodec:
        """Move the VAE to `device`; returns self."""
        self.vae.to(device)
        return self

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return self._mean.to(like), self._std.to(like)

    def _denormalise(self, latents: Tensor) -> Tensor:
        """Normalised latents -> the VAE's latents in its dtype (the arithmetic in float32)."""
        latents = latents.float()
        mean, std = self._stats(latents)
        return (latents * std + mean).to(next(self.vae.parameters()).dtype)

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """[B, 3, T, H, W] in [-1, 1], T = 1 + 4k -> normalised latents [B, C, F, h, w] (posterior mean)."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B, 3, T, H, W], got {tuple(frames.shape)}")
        if (frames.shape[2] - 1) % self.temporal_factor:
            raise ValueError(f"the Wan VAE needs 1 + {self.temporal_factor}k frames, got {frames.shape[2]}")
        dtype = next(self.vae.parameters()).dtype
        latents = self.vae.encode(frames.to(dtype)).latent_dist.mode().float()
        mean, std = self._stats(latents)
        return (latents - mean) / std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, C, F, h, w] -> frames [B, 3, 1 + 4(F-1), H, W] in [-1, 1]."""
        return self.vae.decode(self._denormalise(latents), return_dict=False)[0]

    def stream_decoder(self) -> WanStreamDecoder:
        return WanStreamDecoder(self)


class WanStreamDecoder:
    """Decodes latent chunks in order, carrying the decoder's causal-convolution cache between them."""

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        decoder = codec.vae.decoder
        num_convs = sum(type(m).__name__ == "WanCausalConv3d" for m in decoder.modules())
        self._cache: list[Tensor | None] = [None] * num_convs
        self._first = True

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """The next chunk [B, C, F, h, w] -> its pixel frames (1 + 4(F-1) for the first chunk, else 4F)."""
        vae = self.codec.vae
        x = vae.post_quant_conv(self.codec._denormalise(latents))
        frames = []
        for i in range(x.shape[2]):
            index = [0]
            frames.append(
                vae.decoder(
                    x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=index, first_chunk=self._first
                )
            )
            self._first = False
        return torch.cat(frames, dim=2).clamp(-1.0, 1.0)

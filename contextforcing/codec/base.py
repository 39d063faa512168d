"""The codec interface: pixels <-> latents, and chunk-by-chunk decoding while streaming.

A codec is what turns video frames into the latents the DiT denoises and back. The Wan VAE
(`contextforcing.codec.wan_vae.WanVAECodec`) and the small learned codec of the synthetic world
(`contextforcing.world.codec`) both implement it, so every pipeline is written once.

Shape legend:
    B  batch            T  pixel frames        F  latent frames
    H, W  pixel height / width                 h, w  latent height / width (H // spatial_factor)
    C  latent channels

Pixels are float tensors in [-1, 1], laid out [B, 3, T, H, W]; latents are [B, C, F, h, w].
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Codec", "StreamDecoder", "num_latent_frames", "num_pixel_frames"]


@runtime_checkable
class StreamDecoder(Protocol):
    """Decodes a latent video a chunk at a time, carrying whatever state the codec needs."""

    def decode(self, latents: Tensor) -> Tensor:
        """Decode the next chunk of latents [B, C, F, h, w] into its pixel frames [B, 3, T, H, W]."""
        ...


@runtime_checkable
class Codec(Protocol):
    """Frames to latents and back.

    Attributes:
        latent_channels: C.
        spatial_factor: H // h.
        temporal_factor: pixel frames per latent frame after the first one.
        first_frame_alone: whether the first latent frame encodes a single pixel frame (Wan's causal
            VAE does: T = 1 + temporal_factor * (F - 1)); otherwise T = temporal_factor * F.
    """

    latent_channels: int
    spatial_factor: int
    temporal_factor: int
    first_frame_alone: bool

    def encode(self, frames: Tensor) -> Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> latents [B, C, F, h, w]."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """[B, C, F, h, w] -> frames [B, 3, T, H, W] in [-1, 1]."""
        ...

    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one streamed video; chunks decode to the same frames as `decode`."""
        ...


def num_pixel_frames(codec: Codec, num_latent: int) -> int:
    """Pixel frames that `num_latent` latent frames decode to."""
    if num_latent <= 0:
        return 0
    if codec.first_frame_alone:
        return 1 + codec.temporal_factor * (num_latent - 1)
    return codec.temporal_factor * num_latent


def num_latent_frames(codec: Codec, num_pixel: int) -> int:
    """Latent frames that `num_pixel` pixel frames encode to; raises if the count does not fit."""
    if codec.first_frame_alone:
        if num_pixel < 1 or (num_pixel - 1) % codec.temporal_factor:
            raise ValueError(f"this codec needs 1 + {codec.temporal_factor}k pixel frames, got {num_pixel}")
        return 1 + (num_pixel - 1) // codec.temporal_factor
    if num_pixel % codec.temporal_factor:
        raise ValueError(
            f"this codec needs a multiple of {codec.temporal_factor} pixel frames, got {num_pixel}"
        )
    return num_pixel // codec.temporal_factor

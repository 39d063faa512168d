"""A small convolutional autoencoder for the synthetic world's frames; implements `codec.base.Codec`.

Each frame is coded on its own (temporal_factor 1, no separate first frame): 64x64 RGB becomes an 8x8
grid of `latent_channels` values, three stride-2 stages down and three nearest-upsampling stages up.
Latents are whitened per channel with a mean and standard deviation measured on world frames after
training (`set_latent_statistics`), so the diffusion model sees roughly unit-scale values.

Shape legend:
    B  batch        T  frames (pixel frames = latent frames here)        C  latent channels
    H, W  pixel height / width        h, w  latent height / width (H // 8, W // 8)
    N  frames folded into the batch (B * T)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from contextforcing.files import check_finite, read_safetensors

__all__ = [
    "WorldCodec",
    "WorldCodecConfig",
    "WorldStreamDecoder",
    "load_world_codec",
    "save_world_codec",
]

_WEIGHTS_FILE = "codec.safetensors"
_CONFIG_FILE = "config.json"
_FORMAT = "contextforcing-world-codec/1"


@dataclass(frozen=True, kw_only=True, slots=True)
class WorldCodecConfig:
    """Architecture of the world codec."""

    latent_channels: int = 8
    """C, channels of the latent grid."""
    widths: tuple[int, int, int] = (16, 32, 64)
    """Feature channels after the first, second and third downsampling stage."""
    num_bottleneck_blocks: int = 2
    """Residual blocks at the latent resolution, in the encoder and in the decoder each."""

    def __post_init__(self) -> None:
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}")
        if self.num_bottleneck_blocks < 0:
            raise ValueError(f"num_bottleneck_blocks must be >= 0, got {self.num_bottleneck_blocks}")


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(nn.functional.silu(self.conv1(nn.functional.silu(x))))


def _encoder(config: WorldCodecConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for width in config.widths:
        layers += [nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.SiLU()]
        in_channels = width
    layers += [_ResBlock(in_channels) for _ in range(config.num_bottleneck_blocks)]
    layers += [nn.SiLU(), nn.Conv2d(in_channels, config.latent_channels, 3, padding=1)]
    return nn.Sequential(*layers)


def _decoder(config: WorldCodecConfig) -> nn.Sequential:
    widths = config.widths[::-1]
    layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)]
    layers += [_ResBlock(widths[0]) for _ in range(config.num_bottleneck_blocks)]
    for in_channels, out_channels in zip(widths, [*widths[1:], widths[-1]], strict=True):
        layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest")]
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    layers += [nn.SiLU(), nn.Conv2d(widths[-1], 3, 3, padding=1)]
    return nn.Sequential(*layers)


class WorldCodec(nn.Module):
    """Per-frame convolutional autoencoder with whitened latents.

    Args:
        config: the architecture.
    """

    temporal_factor: int = 1
    first_frame_alone: bool = False
    spatial_factor: int = 8

    def __init__(self, config: WorldCodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or WorldCodecConfig()
        self.latent_channels = self.config.latent_channels
        self.encoder = _encoder(self.config)
        self.decoder = _decoder(self.config)
        self.register_buffer("latent_mean", torch.zeros(self.latent_channels))
        self.register_buffer("latent_std", torch.ones(self.latent_channels))

    def encode_images(self, images: Tensor) -> Tensor:
        """Raw (un-whitened) latents of images [N, 3, H, W] in [-1, 1] -> [N, C, h, w]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-1] % self.spatial_factor or images.shape[-2] % self.spatial_factor:
            raise ValueError(
                f"H and W must be multiples of {self.spatial_factor}, got {tuple(images.shape[-2:])}"
            )
        return self.encoder(images)

    def decode_images(self, latents: Tensor) -> Tensor:
        """Images [N, 3, H, W] (unclamped) of raw latents [N, C, h, w]."""
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be [N, {self.latent_channels}, h, w], got {tuple(latents.shape)}")
        return self.decoder(latents)

    def _stats(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1, 1, 1)
        return self.latent_mean.to(ref).view(shape), self.latent_std.to(ref).view(shape)

    def encode(self, frames: Tensor) -> Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> whitened latents [B, C, T, h, w]."""
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B, 3, T, H, W], got {tuple(frames.shape)}")
        batch, _, num_frames = frames.shape[:3]
        images = frames.transpose(1, 2).flatten(0, 1)  # (N, 3, H, W)
        mean, std = self._stats(images)
        latents = (self.encode_images(images) - mean) / std  # (N, C, h, w)
        return latents.unflatten(0, (batch, num_frames)).transpose(1, 2)

    def decode(self, latents: Tensor) -> Tensor:
        """Whitened latents [B, C, T, h, w] -> frames [B, 3, T, H, W] clamped to [-1, 1]."""
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B, C, T, h, w], got {tuple(latents.shape)}")
        batch, _, num_frames = latents.shape[:3]
        flat = latents.transpose(1, 2).flatten(0, 1)  # (N, C, h, w)
        mean, std = self._stats(flat)
        images = self.decode_images(flat * std + mean).clamp(-1, 1)  # (N, 3, H, W)
        return images.unflatten(0, (batch, num_frames)).transpose(1, 2)

    def stream_decoder(self) -> WorldStreamDecoder:
        """A decoder for one streamed video (frames are independent, so it only counts them)."""
        return WorldStreamDecoder(self)

    @torch.no_grad()
    def set_latent_statistics(self, images: Tensor) -> None:
        """Measure the per-channel mean and std of raw latents on images [N, 3, H, W] and store them."""
        latents = self.encode_images(images)
        self.latent_mean.copy_(latents.mean(dim=(0, 2, 3)))
        self.latent_std.copy_(latents.std(dim=(0, 2, 3)).clamp_min(1e-6))


class WorldStreamDecoder:
    """Decodes a latent video chunk by chunk; identical to decoding it whole.

    Attributes:
        num_frames: latent frames decoded so far.
    """

    def __init__(self, codec: WorldCodec) -> None:
        self.codec = codec
        self.num_frames = 0

    def decode(self, latents: Tensor) -> Tensor:
        """[B, C, F, h, w] -> [B, 3, F, H, W]."""
        frames = self.codec.decode(latents)
        self.num_frames += latents.shape[2]
        return frames


def save_world_codec(codec: WorldCodec, directory: str | Path, *, metrics: dict | None = None) -> Path:
    """Write DIR/codec.safetensors and DIR/config.json (with `metrics` if given); returns DIR."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in codec.state_dict().items()}
    save_file(state, str(directory / _WEIGHTS_FILE), metadata={"format": _FORMAT})
    record = {"format": _FORMAT, "config": asdict(codec.config)}
    if metrics is not None:
        record["metrics"] = metrics
    (directory / _CONFIG_FILE).write_text(json.dumps(record, indent=2))
    return directory


def load_world_codec(directory: str | Path) -> WorldCodec:
    """Load a codec written by `save_world_codec`, in eval mode.

    Raises:
        ValueError: if the folder lacks the files or they do not describe a world codec.
    """
    directory = Path(directory)
    config_path, weights_path = directory / _CONFIG_FILE, directory / _WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{directory} must hold {_CONFIG_FILE} and {_WEIGHTS_FILE}")
    try:
        record = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not JSON: {error}") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ValueError(f"{config_path} is not a world codec config (format {record.get('format')!r})")
    fields = dict(record["config"])
    fields["widths"] = tuple(fields["widths"])
    codec = WorldCodec(WorldCodecConfig(**fields))
    state = read_safetensors(weights_path)
    check_finite(state, weights_path)
    try:
        codec.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{weights_path} does not fit the codec of {config_path}: {error}") from None
    return codec.eval()

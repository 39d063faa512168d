"""DiTConfig: the shape of a Wan2.1 video diffusion transformer, and its named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["MODEL_PRESETS", "DiTConfig", "model_preset"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DiTConfig:
    """Hyperparameters of the Wan2.1 DiT. Derived sizes are properties, so they cannot disagree."""

    in_channels: int = 16
    """Latent channels read by the patch embedding."""
    out_channels: int = 16
    """Latent channels of the flow prediction."""
    dim: int = 1536
    """Hidden width."""
    ffn_dim: int = 8960
    """Hidden width of the GELU-tanh feed-forward network."""
    num_heads: int = 12
    """Attention heads; the head dim is dim // num_heads."""
    num_layers: int = 30
    """Transformer blocks."""
    freq_dim: int = 256
    """Width of the sinusoidal timestep embedding."""
    text_dim: int = 4096
    """Width of the text features (UMT5-XXL gives 4096)."""
    text_len: int = 512
    """Text tokens the encoder pads to (Wan pads UMT5 output with zeros to 512)."""
    patch_size: tuple[int, int, int] = (1, 2, 2)
    """Patch size over (frames, height, width); Wan2.1 uses (1, 2, 2)."""
    eps: float = 1e-6
    """Epsilon of the layer norms and the RMS q/k norms."""
    rope_theta: float = 10000.0
    """Base of the rotary position frequencies."""

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "dim", "ffn_dim", "num_heads", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DiTConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("freq_dim", "text_dim", "text_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DiTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.freq_dim % 2:
            raise ValueError(f"DiTConfig.freq_dim must be even, got {self.freq_dim}")
        if self.dim % self.num_heads:
            raise ValueError(f"DiTConfig.dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(
                f"DiTConfig: head dim {self.head_dim} must be even and at least 6 for 3-axis RoPE"
            )
        if len(self.patch_size) != 3 or any(p <= 0 for p in self.patch_size):
            raise ValueError(f"DiTConfig.patch_size must be three positive ints, got {self.patch_size}")
        if self.patch_size[0] != 1:
            raise ValueError("DiTConfig.patch_size[0] must be 1: every latent frame is its own token row")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Channels of each head rotated by the (time, height, width) positions, as in Wan."""
        spatial = 2 * (self.head_dim // 6)
        return self.head_dim - 2 * spatial, spatial, spatial

    def tokens_per_frame(self, height: int, width: int) -> int:
        """Tokens of one latent frame of size height x width."""
        return (height // self.patch_size[1]) * (width // self.patch_size[2])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiTConfig:
        """Rebuild from `to_dict` output; unknown keys raise a ValueError naming them."""
        from contextforcing.config import from_dict

        return from_dict(cls, data)


MODEL_PRESETS: dict[str, DiTConfig] = {
    # The released Wan2.1 text-to-video models.
    "wan2.1-1.3b": DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "wan2.1-14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    # Random-weight shapes for tests: every code path, in milliseconds.
    "tiny": DiTConfig(
        in_channels=4, out_channels=4, dim=64, ffn_dim=128, num_heads=2, num_layers=2,
        freq_dim=32, text_dim=32, text_len=8,
    ),
    # The synthetic world's model: trainable on two CPU cores.
    "world": DiTConfig(
        in_channels=8, out_channels=8, dim=128, ffn_dim=384, num_heads=4, num_layers=4,
        freq_dim=64, text_dim=32, text_len=4,
    ),
    # The second world's model: twice as wide (4.8 M parameters), for a cast, gates and charging doors.
    "world-large": DiTConfig(
        in_channels=8, out_channels=8, dim=256, ffn_dim=1024, num_heads=4, num_layers=4,
        freq_dim=64, text_dim=32, text_len=4,
    ),
}  # fmt: skip


def model_preset(name: str) -> DiTConfig:
    """The DiTConfig of a named preset; raises ValueError listing the names for an unknown one."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    return MODEL_PRESETS[name]

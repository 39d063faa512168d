"""Training the world codec on rendered world frames, and measuring its reconstruction error.

The training pool is rendered once from world episodes with short gaps (so that the subject is in most
frames); held-out frames come from episodes with other seeds and the default world. The loss is MSE plus
a little L1 on pixels in [-1, 1]; Gaussian noise is added to the latents before decoding, and a small L2
penalty keeps their scale, so that nearby latents decode to nearby frames (smooth for diffusion).

Shape legend:
    N  frames        H, W  pixel height / width
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from contextforcing.world.codec import WorldCodec, WorldCodecConfig
from contextforcing.world.episodes import WorldConfig, sample_clip

__all__ = ["CodecTrainConfig", "reconstruction_metrics", "render_frame_pool", "train_world_codec"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class CodecTrainConfig:
    """Optimisation and data of a codec training run."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 16
    """Frames per step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (cosine decay to 5 % of it)."""
    seed: int = 0
    """Seed of the weights, of the training episodes and of batch sampling."""
    num_train_episodes: int = 96
    """Episodes rendered into the training pool."""
    num_eval_episodes: int = 8
    """Held-out episodes (seeds disjoint from training) for the reconstruction metrics."""
    episode_frames: int = 48
    """Frames per rendered episode."""
    latent_noise: float = 0.1
    """Std of the Gaussian noise added to raw latents before decoding, relative to their RMS."""
    latent_l2: float = 1e-4
    """Weight of the mean squared raw latent."""
    log_every: int = 100
    """Steps between log lines."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_train_episodes", "num_eval_episodes", "episode_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.latent_noise < 0 or self.latent_l2 < 0:
            raise ValueError("latent_noise and latent_l2 must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def render_frame_pool(num_episodes: int, num_frames: int, first_seed: int, world: WorldConfig) -> Tensor:
    """Frames [N, 3, H, W] in [-1, 1] of `num_episodes` episodes with seeds first_seed, first_seed + 1, ..."""
    clips = []
    for index in range(num_episodes):
        generator = torch.Generator().manual_seed(first_seed + index)
        clips.append(sample_clip(num_frames, generator, world).frames.transpose(0, 1))
    return torch.cat(clips)


@torch.no_grad()
def reconstruction_metrics(codec: WorldCodec, images: Tensor, batch_size: int = 64) -> dict[str, float]:
    """MSE and PSNR of decode(encode(images)) for images [N, 3, H, W] in [-1, 1], on the [0, 1] scale."""
    errors = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].unsqueeze(2)  # (n, 3, 1, H, W)
        recon = codec.decode(codec.encode(batch))
        errors.append(((recon - batch) / 2).square().flatten(1).mean(1))
    per_frame = torch.cat(errors)
    mse = float(per_frame.mean())
    return {
        "mse": mse,
        "psnr": 10 * math.log10(1 / max(mse, 1e-12)),
        "psnr_frame_mean": float((10 * torch.log10(1 / per_frame.clamp_min(1e-12))).mean()),
        "num_frames": len(images),
    }


def _step(codec: WorldCodec, batch: Tensor, config: CodecTrainConfig, generator: torch.Generator) -> Tensor:
    latents = codec.encode_images(batch)
    rms = latents.detach().square().mean().sqrt()
    noise = torch.randn(latents.shape, generator=generator) * config.latent_noise * rms
    recon = codec.decode_images(latents + noise)
    error = recon - batch
    return error.square().mean() + 0.5 * error.abs().mean() + config.latent_l2 * latents.square().mean()


def train_world_codec(
    config: CodecTrainConfig, codec_config: WorldCodecConfig | None = None, world: WorldConfig | None = None
) -> tuple[WorldCodec, dict[str, float]]:
    """Train a codec from scratch.

    Returns:
        (the codec in eval mode with its latent statistics set, held-out metrics: mse, psnr, ...).
    """
    world = world or WorldConfig()
    torch.manual_seed(config.seed)
    codec = WorldCodec(codec_config)
    train_world = replace(world, max_gap_seconds=max(world.min_gap_seconds, 3.0))
    pool = render_frame_pool(
        config.num_train_episodes, config.episode_frames, config.seed * 100_003, train_world
    )
    held_out = render_frame_pool(config.num_eval_episodes, config.episode_frames, 10**9 + config.seed, world)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(codec.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)),
    )
    codec.train()
    start = time.monotonic()
    for step in range(1, config.steps + 1):
        index = torch.randint(0, len(pool), (config.batch_size,), generator=generator)
        loss = _step(codec, pool[index], config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % config.log_every == 0 or step == config.steps:
            logger.info(
                "step %d/%d loss %.5f (%.0f s)",
                step,
                config.steps,
                float(loss.detach()),
                time.monotonic() - start,
            )
    codec.eval()
    codec.set_latent_statistics(pool[:: max(1, len(pool) // 2048)])
    metrics = reconstruction_metrics(codec, held_out)
    metrics["train_seconds"] = time.monotonic() - start
    metrics["steps"] = config.steps
    logger.info("held-out reconstruction: mse %.6f psnr %.2f dB", metrics["mse"], metrics["psnr"])
    return codec, metrics

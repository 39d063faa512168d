"""World clips for the trainer: episodes made on the fly, rendered, coded with the world codec.

Implements `contextforcing.training.data.ClipSource`. Teacher clips can be redrawn so that the subject
comes back in the target (`WorldDataConfig.return_prob`), or shows an identity nothing before tells
(`novelty_prob`): the moments where memory decides the frame, and those where the model must commit to
one identity of many, are then fixed shares of the training signal.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from contextforcing.codec.base import Codec
from contextforcing.text_encoder import TextEncoder
from contextforcing.training.data import Batch
from contextforcing.world.assets import SCENE_CLASSES
from contextforcing.world.config import WorldDataConfig
from contextforcing.world.episodes import sample_episode
from contextforcing.world.render import render_episode
from contextforcing.world.timeline import Return, novel_frames, returns
from contextforcing.world.types import Episode

__all__ = ["WorldClipSource", "draw_episode", "return_gaps"]

_MAX_REDRAWS = 256


def _returns_landing(episode: Episode, start: int, *, exactly: bool = False) -> list[Return]:
    """The returns (a subject re-entering after an earlier visit of its own) at a frame >= start, or at
    `start` exactly, in time order."""
    return [r for r in returns(episode) if (r.frame == start if exactly else r.frame >= start)]


def _returns_within(episode: Episode, start: int, *, exactly: bool = False) -> bool:
    """Whether a subject re-enters at a frame >= start, or at `start` exactly."""
    return bool(_returns_landing(episode, start, exactly=exactly))


def _shows_a_new_identity(episode: Episode, start: int) -> bool:
    """Whether a subject shows an identity nothing before tells at a frame >= start."""
    return any(start <= frame for frame in novel_frames(episode))


def draw_episode(
    data: WorldDataConfig, num_frames: int, generator: torch.Generator, target_frames: int = 0
) -> Episode:
    """A world episode, redrawn (with probability `data.return_prob`) until a subject returns in the
    last `target_frames` frames (on the first of them if `data.return_at` is "first"), or (with
    probability `data.novelty_prob`) until a subject shows a new identity in them."""
    world, start = data.world, num_frames - target_frames
    draw = float(torch.rand((), generator=generator)) if target_frames > 0 else 1.0
    if draw < data.return_prob:
        wanted = partial(_returns_within, start=start, exactly=data.return_at == "first")
    elif draw < data.return_prob + data.novelty_prob:
        wanted = partial(_shows_a_new_identity, start=start)
    else:
        return sample_episode(num_frames, generator, world)
    episode = sample_episode(num_frames, generator, world)
    for _ in range(_MAX_REDRAWS):
        if wanted(episode):
            break
        episode = sample_episode(num_frames, generator, world)
    return episode


def return_gaps(
    data: WorldDataConfig, num_frames: int, target_frames: int, count: int, generator: torch.Generator
) -> list[float]:
    """Gaps in seconds (the subject's exit to its return) of `count` returns that land in the target of
    a clip of `num_frames`, as the clips redrawn for a return draw them: the gaps a teacher trained on
    such clips has seen. The longest is bounded by the clip: the earlier visit has to lie inside it. Fewer
    than `count` come back when a clip is too short for a return to land in it."""
    forced, first = replace(data, return_prob=1.0, novelty_prob=0.0), data.return_at == "first"
    start, gaps = num_frames - target_frames, []
    while len(gaps) < count:
        episode = draw_episode(forced, num_frames, generator, target_frames)
        landed = _returns_landing(episode, start, exactly=first)
        if not landed:  # every redraw missed: returns are too rare in such a clip to count
            break
        gaps.append(landed[0].gap_frames / data.world.fps)
    return gaps


def _encode_distinct(codec: Codec, frames: Tensor) -> Tensor:
    """Latents [1, C, T, h, w] of a clip [3, T, H, W], each distinct frame coded once.

    The world codec codes every frame on its own, and most world frames are the bare background, so the
    frames that repeat are coded once and their latents copied.
    """
    distinct, inverse = torch.unique(frames.transpose(0, 1).flatten(1), dim=0, return_inverse=True)
    images = distinct.view(-1, *frames.shape[:1], *frames.shape[2:]).transpose(0, 1)  # [3, U, H, W]
    return codec.encode(images[None])[:, :, inverse]


class WorldClipSource:
    """Draws batches of world clips of any length.

    Args:
        data: the world and the return settings.
        codec: frames -> latents.
        text_encoder: prompts -> features.
        device: where batches are put.
    """

    def __init__(
        self, data: WorldDataConfig, codec: Codec, text_encoder: TextEncoder, device: torch.device
    ) -> None:
        self.data, self.codec, self.text_encoder, self.device = data, codec, text_encoder, device

    @property
    def latent_size(self) -> tuple[int, int]:
        factor = self.codec.spatial_factor
        return self.data.world.height // factor, self.data.world.width // factor

    def sample_prompts(self, generators: list[torch.Generator]) -> Batch:
        prompts = [
            SCENE_CLASSES[int(torch.randint(len(SCENE_CLASSES), (1,), generator=g))].prompt
            for g in generators
        ]
        text = self.text_encoder.encode(prompts).to(self.device)
        return Batch(torch.empty(0, device=self.device), text, tuple(prompts))

    def sample(self, num_frames: int, generators: list[torch.Generator], *, target_frames: int = 0) -> Batch:
        """One clip per generator; with `target_frames` > 0 and probability `data.return_prob`, one in
        which a subject comes back after a gap within its last `target_frames` frames."""
        clips, prompts = zip(*(self._clip(num_frames, g, target_frames) for g in generators), strict=True)
        with torch.no_grad():
            latents = torch.cat([_encode_distinct(self.codec, frames) for frames in clips])
        text = self.text_encoder.encode(list(prompts))
        return Batch(latents.to(self.device), text.to(self.device), tuple(prompts))

    def unconditional(self, batch: int) -> Tensor:
        return self.text_encoder.encode([""] * batch).to(self.device)

    def negative(self, batch: int) -> Tensor:
        """The world's guidance has no negative prompt: the empty one."""
        return self.unconditional(batch)

    def _clip(self, num_frames: int, generator: torch.Generator, target_frames: int) -> tuple[Tensor, str]:
        episode = self.episode(num_frames, generator, target_frames)
        return render_episode(episode, self.data.world), episode.prompt

    def episode(self, num_frames: int, generator: torch.Generator, target_frames: int = 0) -> Episode:
        """A world episode for a clip of `num_frames` (`draw_episode`)."""
        return draw_episode(self.data, num_frames, generator, target_frames)

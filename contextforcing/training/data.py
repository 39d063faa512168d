"""Training batches: clips of latent frames with their text features.

Each sample of a batch is drawn from its own generator (see `runtime.step_generator`), so a batch is
the same whichever process draws which samples, and a resumed run draws what an uninterrupted run
would. Clips come from the procedural world, made on the fly, or from a folder of mp4 files; both go
through the codec, so the trainer sees latents [B, C, F, h, w] either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from contextforcing.codec.base import Codec, num_pixel_frames
from contextforcing.data.world import sample_episode
from contextforcing.data.world_assets import SCENE_CLASSES
from contextforcing.data.world_render import render_episode
from contextforcing.data.world_types import Episode
from contextforcing.training.config import DataConfig
from contextforcing.video_io import read_video

__all__ = ["Batch", "ClipSource"]


@dataclass(frozen=True, slots=True)
class Batch:
    """latents [B, C, F, h, w]; text [B, S, D] features; prompts, one per sample."""

    latents: Tensor
    text: Tensor
    prompts: tuple[str, ...]


_MAX_REDRAWS = 256


def _returns_within(episode: Episode, start: int, *, exactly: bool = False) -> bool:
    """Whether the subject re-enters (after an earlier visit) at a frame >= start, or at `start` exactly."""
    if exactly:
        return any(visit.enter_frame == start for visit in episode.visits[1:])
    return any(start <= visit.enter_frame < episode.num_frames for visit in episode.visits[1:])


class ClipSource:
    """Draws batches of latent clips of any length.

    Args:
        data: where clips come from.
        codec: frames -> latents.
        text_encoder: prompts -> features (`encode(list[str]) -> [B, S, D]`).
        device: where batches are put.
    """

    def __init__(self, data: DataConfig, codec: Codec, text_encoder, device: torch.device) -> None:
        self.data = data
        self.codec = codec
        self.text_encoder = text_encoder
        self.device = device
        self._videos: list[Path] = []
        if data.source == "videos":
            self._videos = sorted(Path(data.video_folder).glob("*.mp4"))
            if not self._videos:
                raise ValueError(f"no .mp4 files in {data.video_folder}")

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of one latent frame."""
        if self.data.source == "world":
            height, width = self.data.world.height, self.data.world.width
        else:
            frames, _ = read_video(self._videos[0])
            height, width = frames.shape[1], frames.shape[2]
        factor = self.codec.spatial_factor
        return height // factor, width // factor

    def sample_prompts(self, generators: list[torch.Generator]) -> Batch:
        """Prompts only (data-free distillation), one per generator; `latents` is empty."""
        if self.data.source == "world":
            prompts = [
                SCENE_CLASSES[int(torch.randint(len(SCENE_CLASSES), (1,), generator=g))].prompt
                for g in generators
            ]
        else:
            prompts = [self._video_clip_prompt(g) for g in generators]
        text = self.text_encoder.encode(prompts).to(self.device)
        return Batch(torch.empty(0, device=self.device), text, tuple(prompts))

    def _video_clip_prompt(self, generator: torch.Generator) -> str:
        path = self._videos[int(torch.randint(len(self._videos), (1,), generator=generator))]
        caption = path.with_suffix(".txt")
        return caption.read_text().strip() if caption.is_file() else ""

    def sample(self, num_frames: int, generators: list[torch.Generator], *, target_frames: int = 0) -> Batch:
        """One clip of `num_frames` latent frames per generator.

        With `target_frames` > 0, a world clip is, with probability `data.return_prob`, drawn so that
        the subject comes back after a gap within its last `target_frames` frames: the moments where
        memory decides the frame are then a fixed share of the training signal.
        """
        clips, prompts = zip(*(self._clip(num_frames, g, target_frames) for g in generators), strict=True)
        with torch.no_grad():
            latents = torch.cat([self.codec.encode(frames[None]) for frames in clips])
        text = self.text_encoder.encode(list(prompts))
        return Batch(latents.to(self.device), text.to(self.device), tuple(prompts))

    def unconditional(self, batch: int) -> Tensor:
        """The empty prompt's features [B, S, D], the unconditional branch of guidance."""
        return self.text_encoder.encode([""] * batch).to(self.device)

    def _clip(self, num_frames: int, generator: torch.Generator, target_frames: int) -> tuple[Tensor, str]:
        if self.data.source == "videos":
            return self._video_clip(num_frames, generator)
        episode = self.world_episode(num_frames, generator, target_frames)
        return render_episode(episode, self.data.world), episode.prompt

    def world_episode(self, num_frames: int, generator: torch.Generator, target_frames: int = 0) -> Episode:
        """A world episode, redrawn (with probability `return_prob`) until the subject returns in the
        last `target_frames` frames (on the first of them if `return_at` is "first")."""
        world = self.data.world
        want_return = target_frames > 0 and float(torch.rand((), generator=generator)) < self.data.return_prob
        episode = sample_episode(num_frames, generator, world)
        for _ in range(_MAX_REDRAWS if want_return else 0):
            if _returns_within(episode, num_frames - target_frames, exactly=self.data.return_at == "first"):
                break
            episode = sample_episode(num_frames, generator, world)
        return episode

    def _video_clip(self, num_frames: int, generator: torch.Generator) -> tuple[Tensor, str]:
        """A random window of a random video; its prompt is the text file beside it, if any."""
        path = self._videos[int(torch.randint(len(self._videos), (1,), generator=generator))]
        frames, _ = read_video(path)  # [T, H, W, 3] uint8
        needed = num_pixel_frames(self.codec, num_frames)
        if frames.shape[0] < needed:
            raise ValueError(f"{path} has {frames.shape[0]} frames, a clip needs {needed}")
        start = int(torch.randint(frames.shape[0] - needed + 1, (1,), generator=generator))
        window = frames[start : start + needed].permute(3, 0, 1, 2).float() / 127.5 - 1.0
        caption = path.with_suffix(".txt")
        return window, caption.read_text().strip() if caption.is_file() else ""

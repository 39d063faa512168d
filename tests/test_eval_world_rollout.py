"""One-minute rollouts on the world: the metrics read what a video shows, and a student runs end to end."""

import dataclasses

import pytest
import torch

from contextforcing.memory.config import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.world.codec import WorldCodec, WorldCodecConfig
from contextforcing.world.episodes import sample_episode
from contextforcing.world.recall_probe import student_continuer
from contextforcing.world.render import background_frame, render_episode_uint8
from contextforcing.world.rollout import RolloutConfig, read_subjects, rollout_metrics, world_rollouts
from contextforcing.world.text import WorldTextEncoder
from contextforcing.world.types import WorldConfig

WORLD = WorldConfig()


def _episode(seed: int, frames: int = 120):
    return sample_episode(frames, torch.Generator().manual_seed(seed), WORLD)


def _pixels(episode):
    return render_episode_uint8(episode, WORLD).permute(0, 3, 1, 2).float()


def _metrics(frames, episode):
    return rollout_metrics(frames, episode, WORLD, prefix_frames=12, window_seconds=10.0)


def test_the_true_video_is_consistent_with_no_background_error():
    episode = _episode(0)
    metrics = _metrics(_pixels(episode), episode)
    assert metrics["frames_with_subject"] > 10
    assert metrics["frames_consistent"] == metrics["frames_with_subject"]
    assert all(w["background_error"] < 1e-6 for w in metrics["windows"].values())
    assert list(metrics["windows"]) == ["0-10s", "10-20s", "20-27s"]


def test_a_swapped_identity_and_an_empty_room_are_seen():
    episode = _episode(1)
    frames = _pixels(episode)
    other = dataclasses.replace(episode, identity=(episode.identity + 1) % len(WORLD.identities))
    swapped = torch.cat([frames[:12], _pixels(other)[12:]])
    metrics = _metrics(swapped, episode)
    assert metrics["frames_with_subject"] > 10 and metrics["frames_consistent"] == 0
    empty = torch.cat([frames[:12], background_frame(episode, WORLD).expand(len(frames) - 12, -1, -1, -1)])
    metrics = _metrics(empty, episode)
    assert metrics["frames_with_subject"] == 0 and metrics["short"]["identity_consistency"] is None


def test_subjects_are_read_where_the_truth_shows_them():
    episode = _episode(2)
    readings = read_subjects(_pixels(episode), background_frame(episode, WORLD), WORLD)
    from contextforcing.world.render import subject_boxes

    boxes = subject_boxes(episode, WORLD)
    # A subject still half inside a door may go unseen; one that is read is read right.
    assert all(
        r is None or (b is not None and r == episode.identity) for r, b in zip(readings, boxes, strict=True)
    )
    assert sum(r is not None for r in readings) >= 0.8 * sum(b is not None for b in boxes)


def test_a_student_rolls_out_and_every_video_is_measured():
    torch.manual_seed(0)
    config = model_preset("world")
    model = CausalDiT(config).eval()
    codec = WorldCodec(WorldCodecConfig()).eval()
    continuer = student_continuer(
        model, memory_preset("context"), WorldTextEncoder(config.text_dim, config.text_len)
    )
    config = RolloutConfig(seconds=6.0, episodes=2, seed=3, window_seconds=2.0, short_seconds=1.0)
    result = world_rollouts(continuer, codec, WORLD, config)
    assert len(result["videos"]) == 2 and result["frames_per_second"] > 0
    assert set(result["summary"]) == {"windows", "short", "identity_consistency"}
    # 24 frames, the first 12 the true prefix: the 12 generated ones make 2 s windows after it
    assert list(result["summary"]["windows"]) == ["0-2s", "2-3s"]
    again = world_rollouts(continuer, codec, WORLD, config)
    assert again["videos"] == result["videos"]  # same seed, same episodes and noise, same videos
    with pytest.raises(ValueError, match="prefix_frames"):
        world_rollouts(continuer, codec, WORLD, RolloutConfig(seconds=2.0, episodes=1))

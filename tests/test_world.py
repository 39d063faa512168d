"""The synthetic world: determinism, ground-truth invariants, prompts, text encoder, export."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from contextforcing.world.assets import SCENE_CLASSES, SHAPES, SUBJECT_COLOURS, shape_mask
from contextforcing.world.episodes import (
    WorldConfig,
    episode_from_metadata,
    episode_metadata,
    sample_clip,
    sample_episode,
)
from contextforcing.world.export import export_episode
from contextforcing.world.render import background_frame, render_episode_uint8, subject_boxes
from contextforcing.world.text import WorldTextEncoder

CONFIG = WorldConfig()


def _episodes(count: int, num_frames: int = 240):
    return [sample_episode(num_frames, torch.Generator().manual_seed(seed), CONFIG) for seed in range(count)]


def test_same_seed_same_clip_and_different_seeds_differ():
    first = sample_clip(60, torch.Generator().manual_seed(7))
    second = sample_clip(60, torch.Generator().manual_seed(7))
    other = sample_clip(60, torch.Generator().manual_seed(8))
    assert torch.equal(first.frames, second.frames)
    assert first.metadata == second.metadata
    assert not torch.equal(first.frames, other.frames)


def test_clip_layout_and_range():
    clip = sample_clip(10, torch.Generator().manual_seed(0))
    assert clip.frames.shape == (3, 10, 64, 64)
    assert clip.frames.dtype == torch.float32
    assert clip.frames.min() >= -1 and clip.frames.max() <= 1
    assert clip.prompt in [scene.prompt for scene in SCENE_CLASSES]


def test_subject_never_in_sink_and_entries_on_chunk_boundaries():
    for episode in _episodes(30):
        boxes = subject_boxes(episode, CONFIG)
        assert all(box is None for box in boxes[: CONFIG.num_sink_frames])
        for visit in episode.visits:
            assert visit.enter_frame % CONFIG.chunk_frames == 0
            assert visit.enter_frame >= CONFIG.num_sink_frames
        for before, after in zip(episode.visits[:-1], episode.visits[1:], strict=True):
            assert after.enter_frame - before.exit_frame == after.gap_frames
            assert CONFIG.min_gap_frames <= after.gap_frames <= CONFIG.max_gap_frames


def test_identity_pixels_are_at_least_ten_percent_of_a_visible_frame():
    for episode in _episodes(8, 120):
        frames = render_episode_uint8(episode, CONFIG).permute(0, 3, 1, 2).float()
        background = background_frame(episode, CONFIG)
        for frame, box in zip(frames, subject_boxes(episode, CONFIG), strict=True):
            if box is not None:
                share = (frame != background).any(0).float().mean()
                assert share >= 0.10
    for shape in SHAPES:
        assert shape_mask(shape, CONFIG.sprite_size).float().mean() * CONFIG.sprite_size**2 >= 0.10 * 64 * 64


def test_cue_lights_the_door_the_frame_before_each_entry():
    episode = _episodes(1)[0]
    frames = render_episode_uint8(episode, CONFIG).permute(0, 3, 1, 2).float()
    background = background_frame(episode, CONFIG)
    for visit in episode.visits:
        if visit.enter_frame < episode.num_frames:
            cue = frames[visit.enter_frame - 1]
            x0 = 0 if visit.door_in == "left" else CONFIG.width - CONFIG.door_width
            rows = slice(visit.y_in, visit.y_in + CONFIG.sprite_size)
            assert (
                cue[:, rows, x0 : x0 + CONFIG.door_width] != background[:, rows, x0 : x0 + CONFIG.door_width]
            ).all()


def test_forced_gap_is_exact():
    episode = sample_episode(240, torch.Generator().manual_seed(1), CONFIG, gap_frames=37)
    assert len(episode.visits) >= 3
    assert all(visit.gap_frames == 37 for visit in episode.visits[1:])


def test_metadata_is_json_and_rebuilds_the_episode():
    clip = sample_clip(100, torch.Generator().manual_seed(3))
    metadata = json.loads(json.dumps(clip.metadata))
    episode, config = episode_from_metadata(metadata)
    assert episode == clip.episode and config == CONFIG
    boxes = subject_boxes(episode, config)
    for record, box in zip(metadata["frames"], boxes, strict=True):
        subject = record["subjects"][0]
        assert subject["visible"] == (box is not None)
        assert subject["bbox"] == (list(box) if box is not None else None)
    returns = metadata["subjects"][0]["returns"]
    assert [r["frame"] for r in returns] == [v.enter_frame for v in episode.visits[1:] if v.enter_frame < 100]
    with pytest.raises(ValueError, match="format"):
        episode_from_metadata({"format": "other"})


def test_all_scenes_palettes_and_identities_occur():
    episodes = _episodes(200, 3)
    assert {e.scene for e in episodes} == set(range(len(SCENE_CLASSES)))
    assert {e.identity for e in episodes} == set(range(len(CONFIG.identities)))
    assert len({e.palette for e in episodes}) == 4


def test_prompts_do_not_reveal_identity():
    words = set(SUBJECT_COLOURS) | set(SHAPES) | {"striped", "solid"}
    for scene in SCENE_CLASSES:
        assert not words & set(scene.prompt.split())
    clips = [sample_clip(40, torch.Generator().manual_seed(s), scene=2) for s in range(6)]
    assert len({c.prompt for c in clips}) == 1
    assert len({c.episode.identity for c in clips}) > 1


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="sprite_size"):
        WorldConfig(sprite_size=60)
    with pytest.raises(ValueError, match="min_gap_seconds"):
        WorldConfig(min_gap_seconds=5.0, max_gap_seconds=2.0)
    with pytest.raises(ValueError, match="num_colours"):
        WorldConfig(num_colours=9)
    with pytest.raises(ValueError, match="num_frames"):
        sample_episode(0, torch.Generator())
    with pytest.raises(ValueError, match="gap_frames"):
        sample_episode(10, torch.Generator(), gap_frames=0)


def test_text_encoder():
    encoder = WorldTextEncoder(text_dim=16, text_len=6)
    prompts = [scene.prompt for scene in SCENE_CLASSES]
    embeddings = encoder.encode([*prompts, ""])
    assert embeddings.shape == (len(prompts) + 1, 6, 16)
    assert torch.equal(embeddings[-1], torch.zeros(6, 16))
    assert torch.equal(embeddings[:-1], WorldTextEncoder(16, 6).encode(prompts))
    flat = embeddings[:-1].flatten(1)
    assert torch.linalg.matrix_rank(flat) == len(prompts)
    with pytest.raises(ValueError, match="valid prompts"):
        encoder.encode(["a red square"])


def test_export_and_world_command(tmp_path):
    from contextforcing.video_io import read_video
    from contextforcing.world.commands import world

    video, meta = export_episode(tmp_path / "a", seconds=5, seed=2)
    frames, fps = read_video(video)
    metadata = json.loads(meta.read_text())
    assert frames.shape == (20, 64, 64, 3) and fps == 4.0 and metadata["num_frames"] == 20
    parser = argparse.ArgumentParser()
    world.register(parser.add_subparsers())
    args = parser.parse_args(["world", "--seconds", "3", "--seed", "1", "--out", str(tmp_path / "b")])
    assert args.run(args) == 0 and (tmp_path / "b" / "meta.json").is_file()
    args = parser.parse_args(["world", "--seconds", "-1", "--seed", "1", "--out", str(tmp_path / "c")])
    with pytest.raises(ValueError, match="seconds"):
        args.run(args)
    with pytest.raises(ValueError, match="unknown scene"):
        export_episode(tmp_path / "d", seconds=1, seed=0, scene="moon")


def test_metadata_of_direct_episode_matches_sample_clip():
    generator = torch.Generator().manual_seed(11)
    clip = sample_clip(30, generator)
    assert episode_metadata(clip.episode, CONFIG) == clip.metadata


def test_smaller_world_renders_and_round_trips():
    config = WorldConfig(height=32, width=32, sprite_size=12, door_width=2, num_colours=8, num_textures=2)
    clip = sample_clip(40, torch.Generator().manual_seed(0), config)
    assert clip.frames.shape == (3, 40, 32, 32) and len(config.identities) == 32
    assert episode_from_metadata(json.loads(json.dumps(clip.metadata))) == (clip.episode, config)

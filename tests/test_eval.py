"""World ground-truth metrics: ideal on ground truth, and moving the right way on doctored videos."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from contextforcing.eval.backbones import PixelBackbone
from contextforcing.eval.evaluate import EvalConfig, evaluate_frames, evaluate_videos
from contextforcing.video_io import write_video
from contextforcing.world.episodes import WorldConfig, sample_episode
from contextforcing.world.export import export_episode
from contextforcing.world.metrics import background_drift
from contextforcing.world.recall import effective_context_length, recall_curve, recall_events
from contextforcing.world.reference import WorldReference, load_reference
from contextforcing.world.render import background_frame, render_episode_uint8

CONFIG = WorldConfig()
NO_FLOW = EvalConfig(dynamic_degree=False)


def _episode(seed: int = 0, num_frames: int = 160, gap_frames: int | None = 20):
    return sample_episode(num_frames, torch.Generator().manual_seed(seed), CONFIG, gap_frames=gap_frames)


def _images(frames_uint8: torch.Tensor) -> torch.Tensor:
    return frames_uint8.permute(0, 3, 1, 2).float()


def test_recall_decoder_is_exact_on_ground_truth():
    events = []
    for seed in range(12):
        episode = _episode(seed, 240, None)
        events += recall_events(_images(render_episode_uint8(episode, CONFIG)), episode, CONFIG)
    assert len(events) > 30
    assert all(e["recalled"] and e["matches_truth"] for e in events)


def test_ground_truth_video_is_near_ideal(tmp_path):
    video, meta = export_episode(tmp_path / "gt", seconds=40, seed=3, gap_seconds=5)
    result = evaluate_videos(
        [video],
        backbones=[PixelBackbone()],
        references=[load_reference(meta)],
        config=NO_FLOW,
        out_dir=tmp_path / "out",
    )
    summary = result["summary"]
    assert summary["num_returns"] >= 2 and summary["identity_recall"] == 1.0
    assert summary["identity_matches_truth"] == 1.0
    # the first world has one subject and one doorway: every free return comes back as it left, by chance too
    assert summary["free_recall"] == 1.0 and summary["free_recall_chance"] == 1.0
    assert summary["cast"] == {"doorways": 1.0, "identities": 1.0}
    assert summary["effective_context_seconds"] == pytest.approx(5.0)
    assert summary["background_final_drift"] < 0.005
    assert max(summary["background_error_vs_truth"].values()) < 0.01
    assert summary["feature_consistency[pixels]"] > 0.95
    quality = summary["frame_quality_frechet[pixels]"]
    for window, value in quality["frechet"].items():
        assert value <= quality["reference_floor"][window] + 0.01
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"metrics.json", "recall_vs_gap.png", "background_drift.png", "frame_quality.png"} <= written
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["backbones"] == ["pixels"]


def test_identity_swapped_on_return_is_not_recalled():
    episode = _episode(1)
    other = dataclasses.replace(episode, identity=(episode.identity + 1) % len(CONFIG.identities))
    frames = render_episode_uint8(episode, CONFIG).clone()
    first_return = episode.visits[1].enter_frame
    frames[first_return:] = render_episode_uint8(other, CONFIG)[first_return:]
    events = recall_events(_images(frames), episode, CONFIG)
    assert not events[0]["recalled"] and not events[0]["matches_truth"]
    assert all(e["recalled"] for e in events[1:]) and not any(e["matches_truth"] for e in events)


def test_an_empty_return_is_not_recalled():
    from contextforcing.world.render import background_frame

    episode = _episode(1)
    frames = render_episode_uint8(episode, CONFIG).clone()
    first_return = episode.visits[1].enter_frame
    empty = background_frame(episode, CONFIG).permute(1, 2, 0).to(torch.uint8)
    frames[first_return : first_return + CONFIG.chunk_frames] = empty
    events = recall_events(_images(frames), episode, CONFIG)
    assert not events[0]["drawn"] and not events[0]["recalled"] and not events[0]["matches_truth"]
    assert all(e["drawn"] for e in events[1:])


def test_slow_background_recolouring_shows_as_rising_drift():
    episode = _episode(2)
    frames = _images(render_episode_uint8(episode, CONFIG))
    truth = background_frame(episode, CONFIG)
    ramp = torch.linspace(0, 1, len(frames)).view(-1, 1, 1, 1)
    tint = torch.tensor([60.0, -30.0, 0.0]).view(1, 3, 1, 1)
    is_background = (frames == truth).all(dim=1, keepdim=True)
    doctored = torch.where(is_background, (frames + ramp * tint).clamp(0, 255), frames)
    clean = background_drift(frames, episode, CONFIG)
    drift = list(background_drift(doctored, episode, CONFIG)["drift_from_start"].values())
    assert clean["final_drift"] < 1e-6
    assert all(b > a for a, b in itertools.pairwise(drift))
    assert drift[-1] > 0.08


def _growing_blur(images: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur frames [T, 3, H, W] with a Gaussian whose sigma grows linearly from 0 to max_sigma."""
    sigmas = torch.linspace(1e-3, max_sigma, len(images)).repeat_interleave(3).view(-1, 1)
    offsets = torch.arange(-6, 7, dtype=torch.float32).view(1, -1)
    kernel = torch.exp(-(offsets**2) / (2 * sigmas**2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).view(-1, 1, 1, 13)  # (T * 3, 1, 1, 13)
    x = images.reshape(1, -1, *images.shape[-2:])
    x = F.conv2d(F.pad(x, (6, 6, 0, 0), mode="replicate"), kernel, groups=x.shape[1])
    x = F.conv2d(F.pad(x, (0, 0, 6, 6), mode="replicate"), kernel.transpose(-1, -2), groups=x.shape[1])
    return x.view_as(images)


def test_growing_blur_raises_frame_quality_distance():
    episode = _episode(4)
    truth = render_episode_uint8(episode, CONFIG)
    images = _images(truth)
    doctored = _growing_blur(images, 3.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    reference = WorldReference(episode, CONFIG)
    clean = evaluate_frames(truth, 4.0, backbones=[PixelBackbone()], reference=reference, config=NO_FLOW)
    bad = evaluate_frames(doctored, 4.0, backbones=[PixelBackbone()], reference=reference, config=NO_FLOW)
    clean_curve = list(clean["frame_quality_frechet[pixels]"]["frechet"].values())
    bad_curve = list(bad["frame_quality_frechet[pixels]"]["frechet"].values())
    assert bad_curve[-1] > 3 * bad_curve[0] and bad_curve[-1] > 3 * clean_curve[-1]
    assert bad["feature_consistency[pixels]"] < clean["feature_consistency[pixels]"]


def test_recall_curve_and_effective_context_length():
    events = [
        {"gap_seconds": g, "recalled": r}
        for g, r in [
            (1, True),
            (1, True),
            (4, True),
            (4, True),
            (10, True),
            (10, False),
            (30, False),
            (30, True),
        ]
    ]
    curve = recall_curve(events)
    assert [entry["recall"] for entry in curve] == [1.0, 1.0, 0.5, 0.5]
    assert effective_context_length(curve) == 4
    assert effective_context_length(recall_curve([{"gap_seconds": 2, "recalled": False}])) == 0.0
    assert effective_context_length([]) is None


def test_video_must_match_the_reference(tmp_path):
    episode = _episode(5, 20)
    meta_dir = tmp_path / "ref"
    _, meta = export_episode(meta_dir, seconds=5, seed=5)
    frames = render_episode_uint8(episode, CONFIG)
    cases = {
        "fps": write_video(tmp_path / "fps.mp4", frames, fps=8),
        "frames": write_video(tmp_path / "len.mp4", frames[:12], fps=4),
        "32x32": write_video(tmp_path / "size.mp4", frames[:, :32, :32], fps=4),
    }
    for message, path in cases.items():
        with pytest.raises(ValueError, match=message):
            evaluate_videos(
                [path], backbones=[PixelBackbone()], references=[load_reference(meta)], config=NO_FLOW
            )
    with pytest.raises(ValueError, match="one reference"):
        evaluate_videos(
            [cases["fps"]] * 3, backbones=[], references=[load_reference(meta)] * 2, config=NO_FLOW
        )
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot read"):
        evaluate_videos([tmp_path / "bad.mp4"], backbones=[], config=NO_FLOW)


def test_evaluate_command(tmp_path):
    from contextforcing.commands import evaluate

    video, meta = export_episode(tmp_path / "gt", seconds=12, seed=1, gap_seconds=2)
    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "evaluate",
            str(video),
            "--reference",
            str(meta),
            "--backbone",
            "pixels",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert args.run(args) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["summary"]["identity_recall"] == 1.0
    with pytest.raises(ValueError, match="unknown backbone"):
        args = parser.parse_args(["evaluate", str(video), "--backbone", "nope", "--out", str(tmp_path / "p")])
        args.run(args)

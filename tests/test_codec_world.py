"""The world codec: Codec protocol, shapes, streaming, persistence, and its training loop."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from contextforcing.codec.base import Codec, num_latent_frames, num_pixel_frames
from contextforcing.world.codec import WorldCodec, WorldCodecConfig, load_world_codec, save_world_codec
from contextforcing.world.codec_training import CodecTrainConfig, train_world_codec
from contextforcing.world.episodes import sample_clip

TINY = WorldCodecConfig(latent_channels=4, widths=(4, 8, 8), num_bottleneck_blocks=1)


@pytest.fixture
def frames():
    return sample_clip(7, torch.Generator().manual_seed(0)).frames.unsqueeze(0)  # (1, 3, 7, 64, 64)


def test_protocol_and_shapes(frames):
    torch.manual_seed(0)
    codec = WorldCodec(TINY).eval()
    assert isinstance(codec, Codec)
    assert num_latent_frames(codec, 7) == 7 and num_pixel_frames(codec, 7) == 7
    latents = codec.encode(frames)
    assert latents.shape == (1, 4, 7, 8, 8)
    decoded = codec.decode(latents)
    assert decoded.shape == frames.shape and decoded.abs().max() <= 1


def test_stream_decoder_equals_full_decode(frames):
    torch.manual_seed(0)
    codec = WorldCodec(TINY).eval()
    with torch.no_grad():
        latents = codec.encode(frames)
        full = codec.decode(latents)
        stream = codec.stream_decoder()
        chunks = [stream.decode(latents[:, :, i : i + 3]) for i in range(0, 7, 3)]
    assert torch.allclose(torch.cat(chunks, dim=2), full, atol=1e-6)
    assert stream.num_frames == 7


def test_save_load_round_trip(tmp_path, frames):
    torch.manual_seed(0)
    codec = WorldCodec(TINY).eval()
    codec.set_latent_statistics(frames[0].transpose(0, 1))
    save_world_codec(codec, tmp_path / "c", metrics={"psnr": 1.0})
    loaded = load_world_codec(tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(loaded.encode(frames), codec.encode(frames))
    assert json.loads((tmp_path / "c" / "config.json").read_text())["metrics"]["psnr"] == 1.0
    with pytest.raises(ValueError, match="must hold"):
        load_world_codec(tmp_path / "missing")


def test_errors(frames):
    codec = WorldCodec(TINY)
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.encode(torch.zeros(1, 3, 1, 60, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        codec.encode(torch.zeros(3, 1, 64, 64))
    with pytest.raises(ValueError, match="latent_channels"):
        WorldCodecConfig(latent_channels=0)
    with pytest.raises(ValueError, match="steps"):
        CodecTrainConfig(steps=0)


def test_training_loop_runs_and_whitens_latents():
    config = CodecTrainConfig(
        steps=3, batch_size=4, num_train_episodes=3, num_eval_episodes=1, episode_frames=12
    )
    codec, metrics = train_world_codec(config, TINY)
    assert {"mse", "psnr", "num_frames"} <= set(metrics) and metrics["psnr"] > 0
    clip = sample_clip(12, torch.Generator().manual_seed(5)).frames.unsqueeze(0)
    with torch.no_grad():
        latents = codec.encode(clip)
    assert latents.std() == pytest.approx(1.0, abs=0.5)


def test_train_codec_command(tmp_path, monkeypatch):
    from contextforcing.world.commands import train_codec

    small = CodecTrainConfig(
        steps=2, batch_size=2, num_train_episodes=2, num_eval_episodes=1, episode_frames=6
    )
    monkeypatch.setattr(train_codec, "CodecTrainConfig", lambda **kw: small)
    monkeypatch.setattr(
        train_codec, "train_world_codec", lambda config, world: train_world_codec(config, TINY, world)
    )
    parser = argparse.ArgumentParser()
    train_codec.register(parser.add_subparsers())
    args = parser.parse_args(["train-codec", "--out", str(tmp_path), "--steps", "2"])
    assert args.run(args) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    assert isinstance(load_world_codec(tmp_path), WorldCodec)


def test_shipped_codec_keeps_identity_when_present():
    from contextforcing.world.episodes import WorldConfig
    from contextforcing.world.recall import recall_events
    from contextforcing.world.shipped import shipped

    codec = load_world_codec(shipped("codec"))
    clip = sample_clip(120, torch.Generator().manual_seed(123), gap_frames=12)
    with torch.no_grad():
        recon = codec.decode(codec.encode(clip.frames.unsqueeze(0)))[0]
    mse = float(((recon - clip.frames) / 2).square().mean())
    assert 10 * torch.log10(torch.tensor(1 / mse)) > 30
    events = recall_events(((recon + 1) * 127.5).round().transpose(0, 1), clip.episode, WorldConfig())
    assert events and all(e["recalled"] and e["matches_truth"] for e in events)

"""Videos from the prompt alone: what the free-running evaluation reads, and models that run end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from contextforcing.cli import main
from contextforcing.diffusion.sampling import EulerConfig
from contextforcing.memory.config import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.runtime import step_generator
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.plan import context_teacher_indices
from contextforcing.video_io import read_video
from contextforcing.world.codec import WorldCodec, WorldCodecConfig
from contextforcing.world.dynamics import detect_subjects, video_events
from contextforcing.world.episodes import sample_episode
from contextforcing.world.free_run import (
    FreeRunConfig,
    FreeVideo,
    calibrate_layer_thresholds,
    calibrate_threshold,
    fit_threshold,
    free_runs,
    similarity_quantiles,
    still_videos,
    student_free_generator,
    teacher_free_generator,
)
from contextforcing.world.recall_probe import ProbeConfig, teacher_context, teacher_sampler
from contextforcing.world.render import (
    background_frame,
    composite_sprite,
    render_episode,
    render_episode_uint8,
)
from contextforcing.world.rollout import teacher_continuer
from contextforcing.world.text import WorldTextEncoder
from contextforcing.world.types import world_version

WORLD = world_version(2)


@dataclasses.dataclass
class PixelCodec:
    """Latents are the frames themselves: what a generator returns is what is judged."""

    latent_channels: int = 3
    spatial_factor: int = 1
    temporal_factor: int = 1

    def encode(self, frames):
        return frames

    def decode(self, latents):
        return latents


def _world_generator(promote_events: bool = False):
    """Renders a world episode of its own (the model of a perfect student)."""

    def make(prompt, prefix, num_frames, generator):
        assert prefix.shape[2:] == (0, WORLD.height, WORLD.width)
        episode = sample_episode(num_frames, generator, WORLD)
        promoted = None
        if promote_events:
            events = video_events(detect_subjects(render_episode_uint8(episode, WORLD), WORLD))
            promoted = tuple(events)
        return FreeVideo(render_episode(episode, WORLD)[None], promoted, ((0.5, 0.9),))

    return make


def _still_generator(prompt, prefix, num_frames, generator):
    episode = sample_episode(num_frames, generator, WORLD)
    still = background_frame(episode, WORLD) / 127.5 - 1.0
    return FreeVideo(still[:, None].expand(-1, num_frames, -1, -1)[None], (), ((0.99,),))


def test_the_world_lives_and_a_still_hall_does_not():
    config = FreeRunConfig(seconds=60.0, videos=4, seed=0)
    living = free_runs(_world_generator(promote_events=True), PixelCodec(), WORLD, config)["summary"]
    still = free_runs(_still_generator, PixelCodec(), WORLD, config)["summary"]
    assert living["dynamics"]["presence"] > 0.25 and living["dynamics"]["visits_per_minute"] > 3
    assert living["free_returns"] > 0 and living["free_recall"] > 0.9
    assert living["incoherent_per_minute"] < 0.5 and living["switch_rate"] == 0.0
    assert still["switch_rate"] is None  # no two consecutive frames show a subject
    assert living["promotions"]["precision"] == 1.0 and living["promotions"]["recall"] == 1.0
    assert still["dynamics"]["presence"] == 0 and not still["dynamics_check"]["passes"]
    assert still["free_returns"] == 0 and still["free_recall"] is None
    assert still["promotions"]["per_minute"] == 0 and still["promotions"]["precision"] is None
    assert still["similarity_quantiles"]["q0.5"] == pytest.approx(0.99)


def _standing_generator(config: FreeRunConfig):
    """The episode each prompt of `config` names, its first subject standing where it was first seen for
    70 % of the frames."""
    num_frames = round(config.seconds * WORLD.fps)
    episodes = [sample_episode(num_frames, step_generator(config.seed, i, "free/episode"), WORLD)
                for i in range(config.videos)]  # fmt: skip
    by_prompt = {episode.prompt: episode for episode in episodes}

    def make(prompt, prefix, num_frames, generator):
        episode = by_prompt[prompt]
        frames = render_episode(episode, WORLD)
        x, y = WORLD.width // 2 - WORLD.sprite_size - 4, episode.visits[0].y_in
        box = (x, y, x + WORLD.sprite_size, y + WORLD.sprite_size)
        standing = composite_sprite(background_frame(episode, WORLD), episode.identity, box, WORLD)
        stop = round(0.7 * num_frames)
        frames[:, :stop] = (standing / 127.5 - 1.0)[:, None].expand(-1, stop, -1, -1)
        return FreeVideo(frames[None], None, ())

    return make


def test_a_subject_standing_most_of_the_minute_is_counted_and_the_world_never_stands():
    config = FreeRunConfig(seconds=60.0, videos=3, seed=0)
    standing = free_runs(_standing_generator(config), PixelCodec(), WORLD, config)
    living = free_runs(_world_generator(), PixelCodec(), WORLD, config)
    assert standing["summary"]["still_videos"] == 3 and living["summary"]["still_videos"] == 0
    assert all(video["background"]["still_pixels"] > 0 for video in standing["videos"])
    assert standing["summary"]["dynamics"]["presence"] >= 0.7
    assert still_videos([{"dynamics": {}}]) is None  # measured against its median alone: unknown


def test_every_model_gets_the_same_prompts_and_noise():
    seen = []

    def recorder(prompt, prefix, num_frames, generator):
        seen.append((prompt, torch.randn(3, generator=generator)))
        return _still_generator(prompt, prefix, num_frames, generator)

    config = FreeRunConfig(seconds=3.0, videos=3, seed=5)
    free_runs(recorder, PixelCodec(), WORLD, config)
    free_runs(recorder, PixelCodec(), WORLD, config)
    assert [p for p, _ in seen[:3]] == [p for p, _ in seen[3:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(seen[:3], seen[3:], strict=True))
    assert not torch.equal(seen[0][1], seen[1][1])


def test_a_prefix_is_the_episodes_own_start_and_is_judged_with_the_video():
    seen = []

    def recorder(prompt, prefix, num_frames, generator):
        seen.append((prefix, num_frames))
        return _still_generator(prompt, prefix, num_frames, generator)

    config = FreeRunConfig(seconds=30.0, videos=2, seed=3, prefix_seconds=12.0)
    with_prefix = free_runs(recorder, PixelCodec(), WORLD, config)["summary"]["dynamics"]
    for i, (prefix, num_frames) in enumerate(seen):
        episode = sample_episode(120, step_generator(3, i, "free/episode"), WORLD)
        assert torch.equal(prefix, render_episode(episode, WORLD)[None, :, :48]) and num_frames == 72
    # the still generator draws no subject: what is present comes from the episode's first 12 s
    alone = free_runs(_still_generator, PixelCodec(), WORLD, dataclasses.replace(config, prefix_seconds=0.0))
    assert with_prefix["presence"] > 0 and alone["summary"]["dynamics"]["presence"] == 0
    for bad in (0.5, 30.0):
        with pytest.raises(ValueError, match="whole chunks of 3 frames"):
            free_runs(recorder, PixelCodec(), WORLD, dataclasses.replace(config, prefix_seconds=bad))


def test_after_a_prefix_only_the_returns_the_model_makes_are_counted_apart():
    config = FreeRunConfig(seconds=60.0, videos=3, seed=0, prefix_seconds=24.0)
    episodes = [sample_episode(240, step_generator(0, i, "free/episode"), WORLD) for i in range(3)]

    def continuing(prompt, prefix, num_frames, generator):  # the episode whose start the prefix is, on
        for episode in episodes:
            frames = render_episode(episode, WORLD)[None]
            if torch.equal(frames[:, :, : prefix.shape[2]], prefix):
                return FreeVideo(frames[:, :, prefix.shape[2] :], None, ())
        raise AssertionError("the prefix is no episode's start")

    result = free_runs(continuing, PixelCodec(), WORLD, config)
    after = result["summary"]["after_prefix"]
    made = [r for v in result["videos"] for r in v["free_recall"]["returns"] if r["frame"] >= 96]
    assert after["free_returns"] == len(made) > 0 and after["free_recall"] == 1.0
    still = free_runs(_still_generator, PixelCodec(), WORLD, config)["summary"]["after_prefix"]
    assert still["free_returns"] == 0 and still["free_recall"] is None and still["free_recall_chance"] is None
    alone = free_runs(_still_generator, PixelCodec(), WORLD, dataclasses.replace(config, prefix_seconds=0.0))
    assert "after_prefix" not in alone["summary"]


def test_a_fitted_threshold_promotes_the_share_asked_for():
    similarities = torch.linspace(0.9, 1.0, 101).tolist()
    tau = fit_threshold(similarities, 0.2)
    assert tau == pytest.approx(0.92, abs=2e-4)
    assert sum(s < tau for s in similarities) == pytest.approx(20, abs=1)
    assert similarity_quantiles([]) is None
    with pytest.raises(ValueError, match="share"):
        fit_threshold(similarities, 1.0)


def test_thresholds_fitted_per_layer_promote_the_share_asked_for_in_every_layer():
    """Layer 0's tests lie in [0.99, 1], layer 1's in [0.90, 1]: one pooled tau leaves layer 0 without a
    promotion; a tau per layer has each layer promote on a fifth of its own tests."""

    def two_layers(prompt, prefix, num_frames, generator):
        calm, lively = torch.linspace(0.99, 1.0, 50).tolist(), torch.linspace(0.9, 1.0, 50).tolist()
        still = _still_generator(prompt, prefix, num_frames, generator).latents
        return FreeVideo(still, (), (tuple(calm), tuple(lively)))

    config = FreeRunConfig(seconds=3.0, videos=2, seed=0)
    taus = calibrate_layer_thresholds(two_layers, PixelCodec(), WORLD, config, 0.2)
    assert taus == (pytest.approx(0.992, abs=2e-4), pytest.approx(0.92, abs=2e-4))
    pooled = calibrate_threshold(two_layers, PixelCodec(), WORLD, config, 0.2)
    assert pooled < 0.99  # one tau for both: layer 0 never falls below it
    summary = free_runs(two_layers, PixelCodec(), WORLD, config)["summary"]
    layers = summary["layer_similarity_quantiles"]
    assert (
        len(layers) == 2 and layers[0]["q0"] == pytest.approx(0.99) and layers[1]["q0"] == pytest.approx(0.9)
    )


def test_a_short_history_is_given_whole_to_the_teacher():
    layout = ContextTeacherConfig(num_sink_frames=3, num_slow_frames=12, slow_interval=6, num_recent_frames=6)
    history = torch.arange(30.0).view(1, 1, 30, 1, 1)
    assert teacher_context(layout, history[:, :, :0]) is None
    assert torch.equal(teacher_context(layout, history[:, :, :7]), history[:, :, :7])
    laid_out = teacher_context(layout, history).flatten().tolist()
    assert laid_out == [float(i) for i in context_teacher_indices(layout, 30)]
    assert laid_out[:3] == [0, 1, 2] and laid_out[-6:] == list(range(24, 30))


@pytest.mark.parametrize("role", ["teacher", "student", "grid student"])
def test_models_run_free_from_the_prompt(role):
    torch.manual_seed(0)
    config = dataclasses.replace(model_preset("world"), num_layers=2)
    model = CausalDiT(config).eval()
    text_encoder = WorldTextEncoder(config.text_dim, config.text_len)
    codec = WorldCodec(WorldCodecConfig(latent_channels=8)).eval()
    if role == "teacher":
        probe = ProbeConfig(teacher=EulerConfig(num_steps=2), num_target_frames=6)
        layout = ContextTeacherConfig(num_slow_frames=2)
        generate = teacher_free_generator(
            teacher_continuer(teacher_sampler(model, layout, text_encoder, probe))
        )
    else:
        # tau = 1: every test promotes; a grid memory promotes nothing, so it has no promotions to score
        memory = memory_preset("context", similarity_threshold=1.0)
        if role == "grid student":
            memory = memory_preset("context", promotion="grid", num_slow_frames=1, reencode=True)
        generate = student_free_generator(model, memory, text_encoder)
    run = FreeRunConfig(seconds=6.0, videos=1, seed=1)
    result = free_runs(generate, codec, WORLD, run)
    assert result["frames_per_second"] > 0 and len(result["videos"]) == 1
    assert ("promotions" in result["summary"]) == (role == "student")
    if role == "student":
        # 8 chunks, tested from chunk 2 on: 6 promoted frames in 6 s
        assert result["summary"]["promotions"]["per_minute"] == pytest.approx(60.0)
        quantiles = result["summary"]["similarity_quantiles"]
        assert quantiles is not None and -1.0 <= quantiles["q0"] <= quantiles["q1"] <= 1.0
    again = free_runs(generate, codec, WORLD, run)
    assert again["videos"] == result["videos"]


def test_the_free_run_command_writes_its_results_and_every_video_it_judged(tmp_path):
    run = tmp_path / "teacher"
    assert main(["train", "--preset", "tiny-context-teacher", "--out", str(run)]) == 0
    out, videos = tmp_path / "free.json", tmp_path / "videos"
    argv = ["free-run", str(run), "--seconds", "3", "--videos", "2", "--steps", "2", "--guidance", "0",
            "--shift", "2", "--prefix-seconds", "0.75", "--out", str(out), "--save-videos", str(videos)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["free_run"] == {"videos": 2, "seconds": 3.0, "seed": 0, "prefix_seconds": 0.75,
                                  "num_steps": 2, "shift": 2.0, "guidance_scale": 0.0}  # fmt: skip
    assert sorted(p.name for p in videos.iterdir()) == ["video0.mp4", "video1.mp4"]
    frames, fps = read_video(videos / "video0.mp4")
    assert frames.shape[0] == 12 and fps == pytest.approx(4.0)

"""Generation from a Wan2.1 folder: the `generate --wan` command and `ContextForcingPipeline`, on a tiny
random Wan folder in the diffusers layout (tests/wan_folder.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from contextforcing.cli import main
from contextforcing.memory.config import memory_preset
from contextforcing.pipeline import ContextForcingPipeline
from contextforcing.video_io import read_video, write_video

from wan_folder import SIZE

SECONDS = "2.25"  # 9 latent frames: 3 chunks, 33 pixel frames at 16 fps
PROMPT = "a red fox runs on the beach"


@pytest.fixture(scope="module")
def pipe(tiny_wan) -> ContextForcingPipeline:
    return ContextForcingPipeline.from_pretrained(tiny_wan)


def _request(**overrides):
    return {"seconds": 2.25, "height": SIZE[0], "width": SIZE[1], "seed": 0, **overrides}


@pytest.fixture(scope="module")
def reference(pipe) -> torch.Tensor:
    return pipe(PROMPT, **_request()).frames


def _cli(tiny_wan, out: Path, *extra: str) -> int:
    size = ["--height", str(SIZE[0]), "--width", str(SIZE[1])]
    return main(["generate", "--wan", str(tiny_wan), "--prompt", PROMPT, "--seconds", SECONDS, *size,
                 "--seed", "0", "--out", str(out), *extra])  # fmt: skip


@pytest.fixture(scope="module")
def cli_run(tiny_wan, tmp_path_factory) -> Path:
    """The command's output folder for PROMPT with the folder's own transformer."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert _cli(tiny_wan, out) == 0
    return out


def test_the_command_and_the_pipeline_make_the_same_video(tiny_wan, cli_run, reference, tmp_path):
    assert reference.shape == (33, *SIZE, 3) and reference.float().std() > 5  # a real picture, not a constant
    frames, fps = read_video(cli_run / "video.mp4")
    assert frames.shape == reference.shape and fps == 16
    # The command and the pipeline are two computations of one video: the same frames up to the last bit
    # of a float kernel, which on some CPUs moves a pixel by one level and the encoder's choices with it.
    # The same command twice, below, is held to the same bytes.
    pipeline_frames, _ = read_video(write_video(tmp_path / "pipeline.mp4", reference, fps=16))
    off = (frames.float() - pipeline_frames.float()).abs()
    assert off.mean() < 0.25 and (off > 8).float().mean() < 1e-3
    report = json.loads((cli_run / "report.json").read_text())
    assert report["num_frames"] == 33 and report["fps"] == 16 and report["size"] == list(SIZE)
    assert (
        report["frames_per_second"] > 0
        and report["denoising_frames_per_second"] > report["frames_per_second"]
    )
    assert 0 < report["time_to_first_chunk_seconds"] < report["wall_seconds"]
    assert report["peak_rss_bytes"] > 0 and report["peak_accelerator_bytes"] is None
    assert report["components"]["student"] == str(tiny_wan / "transformer")


def test_the_same_command_twice_writes_the_same_bytes(tiny_wan, cli_run, tmp_path):
    assert _cli(tiny_wan, tmp_path / "again") == 0
    assert (tmp_path / "again" / "video.mp4").read_bytes() == (cli_run / "video.mp4").read_bytes()


def test_a_self_forcing_student_gives_the_folders_video(tiny_wan, reference, tmp_path):
    from contextforcing.model.weights import load_model

    state = load_model(tiny_wan / "transformer").state_dict()
    torch.save({"generator_ema": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "student.pt")
    student = ContextForcingPipeline.from_pretrained(tiny_wan, student=tmp_path / "student.pt")
    assert torch.equal(student(PROMPT, **_request(seconds=1.5)).frames, reference[:21])
    # A student with other weights makes another video (so the comparison above is not vacuous).
    torch.save({"generator": {f"model.{k}": v * 1.5 for k, v in state.items()}}, tmp_path / "other.pt")
    other = ContextForcingPipeline.from_pretrained(tiny_wan, student=tmp_path / "other.pt")
    frames = other(PROMPT, **_request(seconds=1.5)).frames
    assert (frames.float() - reference[:21].float()).abs().mean() > 1


def test_prompts_and_seeds(pipe, reference):
    short = _request(seconds=1.5)  # two chunks
    assert torch.equal(pipe(PROMPT, **short).frames, reference[:21])
    other_prompt = pipe("a blue cat sits in the snow", **short).frames
    other_seed = pipe(PROMPT, **{**short, "seed": 1}).frames
    # Random weights: 7 prompt tokens among 512 (the rest Wan's zero padding) move the video a little,
    # another seed a lot; a prompt that is ignored would move it by exactly nothing.
    assert (other_prompt.float() - reference[:21].float()).abs().mean() > 0.1
    assert (other_seed.float() - reference[:21].float()).abs().mean() > 5


def test_one_streamer_serves_every_video_of_a_size(pipe, reference):
    pipe(PROMPT, **_request(seconds=1.5))
    first = pipe.record.streamer
    again = pipe(PROMPT, **_request())
    assert pipe.record.streamer is first and torch.equal(again.frames, reference)
    pipe(PROMPT, **_request(seconds=1.5, height=SIZE[0] * 2))
    assert pipe.record.streamer is not first  # another latent size
    memory = pipe.memory
    try:
        pipe.memory = memory_preset("window")
        pipe(PROMPT, **_request(seconds=1.5))
        assert pipe.record.streamer is not first and pipe.record.streamer.memory_config == pipe.memory
    finally:
        pipe.memory = memory


def test_prompt_switching_encodes_each_prompt_once(pipe, reference, monkeypatch):
    calls = []
    encode = pipe.text_encoder.encode
    monkeypatch.setattr(pipe.text_encoder, "encode", lambda prompts: calls.append(prompts) or encode(prompts))
    second = "a blue cat sits in the snow"
    switched = pipe([PROMPT, second, PROMPT], prompt_starts=[0, 0.75, 1.5], **_request())
    assert calls == [[PROMPT, second]]
    trace = pipe.record.streamer.memory.trace
    assert [r.prompt_index for r in trace.records] == [0, 1, 2]
    # The first chunk is the single-prompt video's; the switch changes what follows.
    assert torch.equal(switched.frames[:9], reference[:9])
    assert (switched.frames[9:].float() - reference[9:].float()).abs().mean() > 0.05


def test_a_long_prompt_warns_that_it_is_cut(pipe):
    with pytest.warns(UserWarning, match="600 tokens.*first 512"):
        pipe.encode_prompts([" ".join(["fox"] * 599)])


def test_an_image_prefix_is_held_for_a_chunk_and_continued(pipe, reference, tmp_path):
    from PIL import Image

    colour = torch.tensor([220, 40, 90], dtype=torch.uint8)
    image = colour.expand(2 * SIZE[0], 2 * SIZE[1], 3).contiguous()  # twice the size: resized on the way in
    Image.fromarray(image.numpy()).save(tmp_path / "start.png")
    video = pipe(PROMPT, **_request(), prefix=tmp_path / "start.png").frames
    assert video.shape == reference.shape
    # The first chunk is the image, resized to 32 x 48 and held still for 9 frames, as the VAE reproduces it.
    held = (colour.float() / 127.5 - 1).view(3, 1, 1, 1).expand(3, 9, *SIZE)
    expected = pipe.codec.decode(pipe.codec.encode(held[None]))[0].clamp(-1, 1)
    assert (video[:9].float() - ((expected + 1) * 127.5).permute(1, 2, 3, 0)).abs().max() <= 1
    assert [r.chunk for r in pipe.record.streamer.memory.trace.records] == [0, 1, 2]
    assert (video[9:].float() - reference[9:].float()).abs().mean() > 1  # continued from the image


def test_a_video_prefix_is_continued(pipe, reference, tmp_path):
    generator = torch.Generator().manual_seed(5)
    clip = (torch.rand(3, 25, *SIZE, generator=generator) * 2 - 1).clamp(-1, 1)
    write_video(tmp_path / "clip.mp4", clip, fps=16)
    plan = pipe.prepare(PROMPT, **_request(), prefix=tmp_path / "clip.mp4", prefix_seconds=1.5)
    assert plan.prefix.shape[2] == 6 and plan.num_chunks == 1  # 1 + 4 * 5 = 21 pixel frames -> 6 latents
    frames, _ = read_video(tmp_path / "clip.mp4")
    pixels = frames[:21].permute(3, 0, 1, 2).float().div(127.5).sub(1)[None]
    assert torch.allclose(plan.prefix, pipe.codec.encode(pixels), atol=1e-5)
    video = pipe(plan).frames
    assert video.shape == reference.shape
    expected = ((pipe.codec.decode(plan.prefix)[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 3, 0)
    assert (video[:21].float() - expected).abs().max() <= 1
    assert (video[21:].float() - reference[21:].float()).abs().mean() > 1
    write_video(tmp_path / "short.mp4", clip[:, :17], fps=16)
    with pytest.raises(ValueError, match="21 are needed"):
        pipe.prepare(PROMPT, **_request(), prefix=tmp_path / "short.mp4", prefix_seconds=1.5)


def test_save_pretrained_round_trip(pipe, reference, tmp_path):
    from contextforcing.memory.config import memory_preset

    pipe.save_pretrained(tmp_path / "saved")
    again = ContextForcingPipeline.from_pretrained(tmp_path / "saved")
    assert again.memory == pipe.memory and again.sampler == pipe.sampler and again.size == pipe.size
    assert torch.equal(again(PROMPT, **_request()).frames, reference)
    window = ContextForcingPipeline.from_pretrained(tmp_path / "saved", memory=memory_preset("window"))
    assert window.memory.num_fast_frames == 21


def test_the_text_encoder_is_freed_and_reloaded(pipe):
    first = pipe.encode_prompts([PROMPT])[PROMPT]
    pipe.release_text_encoder()
    assert pipe._text_encoder is None
    assert torch.equal(pipe.encode_prompts([PROMPT])[PROMPT], first)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--height", "40"], "off the grid: both must be positive multiples of 16 x 16"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--dtype", "float8"], "unknown dtype 'float8'"),
        (["--codec", "x"], "drop --codec"),
    ],
)
def test_bad_wan_arguments_exit_2(tiny_wan, tmp_path, capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert _cli(tiny_wan, tmp_path / "run", *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("component", ["vae", "text_encoder", "tokenizer", "transformer"])
def test_a_missing_component_is_named(tiny_wan, tmp_path, capsys, component):
    broken = tmp_path / "wan"
    shutil.copytree(tiny_wan, broken, ignore=shutil.ignore_patterns(component))
    assert _cli(broken, tmp_path / "run") == 2
    assert f"has no {component}/ component" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("preset", "message"),
    [("tiny", "reads 32-wide text, but the text encoder"), ("world", "reads 8 and writes 8 latent channels")],
)
def test_a_student_that_does_not_fit_the_folder_names_both_shapes(
    tiny_wan, tmp_path, capsys, preset, message
):
    from contextforcing.inference.generate import random_model
    from contextforcing.model.weights import save_model

    save_model(random_model(preset, 0), tmp_path / "student")
    assert _cli(tiny_wan, tmp_path / "run", "--checkpoint", str(tmp_path / "student")) == 2
    error = capsys.readouterr().err
    assert message in error and ("d_model=16" in error or "z_dim=4" in error)

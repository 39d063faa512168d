"""The `generate` command: files written, report contents, and argument errors before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from contextforcing import cli
from contextforcing.inference.generate import parse_prompt_lines
from contextforcing.memory import MemoryTrace
from contextforcing.video_io import read_video


@pytest.fixture
def main():
    return cli.main


def test_generate_writes_video_and_report(main, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("0|a red ball\n1.5|a blue cube\n")
    out = tmp_path / "run"
    code = main(["generate", "--prompts", str(prompts), "--seconds", "3", "--memory", "context",
                 "--set-memory", "num_sink_frames=1", "--set-memory", "num_slow_frames=2", "--seed", "3", "--model-preset", "tiny", "--gif", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    frames, fps = read_video(out / "video.mp4")
    assert frames.shape[0] == 12 and fps == 4
    report = json.loads((out / "report.json").read_text())
    assert report["num_chunks"] == 4 and len(report["chunk_seconds"]) == 4
    assert report["peak_memory_bytes"] > 0
    trace = MemoryTrace.from_dict(report["trace"])
    assert [r.prompt_index for r in trace.records] == [0, 0, 1, 1]
    assert trace.config.num_sink_frames == 1
    assert (out / "memory.png").stat().st_size > 0
    from PIL import Image

    with Image.open(out / "video.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (2 * frames.shape[2], 2 * frames.shape[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seconds", "-1"], "seconds"),
        (["--memory", "lru"], "unknown memory policy"),
        (["--set-memory", "num_fast_frames=2"], "num_fast_frames"),
        (["--set-memory", "num_slow_frames=x"], "num_slow_frames must be an int"),
        (["--set-memory", "tau=0.9"], "unknown config key 'tau'"),
        (["--set-memory", "tau"], "--set-memory expects KEY=VALUE"),
        (["--checkpoint", "/nonexistent/model"], "no checkpoint"),
    ],
)
def test_bad_arguments_exit_2_before_work(
    main, tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert main(["generate", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_prompt_lines() -> None:
    assert parse_prompt_lines("a\nb\n", 10) == (("a", "b"), (0.0, 5.0))
    assert parse_prompt_lines("0|a\n2.5|b", 10) == (("a", "b"), (0.0, 2.5))
    with pytest.raises(ValueError, match="prefix"):
        parse_prompt_lines("0|a\nb", 10)


def test_generate_without_model_arguments_uses_the_shipped_student(main, tmp_path: Path) -> None:
    from contextforcing.world.shipped import shipped

    out = tmp_path / "run"
    assert main(["generate", "--seconds", "3", "--out", str(out)]) == 0
    components = json.loads((out / "report.json").read_text())["components"]
    assert components["student"] == str(shipped("context-forcing") / "model")
    assert components["codec"] == str(shipped("codec"))
    frames, fps = read_video(out / "video.mp4")
    assert tuple(frames.shape) == (12, 64, 64, 3) and fps == 4


def test_generate_continues_a_prefix_video(main, tmp_path: Path) -> None:
    assert main(["world", "--seconds", "4", "--seed", "0", "--out", str(tmp_path / "world")]) == 0
    truth, _ = read_video(tmp_path / "world" / "video.mp4")
    out = tmp_path / "run"
    argv = [
        "generate",
        "--seconds",
        "3",
        "--prefix",
        str(tmp_path / "world" / "video.mp4"),
        "--prefix-seconds",
        "1.5",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    frames, _ = read_video(out / "video.mp4")
    assert frames.shape[0] == 12
    error = (frames[:6].float() - truth[:6].float()).abs().mean()
    assert error < 8, error  # the prefix as the codec reproduces it (mp4 round trips included)
    trace = json.loads((out / "report.json").read_text())["trace"]
    assert len(trace["chunks"]) == 4  # two prefix chunks and two generated ones


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-preset", "tiny", "--prefix", "README.md"], "needs a codec"),
        (["--prefix", "/nonexistent.mp4"], "no prefix image or video"),
        (["--prefix-seconds", "60", "--prefix", "README.md"], "leaves nothing"),
    ],
)
def test_bad_prefixes_exit_2(main, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["generate", "--seconds", "3", "--out", str(tmp_path / "run"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_prefix_at_another_frame_rate_is_refused(main, tmp_path: Path, capsys) -> None:
    from contextforcing.video_io import write_video

    write_video(tmp_path / "fast.mp4", torch.zeros(3, 16, 64, 64), fps=8)
    prefix = ["--prefix", str(tmp_path / "fast.mp4"), "--prefix-seconds", "1.5"]
    assert main(["generate", "--seconds", "3", *prefix, "--out", str(tmp_path / "run")]) == 2
    assert "8 fps" in capsys.readouterr().err

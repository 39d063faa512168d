"""The `generate` command: files written, report contents, and argument errors before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contextforcing import cli
from contextforcing.inference.generate import parse_prompt_lines
from contextforcing.memory import MemoryTrace
from contextforcing.video_io import read_video
from contextforcing.world.assets import SCENE_CLASSES


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
    assert components["student"] == str(shipped("world2-context-forcing") / "model")
    assert components["codec"] == str(shipped("codec-world2"))
    frames, fps = read_video(out / "video.mp4")
    assert tuple(frames.shape) == (12, 64, 64, 3) and fps == 4


def test_generate_continues_a_prefix_video(main, tmp_path: Path) -> None:
    world = ["world", "--version", "2", "--seconds", "4", "--seed", "0", "--out", str(tmp_path / "world")]
    assert main(world) == 0
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


def test_a_world_runs_model_brings_the_codec_it_was_trained_with(main, tmp_path: Path) -> None:
    """Without --codec, a world run's model/ is paired with the codec its config.json names (here the
    first world's, ""), so that it can continue a prefix; a folder that is not a run's model/ gets none."""
    from contextforcing.commands.generate import _run_codec
    from contextforcing.world.shipped import shipped

    assert main(["world", "--seconds", "2", "--seed", "1", "--out", str(tmp_path / "world")]) == 0
    student = shipped("context-forcing") / "model"
    prefix = ["--prefix", str(tmp_path / "world" / "video.mp4"), "--prefix-seconds", "0.75"]
    out = tmp_path / "run"
    assert (
        main(["generate", "--checkpoint", str(student), "--seconds", "1.5", *prefix, "--out", str(out)]) == 0
    )
    assert json.loads((out / "report.json").read_text())["components"]["codec"] == str(shipped("codec"))
    assert _run_codec(shipped("world2-teacher") / "model") == shipped("codec-world2")
    assert _run_codec(shipped("codec-world2")) is None


def test_a_world_students_run_brings_the_memory_it_was_trained_with(main, tmp_path: Path, capsys) -> None:
    """Without --memory, a world student's run is read with the memory of its config.json (here whole-chunk
    promotion at tau 0.99), --set-memory changes that memory, --memory replaces it; a folder that is not a
    run's model/ brings none."""
    import shutil

    from contextforcing.commands.generate import _run_memory
    from contextforcing.world.shipped import shipped

    run = tmp_path / "student"
    shutil.copytree(shipped("world2-context-forcing"), run)
    config = json.loads((run / "config.json").read_text())
    config["memory"].update(num_promoted_frames=3, similarity_threshold=0.99)
    (run / "config.json").write_text(json.dumps(config))

    def memory(*flags: str) -> dict:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert (
            main(
                [
                    "generate",
                    "--checkpoint",
                    str(run / "model"),
                    "--seconds",
                    "1.5",
                    *flags,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        return json.loads((out / "report.json").read_text())["memory"]

    own = memory()
    assert (own["num_promoted_frames"], own["similarity_threshold"]) == (3, 0.99)
    changed = memory("--set-memory", "num_slow_frames=24")
    assert (changed["num_promoted_frames"], changed["num_slow_frames"]) == (3, 24)
    assert memory("--memory", "context")["num_promoted_frames"] == 1
    assert _run_memory(shipped("codec-world2")) is None
    config["memory"]["slots"] = 3  # a memory that is not one: one line naming the file, exit 2
    (run / "config.json").write_text(json.dumps(config))
    assert main(["generate", "--checkpoint", str(run / "model"), "--out", str(tmp_path / "bad")]) == 2
    assert f"{run / 'config.json'}: memory:" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


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


TINY = ["generate", "--model-preset", "tiny", "--seconds", "3"]


def test_frames_go_into_the_video_as_each_chunk_is_made(main, tmp_path, monkeypatch):
    from contextforcing.inference.streaming import StreamingGenerator
    from contextforcing.video_io import VideoWriter

    made, written = [], []
    chunk, write = StreamingGenerator._chunk, VideoWriter.write
    monkeypatch.setattr(StreamingGenerator, "_chunk", lambda self, *a: made.append(1) or chunk(self, *a))
    monkeypatch.setattr(
        VideoWriter, "write", lambda self, f: written.append((len(made), len(f))) or write(self, f)
    )
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 0
    assert written == [(1, 3), (2, 3), (3, 3), (4, 3)]  # one chunk at a time, before the next is made


def test_a_reused_out_folder_holds_only_the_new_run(main, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("video.mp4", "video.gif", "memory.png", "report.json", ".video.mp4.partial", "notes.txt"):
        (out / name).write_text("from before")
    assert main([*TINY, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["memory.png", "notes.txt", "report.json", "video.mp4"]
    assert read_video(out / "video.mp4")[0].shape[0] == 12
    assert json.loads((out / "report.json").read_text())["num_frames"] == 12


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_unusable_out_fails_before_any_model_is_loaded(main, tmp_path, capsys, monkeypatch, where):
    import contextforcing.commands.generate as command

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(command, "load_model", no_loading)
    monkeypatch.setattr(command, "random_model", no_loading)
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "run"
    assert main(["generate", "--out", str(out)]) == 2
    assert f"--out {out}" in capsys.readouterr().err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_generation_with_one_line_and_nothing_left(
    main, tmp_path, capsys, monkeypatch, sig, code
):
    from contextforcing.video_io import VideoWriter

    write = VideoWriter.write

    def signalled_write(self, frames):
        write(self, frames)
        if self.num_frames >= 6:  # half-way through: a partial video exists
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(VideoWriter, "write", signalled_write)
    # The signal as a user's process receives it: deliverable, Python's own SIGINT handler (an earlier
    # test in the same process, e.g. one that spawned distributed workers, may have blocked it).
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}")  # a stale report must not survive either
    try:
        got = main([*TINY, "--gif", "2", "--out", str(out)])
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    assert got == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("contextforcing generate: ")
    assert list(out.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the command's only


def test_the_world_is_one_more_set_of_pipeline_components(tmp_path):
    from contextforcing.model.weights import load_model
    from contextforcing.pipeline import ContextForcingPipeline
    from contextforcing.world.pipeline import world_pipeline
    from contextforcing.world.shipped import shipped

    student = load_model(shipped("context-forcing") / "model")
    pipe = world_pipeline(student, codec=shipped("codec"), memory="context")
    prompt = SCENE_CLASSES[0].prompt
    video = pipe(prompt, seconds=1.5, seed=2).frames
    assert video.shape == (6, 64, 64, 3) and pipe.fps == 4
    pipe.save_pretrained(tmp_path / "saved")
    again = ContextForcingPipeline.from_pretrained(tmp_path / "saved")
    assert torch.equal(again(prompt, seconds=1.5, seed=2).frames, video)
    with pytest.raises(ValueError, match="unknown world prompt"):
        again("a red fox", seconds=1.5)


def test_compile_mode_needs_compile_and_is_checked_before_any_work(main, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(["generate", "--model-preset", "tiny", "--compile-mode", "reduce-overhead", "--out", str(out)])
        == 2
    )
    assert "--compile-mode needs --compile" in capsys.readouterr().err
    assert not out.exists()


def test_a_world_generation_imports_only_what_it_uses(tmp_path: Path) -> None:
    """`generate` with the shipped student registers only its own parser (no other command's modules) and builds the model on the meta
    device without arithmetic there: no training presets, no torch compiler stack (dynamo, sympy), no
    diffusers, transformers or OpenCV, no pyplot."""
    code = (
        "import sys\n"
        "from contextforcing import cli\n"
        f"assert cli.main(['generate', '--seconds', '3', '--out', {str(tmp_path / 'g')!r}]) == 0\n"
        "heavy = {'torch._dynamo', 'sympy', 'diffusers', 'transformers', 'cv2', 'matplotlib.pyplot',\n"
        "         'contextforcing.presets', 'contextforcing.training.stages', 'contextforcing.world.recall_probe'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "g" / "video.mp4").is_file()

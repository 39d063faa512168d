"""mp4 reading and writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contextforcing.video_io import read_video, to_uint8_frames, write_video


def test_float_and_uint8_round_trip(tmp_path):
    frames = torch.zeros(3, 6, 32, 48)
    frames[0, :, 8:24, 8:24] = 1.0
    path = write_video(tmp_path / "a.mp4", frames, fps=4)
    video, fps = read_video(path)
    assert video.shape == (6, 32, 48, 3) and video.dtype == torch.uint8 and fps == 4.0
    assert (video.float() - to_uint8_frames(frames).float()).abs().mean() < 3
    again, _ = read_video(write_video(tmp_path / "b.mp4", video, fps=16))
    assert again.shape == video.shape


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_video(junk)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read"):
        read_video(empty)
    with pytest.raises(ValueError, match="zero frames"):
        write_video(tmp_path / "c.mp4", torch.zeros(0, 8, 8, 3, dtype=torch.uint8), fps=4)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "d.mp4", torch.zeros(2, 7, 8, 3, dtype=torch.uint8), fps=4)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "e.mp4", torch.zeros(2, 8, 8, 3, dtype=torch.uint8), fps=0)
    with pytest.raises(ValueError, match="uint8 or floating"):
        to_uint8_frames(torch.zeros(2, 8, 8, 3, dtype=torch.int32))


def test_chunks_written_one_by_one_make_the_same_file_as_one_write(tmp_path):
    from contextforcing.video_io import VideoWriter, partial_path

    frames = torch.randint(
        0, 256, (10, 32, 48, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )
    whole = write_video(tmp_path / "whole.mp4", frames, fps=16)
    writer = VideoWriter(tmp_path / "chunks.mp4", fps=16)
    for start in range(0, 10, 3):
        writer.write(frames[start : start + 3])
    assert not (tmp_path / "chunks.mp4").exists()
    assert writer.close().read_bytes() == whole.read_bytes()
    writer = VideoWriter(tmp_path / "bad.mp4", fps=16)
    writer.write(frames)
    with pytest.raises(ValueError, match="do not fit"):
        writer.write(frames[:, :16])
    writer.abort()
    assert not partial_path(tmp_path / "bad.mp4").exists() and not (tmp_path / "bad.mp4").exists()


def test_an_aborted_video_leaves_nothing(tmp_path):
    from contextforcing.video_io import VideoWriter

    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "a.mp4", fps=4) as writer:
        writer.write(torch.zeros(3, 2, 16, 16))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_the_same_busy_frames_give_the_same_bytes_in_two_processes(tmp_path):
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, torch\n"
        "from contextforcing.video_io import write_video\n"
        "g = torch.Generator().manual_seed(0)\n"
        "frames = torch.randint(0, 256, (24, 96, 128, 3), generator=g, dtype=torch.uint8)\n"
        "write_video(sys.argv[1], frames, fps=16)\n"
    )
    exec(script.replace("sys.argv[1]", repr(str(tmp_path / "here.mp4"))))  # in this process
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "2"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "there.mp4")], check=True, env=env, timeout=120
    )
    here, there = ((tmp_path / n).read_bytes() for n in ("here.mp4", "there.mp4"))
    assert len(here) > 100_000 and hashlib.sha256(here).digest() == hashlib.sha256(there).digest()


def test_gif_written_frame_by_frame(tmp_path):
    from PIL import Image

    from contextforcing.video_io import GifWriter

    frames = torch.zeros(5, 8, 12, 3, dtype=torch.uint8)
    for i in range(5):
        frames[i, :, : 2 * i + 2] = torch.tensor([40 * i, 200, 255 - 40 * i], dtype=torch.uint8)
    writer = GifWriter(tmp_path / "a.gif", fps=4, scale=2)
    writer.write(frames[:2])
    writer.write(frames[2:])
    writer.close()
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (24, 16) and gif.info["loop"] == 0
        for i in range(5):
            gif.seek(i)
            assert gif.info["duration"] == 250
            pixels = torch.from_numpy(np.array(gif.convert("RGB")))
            assert torch.equal(pixels[::2, ::2], frames[i])

"""mp4 reading and writing."""

from __future__ import annotations

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

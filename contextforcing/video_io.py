"""Reading and writing mp4 videos with PyAV.

Shape legend:
    T  frames        H, W  frame height / width in pixels

Frames are written either as uint8 [T, H, W, 3] (RGB) or as float [3, T, H, W] in [-1, 1] (the layout
of the world and of decoded latents); they are always read back as uint8 [T, H, W, 3].
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

__all__ = ["read_video", "to_uint8_frames", "write_gif", "write_video"]

logger = logging.getLogger(__name__)

_ENCODERS = ("libx264", "mpeg4")


def to_uint8_frames(frames: Tensor | np.ndarray) -> Tensor:
    """Frames as uint8 [T, H, W, 3].

    Args:
        frames: uint8 [T, H, W, 3], or float [3, T, H, W] in [-1, 1] (values outside are clipped).

    Raises:
        ValueError: for any other layout or dtype, or for zero frames.
    """
    frames = torch.as_tensor(frames)
    if frames.dtype == torch.uint8:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        out = frames
    elif frames.is_floating_point():
        if frames.ndim != 4 or frames.shape[0] != 3:
            raise ValueError(f"float frames must be [3, T, H, W] in [-1, 1], got {tuple(frames.shape)}")
        scaled = ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
        out = scaled.to(torch.uint8).permute(1, 2, 3, 0)
    else:
        raise ValueError(f"frames must be uint8 or floating point, got {frames.dtype}")
    if out.shape[0] == 0:
        raise ValueError("cannot write a video with zero frames")
    return out.contiguous()


def _encoder() -> str:
    for name in _ENCODERS:
        if name in av.codecs_available:
            return name
    raise RuntimeError(f"none of the encoders {_ENCODERS} is available in this PyAV build")


def write_video(path: str | Path, frames: Tensor | np.ndarray, fps: float, *, crf: int = 12) -> Path:
    """Write frames to an mp4 file (H.264 if available, else MPEG-4 part 2).

    Args:
        path: output file; parent folders are created.
        frames: uint8 [T, H, W, 3] or float [3, T, H, W] in [-1, 1]. H and W must be even (yuv420p).
        fps: frame rate, > 0.
        crf: H.264 constant rate factor (lower is closer to lossless).

    Returns:
        The path written.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    data = to_uint8_frames(frames).numpy()
    _, height, width, _ = data.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = _encoder()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf)}
        else:
            stream.bit_rate = max(200_000, 8 * width * height * round(fps))
        for image in data:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    logger.debug("wrote %s: %d frames %dx%d at %g fps with %s", path, len(data), width, height, fps, codec)
    return path


def read_video(path: str | Path) -> tuple[Tensor, float]:
    """Read every frame of a video.

    Returns:
        (frames uint8 [T, H, W, 3] RGB, frames per second).

    Raises:
        ValueError: if the file is missing, not a readable video, or has no frames.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read video {path}: {error}") from error
    if not images:
        raise ValueError(f"video has no frames: {path}")
    if rate is None or float(rate) <= 0:
        raise ValueError(f"video has no frame rate: {path}")
    return torch.from_numpy(np.stack(images)), float(rate)


def write_gif(path: str | Path, frames: Tensor | np.ndarray, fps: float, *, scale: int = 1) -> Path:
    """Write frames (as `to_uint8_frames` accepts) as a looping GIF, each pixel a `scale` x `scale` block."""
    from PIL import Image

    pixels = to_uint8_frames(frames)
    if scale > 1:
        pixels = pixels.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    images = [Image.fromarray(frame.numpy()) for frame in pixels]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path

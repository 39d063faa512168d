"""Reading and writing mp4 videos with PyAV.

Shape legend:
    T  frames        H, W  frame height / width in pixels

Frames are written either as uint8 [T, H, W, 3] (RGB) or as float [3, T, H, W] in [-1, 1] (the layout
of the world and of decoded latents); they are always read back as uint8 [T, H, W, 3].

Writers take frames a chunk at a time (`VideoWriter`, `GifWriter`), so memory does not grow with the
length of the video, and write under a temporary name renamed when the file is complete.
"""

from __future__ import annotations

import contextlib
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_SUFFIXES",
    "GifWriter",
    "VideoWriter",
    "partial_path",
    "read_image",
    "read_video",
    "to_uint8_frames",
    "write_gif",
    "write_video",
]

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


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under until it is complete: `.NAME.partial` beside it."""
    return path.with_name(f".{path.name}.partial")


class VideoWriter:
    """Writes an mp4 chunk by chunk, so a long video never sits in memory.

    The file is written under `partial_path(path)` and renamed to `path` by `close()`; `abort()` (or
    leaving a `with` block on an exception) deletes it, so a video at `path` is always complete.
    Encoding is deterministic: one encoder thread and fixed options, so the same frames give the
    same bytes in any process (libx264's frame threading does not).

    Args:
        path: output file; parent folders are created.
        fps: frame rate, > 0.
        crf: H.264 constant rate factor (lower is closer to lossless).
    """

    def __init__(self, path: str | Path, fps: float, *, crf: int = 12) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps, self.crf = fps, crf
        self.num_frames = 0
        self._container: Any = None
        self._stream: Any = None

    def _open(self, height: int, width: int) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"frame height and width must be even for yuv420p, got {height}x{width}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = _encoder()
        self._container = av.open(str(partial_path(self.path)), mode="w", format="mp4")
        stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "threads": "1"}
        else:
            stream.bit_rate = max(200_000, 8 * width * height * round(self.fps))
        self._stream = stream

    def write(self, frames: Tensor | np.ndarray) -> None:
        """Append frames: uint8 [T, H, W, 3] or float [3, T, H, W] in [-1, 1], the size of the first."""
        data = to_uint8_frames(frames).numpy()
        _, height, width, _ = data.shape
        if self._container is None:
            self._open(height, width)
        elif (height, width) != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frames of {height}x{width} do not fit a {self._stream.height}x{self._stream.width} video"
            )
        for image in data:
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        self.num_frames += len(data)

    def close(self) -> Path:
        """Flush the encoder, close the file and give it its name; returns the path."""
        if self._container is None:
            raise ValueError("cannot write a video with zero frames")
        self._container.mux(self._stream.encode(None))
        self._container.close()
        self._container = None
        partial_path(self.path).replace(self.path)
        logger.debug("wrote %s: %d frames at %g fps", self.path, self.num_frames, self.fps)
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        partial_path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: Tensor | np.ndarray, fps: float, *, crf: int = 12) -> Path:
    """Write frames to an mp4 file (H.264 if available, else MPEG-4 part 2); see `VideoWriter`.

    Args:
        path: output file; parent folders are created.
        frames: uint8 [T, H, W, 3] or float [3, T, H, W] in [-1, 1]. H and W must be even (yuv420p).
        fps: frame rate, > 0.
        crf: H.264 constant rate factor (lower is closer to lossless).

    Returns:
        The path written.
    """
    data = to_uint8_frames(frames)
    with VideoWriter(path, fps, crf=crf) as writer:
        writer.write(data)
    return Path(path)


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


class GifWriter:
    """Writes a looping GIF frame by frame (each frame with its own 256-colour palette), so no frame is
    kept once written; under `partial_path(path)` until `close()`, like `VideoWriter`.

    Args:
        path: output file.
        fps: frame rate, > 0 (GIF delays are whole hundredths of a second).
        scale: each pixel becomes a `scale` x `scale` block.
    """

    def __init__(self, path: str | Path, fps: float, *, scale: int = 1) -> None:
        if fps <= 0 or scale < 1:
            raise ValueError(f"a GIF needs fps > 0 and scale >= 1, got {fps} and {scale}")
        self.path = Path(path)
        self.scale = scale
        self.duration = round(1000 / fps)
        self.num_frames = 0
        self._file: Any = None

    def write(self, frames: Tensor | np.ndarray) -> None:
        """Append frames (as `to_uint8_frames` accepts)."""
        from PIL import GifImagePlugin, Image

        pixels = to_uint8_frames(frames)
        if self.scale > 1:
            pixels = pixels.repeat_interleave(self.scale, dim=1).repeat_interleave(self.scale, dim=2)
        for frame in pixels:
            image = Image.fromarray(frame.numpy()).quantize(colors=256)
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(partial_path(self.path), "wb")  # noqa: SIM115 (closed by close/abort)
                header, _ = GifImagePlugin.getheader(
                    image.copy(), info={"loop": 0, "duration": self.duration}
                )
                self._file.write(b"".join(header))
            data = GifImagePlugin.getdata(image, duration=self.duration, include_color_table=True)
            self._file.write(b"".join(data))
            self.num_frames += 1

    def close(self) -> Path:
        """Write the trailer and give the file its name; returns the path."""
        if self._file is None:
            raise ValueError("cannot write a GIF with zero frames")
        self._file.write(b";")
        self._file.close()
        self._file = None
        partial_path(self.path).replace(self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        partial_path(self.path).unlink(missing_ok=True)


def write_gif(path: str | Path, frames: Tensor | np.ndarray, fps: float, *, scale: int = 1) -> Path:
    """Write frames (as `to_uint8_frames` accepts) as a looping GIF, each pixel a `scale` x `scale` block."""
    writer = GifWriter(path, fps, scale=scale)
    try:
        writer.write(frames)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Files read as a single image rather than as a video."""


def read_image(path: str | Path) -> Tensor:
    """One RGB image as uint8 [1, H, W, 3] (a one-frame video); raises ValueError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return torch.from_numpy(pixels.copy())[None]

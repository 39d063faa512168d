"""Device, precision, seeding and process-group set-up: the only module that names CUDA.

Randomness is derived, not carried: `step_generator(seed, step, stream)` gives an independent,
reproducible generator for one purpose ("stream") at one training step. A run that resumes at step k
therefore draws exactly what an uninterrupted run draws at step k, with no RNG state to restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
from collections.abc import Iterator
from typing import Literal

import torch

__all__ = [
    "MAX_SEED",
    "Precision",
    "autocast",
    "check_device_name",
    "check_seed",
    "peak_memory",
    "resolve_device",
    "step_generator",
]

Precision = Literal["fp32", "bf16"]

MAX_SEED = 2**32 - 1
"""Largest seed: seeds and the seeds derived from them (seed * k + i) stay inside torch's 64 bits."""


def check_seed(seed: object, name: str = "seed") -> int:
    """`seed` if it is an int in [0, MAX_SEED]; otherwise a ValueError naming `name`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}] (2**32 - 1), got {seed!r}")
    return seed


def check_device_name(name: str, key: str = "device") -> str:
    """`name` if it is auto, cpu, cuda or cuda:N; otherwise a ValueError naming `key`. Whether the device
    is present is checked by `resolve_device`."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"{key} must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the local CUDA device when there is one, else the CPU; a device that is not present
    raises a ValueError naming it."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} requested but CUDA is not available on this machine; use cpu or auto"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA devices"
        )
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """bf16 autocast on the device's backend, or nothing for fp32. Norms, RoPE and modulation stay fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def step_generator(seed: int, step: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, step, stream) alone, so any step's draws can be replayed."""
    digest = hashlib.sha256(f"{seed}/{step}/{stream}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """Peak resident memory of the process, peak accelerator memory (None on the CPU), and
    `peak_memory_bytes`: the accelerator's where there is one, else the resident peak."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    accelerator = None if device.type == "cpu" else int(torch.accelerator.max_memory_allocated(device))
    return {
        "peak_memory_bytes": rss if accelerator is None else accelerator,
        "peak_rss_bytes": rss,
        "peak_accelerator_bytes": accelerator,
    }

"""Classifier-free guidance."""

from __future__ import annotations

from torch import Tensor

__all__ = ["cfg"]


def cfg(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """cond + scale * (cond - uncond), the form of Self-Forcing and Context Forcing.

    It equals the textbook uncond + w * (cond - uncond) with w = scale + 1; scale 0 is no guidance.
    """
    return cond + scale * (cond - uncond)

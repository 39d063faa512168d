"""Frechet distance between feature distributions, per time window, against reference frames.

With a few dozen frames per window and features of hundreds of dimensions the covariances would be
singular, so the covariance terms are computed on the top K principal components of the reference
features, while the mean term uses all D dimensions (a change the reference never varies along, such as
blur, still moves the mean). The value is a Frechet distance on a named backbone; it is not FID.

Shape legend:
    N, M  samples        D  feature width        K  principal components
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from contextforcing.eval.windows import windows

__all__ = ["frame_quality", "frechet_distance", "pca_basis", "windowed_frechet"]


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(
    a: Tensor, b: Tensor, mean_a: Tensor | None = None, mean_b: Tensor | None = None
) -> float:
    """Frechet distance between Gaussians fitted to a [N, K] and b [M, K] (N, M >= 2).

    Args:
        a, b: samples.
        mean_a, mean_b: if given, the means [D] used for the mean term instead of those of a and b.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least 2 samples on each side")
    x, y = a.double().numpy(), b.double().numpy()
    mu_x = x.mean(0) if mean_a is None else mean_a.double().numpy()
    mu_y = y.mean(0) if mean_b is None else mean_b.double().numpy()
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    root_x = _sqrtm_psd(cov_x)
    cross = _sqrtm_psd(root_x @ cov_y @ root_x)
    value = ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y) - 2 * np.trace(cross)
    return float(max(value, 0.0))


def pca_basis(reference: Tensor, num_components: int) -> tuple[Tensor, Tensor]:
    """(mean [D], basis [D, K]) of the top principal components of reference [N, D]."""
    mean = reference.mean(0)
    centred = (reference - mean).double()
    num_components = max(1, min(num_components, len(reference) - 1, reference.shape[1]))
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return mean, vh[:num_components].T.to(reference.dtype)


def windowed_frechet(
    features: Tensor, reference: Tensor, fps: float, window_seconds: float = 10.0, num_components: int = 16
) -> dict[str, float]:
    """Frechet distance of each window of `features` [T, D] to all of `reference` [M, D].

    Returns:
        {"0-10s": value, "10-20s": value, ...}; windows with fewer than 2 frames are left out.
    """
    mean, basis = pca_basis(reference, num_components)
    ref = (reference - mean) @ basis
    gen = (features - mean) @ basis
    curve = {}
    for label, span in windows(len(features), fps, window_seconds):
        if span.stop - span.start >= 2:
            curve[label] = frechet_distance(gen[span], ref, features[span].mean(0), reference.mean(0))
    return curve


def frame_quality(
    features: Tensor, reference: Tensor, fps: float, window_seconds: float = 10.0
) -> dict[str, dict[str, float]]:
    """Windowed Frechet distance of features [T, D] to reference features [M, D], with the reference floor."""
    return {
        "frechet": windowed_frechet(features, reference, fps, window_seconds),
        "reference_floor": windowed_frechet(reference, reference, fps, window_seconds),
    }

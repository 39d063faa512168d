"""Helpers shared by the tests."""

import torch

FLOOR = 0.1
"""Smallest max |output| a reference may have: Wan's init zeroes the head, and zeros equal zeros."""


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Give every parameter random values (Wan's init zeroes the head, which would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


def assert_far_from_zero(reference: torch.Tensor, floor: float = FLOOR) -> None:
    """Fail a comparison whose reference is near zero: it would pass whatever the code under test did."""
    scale = reference.abs().max().item()
    assert scale > floor, (
        f"reference output is near zero (max |x| = {scale:.3g} <= {floor}); the test cannot bite"
    )


def assert_close(actual: torch.Tensor, reference: torch.Tensor, *, atol: float, floor: float = FLOOR) -> None:
    """max |actual - reference| <= atol, against a reference far from zero."""
    assert_far_from_zero(reference, floor)
    diff = (actual - reference).abs().max().item()
    assert diff <= atol, f"max |difference| {diff:.3g} exceeds {atol:g}"

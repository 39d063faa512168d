"""Losses as pure functions of tensors: flow matching, the DMD generator loss and the critic loss.

No model is called here; which network predicts what, with which memory and guidance, is decided in
`training/steps.py`.

DMD (Yin et al. 2024, eq. 7-8), as used by Self-Forcing and Context Forcing: for a generated x and
x0 predictions of the teacher ("real") and critic ("fake") at a noised copy of x,

    grad = (x0_fake - x0_real) / mean_{C,F,H,W} |x - x0_real|        (per sample)

and the generator minimises the surrogate 0.5 * ||x - sg(x - grad)||^2 / numel, whose gradient with
respect to x is grad / numel.

Shape legend: x, predictions and targets are [B, C, F, H, W]; a frame mask is [B, F] or [F].
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["critic_loss", "dmd_generator_loss", "dmd_gradient", "flow_matching_loss"]


def flow_matching_loss(v_pred: Tensor, v_target: Tensor, *, weight: Tensor | None = None) -> Tensor:
    """Mean squared velocity error, optionally weighted per sample [B]."""
    error = (v_pred.float() - v_target.float()) ** 2
    if weight is not None:
        error = error * weight.float().view(-1, *([1] * (error.ndim - 1)))
    return error.mean()


def dmd_gradient(x: Tensor, x0_real: Tensor, x0_fake: Tensor) -> Tensor:
    """The DMD update direction (fake - real) / mean|x - real|, per sample, NaN-free and detached."""
    with torch.no_grad():
        dims = tuple(range(1, x.ndim))
        normaliser = (x.float() - x0_real.float()).abs().mean(dim=dims, keepdim=True)
        grad = (x0_fake.float() - x0_real.float()) / normaliser
        return torch.nan_to_num(grad)


def dmd_generator_loss(x: Tensor, grad: Tensor) -> Tensor:
    """0.5 * mean((x - sg(x - grad))^2) in float64: d loss / d x = grad / numel."""
    target = (x.double() - grad.double()).detach()
    return 0.5 * ((x.double() - target) ** 2).mean()


def critic_loss(v_fake: Tensor, noise: Tensor, x: Tensor, *, weight: Tensor | None = None) -> Tensor:
    """The critic learns the flow of the generator's samples: MSE to (noise - x), optionally weighted
    per sample [B]."""
    return flow_matching_loss(v_fake, noise - x.detach(), weight=weight)

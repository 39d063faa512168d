"""Pure losses: the DMD surrogate's gradient is the DMD gradient; masks and weights behave."""

import torch

from contextforcing.diffusion.guidance import cfg
from contextforcing.diffusion.losses import critic_loss, dmd_generator_loss, dmd_gradient, flow_matching_loss


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 4, 2, 2, generator=g) for _ in range(3)]


def test_surrogate_gradient_equals_dmd_gradient():
    x, real, fake = _tensors()
    x.requires_grad_(True)
    grad = dmd_gradient(x, real, fake)
    dmd_generator_loss(x, grad).backward()
    assert torch.allclose(x.grad.double(), grad.double() / x.numel(), atol=1e-12)
    # The normaliser is per sample: scaling one sample's real/fake gap scales only its gradient.
    per_sample = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    assert torch.allclose(grad, (fake - real) / per_sample)


def test_dmd_gradient_vanishes_when_critic_equals_teacher_and_points_to_teacher():
    x, real, _ = _tensors()
    assert dmd_gradient(x, real, real).abs().max() == 0
    fake = x.clone()  # the critic thinks the sample is already where it is; the teacher disagrees
    step = x - 0.1 * dmd_gradient(x, real, fake)
    assert (step - real).norm() < (x - real).norm()


def test_dmd_gradient_is_finite_when_the_sample_equals_the_teacher():
    x, _, fake = _tensors()
    assert torch.isfinite(dmd_gradient(x, x.clone(), fake)).all()


def test_flow_matching_loss_weights_samples():
    pred, target, _ = _tensors()
    weighted = flow_matching_loss(pred, target, weight=torch.tensor([2.0, 0.0]))
    assert torch.allclose(weighted, ((pred[:1] - target[:1]) ** 2).mean())


def test_critic_loss_target_is_the_generator_flow():
    noise, x, _ = _tensors()
    assert critic_loss(noise - x, noise, x) == 0
    assert critic_loss(noise, noise, x) > 0


def test_cfg_form():
    cond, uncond, _ = _tensors()
    assert torch.equal(cfg(cond, uncond, 0.0), cond)
    assert torch.allclose(cfg(cond, uncond, 3.0), uncond + 4.0 * (cond - uncond), atol=1e-6)

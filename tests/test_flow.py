"""Float64 identities of the flow-matching process and its samplers."""

import pytest
import torch

from contextforcing.diffusion.flow import (
    add_noise,
    noise_from_velocity,
    sample_training_timesteps,
    shift_sigma,
    training_weight,
    velocity,
    velocity_from_x0,
    warped_timesteps,
    x0_from_velocity,
)
from contextforcing.diffusion.sampling import euler_sample, euler_timesteps, few_step_sample

EXACT = 1e-12


def _data(frames=4):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, frames, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 2, frames, 4, 4, generator=g, dtype=torch.float64)
    return x0, noise


@pytest.mark.parametrize("per_frame", [False, True])
def test_conversions_invert_each_other(per_frame):
    x0, noise = _data()
    t = torch.tensor([1.0, 400.0, 999.0], dtype=torch.float64)
    if per_frame:
        t = torch.tensor([[1.0, 200, 500, 999], [10, 10, 10, 10], [300, 600, 900, 950]], dtype=torch.float64)
    x_t = add_noise(x0, noise, t)
    v = velocity(x0, noise)
    assert (x0_from_velocity(x_t, v, t) - x0).abs().max() < EXACT
    assert (noise_from_velocity(x_t, v, t) - noise).abs().max() < EXACT
    assert (velocity_from_x0(x_t, x0, t) - v).abs().max() < 1e-9


def test_endpoints_of_the_noise_process():
    x0, noise = _data()
    assert torch.equal(add_noise(x0, noise, torch.zeros(3, dtype=torch.float64)), x0)
    assert torch.equal(add_noise(x0, noise, torch.full((3,), 1000.0, dtype=torch.float64)), noise)


def test_shift():
    sigma = torch.linspace(0, 1, 101, dtype=torch.float64)
    shifted = shift_sigma(sigma, 5.0)
    assert torch.equal(shift_sigma(sigma, 1.0), sigma)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > sigma[1:-1]).all() and (shifted.diff() > 0).all()
    # The inverse shift 1/s undoes the shift s.
    assert (shift_sigma(shifted, 1 / 5.0) - sigma).abs().max() < EXACT
    with pytest.raises(ValueError):
        shift_sigma(sigma, 0.0)


def test_warped_four_step_list():
    warped = warped_timesteps([1000, 750, 500, 250], shift=5.0)
    expected = torch.tensor([1000.0, 937.5, 2500 / 3, 625.0], dtype=torch.float64)
    assert (warped - expected).abs().max() < 1e-9
    with pytest.raises(ValueError, match="decreasing"):
        warped_timesteps([250, 500])
    with pytest.raises(ValueError, match="lie in"):
        warped_timesteps([1000, 0])


def test_training_timesteps_are_seeded_shifted_and_clamped():
    a = sample_training_timesteps((4000,), torch.Generator().manual_seed(1), shift=5.0, min_t=20, max_t=980)
    b = sample_training_timesteps((4000,), torch.Generator().manual_seed(1), shift=5.0, min_t=20, max_t=980)
    assert torch.equal(a, b)
    assert a.min() >= 20 and a.max() <= 980
    # With shift 5, P(t > 500) = P(u > 1/6) = 5/6.
    assert abs((a > 500).double().mean().item() - 5 / 6) < 0.03
    with pytest.raises(ValueError):
        sample_training_timesteps((2,), torch.Generator(), min_t=900, max_t=100)


def test_training_weight_peaks_at_500_with_unit_mean():
    grid = torch.linspace(0, 1000, 1001, dtype=torch.float64)
    weight = training_weight(grid)
    assert abs(weight.mean().item() - 1) < 1e-9 and weight.argmax() == 500 and weight.min() == 0


def test_samplers_are_exact_for_a_perfect_predictor():
    """With the true velocity of a single data point, both samplers return that point."""
    x0, noise = _data()

    def predict(x_t, t):
        return velocity_from_x0(x_t, x0, t)

    result = few_step_sample(predict, noise, warped_timesteps([1000, 750, 500, 250]), torch.Generator())
    assert (result - x0).abs().max() < 1e-9
    # The exact flow of a point mass is a straight line: Euler integrates it exactly.
    result = euler_sample(predict, noise, [*euler_timesteps(7)[:-1].tolist(), 1e-9])
    assert (result - x0).abs().max() < 1e-6


def test_few_step_exit_and_fresh_noise_are_seeded():
    _, noise = _data()
    calls = []

    def predict(x_t, t):
        calls.append(float(t[0]))
        return torch.zeros_like(x_t)

    steps = warped_timesteps([1000, 750, 500, 250])
    a = few_step_sample(predict, noise, steps, torch.Generator().manual_seed(3), num_steps=2)
    b = few_step_sample(predict, noise, steps, torch.Generator().manual_seed(3), num_steps=2)
    assert torch.equal(a, b) and calls == [1000.0, 937.5] * 2
    with pytest.raises(ValueError):
        few_step_sample(predict, noise, steps, torch.Generator(), num_steps=5)

"""ERFT error banks: binning, capacity, nearest-L2 replacement, sampling and a state round trip."""

import pytest
import torch

from contextforcing.diffusion.flow import shift_sigma
from contextforcing.training.error_bank import ErrorBank


def test_bins_are_the_shifted_fifty_step_schedule():
    bank = ErrorBank(num_bins=50, capacity=500)
    assert bank.num_bins == 50 and bank.bin_timesteps[0] == 1000
    expected = shift_sigma(torch.tensor(1 - 49 / 50, dtype=torch.float64), 5.0) * 1000
    assert abs(bank.bin_timesteps[-1].item() - expected.item()) < 1e-3
    assert bank.bin_of(torch.tensor([1000.0, 999.0, 0.0])).tolist() == [0, 0, 49]


def test_capacity_and_nearest_l2_replacement():
    bank = ErrorBank(num_bins=4, capacity=2)
    t = torch.full((1,), 1000.0)
    bank.add(torch.zeros(1, 3), t)
    bank.add(torch.full((1, 3), 10.0), t)
    assert len(bank.state_dict()["bin.0"]) == 2
    bank.add(torch.full((1, 3), 9.0), t)  # replaces the 10s, its nearest neighbour, not the zeros
    assert len(bank.state_dict()["bin.0"]) == 2 and len(bank) == 2
    stored = sorted(float(e[0]) for e in bank.state_dict()["bin.0"])
    assert stored == [0.0, 9.0]
    with pytest.raises(ValueError, match="shape"):
        bank.add(torch.zeros(1, 4), t)


def test_sampling_is_seeded_and_respects_bins():
    bank = ErrorBank(num_bins=4, capacity=8)
    bank.add(torch.arange(6.0)[:, None], torch.full((6,), 1000.0))
    assert bank.sample(torch.tensor([0.0]), torch.Generator()) is None  # empty bin
    a = bank.sample(torch.full((5,), 990.0), torch.Generator().manual_seed(1))
    b = bank.sample(torch.full((5,), 990.0), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, 1)
    assert bank.sample_any(3, torch.Generator()).shape == (3, 1)
    assert ErrorBank(num_bins=2, capacity=1).sample_any(1, torch.Generator()) is None


def test_state_round_trip():
    bank = ErrorBank(num_bins=5, capacity=3)
    bank.add(torch.randn(7, 2, 2), torch.tensor([1000.0, 900, 800, 500, 500, 100, 0]))
    copy = ErrorBank(num_bins=5, capacity=3)
    copy.load_state_dict(bank.state_dict())
    assert len(copy) == len(bank)
    for key, value in bank.state_dict().items():
        assert torch.equal(copy.state_dict()[key], value)
    with pytest.raises(ValueError):
        ErrorBank(num_bins=5, capacity=4).load_state_dict(bank.state_dict())

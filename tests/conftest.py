import pytest
import torch

from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT

from helpers import randomize


@pytest.fixture
def tiny_config():
    return model_preset("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return randomize(CausalDiT(tiny_config)).eval()

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


@pytest.fixture(scope="session")
def random_tiny_model():
    """The tiny DiT with every parameter random, shared by a session: for tests that do not train it.

    Equivalence tests need outputs far from zero, which Wan's initialisation (a zero head) does not give.
    """
    torch.manual_seed(0)
    return randomize(CausalDiT(model_preset("tiny"))).eval()


@pytest.fixture(scope="session")
def wan_folder(tmp_path_factory):
    """A tiny random Wan2.1 diffusers folder (see wan_folder.py), shared by a session."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wan_folder import make_wan_folder

    return make_wan_folder(tmp_path_factory.mktemp("wan") / "Wan2.1-tiny")

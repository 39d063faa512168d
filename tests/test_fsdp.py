"""FSDP2 under torchrun: two CPU processes on gloo train to the weights of one process."""

import os
import subprocess
import sys

import pytest
import torch

from contextforcing.model.weights import load_model
from contextforcing.world.codec import WorldCodec, WorldCodecConfig, save_world_codec

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is unavailable"
)


def _train(args, cwd, nproc=None):
    command = [sys.executable, "-m", "contextforcing", "train", *args]
    if nproc:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "contextforcing", "train", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("stage", ["teacher", "dmd"])
def test_two_rank_fsdp_matches_one_process(stage, tmp_path):
    torch.manual_seed(0)
    codec = save_world_codec(WorldCodec(WorldCodecConfig(latent_channels=8)), tmp_path / "codec")
    args = [
        "--preset",
        f"tiny-{stage}",
        "--steps",
        "3",
        "--set",
        f"data.codec={codec}",
        "--set",
        "train.batch_size=4",
    ]
    _train([*args, "--out", str(tmp_path / "one")], tmp_path)
    _train([*args, "--out", str(tmp_path / "two")], tmp_path, nproc=2)
    one = load_model(tmp_path / "one" / "model").state_dict()
    two = load_model(tmp_path / "two" / "model").state_dict()
    difference = max((one[k] - two[k]).abs().max().item() for k in one)
    assert difference < 1e-5
    changed = load_model(tmp_path / "one" / "model").state_dict()
    assert any(changed[k].abs().max() > 0 for k in changed)

"""FSDP2 under torchrun: two CPU processes on gloo train to the weights of one process."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contextforcing.model.weights import load_model
from contextforcing.world.codec import WorldCodec, WorldCodecConfig, save_world_codec

ROOT = str(Path(__file__).resolve().parents[1])
"""The checkout under test: the subprocesses import it, whatever else is installed."""

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is unavailable"
)


def _train(args, cwd, nproc=None):
    command = [sys.executable, "-m", "contextforcing", "train", *args]
    if nproc:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "contextforcing", "train", *args]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
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


# ---------------------------------------------------------------- real-scale stages from a Wan folder


@pytest.fixture(scope="module")
def wan_data(tiny_wan, tmp_path_factory):
    from contextforcing.cli import main

    from wan_folder import write_clips

    root = tmp_path_factory.mktemp("wan-data")
    (root / "prompts.txt").write_text("a cat runs\na dog runs on the beach\n")
    assert main(["encode-prompts", str(root / "prompts.txt"), "--wan", str(tiny_wan)]) == 0
    videos = write_clips(root / "videos")
    argv = ["encode-videos", str(videos), "--wan", str(tiny_wan), "--clip-frames", "27", "--height", "32",
            "--width", "32", "--max-clips-per-video", "1"]  # fmt: skip
    assert main(argv) == 0
    return root / "prompts.txt", videos


def _wan_args(stage, tiny_wan, wan_data, **updates):
    from wan_folder import TINY_OVERRIDES

    prompts, videos = wan_data
    init = {"wan-dmd": {"init.teacher": "{wan}", "init.model": "{wan}"}}.get(stage, {})
    sets = {**TINY_OVERRIDES, "train.batch_size": 4, "train.log_every": 1, **init, **updates}
    return ["--preset", stage, "--wan", str(tiny_wan), "--prompts", str(prompts), "--videos", str(videos),
            *[item for key, value in sets.items() for item in ("--set", f"{key}={value}")]]  # fmt: skip


def _torchrun(args, cwd):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "contextforcing", "train", *args]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def _finish(process):
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    return out


def _descendants(pid):
    """Every process below `pid` (Linux /proc)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _weights(folder):
    return load_model(folder / "model").state_dict()


def _checkpoint_step(folder):
    import json

    state = folder / "checkpoint" / "state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def test_two_ranks_killed_after_a_sharded_checkpoint_resume_bitwise(tiny_wan, wan_data, tmp_path):
    """ERFT with the warm-up gathering errors over ranks, LoRA, DCP checkpoints every 2 steps."""
    import signal
    import time

    args = _wan_args("wan-context-teacher", tiny_wan, wan_data, **{
        "train.steps": 6, "train.checkpoint_every": 2, "teacher.bank_warmup_steps": 3,
        "teacher.clean_bank_update_prob": 1.0, "teacher.clean_prob": 0.3})  # fmt: skip
    whole = _torchrun([*args, "--out", str(tmp_path / "whole")], tmp_path)
    _finish(whole)
    killed = _torchrun([*args, "--out", str(tmp_path / "killed")], tmp_path)
    while _checkpoint_step(tmp_path / "killed") < 2 and killed.poll() is None:
        time.sleep(0.05)
    for pid in [*_descendants(killed.pid), killed.pid]:  # the workers run in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed.communicate()
    stopped_at = _checkpoint_step(tmp_path / "killed")
    assert 2 <= stopped_at < 6
    assert (tmp_path / "killed" / "checkpoint" / ".metadata").is_file()
    out = _finish(_torchrun([*args, "--out", str(tmp_path / "killed"), "--resume"], tmp_path))
    assert f"at step {stopped_at} from a sharded checkpoint" in out
    one, two = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.equal(one[k], two[k]) for k in one)
    # The errors were gathered: both ranks' banks hold the same warm-up errors.
    from safetensors.torch import load_file

    banks = [load_file(tmp_path / "whole" / "checkpoint" / f"bank.rank{r}.x0.safetensors") for r in (0, 1)]
    assert sum(v.numel() for k, v in banks[0].items() if k.startswith("bin.")) > 0


def test_sharded_checkpoints_resume_on_another_world_size(tiny_wan, wan_data, tmp_path):
    """dmd: trained student and critic, frozen teacher, EMA; 2 ranks -> 1 process and 1 -> 2."""
    from contextforcing.cli import main

    updates = {"train.checkpoint_every": 2, "train.ema_decay": 0.5, "optim.lr": 1e-4, "critic_optim.lr": 1e-4}
    args = _wan_args("wan-dmd", tiny_wan, wan_data, **updates)
    assert main(["train", *args, "--steps", "4", "--out", str(tmp_path / "one")]) == 0
    _finish(_torchrun([*args, "--steps", "2", "--out", str(tmp_path / "two-one")], tmp_path))
    assert (tmp_path / "two-one" / "checkpoint" / ".metadata").is_file()
    assert main(["train", *args, "--steps", "4", "--out", str(tmp_path / "two-one"), "--resume"]) == 0
    assert main(["train", *args, "--steps", "2", "--out", str(tmp_path / "one-two")]) == 0
    _finish(_torchrun([*args, "--steps", "4", "--out", str(tmp_path / "one-two"), "--resume"], tmp_path))
    reference = _weights(tmp_path / "one")
    start = load_model(tiny_wan).state_dict()
    change = max((reference[k] - start[k]).abs().max().item() for k in reference)
    assert change > 1e-4
    # Two processes sum gradients in another order than one; Adam carries that rounding along.
    for run in ("two-one", "one-two"):
        weights = _weights(tmp_path / run)
        difference = max((reference[k] - weights[k]).abs().max().item() for k in reference)
        assert difference < change / 20, (run, difference, change)


def test_bf16_shards_gather_bf16_parameters_and_keep_fp32_shards(tmp_path):
    """In one process of a gloo group: the mixed-precision policy of `shard_model`."""
    from contextforcing.model.config import model_preset
    from contextforcing.model.dit import CausalDiT
    from contextforcing.training.parallel import shard_model

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        model = shard_model(CausalDiT(model_preset("tiny")), precision="bf16")
        seen = []
        model.blocks[0].ffn[0].register_forward_pre_hook(lambda m, _: seen.append(m.weight.dtype))
        x = torch.randn(1, 4, 3, 4, 4)
        out = model(x, torch.tensor([500.0]), torch.randn(1, 8, 32))
        assert seen == [torch.bfloat16]
        assert all(p.dtype == torch.float32 for p in model.parameters())
        out.float().square().mean().backward()
        assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    finally:
        torch.distributed.destroy_process_group()

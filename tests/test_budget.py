"""The on-paper budget: its per-token activation bytes and FLOPs agree with what CausalDiT does."""

import contextlib
from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from contextforcing.cli import main
from contextforcing.config import override
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.presets import preset
from contextforcing.training.budget import (
    activation_bytes_per_token,
    block_bytes_per_token,
    checkpointed_bytes_per_token,
    forward_flops,
    stage_budget,
)
from contextforcing.training.wan_presets import WAN_PRESETS

_SMALL = replace(model_preset("world"), dim=192, ffn_dim=512, num_heads=4, num_layers=3)


def _saved_bytes(model, frames, precision):
    """Bytes autograd keeps for one forward of `frames` 16 x 16 latent frames (parameters excluded)."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.in_channels, frames, 16, 16, generator=generator)
    text = torch.randn(1, config.text_len, config.text_dim, generator=generator)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(tensor):
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        model(x, torch.tensor([500.0]), text)
    return sum(size for pointer, size in seen.items() if pointer not in params)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_bytes_per_token_match_a_measured_forward(precision, checkpointing):
    torch.set_num_threads(1)
    model = CausalDiT(_SMALL)
    model.activation_checkpointing = checkpointing
    # The difference of two lengths leaves out what does not grow with the tokens (text, weights).
    per_token = (_saved_bytes(model, 8, precision) - _saved_bytes(model, 4, precision)) / (4 * 64)
    estimate = (checkpointed_bytes_per_token if checkpointing else activation_bytes_per_token)(
        _SMALL, precision
    )
    if checkpointing:  # the estimate adds one block recomputed in the backward pass
        estimate -= block_bytes_per_token(_SMALL, precision)
    assert abs(estimate - per_token) / per_token < 0.1, (estimate, per_token)


def test_forward_flops_match_torch_counter():
    model = CausalDiT(_SMALL)
    x = torch.randn(1, _SMALL.in_channels, 6, 16, 16)
    text = torch.randn(1, _SMALL.text_len, _SMALL.text_dim)
    # The math kernel runs attention as matmuls, which the counter sees (it skips the CPU flash kernel).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([500.0]), text)
    tokens = 6 * _SMALL.tokens_per_frame(16, 16)
    estimate = forward_flops(_SMALL, tokens, tokens)
    assert abs(estimate - counter.get_total_flops()) / counter.get_total_flops() < 0.05


def test_the_13b_budget():
    config = preset("wan-dmd")
    budget = stage_budget("wan-dmd", config, 8, (60, 104))
    # Three 1.419 B models (student, teacher, critic) in fp32 over 8 GPUs.
    assert budget.parameters / 4 * 8 / 3 == pytest.approx(1.419e9, rel=5e-3)
    # Student and critic are trained: AdamW holds two moments of each.
    assert budget.optimizer == pytest.approx(4 * budget.parameters / 3)
    # 1 sample per GPU at once (64 = 8 GPUs x 8 micro-batches), 18 cached frames of 1560 tokens, K and V,
    # 30 layers, bf16.
    assert budget.samples_per_gpu == 1
    assert budget.kv_cache == 1 * 2 * 30 * 18 * 1560 * 1536 * 2
    assert budget.activations_checkpointed < budget.activations / 5
    twice = stage_budget("wan-dmd", config, 16, (60, 104))
    assert twice.parameters == budget.parameters / 2 and twice.flops == budget.flops
    # Without accumulation each GPU holds its 8 samples at once; a step's FLOPs stay those of the batch.
    whole = stage_budget("wan-dmd", override(config, {"train.grad_accumulation": 1}), 8, (60, 104))
    assert whole.kv_cache == 8 * budget.kv_cache and whole.activations == 8 * budget.activations
    assert whole.flops == budget.flops


def test_plan_budget_prints_every_wan_stage(capsys):
    assert main(["plan-budget", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {name} |" in out for name in WAN_PRESETS)

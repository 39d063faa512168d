"""LoRA adapters through peft, as the context teacher of Context Forcing is fine-tuned (rank 128 on
q, k, v, o and both FFN linears), and merging them back into plain weights for export."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LORA_TARGETS", "add_lora", "merged_state"]

LORA_TARGETS = ["q", "k", "v", "o", "ffn.0", "ffn.2"]


def add_lora(model: nn.Module, rank: int, alpha: float, *, seed: int = 0) -> nn.Module:
    """Inject LoRA adapters in place, their random init drawn from `seed` alone (so every process and
    every run starts from the same adapters); only the adapters stay trainable."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, init_lora_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def merged_state(state: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """A peft-injected state dict -> plain weights: W + scale * B @ A, adapter keys dropped."""
    merged = {}
    for key, value in state.items():
        if "lora_" in key:
            continue
        plain = key.replace(".base_layer.", ".")
        if key.endswith(".base_layer.weight"):
            prefix = key[: -len(".base_layer.weight")]
            down, up = state[f"{prefix}.lora_A.default.weight"], state[f"{prefix}.lora_B.default.weight"]
            value = value + scale * (up.float() @ down.float()).to(value.dtype)
        merged[plain] = value
    return merged

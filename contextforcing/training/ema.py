"""Exponential moving average of a model's parameters, started at a given step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Keeps `shadow = decay * shadow + (1 - decay) * param` for every floating parameter.

    Before `start_step` the shadow simply tracks the weights (Self-Forcing creates its EMA at step 200).
    The shadow lives beside the parameters: sharded parameters give a sharded shadow.
    """

    def __init__(self, model: nn.Module, decay: float, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.decay if step >= self.start_step else 0.0
        for name, parameter in model.named_parameters():
            self.shadow[name].lerp_(parameter.detach(), 1.0 - decay)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA state is missing {missing[:5]}")
        for name, value in state.items():
            self.shadow[name].copy_(value)

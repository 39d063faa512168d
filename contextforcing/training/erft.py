"""Error-Recycling Fine-Tuning of the context teacher: inject the model's own past errors into its
inputs, and record the errors it makes now.

Two banks (see `error_bank.py`):
    noise  errors in noise space, e = (1 - sigma)(v_pred - v_true): what a sampler jumping to the
           noise end would carry;
    x0     errors in x0 space, e = -sigma (v_pred - v_true): what a sampler jumping to the clean end
           would carry.

Per step (Bernoulli draws from the step's generator): with probability `clean_prob` nothing is
injected; otherwise the clean target gets an x0 error of its timestep's bin (`latent_error_prob`),
the recent context gets a window of an x0 error from any bin (`context_error_prob`), and the target's
noise a noise error (`noise_error_prob`). Sink and slow context are never perturbed. The velocity
target stays noise - clean target, so the teacher learns to point back to clean data.

Each process keeps its own banks. During the first `bank_warmup_steps` steps every process adds the
errors of all processes (gathered), and a step without injected errors adds them only with
probability `clean_bank_update_prob` (the released warm-up); afterwards each adds its own.

Shape legend: B batch, C channels, F frames, H x W latent size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.error_bank import ErrorBank

__all__ = ["inject_errors", "new_banks", "record_errors", "record_step_errors"]


def new_banks(config: ContextTeacherConfig) -> dict[str, ErrorBank]:
    return {name: ErrorBank(config.bank_bins, config.bank_capacity) for name in ("noise", "x0")}


def _coin(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator)) < p


def inject_errors(
    banks: dict[str, ErrorBank],
    config: ContextTeacherConfig,
    context: Tensor,
    target: Tensor,
    noise: Tensor,
    t: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor] | None:
    """(context, perturbed target, perturbed noise), or None for a clean step / empty banks."""
    if _coin(generator, config.clean_prob) or len(banks["x0"]) == 0:
        return None
    context, target, noise = context.clone(), target.clone(), noise.clone()
    if _coin(generator, config.latent_error_prob):
        error = banks["x0"].sample(t, generator)
        if error is not None:
            target = target + error.to(target)
    if 0 < config.num_recent_frames <= context.shape[2] and _coin(generator, config.context_error_prob):
        error = banks["x0"].sample_any(target.shape[0], generator)
        recent = config.num_recent_frames
        start = int(torch.randint(error.shape[2] - recent + 1, (1,), generator=generator))
        context[:, :, -recent:] += error[:, :, start : start + recent].to(context)
    if _coin(generator, config.noise_error_prob):
        error = banks["noise"].sample(t, generator)
        if error is not None:
            noise = noise + error.to(noise)
    return context, target, noise


def record_errors(banks: dict[str, ErrorBank], v_pred: Tensor, v_true: Tensor, t: Tensor) -> None:
    """Store this step's errors of the target, per sample, in both banks."""
    with torch.no_grad():
        sigma = (t.float() / 1000).view(-1, 1, 1, 1, 1)
        difference = v_pred.float() - v_true.float()
        banks["noise"].add((1 - sigma) * difference, t)
        banks["x0"].add(-sigma * difference, t)


def record_step_errors(
    banks: dict[str, ErrorBank],
    config: ContextTeacherConfig,
    step: int,
    v_pred: Tensor,
    v_true: Tensor,
    t: Tensor,
    *,
    clean: bool,
    generator: torch.Generator,
    gather: Callable[[Tensor], Tensor],
) -> None:
    """`record_errors` with the warm-up: before `bank_warmup_steps`, the errors of every process
    (`gather` concatenates a tensor over processes in rank order), and a clean step's only with
    probability `clean_bank_update_prob` (drawn from the step's shared generator, so every process
    decides alike)."""
    if step >= config.bank_warmup_steps:
        record_errors(banks, v_pred, v_true, t)
        return
    if clean and not _coin(generator, config.clean_bank_update_prob):
        return
    record_errors(banks, gather(v_pred.float()), gather(v_true.float()), gather(t.float()))

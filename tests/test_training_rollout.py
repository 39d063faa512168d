"""Self-rollouts for distillation: gradient only at the exit step of the chosen chunks, never through
the cache; earlier chunks still shape later ones through their (detached) K/V. ERFT injection rules."""

import dataclasses

import pytest
import torch

from contextforcing.diffusion.flow import warped_timesteps
from contextforcing.memory.config import memory_preset
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.erft import inject_errors, new_banks, record_errors
from contextforcing.training.plan import context_teacher_clip_frames, context_teacher_indices
from contextforcing.training.rollout import self_rollout

STEPS = warped_timesteps([1000, 750, 500, 250])


def _rollout(model, noise, grad_chunks, exit_steps=(2, 2, 2), prefix=None):
    text = model.encode_text(torch.randn(1, model.config.text_len, model.config.text_dim,
                                         generator=torch.Generator().manual_seed(1)))  # fmt: skip
    return self_rollout(
        model, memory_preset("context"), text, noise, timesteps=STEPS, generator=torch.Generator().manual_seed(2),
        exit_steps=exit_steps, grad_chunks=grad_chunks, prefix=prefix,
    )  # fmt: skip


def test_no_gradient_reaches_earlier_chunks_through_the_cache(tiny_model):
    noise = torch.randn(1, 4, 9, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    rollout = _rollout(tiny_model, noise, (True, True, True))
    rollout.video[:, :, 6:].sum().backward()
    assert noise.grad[:, :, :6].abs().max() == 0  # earlier chunks: no path through the cache
    assert noise.grad[:, :, 6:].abs().max() > 0  # the judged chunk: gradient at its exit step
    parameter_grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert parameter_grads and any(g.abs().max() > 0 for g in parameter_grads)


def test_only_chosen_chunks_carry_gradient(tiny_model):
    noise = torch.randn(1, 4, 9, 4, 4, generator=torch.Generator().manual_seed(0))
    rollout = _rollout(tiny_model, noise, (False, False, True))
    parameters = list(tiny_model.parameters())
    early = torch.autograd.grad(
        rollout.video[:, :, :6].sum(), parameters, allow_unused=True, retain_graph=True
    )
    assert all(g is None or g.abs().max() == 0 for g in early)
    late = torch.autograd.grad(rollout.video[:, :, 6:].sum(), parameters, allow_unused=True)
    assert any(g is not None and g.abs().max() > 0 for g in late)


def test_earlier_chunks_still_condition_later_ones(tiny_model):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 4, 9, 4, 4, generator=g)
    changed = noise.clone()
    changed[:, :, :3] = torch.randn(1, 4, 3, 4, 4, generator=g)
    with torch.no_grad():
        a = _rollout(tiny_model, noise, (False,) * 3).video
        b = _rollout(tiny_model, changed, (False,) * 3).video
    assert (a[:, :, 6:] - b[:, :, 6:]).abs().max() > 1e-4


def test_a_prefix_stands_for_the_first_chunks(tiny_model):
    noise = torch.randn(1, 4, 9, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # one prediction per chunk: no re-noising draws, so the noise lines up
        full = _rollout(tiny_model, noise, (False,) * 3, exit_steps=(1, 1, 1)).video
        continued = _rollout(
            tiny_model, noise, (False,) * 3, exit_steps=(1, 1, 1), prefix=full[:, :, :6]
        ).video
        other = _rollout(tiny_model, noise, (False,) * 3, exit_steps=(1, 1, 1), prefix=-full[:, :, :6]).video
    assert torch.equal(continued[:, :, :6], full[:, :, :6])
    torch.testing.assert_close(continued[:, :, 6:], full[:, :, 6:], atol=1e-5, rtol=0)
    assert (other[:, :, 6:] - full[:, :, 6:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="prefix"):
        _rollout(tiny_model, noise, (True, False, False), exit_steps=(1, 1, 1), prefix=full[:, :, :3])


def test_context_teacher_indices():
    config = ContextTeacherConfig(num_sink_frames=3, num_slow_frames=12, slow_interval=6, num_recent_frames=6)
    length = context_teacher_clip_frames(config, 2)
    assert length == 21 + 21
    assert context_teacher_indices(config, length - 21) == [0, 1, 2, 3, 9, 15, 16, 17, 18, 19, 20]
    length = context_teacher_clip_frames(config, 0)
    assert length == 9 + 21 and context_teacher_indices(config, length - 21) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    control = dataclasses.replace(config, recent_only=True)
    assert context_teacher_indices(control, 21) == [15, 16, 17, 18, 19, 20]


def test_erft_injects_only_into_recent_context_and_target():
    config = ContextTeacherConfig(clean_prob=0.0, latent_error_prob=1.0, context_error_prob=1.0,
                                  noise_error_prob=1.0, bank_bins=5, bank_capacity=4, num_recent_frames=2)  # fmt: skip
    banks = new_banks(config)
    generator = torch.Generator().manual_seed(0)
    assert (
        inject_errors(
            banks,
            config,
            torch.zeros(1, 2, 5, 2, 2),
            torch.zeros(1, 2, 3, 2, 2),
            torch.zeros(1, 2, 3, 2, 2),
            torch.tensor([500.0]),
            generator,
        )
        is None
    )  # empty banks
    t = torch.tensor([500.0])
    record_errors(banks, torch.ones(1, 2, 3, 2, 2), torch.zeros(1, 2, 3, 2, 2), t)
    assert len(banks["x0"]) == 1 and len(banks["noise"]) == 1
    x0_error = banks["x0"].sample(t, generator)
    assert torch.allclose(x0_error, torch.full_like(x0_error, -0.5))  # -sigma (v_pred - v_true)
    context, target, noise = inject_errors(banks, config, torch.zeros(1, 2, 5, 2, 2), torch.zeros(1, 2, 3, 2, 2),
                                           torch.zeros(1, 2, 3, 2, 2), t, generator)  # fmt: skip
    assert context[:, :, :3].abs().max() == 0 and context[:, :, 3:].abs().min() > 0  # sink/slow untouched
    assert torch.allclose(target, torch.full_like(target, -0.5))
    assert torch.allclose(noise, torch.full_like(noise, 0.5))  # (1 - sigma) (v_pred - v_true)


def test_distill_plans_follow_the_released_exit_policy():
    from contextforcing.training.config import ExperimentConfig
    from contextforcing.training.plan import distill_plan
    from contextforcing.training.stages import STAGES

    # The default DistillConfig holds the released values (21 judged frames, rollouts of 84-105).
    dmd = distill_plan(ExperimentConfig(stage="dmd"), STAGES["dmd"], 0, torch.Generator().manual_seed(0))
    assert dmd.num_frames == 21 and all(dmd.grad_chunks) and len(set(dmd.exit_steps)) == 1
    cdmd = distill_plan(ExperimentConfig(stage="cdmd"), STAGES["cdmd"], 0, torch.Generator().manual_seed(0))
    length = cdmd.num_frames
    assert 84 <= length <= 105 and cdmd.target_start == length - 21 and cdmd.context_start == length - 42
    starts = [3 * c for c in range(length // 3)]
    assert [s >= length - 18 for s in starts] == list(cdmd.grad_chunks)  # gradient: the last 18 frames
    assert all(e == 4 for s, e in zip(starts, cdmd.exit_steps, strict=True) if s <= length - 18)
    assert len({e for s, e in zip(starts, cdmd.exit_steps, strict=True) if s > length - 18}) == 1

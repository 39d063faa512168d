"""One training step of each stage: draw data, run the roles, compute the pure losses, update.

Each function takes the trainer's `Run` (roles, data, generators, `update`) and a step index, and
returns float metrics. Which network sees what, with which guidance, is decided here; the losses are
the pure functions of `diffusion.losses`.

Shape legend: B batch, C latent channels, F frames, H x W latent size, S text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from contextforcing.diffusion.flow import (
    add_noise,
    sample_training_timesteps,
    training_weight,
    velocity,
    x0_from_velocity,
)
from contextforcing.diffusion.losses import critic_loss, dmd_generator_loss, dmd_gradient, flow_matching_loss
from contextforcing.diffusion.sampling import euler_sample
from contextforcing.inference.rollout import reencode_memory, write_clean_chunk
from contextforcing.inference.teacher import context_velocity, frame_timesteps, guided_velocity
from contextforcing.memory.policy import kept_after
from contextforcing.model.layout import block_causal
from contextforcing.training.erft import inject_errors, record_step_errors
from contextforcing.training.plan import (
    DistillPlan,
    context_teacher_clip_frames,
    distill_plan,
    history_indices,
)
from contextforcing.training.rollout import copied_read, prefix_memory, self_rollout

if TYPE_CHECKING:
    from contextforcing.training.config import ExperimentConfig
    from contextforcing.training.data import Batch
    from contextforcing.training.trainer import Run

__all__ = ["context_teacher_step", "distill_step", "ode_init_step", "teacher_step"]


def _per_sample_noise(shape: tuple[int, ...], generators: list[torch.Generator], device) -> Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def _per_sample_timesteps(generators: list[torch.Generator], shift: float, device, **bounds) -> Tensor:
    return torch.cat([sample_training_timesteps((1,), g, shift=shift, **bounds) for g in generators]).to(
        device
    )


def _drop_text(text: Tensor, uncond: Tensor, p: float, generators: list[torch.Generator]) -> Tensor:
    """Replace each sample's text by the empty prompt with probability p (classifier-free guidance)."""
    drop = torch.tensor([float(torch.rand((), generator=g)) < p for g in generators], device=text.device)
    return torch.where(drop[:, None, None], uncond, text)


def teacher_step(run: Run, step: int) -> dict[str, float]:
    """Flow matching of the bidirectional teacher on clips of num_target_frames (stage `teacher`)."""
    cfg_t = run.config.teacher

    def micro(gens: list[torch.Generator]) -> tuple[Tensor, dict[str, float]]:
        batch = run.source.sample(cfg_t.num_target_frames, gens, target_frames=cfg_t.num_target_frames)
        text = _drop_text(batch.text, run.source.unconditional(len(gens)), cfg_t.cfg_dropout, gens)
        t = _per_sample_timesteps(gens, cfg_t.timestep_shift, run.device)
        noise = _per_sample_noise(tuple(batch.latents.shape[1:]), gens, run.device)
        with run.autocast():
            v = run.roles.teacher(add_noise(batch.latents, noise, t), t, text)
        weight = training_weight(t) if cfg_t.loss_weighting == "wan" else None
        loss = flow_matching_loss(v, velocity(batch.latents, noise), weight=weight)
        return loss, {"loss": loss.item()}

    return run.accumulate("teacher", run.sample_generators(step, "data"), micro)


def _context_history(config: ExperimentConfig, shared: torch.Generator) -> int:
    """Frames of history before a context-teacher target (see `ContextTeacherConfig.history`)."""
    cfg_t = config.teacher
    if cfg_t.history == "layout":
        num_slow = int(torch.randint(cfg_t.num_slow_frames + 1, (1,), generator=shared))
        return context_teacher_clip_frames(cfg_t, num_slow) - cfg_t.num_target_frames
    chunk = config.memory.frames_per_chunk
    longest = context_teacher_clip_frames(cfg_t, cfg_t.num_slow_frames) - cfg_t.num_target_frames
    return chunk * (1 + int(torch.randint(longest // chunk, (1,), generator=shared)))


def _memory_history(config: ExperimentConfig, shared: torch.Generator) -> tuple[int, list[int]]:
    """A history of whole chunks and the frames a memory keeps of it, each layer promoting at random at
    its own rate (see `ContextTeacherConfig.memory_history_prob`)."""
    cfg_t, memory = config.teacher, config.memory
    chunks = 1 + int(
        torch.randint(cfg_t.memory_history_frames // memory.frames_per_chunk, (1,), generator=shared)
    )
    layers = config.model.num_layers if memory.per_layer_decisions else 1
    rates = torch.rand(layers, 1, generator=shared) * cfg_t.memory_promotion_prob
    decisions = (torch.rand(layers, chunks, generator=shared) < rates).tolist()
    return chunks * memory.frames_per_chunk, list(kept_after(memory, chunks, decisions))


def _context_layout(config: ExperimentConfig, shared: torch.Generator) -> tuple[int, list[int]]:
    """Frames of history before a context-teacher target, and the ones the teacher sees."""
    cfg_t = config.teacher
    if cfg_t.memory_history_prob > 0 and float(torch.rand((), generator=shared)) < cfg_t.memory_history_prob:
        return _memory_history(config, shared)
    history = _context_history(config, shared)
    return history, history_indices(cfg_t, history)


def context_teacher_step(run: Run, step: int) -> dict[str, float]:
    """[sink | slow | recent | noisy target] -> velocity of the target, with optional ERFT."""
    cfg_t = run.config.teacher
    shared = run.generator(step, "layout")
    history, indices = _context_layout(run.config, shared)
    num_frames = history + cfg_t.num_target_frames
    if float(torch.rand((), generator=shared)) < cfg_t.no_context_prob:
        indices, num_frames = [], cfg_t.num_target_frames
    injected_any = False

    def micro(gens: list[torch.Generator]) -> tuple[Tensor, dict[str, float]]:
        nonlocal injected_any
        batch = run.source.sample(num_frames, gens, target_frames=cfg_t.num_target_frames)
        context = batch.latents[:, :, torch.tensor(indices, dtype=torch.long, device=run.device)]
        target = batch.latents[:, :, -cfg_t.num_target_frames :]
        text = _drop_text(batch.text, run.source.unconditional(len(gens)), cfg_t.cfg_dropout, gens)
        t = _per_sample_timesteps(gens, cfg_t.timestep_shift, run.device)
        noise = _per_sample_noise(tuple(target.shape[1:]), gens, run.device)
        injected = inject_errors(run.banks, cfg_t, context, target, noise, t, shared) if cfg_t.erft else None
        if injected is not None:
            context, noisy_source, noise = injected
            injected_any = True
        else:
            noisy_source = target
        frames_t = frame_timesteps(t, context.shape[2], target.shape[2], cfg_t.context_timestep)
        with run.autocast():
            v = run.roles.teacher(
                torch.cat([context, add_noise(noisy_source, noise, t)], dim=2), frames_t, text
            )
        v_target = v[:, :, -target.shape[2] :]
        v_true = velocity(target, noise)  # the self-corrected velocity points at the clean target
        weight = training_weight(t) if cfg_t.loss_weighting == "wan" else None
        loss = flow_matching_loss(v_target, v_true, weight=weight)
        if cfg_t.erft:
            record_step_errors(
                run.banks, cfg_t, step, v_target.detach(), v_true, t,
                clean=injected is None, generator=shared, gather=run.gather,
            )  # fmt: skip
        return loss, {"loss": loss.item()}

    metrics = run.accumulate("teacher", run.sample_generators(step, "data"), micro)
    return {**metrics, "context_frames": float(len(indices)), "errors_injected": float(injected_any)}


def _events_after(run: Run, num_prefix: int, gens: list[torch.Generator]) -> tuple[Batch, Tensor]:
    """A clip of `num_prefix + distill.num_frames` frames drawn as the context teacher's clips are, a return
    or a new identity on its last `num_frames`, and its first `num_prefix` frames [B, C, P, H, W]."""
    num_frames = run.config.distill.num_frames
    batch = run.source.sample(num_prefix + num_frames, gens, target_frames=num_frames)
    return batch, batch.latents[:, :, :num_prefix]


def _teacher_ode(run: Run, text: Tensor, noise: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
    """The teacher's guided ODE from noise [B, C, F, H, W], after the clean context [B, C, K, H, W] if
    any: its clean end [B, C, F, H, W] and its states at the student's few-step timesteps [K', B, C, F, H, W]."""
    dist = run.config.distill
    steps, ode = dist.sampler.timesteps, dist.ode
    grid = sorted(set(ode.timesteps.tolist()) | set(steps.tolist()), reverse=True)
    uncond = run.source.negative(noise.shape[0])
    mode = run.config.teacher.context_timestep
    states, recorded = {}, set(steps.tolist())

    def predict(x: Tensor, t: Tensor) -> Tensor:
        return guided_velocity(
            run.roles.teacher, x, t, text, uncond, ode.guidance_scale, context, mode
        ).float()

    def record(t_now: float, x: Tensor) -> None:
        if t_now in recorded:
            states[t_now] = x

    with torch.no_grad(), run.autocast():
        clean = euler_sample(predict, noise, grid, on_step=record)
    return clean, torch.stack([states[s] for s in steps.tolist()])


def _ode_inputs(run: Run, states: Tensor, gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Each chunk of each sample at one of the student's timesteps, drawn per sample: the ODE's state
    there [B, C, F, H, W] (from `states` [K, B, C, F, H, W]) and the timesteps [B, F]."""
    steps, chunk = run.config.distill.sampler.timesteps, run.config.memory.frames_per_chunk
    num_frames = states.shape[3]
    choice = torch.stack([torch.randint(len(steps), (num_frames // chunk,), generator=g) for g in gens])
    choice = choice.repeat_interleave(chunk, dim=1).to(run.device)  # [B, F]
    batch_index = torch.arange(len(gens), device=run.device)[:, None]
    frame_index = torch.arange(num_frames, device=run.device)[None, :]
    inputs = states[choice, batch_index, :, frame_index].permute(0, 2, 1, 3, 4)
    return inputs, steps.float().to(run.device)[choice]


def _ode_regression(run: Run, gens: list[torch.Generator]) -> Tensor:
    """The student's regression onto the teacher's ODE at the few-step timesteps, on `distill.num_frames`
    frames from prompts alone: each chunk starts from the ODE state at one of the student's timesteps
    and is asked for the ODE's clean end (CausVid's initialisation; DMD's regression term)."""
    dist = run.config.distill
    if dist.regression_prefix_frames:
        return _regression_after_prefix(run, gens)
    batch = run.source.sample_prompts(gens)
    shape = (run.config.model.in_channels, dist.num_frames, *run.source.latent_size)
    clean, states = _teacher_ode(run, batch.text, _per_sample_noise(shape, gens, run.device), None)
    inputs, t_frames = _ode_inputs(run, states, gens)
    with run.autocast():
        layout = block_causal(dist.num_frames, run.config.memory.frames_per_chunk)
        v = run.roles.student(inputs, t_frames, batch.text, layout=layout)
    return ((x0_from_velocity(inputs, v.float(), t_frames) - clean) ** 2).mean()


def _regression_after_prefix(run: Run, gens: list[torch.Generator]) -> Tensor:
    """The same regression on the `num_frames` after `distill.regression_prefix_frames` true frames of a
    clip whose events fall on them. The teacher's ODE reads those frames laid out as it was trained; the
    student reads its memory of them, and each later chunk also the ODE's clean chunks before it."""
    dist, student = run.config.distill, run.roles.student
    num_prefix, chunk = dist.regression_prefix_frames, run.config.memory.frames_per_chunk
    batch, prefix = _events_after(run, num_prefix, gens)
    context = prefix[:, :, history_indices(run.config.teacher, num_prefix)]
    shape = (run.config.model.in_channels, dist.num_frames, *run.source.latent_size)
    clean, states = _teacher_ode(run, batch.text, _per_sample_noise(shape, gens, run.device), context)
    inputs, t_frames = _ode_inputs(run, states, gens)
    text = student.encode_text(batch.text)
    with torch.no_grad(), run.autocast():
        memory = prefix_memory(student, run.config.memory, text, prefix, num_prefix + dist.num_frames)
    errors = []
    for start in range(0, dist.num_frames, chunk):
        frames, t = slice(start, start + chunk), t_frames[:, start]
        with torch.no_grad(), run.autocast():
            reencode_memory(student, memory, text)
        read = copied_read(memory.read())  # the store is reordered in place by the write below
        with run.autocast():
            v = student(inputs[:, :, frames], t, text, layout=read.layout, context=read.context)
        errors.append((x0_from_velocity(inputs[:, :, frames], v.float(), t) - clean[:, :, frames]) ** 2)
        with torch.no_grad(), run.autocast():
            write_clean_chunk(student, memory, clean[:, :, frames], text)
    return torch.cat(errors, dim=2).mean()


def ode_init_step(run: Run, step: int) -> dict[str, float]:
    """Regress the causal student onto the teacher's ODE at the few-step timesteps (CausVid init)."""

    def micro(gens: list[torch.Generator]) -> tuple[Tensor, dict[str, float]]:
        loss = _ode_regression(run, gens)
        return loss, {"loss": loss.item()}

    return run.accumulate("student", run.sample_generators(step, "data"), micro)


def _rollout(run: Run, plan: DistillPlan, text: Tensor, gens: list[torch.Generator], prefix: Tensor | None):
    dist = run.config.distill
    shape = (run.config.model.in_channels, plan.num_frames, *run.source.latent_size)
    noise = _per_sample_noise(shape, gens, run.device)
    cache = run.roles.student.encode_text(text)
    with run.autocast():
        return self_rollout(
            run.roles.student, run.config.memory, cache, noise,
            timesteps=dist.sampler.timesteps,
            generator=gens, exit_steps=plan.exit_steps,
            grad_chunks=plan.grad_chunks,
            snapshot_chunk=plan.first_target_chunk if dist.teacher_context == "memory" else None,
            prefix=prefix,
        )  # fmt: skip


def _teacher_context(run: Run, plan: DistillPlan, rollout) -> Tensor | None:
    if not plan.teacher_sees_context:
        return None
    if run.config.distill.teacher_context == "memory":
        return rollout.snapshot
    if run.config.distill.teacher_context == "layout":
        return rollout.video[:, :, history_indices(run.config.teacher, plan.target_start)].detach()
    return rollout.video[:, :, plan.context_start : plan.target_start].detach()


def distill_step(run: Run, step: int) -> dict[str, float]:
    """DMD (dmd), Contextual DMD (cdmd) or streaming long tuning (long-tuning): student then critic."""
    dist, metrics = run.config.distill, {}
    plan = distill_plan(run.config, run.stage, step, run.generator(step, "plan"))
    metrics["rollout_frames"] = float(plan.num_frames)
    if step % dist.student_every == 0:
        metrics.update(_student_update(run, plan, step))
    metrics.update(_critic_update(run, plan, step))
    return metrics


@dataclass(frozen=True, slots=True)
class _Judged:
    """A rollout's judged window and the draws that noise it: text [B, S, D], x [B, C, F, H, W], the
    teacher's clean context (or None), timesteps t [B] and noise like x."""

    text: Tensor
    x: Tensor
    context: Tensor | None
    t: Tensor
    noise: Tensor


def _judged_rollout(run: Run, plan: DistillPlan, gens: list[torch.Generator]) -> _Judged:
    dist = run.config.distill
    if not plan.prefix:
        batch, prefix = run.source.sample_prompts(gens), None
    elif dist.prefix_events:  # the clip's events fall on the judged frames right after the prefix
        batch, prefix = _events_after(run, dist.prefix_frames, gens)
    else:
        batch = run.source.sample(dist.prefix_frames, gens)
        prefix = batch.latents
    with torch.set_grad_enabled(any(plan.grad_chunks)):
        rollout = _rollout(run, plan, batch.text, gens, prefix)
    x = rollout.video[:, :, plan.target_start :]
    bounds = {"min_t": dist.min_timestep, "max_t": dist.max_timestep}
    t = _per_sample_timesteps(gens, dist.timestep_shift, run.device, **bounds)
    noise = _per_sample_noise(tuple(x.shape[1:]), gens, run.device)
    return _Judged(batch.text, x, _teacher_context(run, plan, rollout), t, noise)


def _student_update(run: Run, plan: DistillPlan, step: int) -> dict[str, float]:
    """DMD: move the student's sample along (critic - teacher) x0 predictions (DMD eq. 7-8)."""

    def micro(gens: list[torch.Generator]) -> tuple[Tensor, dict[str, float]]:
        judged = _judged_rollout(run, plan, gens)
        x, t = judged.x, judged.t
        with torch.no_grad(), run.autocast():
            x_t = add_noise(x.detach(), judged.noise, t)
            uncond = run.source.negative(x.shape[0])
            mode = run.config.teacher.context_timestep
            real_v = guided_velocity(
                run.roles.teacher, x_t, t, judged.text, uncond, run.config.distill.guidance_scale,
                judged.context, mode,
            )  # fmt: skip
            fake_v = context_velocity(run.roles.critic, x_t, t, judged.text, judged.context, mode)
        real, fake = x0_from_velocity(x_t, real_v.float(), t), x0_from_velocity(x_t, fake_v.float(), t)
        grad = dmd_gradient(x, real, fake)
        loss = dmd_generator_loss(x, grad)
        metrics = {"student_loss": loss.item(), "dmd_grad_norm": grad.norm().item()}
        weight = run.config.distill.regression_weight
        if weight:
            regression = _ode_regression(run, gens)
            loss = loss + weight * regression
            metrics["regression_loss"] = regression.item()
        return loss, metrics

    return run.accumulate("student", run.sample_generators(step, "student"), micro)


def _critic_update(run: Run, plan: DistillPlan, step: int) -> dict[str, float]:
    """The critic learns the flow of the student's current samples (no gradient into the student)."""
    plan = plan.without_gradient()

    def micro(gens: list[torch.Generator]) -> tuple[Tensor, dict[str, float]]:
        judged = _judged_rollout(run, plan, gens)
        with run.autocast():
            x_t = add_noise(judged.x, judged.noise, judged.t)
            v_fake = context_velocity(
                run.roles.critic,
                x_t,
                judged.t,
                judged.text,
                judged.context,
                run.config.teacher.context_timestep,
            )
        # The context critic of Stage 2 weights its loss by timestep (released code); Stage 1's does not.
        weight = training_weight(judged.t) if plan.teacher_sees_context else None
        loss = critic_loss(v_fake, judged.noise, judged.x, weight=weight)
        return loss, {"critic_loss": loss.item()}

    return run.accumulate("critic", run.sample_generators(step, "critic"), micro)

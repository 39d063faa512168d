"""The real-scale presets: every stage of Context Forcing on Wan2.1-T2V-1.3B with the paper's and the
released code's numbers, and the LongLive baseline with LongLive's.

Each value and its source is listed in docs/design.md ("Presets at scale"); a test reads that table
and checks every preset against it, and that no value differs from the library's default without a
row. The presets chain through run folders: each stage's `init` names the `model/` folder the
previous stage writes under `runs/`; "{wan}" names the transformer of the Wan folder given with
`--wan DIR` (`data.wan`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contextforcing.config import override
from contextforcing.memory.config import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.text_encoder import WAN_NEGATIVE_PROMPT
from contextforcing.training.config import DataConfig, ExperimentConfig

__all__ = ["WAN", "WAN_PRESETS", "apply_wan_folder", "resolve_wan_paths"]

WAN = "{wan}"
"""An `init` path that names the transformer of the Wan folder `data.wan`."""
RUNS = "runs"
CONTEXT_TEACHER = f"{RUNS}/wan-context-teacher/model"

_COMMON: dict[str, Any] = {
    "train.precision": "bf16", "train.activation_checkpointing": True, "train.log_every": 1,
    "train.checkpoint_every": 50, "data.negative_prompt": WAN_NEGATIVE_PROMPT,
}  # fmt: skip

_CONTEXT_TEACHER: dict[str, Any] = {
    "init.model": WAN,
    "teacher.num_target_frames": 21, "teacher.num_sink_frames": 3, "teacher.num_slow_frames": 12,
    "teacher.slow_interval": 6, "teacher.num_recent_frames": 6, "teacher.context_timestep": "target",
    "teacher.timestep_shift": 5.0, "teacher.loss_weighting": "wan",
    "teacher.erft": True, "teacher.clean_prob": 0.5, "teacher.latent_error_prob": 0.9,
    "teacher.context_error_prob": 0.9, "teacher.noise_error_prob": 0.01, "teacher.bank_bins": 50,
    "teacher.bank_capacity": 500, "teacher.bank_warmup_steps": 50, "teacher.clean_bank_update_prob": 0.1,
    "teacher.lora_rank": 128, "teacher.lora_alpha": 128.0,
    "optim.lr": 1e-4, "optim.grad_clip": 1.0,
    "train.steps": 8000, "train.batch_size": 8,
}  # fmt: skip

_ODE_INIT: dict[str, Any] = {
    "init.model": WAN, "init.teacher": CONTEXT_TEACHER,
    "distill.denoising_steps": (1000, 750, 500, 250), "distill.timestep_shift": 5.0,
    "distill.num_frames": 21, "distill.ode_steps": 48, "distill.guidance_scale": 5.0,
    "optim.lr": 2e-6, "optim.betas": (0.9, 0.999),
    "train.steps": 3000, "train.batch_size": 16,
}  # fmt: skip

# Stage 1 and Stage 2 share the optimisers, the DMD timesteps and the EMA of the released code.
_CONTEXT_DMD: dict[str, Any] = {
    "init.teacher": CONTEXT_TEACHER,
    "distill.denoising_steps": (1000, 750, 500, 250), "distill.timestep_shift": 5.0,
    "distill.min_timestep": 20.0, "distill.max_timestep": 980.0, "distill.student_every": 5,
    "optim.lr": 2e-6, "optim.betas": (0.9, 0.999), "optim.weight_decay": 0.01, "optim.grad_clip": 2.0,
    "critic_optim.lr": 4e-7, "critic_optim.betas": (0.5, 0.95), "critic_optim.grad_clip": 2.0,
    "train.batch_size": 64, "train.grad_accumulation": 8, "train.ema_decay": 0.99, "train.ema_start": 200,
}  # fmt: skip

_DMD: dict[str, Any] = {
    **_CONTEXT_DMD, "init.model": f"{RUNS}/wan-ode-init/model",
    "distill.num_frames": 21, "distill.guidance_scale": 3.0, "train.steps": 600,
}  # fmt: skip

_CDMD: dict[str, Any] = {
    **_CONTEXT_DMD, "init.model": f"{RUNS}/wan-dmd/model",
    "distill.num_frames": 21, "distill.num_context_frames": 21, "distill.num_grad_frames": 18,
    "distill.min_rollout_frames": 84, "distill.max_rollout_frames": 105, "distill.rollout_decay_steps": 600,
    "distill.teacher_context": "window", "distill.guidance_scale": 5.0, "teacher.context_timestep": "target",
    "train.steps": 500,
}  # fmt: skip

_LONG_TUNING: dict[str, Any] = {
    "init.model": f"{RUNS}/wan-dmd/model", "init.teacher": WAN,
    "distill.denoising_steps": (1000, 750, 500, 250), "distill.timestep_shift": 5.0,
    "distill.min_timestep": 20.0, "distill.max_timestep": 980.0,
    "distill.num_frames": 21, "distill.num_grad_frames": 18, "distill.min_rollout_frames": 21,
    "distill.max_rollout_frames": 240, "distill.rollout_decay_steps": 1, "distill.guidance_scale": 3.0,
    "distill.student_every": 5,
    "optim.lr": 1e-5, "optim.betas": (0.0, 0.999), "optim.grad_clip": 10.0,
    "critic_optim.lr": 2e-6, "critic_optim.betas": (0.0, 0.999), "critic_optim.grad_clip": 10.0,
    "train.steps": 3000, "train.batch_size": 64, "train.grad_accumulation": 8, "train.ema_decay": 0.99,
    "train.ema_start": 200,
}  # fmt: skip


def _wan(stage: str, updates: dict[str, Any], memory: str = "context") -> ExperimentConfig:
    base = ExperimentConfig(
        stage=stage,
        model=model_preset("wan2.1-1.3b"),
        memory=memory_preset(memory),
        data=DataConfig(source="cache", latent_size=(60, 104)),
    )
    return override(base, {**_COMMON, **updates})


WAN_PRESETS: dict[str, Callable[[], ExperimentConfig]] = {
    "wan-context-teacher": lambda: _wan("context-teacher", _CONTEXT_TEACHER),
    "wan-ode-init": lambda: _wan("ode-init", _ODE_INIT),
    "wan-dmd": lambda: _wan("dmd", _DMD),
    "wan-cdmd": lambda: _wan("cdmd", _CDMD),
    "wan-long-tuning": lambda: _wan("long-tuning", _LONG_TUNING, memory="sink"),
}
"""The Wan2.1-T2V-1.3B stages, in pipeline order."""


def resolve_wan_paths(config: ExperimentConfig) -> ExperimentConfig:
    """`config` with every `init` path "{wan}" replaced by the transformer of `data.wan`; raises a
    ValueError naming the key when one is used without a Wan folder."""
    updates = {}
    for role in ("model", "teacher", "critic"):
        path = getattr(config.init, role)
        if WAN not in path:
            continue
        if not config.data.wan:
            raise ValueError(
                f"init.{role}={path!r} names the Wan folder: pass --wan DIR (data.wan) with a Wan2.1 folder"
            )
        updates[f"init.{role}"] = path.replace(WAN, config.data.wan)
    return override(config, updates) if updates else config


def apply_wan_folder(config: ExperimentConfig) -> ExperimentConfig:
    """With `data.wan` set: the model's shape from the folder's `transformer/config.json` (text padded
    to the preset's `text_len`), and the "{wan}" init paths resolved; otherwise only the check that no
    init path names the Wan folder."""
    if not config.data.wan:
        return resolve_wan_paths(config)
    from dataclasses import replace
    from pathlib import Path

    from contextforcing.model.weights import read_model_config

    folder = Path(config.data.wan)
    if not (folder / "transformer").is_dir():
        raise ValueError(f"data.wan={folder} is no Wan2.1 folder: expected {folder / 'transformer'}")
    model = replace(read_model_config(folder), text_len=config.model.text_len)
    return resolve_wan_paths(replace(config, model=model))

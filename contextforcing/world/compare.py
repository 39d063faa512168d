"""One row of the miniature comparison, measured on the world.

For every seed: identity recall against gap with a true history (`recall_probe`), and one-minute
rollouts from a true prefix (`world_rollout`; the teacher, which does not stream, only the short horizon
of `TEACHER_SECONDS`). The results page reads the effective context length off the seed-averaged probe
curve (`recall.effective_context_length`).
"""

from __future__ import annotations

from typing import Any

from contextforcing.training.run_folder import load_run
from contextforcing.world.components import world_codec, world_text_encoder
from contextforcing.world.config import WorldExperimentConfig
from contextforcing.world.recall_probe import (
    ProbeConfig,
    probe_recall,
    student_continuer,
    student_sampler,
    teacher_sampler,
)
from contextforcing.world.rollout import RolloutConfig, teacher_continuer, world_rollouts
from contextforcing.world.rows import Row, row_folder

__all__ = ["TEACHER_SECONDS", "evaluate_row"]

TEACHER_SECONDS = 8.0
"""Length of the teacher's rollouts (a 3 s prefix and the 5 s short horizon)."""
GAPS_SECONDS = (1.5, 3.0, 6.0, 12.0, 18.0, 24.0)


def evaluate_row(row: Row, *, seeds: list[int], episodes: int, videos: int) -> dict[str, Any]:
    """Probe and rollouts of one row for each seed; see the module docstring."""
    run = load_run(row_folder(row), WorldExperimentConfig)
    config, model = run.config, run.model
    codec, world = world_codec(config.data.codec), config.data.world
    text_encoder = world_text_encoder(config.model)
    teacher = row.memory is None
    chance = 1.0 / len(world.identities)
    out: dict[str, Any] = {
        "row": row.name, "description": row.description, "run": row.run, "stage": config.stage,
        "step": run.step,
        "memory": None if teacher else row.memory.to_dict(), "chance": chance, "seeds": [],
    }  # fmt: skip
    for seed in seeds:
        frames = config.teacher.num_target_frames if teacher else ProbeConfig().num_target_frames
        probe = ProbeConfig(gaps_seconds=GAPS_SECONDS, episodes_per_gap=episodes, seed=seed,
                            num_target_frames=frames)  # fmt: skip
        if teacher:
            sampler = teacher_sampler(model, config.teacher, text_encoder, probe)
            continuer = teacher_continuer(sampler)
        else:
            sampler = student_sampler(model, row.memory, text_encoder, probe, run.few_step)
            continuer = student_continuer(model, row.memory, text_encoder, run.few_step)
        recall = probe_recall(sampler, codec, world, probe)
        rollout = RolloutConfig(seconds=TEACHER_SECONDS if teacher else 60.0, episodes=videos, seed=seed)
        out["seeds"].append({
            "seed": seed, "probe": recall,
            "rollout": world_rollouts(continuer, codec, world, rollout),
        })  # fmt: skip
    return out

"""One row of the miniature comparison, measured on the world.

For every seed: identity recall against gap with a true history (`recall_probe`), and

* on the first world, one-minute rollouts from a true prefix (`world_rollout`; the teacher, which does
  not stream, only the short horizon of `TEACHER_SECONDS`);
* on the second, minutes from the prompt alone (`free_run`: dynamics against the world's, free-running
  recall, coherence and the memory's promotions; the teacher `TEACHER_FREE_VIDEOS` of them a seed).
  A row with `fit_share` first fits its surprisal threshold on runs of `CALIBRATION_SEED`: its own free
  runs, or the world's own episodes (`calibration_runs`).

The results page reads the effective context length off the seed-averaged probe curve
(`recall.effective_context_length`). A row's rollouts or free runs can be measured again while its probes
are kept from its earlier JSON (`earlier_probes`, `with_probes`), when only what judges the videos changed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from contextforcing.memory.config import MemoryConfig
from contextforcing.training.run_folder import load_run
from contextforcing.world.components import world_codec, world_text_encoder
from contextforcing.world.config import WorldExperimentConfig
from contextforcing.world.free_run import (
    FreeRunConfig,
    calibrate_layer_thresholds,
    calibrate_threshold,
    free_runs,
    student_free_generator,
    teacher_free_generator,
)
from contextforcing.world.recall_probe import (
    ProbeConfig,
    probe_recall,
    student_continuer,
    student_sampler,
    teacher_sampler,
)
from contextforcing.world.rollout import RolloutConfig, teacher_continuer, world_rollouts
from contextforcing.world.rows import Row, row_folder
from contextforcing.world.types import WorldConfig

__all__ = [
    "CALIBRATION_SEED",
    "TEACHER_FREE_VIDEOS",
    "TEACHER_SECONDS",
    "calibration_runs",
    "earlier_probes",
    "evaluate_row",
    "with_probes",
]

TEACHER_SECONDS = 8.0
"""Length of the teacher's rollouts (a 3 s prefix and the 5 s short horizon)."""
TEACHER_FREE_VIDEOS = 2
"""Free-running minutes of the teacher per seed (each costs it some 40 sampled targets of 20 Euler
steps with guidance, about a hundred times a student's)."""
CALIBRATION_SEED = 1000
"""Seed of the free runs a fitted threshold is fitted on (none of the measured seeds)."""
CALIBRATION_VIDEOS = 2
GAPS_SECONDS = (1.5, 3.0, 6.0, 12.0, 18.0, 24.0)


def calibration_runs(row: Row, world: WorldConfig, seconds: float) -> FreeRunConfig:
    """The runs a row's threshold is fitted on: `CALIBRATION_VIDEOS` videos of `seconds` from
    `CALIBRATION_SEED`, made from the prompt alone (`fit_on="free"`), or, with `fit_on="world"`, the
    episodes themselves given as a prefix up to their last chunk, so that all but one of the tests are
    taken on the world's own frames."""
    prefix = seconds - world.chunk_frames / world.fps if row.fit_on == "world" else 0.0
    return FreeRunConfig(
        seconds=seconds, videos=CALIBRATION_VIDEOS, seed=CALIBRATION_SEED, prefix_seconds=prefix
    )


def evaluate_row(
    row: Row, *, seeds: list[int], episodes: int, videos: int, seconds: float = 60.0, probe: bool = True
) -> dict[str, Any]:
    """Probe and rollouts (free runs on the second world) of one row for each seed, videos of `seconds`;
    see the module docstring. Without `probe` the seeds' records hold the rollouts or free runs alone."""
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
    if row.fit_share is not None:
        if teacher:
            raise ValueError(f"row {row.name}: a teacher has no memory threshold to fit")
        calibration = calibration_runs(row, world, seconds)
        generate = student_free_generator(model, row.memory, text_encoder, run.few_step)
        fitted: dict[str, Any]
        if row.fit_per_layer:
            taus = calibrate_layer_thresholds(generate, codec, world, calibration, row.fit_share)
            fitted, memory = {"layer_taus": list(taus)}, replace(row.memory, layer_thresholds=taus)
        else:
            tau = calibrate_threshold(generate, codec, world, calibration, row.fit_share)
            fitted, memory = {"tau": tau}, replace(row.memory, similarity_threshold=tau)
        row = replace(row, memory=memory)
        out["memory"] = row.memory.to_dict()
        out["fitted_threshold"] = {"share": row.fit_share, "on": row.fit_on, "seed": CALIBRATION_SEED,
                                   "videos": CALIBRATION_VIDEOS, **fitted}  # fmt: skip
    for seed in seeds:
        frames = config.teacher.num_target_frames if teacher else ProbeConfig().num_target_frames
        probe_config = ProbeConfig(gaps_seconds=GAPS_SECONDS, episodes_per_gap=episodes, seed=seed,
                                   num_target_frames=frames)  # fmt: skip
        if teacher:
            sampler = teacher_sampler(model, config.teacher, text_encoder, probe_config)
            continuer = teacher_continuer(sampler)
        else:
            sampler = student_sampler(model, row.memory, text_encoder, probe_config, run.few_step)
            continuer = student_continuer(model, row.memory, text_encoder, run.few_step)
        record = {"seed": seed}
        if probe:
            record["probe"] = probe_recall(sampler, codec, world, probe_config)
        if world.version == 1:
            rollout = RolloutConfig(
                seconds=TEACHER_SECONDS if teacher else seconds, episodes=videos, seed=seed
            )
            record["rollout"] = world_rollouts(continuer, codec, world, rollout)
        else:
            generate = (teacher_free_generator(continuer) if teacher
                        else student_free_generator(model, row.memory, text_encoder, run.few_step))  # fmt: skip
            count = min(videos, TEACHER_FREE_VIDEOS) if teacher else videos
            free = FreeRunConfig(seconds=seconds, videos=count, seed=seed)
            record["free"] = free_runs(generate, codec, world, free)
        out["seeds"].append(record)
    return out


def earlier_probes(path: Path, seeds: list[int]) -> dict:
    """A row's earlier JSON, whose probes `--keep-probes` keeps; raises ValueError naming the file unless
    it can be read and holds the probes of `seeds`."""
    try:
        earlier = json.loads(path.read_text())
        found = [entry["seed"] for entry in earlier["seeds"] if "probe" in entry]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path}: --keep-probes needs the row's earlier JSON with its probes ({error})"
        ) from None
    if found != seeds:
        raise ValueError(f"{path}: holds the probes of seeds {found}, --seeds asks for {seeds}")
    return earlier


def with_probes(record: dict, earlier: dict, path: Path) -> dict:
    """`record` (rollouts only) with the probes of `earlier`, the row's JSON at `path`; raises ValueError
    unless both were made with the same memory (a field the earlier JSON lacks, added to `MemoryConfig`
    since, must hold its default)."""
    memory = json.loads(json.dumps(record["memory"]))
    defaults = json.loads(json.dumps(MemoryConfig().to_dict()))
    if memory is not None and earlier.get("memory") is not None:
        memory = {key: value for key, value in memory.items()
                  if key in earlier["memory"] or value != defaults[key]}  # fmt: skip
    if earlier.get("memory") != memory:
        raise ValueError(f"{path}: memory {earlier.get('memory')} differs from the row's {memory}")
    merged = [{"seed": new["seed"], "probe": old["probe"], **new}
              for new, old in zip(record["seeds"], earlier["seeds"], strict=True)]  # fmt: skip
    return {**record, "seeds": merged}

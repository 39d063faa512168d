"""`contextforcing free-run RUN`: minutes of the world made by a trained teacher or student from the
prompt alone, and whether they live (dynamics against the world's, free-running recall, coherence, and
the memory's promotions against the videos' events)."""

from __future__ import annotations

import argparse
import json
import logging

from contextforcing.arguments import memory_from_flags, positive_int, positive_seconds, seed
from contextforcing.files import check_output_file, write_text_atomically

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from contextforcing.world.free_run import FreeRunConfig

    defaults = FreeRunConfig()
    parser = subparsers.add_parser("free-run", help="videos from the prompt alone: does the world live?")
    parser.add_argument("folder", metavar="RUN", help="a run folder (config.json + model/)")
    parser.add_argument("--memory", help="students: memory policy (default: the run's own)")
    parser.add_argument("--set-memory", action="append", default=[], metavar="KEY=VALUE",
                        help="students: override a field of the memory policy (repeatable)")  # fmt: skip
    parser.add_argument("--videos", type=positive_int, default=defaults.videos)
    parser.add_argument("--seconds", type=positive_seconds, default=defaults.seconds)
    parser.add_argument("--steps", type=positive_int, default=20, help="teachers: Euler steps")
    parser.add_argument("--seed", type=seed, default=defaults.seed)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.diffusion.sampling import EulerConfig
    from contextforcing.training.run_folder import load_run
    from contextforcing.training.stages import stage_spec
    from contextforcing.world.components import world_codec, world_text_encoder
    from contextforcing.world.config import WorldExperimentConfig
    from contextforcing.world.free_run import (
        FreeRunConfig,
        free_runs,
        student_free_generator,
        teacher_free_generator,
    )
    from contextforcing.world.recall_probe import ProbeConfig, teacher_sampler
    from contextforcing.world.rollout import teacher_continuer

    if args.out:
        check_output_file(args.out)
    run = load_run(args.folder, WorldExperimentConfig)
    config, model = run.config, run.model
    teacher = stage_spec(config.stage).trained == "teacher"
    if teacher and (args.memory or args.set_memory):
        raise ValueError("--memory and --set-memory are for students: a teacher sees its training layout")
    memory = memory_from_flags(args.memory or config.memory, args.set_memory)
    text_encoder = world_text_encoder(config.model)
    codec = world_codec(config.data.codec)
    if teacher:
        probe = ProbeConfig(teacher=EulerConfig(num_steps=args.steps),
                            num_target_frames=config.teacher.num_target_frames)  # fmt: skip
        sampler = teacher_sampler(model, config.teacher, text_encoder, probe)
        generate = teacher_free_generator(teacher_continuer(sampler), codec.latent_channels)
    else:
        generate = student_free_generator(model, memory, text_encoder, run.few_step)
    free = FreeRunConfig(seconds=args.seconds, videos=args.videos, seed=args.seed)
    result = free_runs(generate, codec, config.data.world, free)
    summary = result["summary"]
    check = summary["dynamics_check"]
    logger.info(
        "presence %.2f (world %.2f)  visits/min %.1f (world %.1f)  dynamics %s  free recall %s (%d returns)  "
        "incoherent/min %.1f", check["presence"]["measured"], check["presence"]["world"],
        check["visits_per_minute"]["measured"], check["visits_per_minute"]["world"],
        "pass" if check["passes"] else "fail", _fmt(summary["free_recall"]), summary["free_returns"],
        summary["incoherent_per_minute"],
    )  # fmt: skip
    if "promotions" in summary:
        promotions = summary["promotions"]
        logger.info("promotions/min %.1f  precision %s  recall %s  (events/min %.1f)  similarity %s",
                    promotions["per_minute"], _fmt(promotions["precision"]), _fmt(promotions["recall"]),
                    promotions["events_per_minute"], summary["similarity_quantiles"])  # fmt: skip
    if args.out:
        record = {
            "run": str(run.folder), "stage": config.stage, "step": run.step,
            "memory": None if teacher else memory.to_dict(),
            "free_run": {"videos": args.videos, "seconds": args.seconds, "seed": args.seed,
                         **({"num_steps": args.steps} if teacher else {})},
            **result,
        }  # fmt: skip
        write_text_atomically(args.out, json.dumps(record, indent=1))
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"

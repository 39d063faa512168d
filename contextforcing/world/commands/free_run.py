"""`contextforcing free-run RUN`: minutes of the world made by a trained teacher or student from the
prompt alone, and whether they live (dynamics against the world's, free-running recall, coherence, and
the memory's promotions against the videos' events)."""

from __future__ import annotations

import argparse
import json
import logging

from contextforcing.arguments import (
    memory_from_flags,
    non_negative_float,
    positive_float,
    positive_int,
    positive_seconds,
    seed,
)
from contextforcing.files import check_output_file, check_output_folder, output_folder, write_text_atomically

__all__ = ["log_summary", "register", "share_text"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from contextforcing.diffusion.sampling import EulerConfig
    from contextforcing.world.free_run import FreeRunConfig

    defaults = FreeRunConfig()
    parser = subparsers.add_parser("free-run", help="videos from the prompt alone: does the world live?")
    parser.add_argument("folder", metavar="RUN", help="a run folder (config.json + model/)")
    parser.add_argument("--memory", help="students: memory policy (default: the run's own)")
    parser.add_argument("--set-memory", action="append", default=[], metavar="KEY=VALUE",
                        help="students: override a field of the memory policy (repeatable)")  # fmt: skip
    parser.add_argument("--videos", type=positive_int, default=defaults.videos)
    parser.add_argument("--seconds", type=positive_seconds, default=defaults.seconds)
    parser.add_argument("--prefix-seconds", type=non_negative_float, default=defaults.prefix_seconds,
                        help="give the episode's own first seconds, whole chunks (default: the prompt alone)")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=20, help="teachers: Euler steps")
    parser.add_argument("--guidance", type=non_negative_float, default=EulerConfig().guidance_scale,
                        help="teachers: CFG scale, cond + g (cond - uncond)")  # fmt: skip
    parser.add_argument("--shift", type=positive_float, default=EulerConfig().shift,
                        help="teachers: timestep shift of the Euler schedule")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=defaults.seed)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--save-videos", metavar="FOLDER", help="write each video judged there (video<i>.mp4)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.diffusion.sampling import EulerConfig
    from contextforcing.training.run_folder import load_run
    from contextforcing.training.stages import stage_spec
    from contextforcing.world.components import world_codec, world_text_encoder
    from contextforcing.world.config import WorldExperimentConfig
    from contextforcing.world.free_run import (
        FreeRunConfig,
        student_free_generator,
        teacher_free_generator,
    )
    from contextforcing.world.recall_probe import ProbeConfig, teacher_sampler
    from contextforcing.world.rollout import teacher_continuer

    if args.out:
        check_output_file(args.out)
    if args.save_videos:
        check_output_folder(args.save_videos, "--save-videos")
    run = load_run(args.folder, WorldExperimentConfig)
    config, model = run.config, run.model
    teacher = stage_spec(config.stage).trained == "teacher"
    if teacher and (args.memory or args.set_memory):
        raise ValueError("--memory and --set-memory are for students: a teacher sees its training layout")
    memory = memory_from_flags(args.memory or config.memory, args.set_memory)
    text_encoder = world_text_encoder(config.model)
    codec = world_codec(config.data.codec)
    euler = EulerConfig(num_steps=args.steps, shift=args.shift, guidance_scale=args.guidance)
    if teacher:
        probe = ProbeConfig(teacher=euler, num_target_frames=config.teacher.num_target_frames)
        sampler = teacher_sampler(model, config.teacher, text_encoder, probe)
        generate = teacher_free_generator(teacher_continuer(sampler))
    else:
        generate = student_free_generator(model, memory, text_encoder, run.few_step)
    free = FreeRunConfig(seconds=args.seconds, videos=args.videos, seed=args.seed,
                         prefix_seconds=args.prefix_seconds)  # fmt: skip
    try:
        free.prefix_frames(config.data.world)
    except ValueError as error:
        raise ValueError(f"--prefix-seconds: {error}") from None
    result = _free_runs(generate, codec, config.data.world, free, args.save_videos)
    log_summary(result["summary"])
    if args.out:
        record = {
            "run": str(run.folder), "stage": config.stage, "step": run.step,
            "memory": None if teacher else memory.to_dict(),
            "free_run": {"videos": args.videos, "seconds": args.seconds, "seed": args.seed,
                         "prefix_seconds": args.prefix_seconds,
                         **({"num_steps": euler.num_steps, "shift": euler.shift,
                              "guidance_scale": euler.guidance_scale} if teacher else {})},
            **result,
        }  # fmt: skip
        write_text_atomically(args.out, json.dumps(record, indent=1))
    return 0


def log_summary(summary: dict) -> None:
    """Log what `free_runs` says of the videos (their summary, or several seeds' pooled by `pool`)."""
    check = summary["dynamics_check"]
    logger.info(
        "presence %.2f (world %.2f)  visits/min %.1f (world %.1f)  dynamics %s  free recall %s (%d returns)  "
        "incoherent/min %.1f", check["presence"]["measured"], check["presence"]["world"],
        check["visits_per_minute"]["measured"], check["visits_per_minute"]["world"],
        "pass" if check["passes"] else "fail", share_text(summary["free_recall"]), summary["free_returns"],
        summary["incoherent_per_minute"],
    )  # fmt: skip
    logger.info(
        "free recall by chance (the returns' identities shuffled within each video) %s; the world's episodes: "
        "free recall %s, chance %s", share_text(summary["free_recall_chance"]),
        share_text(summary["world_dynamics"]["free_recall"]), share_text(summary["world_dynamics"]["free_recall_chance"]),
    )  # fmt: skip
    if "after_prefix" in summary:
        after = summary["after_prefix"]
        logger.info("after the prefix: free recall %s (%d returns), chance %s", share_text(after["free_recall"]),
                    after["free_returns"], share_text(after["free_recall_chance"]))  # fmt: skip
    logger.info("identity switches away from the gate: %s of the consecutive frames showing a subject",
                share_text(summary["switch_rate"]))  # fmt: skip
    if "long_visits_per_minute" in summary["dynamics"]:
        measured, world = summary["dynamics"], summary["world_dynamics"]
        logger.info("visits a minute shorter than the world's shortest %.2f (world %.2f), longer than its longest "
                    "and a chunk %.2f (world %.2f)", measured["short_visits_per_minute"],
                    world["short_visits_per_minute"]["mean"], measured["long_visits_per_minute"],
                    world["long_visits_per_minute"]["mean"])  # fmt: skip
    logger.info("doorways %.1f (world %.1f)  identities %.1f (world %.1f) a video", summary["cast"]["doorways"],
                summary["world_dynamics"]["doorways"]["mean"], summary["cast"]["identities"],
                summary["world_dynamics"]["identities"]["mean"])  # fmt: skip
    logger.info("free recall by gap since the exit: %s", "  ".join(
        f"{g['from_s']:g}-{'' if g['to_s'] is None else format(g['to_s'], 'g')} s {g['recalled']}/{g['returns']}"
        for g in summary["free_recall_by_gap"]))  # fmt: skip
    if "promotions" in summary:
        promotions = summary["promotions"]
        logger.info("promotions/min %.1f  precision %s  recall %s  (events/min %.1f)  similarity %s",
                    promotions["per_minute"], share_text(promotions["precision"]), share_text(promotions["recall"]),
                    promotions["events_per_minute"], summary.get("similarity_quantiles", "n/a"))  # fmt: skip


def _free_runs(generate, codec, world, free, folder: str | None) -> dict:
    """`free_runs`, writing each video judged into `folder` (if given) as it comes."""
    from contextforcing.video_io import write_video
    from contextforcing.world.free_run import free_runs

    if not folder:
        return free_runs(generate, codec, world, free)
    with output_folder(folder, "--save-videos") as path:

        def keep(index: int, frames) -> None:
            write_video(path / f"video{index}.mp4", frames, world.fps)

        return free_runs(generate, codec, world, free, keep)


def share_text(value: float | None) -> str:
    """A share as logged: two decimals, or "n/a" where there is none."""
    return "n/a" if value is None else f"{value:.2f}"

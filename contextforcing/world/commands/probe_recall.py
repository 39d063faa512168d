"""`contextforcing probe-recall RUN`: identity recall against gap of a trained teacher or student,
continuing a true history of the world."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from contextforcing.arguments import positive_int, positive_seconds, seed
from contextforcing.files import check_output_file, write_text_atomically
from contextforcing.world.recall_probe import ProbeConfig

if TYPE_CHECKING:
    from contextforcing.world.config import WorldExperimentConfig

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ProbeConfig()
    parser = subparsers.add_parser("probe-recall", help="identity recall vs gap, continuing a true history")
    parser.add_argument("folder", metavar="RUN", help="a run folder (config.json + model/)")
    parser.add_argument("--memory", help="students: memory policy (default: the run's own)")
    parser.add_argument(
        "--context-from", metavar="STUDENT_RUN",
        help="teachers: continue what this student's memory keeps of the history (the context of Contextual "
             "DMD with distill.teacher_context=memory; --memory then names the student's policy), not the "
             "teacher's training layout",
    )  # fmt: skip
    parser.add_argument("--gaps", type=positive_seconds, nargs="+", default=list(defaults.gaps_seconds),
                        help="seconds")  # fmt: skip
    parser.add_argument("--set-memory", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the memory, e.g. similarity_threshold=0.97 (repeatable)")  # fmt: skip
    parser.add_argument("--set-layout", action="append", default=[], metavar="KEY=VALUE",
                        help="teachers: read the history in a layout other than the one trained, a field of "
                             "teacher.*, e.g. slow_interval=9 (repeatable)")  # fmt: skip
    parser.add_argument("--kept", action="store_true",
                        help="also measure whether the context (a student's memory, or a teacher's layout) "
                             "keeps the answer at each return: answer_kept, first_kept")  # fmt: skip
    parser.add_argument(
        "--episodes", type=positive_int, default=defaults.episodes_per_gap, help="returns per gap"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=defaults.teacher.num_steps, help="teachers: Euler steps"
    )
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.arguments import assignments, memory_from_flags
    from contextforcing.config import override, to_dict
    from contextforcing.diffusion.sampling import EulerConfig
    from contextforcing.training.run_folder import load_run
    from contextforcing.training.stages import stage_spec
    from contextforcing.world.components import world_codec, world_text_encoder
    from contextforcing.world.config import WorldExperimentConfig
    from contextforcing.world.recall_probe import (
        layout_keeper,
        memory_keeper,
        memory_teacher_sampler,
        probe_recall,
        student_sampler,
        teacher_sampler,
    )

    if args.out:
        check_output_file(args.out)
    run = load_run(args.folder, WorldExperimentConfig)
    config, model = run.config, run.model
    teacher = stage_spec(config.stage).trained == "teacher"
    # A teacher generates the target length it was trained on; a student streams whole chunks.
    frames = config.teacher.num_target_frames if teacher else ProbeConfig().num_target_frames
    probe = ProbeConfig(gaps_seconds=tuple(args.gaps), episodes_per_gap=args.episodes,
                        teacher=EulerConfig(num_steps=args.steps), seed=args.seed, num_target_frames=frames)  # fmt: skip
    if args.context_from and not teacher:
        raise ValueError(
            f"--context-from is for a teacher's run; {args.folder} holds a {config.stage} student"
        )
    student = load_run(args.context_from, WorldExperimentConfig) if args.context_from else None
    if student is not None and stage_spec(student.config.stage).trained == "teacher":
        raise ValueError(f"--context-from needs a student's run; {args.context_from} holds a teacher")
    in_layout = teacher and student is None  # a teacher reading its history in its own layout
    if in_layout and (args.memory or args.set_memory):
        flag = "--memory" if args.memory else "--set-memory"
        raise ValueError(
            f"{flag} sets a student's memory; {args.folder} holds a teacher, which reads its training "
            "layout (give --context-from STUDENT_RUN for the memory of a student)"
        )
    if args.set_layout and not in_layout:
        raise ValueError(
            f"--set-layout sets the layout a teacher reads its history in; {args.folder} "
            + ("holds a student" if not teacher else "is read in a student's memory (--context-from)")
        )
    try:
        layout = override(config.teacher, assignments("--set-layout", args.set_layout))
    except ValueError as error:
        raise ValueError(f"--set-layout: {error}") from None
    own = student.config.memory if student is not None else config.memory
    memory = memory_from_flags(args.memory or own, args.set_memory)
    text_encoder = world_text_encoder(config.model)
    if student is not None:
        sampler = memory_teacher_sampler(model, config.teacher, student.model, memory, text_encoder, probe)
        keeper = memory_keeper(student.model, memory, text_encoder)
    elif teacher:
        sampler = teacher_sampler(model, layout, text_encoder, probe)
        keeper = layout_keeper(layout)
    else:
        sampler = student_sampler(model, memory, text_encoder, probe, run.few_step)
        keeper = memory_keeper(model, memory, text_encoder)
    keeper = keeper if args.kept else None
    reach = _trained_reach(config, args.seed) if in_layout else None
    results = probe_recall(sampler, world_codec(config.data.codec), config.data.world, probe, keeper)
    for row in results:
        kept = (
            f"  answer kept {row['answer_kept']:.2f} ({row['answer_frames_kept']:.1f} frames)  first kept "
            f"{row['first_kept']:.2f} ({row['first_frames_kept']:.1f} frames)  frames kept "
            f"{row['kept_frames']:.1f} ({row['kept_from_start']:.1f} from the start)"
            if keeper
            else ""
        )
        logger.info("gap %5.1f s %-5s recall %.2f  colour %.2f  drawn %.2f  stale %.2f%s  (n=%d)",
                    row["gap_seconds"], row["answer"], row["recall"], row["colour_recall"], row["drawn"],
                    row["stale"], kept, row["count"])  # fmt: skip
    if args.out:
        record = {
            "run": str(run.folder), "stage": config.stage,
            "memory": None if in_layout else memory.to_dict(),
            "context_from": None if student is None else str(student.folder),
            "step": run.step,
            "probe": {"episodes_per_gap": args.episodes, "num_steps": args.steps, "seed": args.seed,
                      "num_target_frames": frames},
            "layout": to_dict(layout) if in_layout else None,
            "trained_reach": reach,
            "results": results,
        }  # fmt: skip
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.out, json.dumps(record, indent=2))
    return 0


_REACH_RETURNS = 200


def _trained_reach(config: WorldExperimentConfig, seed: int) -> dict[str, float | int]:
    """How far back the returns a teacher was trained on lie: the gaps of returns landing on the target
    of its longest training clip (`clips.return_gaps`), logged beside its recall against gap."""
    import torch

    from contextforcing.training.plan import context_teacher_clip_frames
    from contextforcing.world.clips import return_gaps

    layout = config.teacher
    frames = context_teacher_clip_frames(layout, layout.num_slow_frames)
    gaps = torch.tensor(return_gaps(config.data, frames, layout.num_target_frames, _REACH_RETURNS,
                                    torch.Generator().manual_seed(seed)))  # fmt: skip
    reach = {"clip_frames": frames, "returns": len(gaps)}
    if len(gaps):
        reach |= {"median_gap_seconds": gaps.median().item(), "longest_gap_seconds": gaps.max().item()}
    logger.info("its longest training clip (%d frames, %.1f s) holds returns after gaps of up to %s s "
                "(%d returns drawn)", frames, frames / config.data.world.fps,
                f"{reach['longest_gap_seconds']:.1f}" if len(gaps) else "-", len(gaps))  # fmt: skip
    return reach

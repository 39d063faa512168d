"""`contextforcing train --preset NAME [--wan DIR] [--prompts FILE] [--videos FOLDER] [--steps N]
[--set key=value ...] [--out DIR] [--resume [--allow-config-change]]`."""

from __future__ import annotations

import argparse
import logging

from contextforcing.arguments import positive_int
from contextforcing.config import override, parse_assignments

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one stage of the pipeline from a preset")
    parser.add_argument("--preset", required=True, help="a preset name (see `contextforcing presets`)")
    parser.add_argument(
        "--wan", help="Wan2.1 folder: the model's shape, and the weights of '{wan}' init paths"
    )
    parser.add_argument("--prompts", help="prompt file (or its cache) of encode-prompts: data.prompt_cache")
    parser.add_argument(
        "--videos", help="video folder or JSONL (or its cache) of encode-videos: data.latent_cache"
    )
    parser.add_argument("--steps", type=positive_int, help="override train.steps")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set optim.lr=1e-4 (repeatable)")  # fmt: skip
    parser.add_argument("--out", help="run folder (default: runs/<preset>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the checkpoint in the run folder, if there is one"
    )
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: continue a checkpoint saved with other settings (same stage and model)")  # fmt: skip
    parser.set_defaults(run=_run)
    presets = subparsers.add_parser("presets", help="list the training presets")
    presets.set_defaults(run=_list)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.files import check_output_folder
    from contextforcing.presets import preset
    from contextforcing.training.data import library_source
    from contextforcing.training.parallel import shutdown_distributed
    from contextforcing.training.resume import exported_step
    from contextforcing.training.trainer import TrainingDiverged, train
    from contextforcing.training.wan_presets import apply_wan_folder

    if args.allow_config_change and not args.resume:
        raise ValueError("--allow-config-change only applies with --resume")
    out = check_output_folder(args.out or f"runs/{args.preset}", "--out")
    updates = {**_data_flags(args), **parse_assignments(args.assignments)}
    if args.steps is not None:
        updates["train.steps"] = args.steps
    config = apply_wan_folder(override(preset(args.preset), updates))
    if config.data.source == "world":
        from contextforcing.world.components import world_source as source
    else:
        source = library_source(config)
    try:
        folder = train(
            config, out, resume=args.resume, allow_config_change=args.allow_config_change, source=source
        )
    except TrainingDiverged as error:
        logger.error("%s", error)
        return 1
    finally:
        shutdown_distributed()
    logger.info("model of step %s in %s", exported_step(folder), folder)
    return 0


def _data_flags(args: argparse.Namespace) -> dict[str, str]:
    from contextforcing.training.caches import find_cache

    flags = {}
    if args.wan:
        flags["data.wan"] = args.wan
    if args.prompts:
        flags["data.prompt_cache"] = str(find_cache(args.prompts, "prompt"))
    if args.videos:
        flags["data.latent_cache"] = str(find_cache(args.videos, "latent"))
    return flags


def _list(_: argparse.Namespace) -> int:
    from contextforcing.presets import preset, preset_names

    for name in preset_names():
        config = preset(name)
        print(f"{name:24s} stage={config.stage:16s} steps={config.train.steps}")
    return 0

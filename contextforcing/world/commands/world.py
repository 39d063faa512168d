"""`contextforcing world`: render a synthetic world episode to DIR/video.mp4 and DIR/meta.json."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from contextforcing.arguments import seed
from contextforcing.files import output_folder
from contextforcing.world.assets import SCENE_CLASSES
from contextforcing.world.export import export_episode
from contextforcing.world.types import WORLD_VERSIONS, world_version

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `world` subcommand."""
    parser = subparsers.add_parser("world", help="render a synthetic world episode with its ground truth")
    parser.add_argument("--seconds", type=float, required=True, help="length of the episode in seconds")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the episode")
    parser.add_argument("--out", type=Path, required=True, help="output folder for video.mp4 and meta.json")
    parser.add_argument("--gap-seconds", type=float, default=None, help="fix every gap to this length")
    parser.add_argument(
        "--scene", choices=[scene.name for scene in SCENE_CLASSES], default=None, help="fix the scene class"
    )
    parser.add_argument(
        "--version", type=int, choices=WORLD_VERSIONS, default=1,
        help="1: one subject (the first world); 2: a cast of subjects whose identities change at a gate",
    )  # fmt: skip
    parser.set_defaults(run=run)


MAX_SECONDS = 3600.0
"""Longest episode: an hour of the world is 14400 frames; longer requests are refused, not rendered for days."""


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code."""
    for flag, value in (("--seconds", args.seconds), ("--gap-seconds", args.gap_seconds)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a finite number of seconds > 0, got {value:g}")
    if args.seconds > MAX_SECONDS:
        raise ValueError(
            f"--seconds {args.seconds:g} is too long: an episode lasts at most {MAX_SECONDS:g} s"
        )
    with output_folder(args.out):
        export_episode(
            args.out, seconds=args.seconds, seed=args.seed, gap_seconds=args.gap_seconds, scene=args.scene,
            config=world_version(args.version),
        )  # fmt: skip
    return 0

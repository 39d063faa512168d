"""`contextforcing evaluate`: score videos and write DIR/metrics.json and PNG plots."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contextforcing.arguments import positive_seconds
from contextforcing.files import check_output_folder, output_folder

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser("evaluate", help="consistency, dynamics and world ground-truth metrics")
    parser.add_argument("videos", nargs="+", type=Path, help="video files")
    parser.add_argument(
        "--reference",
        action="append",
        type=Path,
        default=None,
        help="world meta.json: once for all videos, or once per video in order",
    )
    parser.add_argument(
        "--backbone",
        action="append",
        default=None,
        help="efficientnet-lite0 (default), pixels, or a local transformers DINO / DINOv2 / CLIP folder; "
        "repeatable",
    )
    parser.add_argument("--out", type=Path, default=Path("eval_out"), help="output folder")
    parser.add_argument(
        "--window-seconds", type=positive_seconds, default=10.0, help="window of drift and quality curves"
    )
    parser.add_argument("--no-dynamic-degree", action="store_true", help="skip the optical-flow proxy")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code."""
    from contextforcing.eval.backbones import load_backbone
    from contextforcing.eval.evaluate import EvalConfig, evaluate_videos

    check_output_folder(args.out)
    config = EvalConfig(window_seconds=args.window_seconds, dynamic_degree=not args.no_dynamic_degree)
    backbones = [load_backbone(name) for name in (args.backbone or ["efficientnet-lite0"])]
    references = None
    if args.reference:
        from contextforcing.world.reference import load_reference

        loaded = {path: load_reference(path) for path in args.reference}
        references = [loaded[path] for path in args.reference]
    with output_folder(args.out) as out:
        result = evaluate_videos(
            args.videos, backbones=backbones, references=references, config=config, out_dir=out
        )
    summary = result["summary"]
    for key, value in summary.items():
        if isinstance(value, float):
            logger.info("%s = %.4f", key, value)
    logger.info("wrote %s", args.out / "metrics.json")
    return 0

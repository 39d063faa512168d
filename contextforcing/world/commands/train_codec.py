"""`contextforcing train-codec`: train the world codec and write it with its held-out metrics."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from contextforcing.arguments import positive_int, seed
from contextforcing.files import output_folder
from contextforcing.world.codec import save_world_codec
from contextforcing.world.codec_training import CodecTrainConfig, train_world_codec
from contextforcing.world.types import WORLD_VERSIONS, world_version

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-codec` subcommand."""
    parser = subparsers.add_parser("train-codec", help="train the small codec of the synthetic world")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (codec.safetensors, config.json)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=CodecTrainConfig().steps, help="optimiser steps"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of weights and data")
    parser.add_argument(
        "--batch-size", type=positive_int, default=CodecTrainConfig().batch_size, help="frames per step"
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--world-version", type=int, choices=WORLD_VERSIONS, default=1, help="the world whose frames it codes"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit code."""
    config = CodecTrainConfig(steps=args.steps, seed=args.seed, batch_size=args.batch_size)
    torch.set_num_threads(args.threads)
    with output_folder(args.out):
        codec, metrics = train_world_codec(config, world=world_version(args.world_version))
        save_world_codec(codec, args.out, metrics=metrics)
        (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    logger.info("wrote %s (held-out PSNR %.2f dB, MSE %.6f)", args.out, metrics["psnr"], metrics["mse"])
    return 0

"""`contextforcing convert SRC DST`: rewrite a Wan2.1 / diffusers / Self-Forcing checkpoint in our layout."""

from __future__ import annotations

import argparse
import logging

import torch

from contextforcing.files import check_output_folder, output_folder
from contextforcing.model.config import model_preset
from contextforcing.model.weights import convert, detect_layout

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="write any supported checkpoint as safetensors in our layout"
    )
    parser.add_argument("source", help="Wan2.1 folder, diffusers folder, Self-Forcing .pt, or one of ours")
    parser.add_argument("destination", help="output folder (model.safetensors + config.json)")
    parser.add_argument(
        "--model-preset", help="model shape when the checkpoint carries no config (e.g. wan2.1-1.3b)"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="store the weights in this precision (default: as read); float16 halves a float32 file",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    check_output_folder(args.destination, "destination")
    config = model_preset(args.model_preset) if args.model_preset else None
    layout = detect_layout(args.source)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    with output_folder(args.destination, "destination") as destination:
        folder = convert(args.source, destination, config=config, dtype=dtype)
    logger.info("converted %s checkpoint %s -> %s", layout, args.source, folder)
    return 0

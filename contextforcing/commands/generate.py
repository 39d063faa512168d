"""`contextforcing generate`: stream a video to DIR/video.mp4 with DIR/report.json (see inference/generate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from contextforcing.inference.generate import GenerateSettings, generate, parse_prompt_lines, prepare
from contextforcing.memory.config import MEMORY_POLICIES
from contextforcing.world.assets import SCENE_CLASSES

# The shipped Context Forcing student of the world and the world codec (package data).
DEFAULT_STUDENT, DEFAULT_CODEC = "context-forcing", "codec"

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a long video chunk by chunk with memory (default: the shipped Context Forcing "
        "student of the world, 60 s)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=SCENE_CLASSES[0].prompt, help="one prompt for the whole video")
    prompt.add_argument(
        "--prompts", type=Path, help="file of prompts, one per line, optionally 'SECONDS|prompt'"
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="video length (4 latent frames per second)"
    )
    parser.add_argument("--memory", default="context", help=f"memory policy: {', '.join(MEMORY_POLICIES)}")
    parser.add_argument(
        "--memory-split", metavar="SINK,SLOW,FAST", help="override the tier sizes in latent frames"
    )
    parser.add_argument("--tau", type=float, help="override the surprisal promotion threshold")
    parser.add_argument("--promotion-interval", type=int, help="chunks between promotion tests (paper: 2)")
    parser.add_argument("--decide-on", choices=("refresh", "first-pass"), help="pass that decides promotions")
    parser.add_argument(
        "--shared-decisions", action="store_true", help="one promotion decision for all layers"
    )
    parser.add_argument("--refresh-sink", action="store_true", help="re-encode the sink at prompt switches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, help="model folder (default: the shipped world student)")
    parser.add_argument("--model-preset", help="random weights of this model preset instead (smoke tests)")
    parser.add_argument(
        "--codec", type=Path, help="codec folder (default with the shipped model: the world codec)"
    )
    parser.add_argument("--latent-size", type=int, nargs=2, default=(8, 8), metavar=("H", "W"))
    parser.add_argument("--gif", type=int, default=0, metavar="SCALE",
                        help="also write video.gif, each pixel SCALE pixels wide")  # fmt: skip
    parser.add_argument(
        "--prefix", type=Path, help="a video whose first --prefix-seconds the model continues"
    )
    parser.add_argument(
        "--prefix-seconds", type=float, default=3.0, help="length of the prefix (whole chunks)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/generate"), help="output folder")
    parser.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> tuple[tuple[str, object], ...]:
    overrides: dict[str, object] = {}
    if args.memory_split:
        parts = args.memory_split.split(",")
        if len(parts) != 3 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(
                f"--memory-split must be three integers SINK,SLOW,FAST, got {args.memory_split!r}"
            )
        sink, slow, fast = (int(p) for p in parts)
        overrides.update(num_sink_frames=sink, num_slow_frames=slow, num_fast_frames=fast)
    for name, value in (("similarity_threshold", args.tau), ("promotion_interval", args.promotion_interval),
                        ("decide_on", args.decide_on)):  # fmt: skip
        if value is not None:
            overrides[name] = value
    if args.shared_decisions:
        overrides["per_layer_decisions"] = False
    return tuple(overrides.items())


def run(args: argparse.Namespace) -> int:
    from contextforcing.world.components import load_any_codec, world_text_encoder
    from contextforcing.world.shipped import shipped

    if args.checkpoint is None and args.model_preset is None:
        args.checkpoint = shipped(DEFAULT_STUDENT) / "model"
        args.codec = args.codec or shipped(DEFAULT_CODEC)
    prompts, starts = (args.prompt,), (0.0,)
    if args.prompts is not None:
        if not args.prompts.is_file():
            raise ValueError(f"no prompts file at {args.prompts}")
        prompts, starts = parse_prompt_lines(args.prompts.read_text(), args.seconds)
    settings = GenerateSettings(
        out=args.out, prompts=prompts, prompt_starts=starts, seconds=args.seconds, memory=args.memory,
        memory_overrides=_overrides(args), seed=args.seed, checkpoint=args.checkpoint,
        model_preset=args.model_preset or "tiny", codec=args.codec, latent_size=tuple(args.latent_size),
        refresh_sink=args.refresh_sink, gif_scale=args.gif, prefix=args.prefix,
        prefix_seconds=args.prefix_seconds, device=args.device,
    )  # fmt: skip
    codec = None if args.codec is None else load_any_codec(args.codec)
    text_encoder = None if args.checkpoint is None else world_text_encoder
    generate(prepare(settings, codec=codec, text_encoder=text_encoder))
    return 0

"""`contextforcing generate`: stream a video to OUT/video.mp4 with OUT/report.json (see inference/generate.py).

With `--wan DIR` the components come from a Wan2.1 text-to-video folder (diffusers layout), the student
from `--checkpoint` or the folder's transformer; without it, from the world (by default the shipped Context
Forcing student of the second world and its codec; a world run's `model/` brings the codec it was
trained with). Both build one `ContextForcingPipeline`.

Every argument is checked before a model is loaded. SIGINT and SIGTERM stop a generation with one
line and a non-zero exit, leaving none of its outputs behind.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from contextforcing.arguments import memory_from_flags, non_negative_int, seed
from contextforcing.files import check_output_folder
from contextforcing.inference.generate import (
    GenerateSettings,
    generate,
    parse_prompt_lines,
    prepare,
    random_model,
)
from contextforcing.memory.config import MEMORY_POLICIES, MemoryConfig
from contextforcing.model.weights import load_model
from contextforcing.pipeline import ContextForcingPipeline, parse_dtype
from contextforcing.runtime import resolve_device
from contextforcing.world.assets import SCENE_CLASSES

# The shipped Context Forcing student of the second world and its codec (package data): the world whose
# cast comes and goes, changes at the gate and comes back.
DEFAULT_STUDENT, DEFAULT_CODEC = "world2-context-forcing", "codec-world2"

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate a long video chunk by chunk with memory (from a Wan2.1 folder with --wan; by default "
        "the shipped Context Forcing student of the second world, 60 s)",
    )
    source = parser.add_argument_group("components")
    source.add_argument("--wan", type=Path, metavar="DIR",
                        help="a Wan2.1 text-to-video folder in the diffusers layout (model_index.json, "
                        "transformer/, vae/, text_encoder/, tokenizer/)")  # fmt: skip
    source.add_argument("--checkpoint", type=Path, metavar="STUDENT",
                        help="the student: ours, a diffusers transformer folder, Wan2.1 safetensors or a "
                        "Self-Forcing-style .pt (default: the Wan folder's transformer, or the second world's shipped student)")  # fmt: skip
    source.add_argument("--model-preset", help="random weights of this model preset instead (smoke tests)")
    source.add_argument(
        "--codec",
        type=Path,
        help="codec folder without --wan (default: the codec a world run's model/ was trained with; with "
        "the shipped student, the second world's)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument(
        "--prompt", help="one prompt for the whole video (default without --wan: a world prompt)"
    )
    prompt.add_argument(
        "--prompts", type=Path, help="file of prompts, one per line, optionally 'SECONDS|prompt'"
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="video length (4 latent frames per second)"
    )
    parser.add_argument("--height", type=int, help="pixels (default: 480 with --wan, else 64)")
    parser.add_argument("--width", type=int, help="pixels (default: 832 with --wan, else 64)")
    parser.add_argument("--memory", help=f"memory policy: {', '.join(MEMORY_POLICIES)} (default: the memory a "
                        "world run was trained with, as its config.json names it; else context)")  # fmt: skip
    parser.add_argument("--set-memory", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the memory policy, e.g. similarity_threshold=0.995, "
                        "num_sink_frames=1, decide_on=first-pass, per_layer_decisions=false (repeatable)")  # fmt: skip
    parser.add_argument("--refresh-sink", action="store_true", help="re-encode the sink at prompt switches")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="run each chunk step as one compiled graph (torch.compile, fullgraph)")  # fmt: skip
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile mode; reduce-overhead captures CUDA graphs on a GPU")  # fmt: skip
    parser.add_argument(
        "--prefix", type=Path, help="an image (image-to-video) or a video the model continues"
    )
    parser.add_argument("--prefix-seconds", type=float, default=3.0,
                        help="length of a video prefix (whole chunks)")  # fmt: skip
    parser.add_argument(
        "--device", help="torch device (default with --wan: cuda when available, else cpu; without: cpu)"
    )
    parser.add_argument(
        "--dtype",
        help="float32, bfloat16 or float16 (default: bfloat16 with --wan on an accelerator, else float32)",
    )
    parser.add_argument(
        "--text-encoder-device", help="where the text encoder runs (default: --device); freed after encoding"
    )
    parser.add_argument("--gif", type=non_negative_int, default=0, metavar="SCALE",
                        help="also write video.gif, each pixel SCALE pixels wide")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/generate"), help="output folder")
    parser.set_defaults(run=run)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler, so a generation unwinds (and cleans up) as on Ctrl-C."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    try:
        with _stop_on_signals():
            return _run(args)
    except KeyboardInterrupt:
        print(f"contextforcing generate: interrupted; nothing was left in {args.out}", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"contextforcing generate: terminated; nothing was left in {args.out}", file=sys.stderr)
        return 143


def _run(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "--out")
    # --wan: the GPU in bf16 where there is one; the world: float32 on the CPU, as it was trained.
    device = resolve_device(args.device or ("auto" if args.wan is not None else "cpu"))
    dtype = parse_dtype(
        args.dtype or ("bfloat16" if args.wan is not None and device.type != "cpu" else "float32")
    )
    student = _world_student(args)
    memory = memory_from_flags(args.memory or _run_memory(student) or "context", args.set_memory)
    settings = _settings(args)
    if args.compile_mode is not None and not args.compile:
        raise ValueError("--compile-mode needs --compile")
    pipeline, components = _pipeline(args, student, memory, device, dtype)
    pipeline.compile = args.compile
    pipeline.compile_mode = None if args.compile_mode in (None, "default") else args.compile_mode
    plan = prepare(pipeline, settings)
    pipeline.release_text_encoder()
    generate(pipeline, plan, settings, components=components)
    return 0


def _settings(args: argparse.Namespace) -> GenerateSettings:
    if args.wan is not None and (args.codec is not None or args.model_preset is not None):
        raise ValueError("--wan takes its codec and student from the folder: drop --codec and --model-preset")
    if args.checkpoint is not None and args.model_preset is not None:
        raise ValueError("choose --checkpoint or --model-preset, not both")
    prompts, starts = (args.prompt,), (0.0,)
    if args.prompts is not None:
        if not args.prompts.is_file():
            raise ValueError(f"no prompts file at {args.prompts}")
        prompts, starts = parse_prompt_lines(args.prompts.read_text(), args.seconds)
    elif args.prompt is None:
        if args.wan is not None:
            raise ValueError("--wan needs --prompt TEXT or --prompts FILE")
        prompts = (SCENE_CLASSES[0].prompt,)
    if args.prefix is not None and not args.prefix.is_file():
        raise ValueError(f"no prefix image or video at {args.prefix}")
    return GenerateSettings(
        out=args.out, prompts=prompts, prompt_starts=starts, seconds=args.seconds, height=args.height,
        width=args.width, seed=args.seed, refresh_sink=args.refresh_sink, gif_scale=args.gif,
        prefix=args.prefix, prefix_seconds=args.prefix_seconds,
    )  # fmt: skip


def _pipeline(
    args: argparse.Namespace, checkpoint: Path | None, memory: MemoryConfig, device, dtype
) -> tuple[ContextForcingPipeline, dict]:
    """The pipeline, and the names of its components for the report; `checkpoint` is the world student
    (`_world_student`), None with --wan or a --model-preset."""
    if args.wan is not None:
        pipeline = ContextForcingPipeline.from_pretrained(
            args.wan, student=args.checkpoint, memory=memory, torch_dtype=dtype, device=device,
            text_encoder_device=args.text_encoder_device,
        )  # fmt: skip
        student = args.checkpoint or args.wan / "transformer"
        return pipeline, {"wan": str(args.wan), "student": str(student), "codec": str(args.wan / "vae"),
                          "text_encoder": str(args.wan / "text_encoder")}  # fmt: skip
    from contextforcing.world.pipeline import world_pipeline
    from contextforcing.world.shipped import shipped

    codec = args.codec
    if args.checkpoint is None and checkpoint is not None:
        codec = codec or shipped(DEFAULT_CODEC)
    if codec is None and checkpoint is not None:
        codec = _run_codec(checkpoint)
    if checkpoint is not None:
        model = load_model(checkpoint, dtype=dtype, device=device).eval()
    else:
        model = random_model(args.model_preset, args.seed).to(device, dtype)
    pipeline = world_pipeline(model, codec=codec, memory=memory, world_text=checkpoint is not None)
    student = str(checkpoint) if checkpoint is not None else f"random {args.model_preset}"
    text = "world" if checkpoint is not None else "seeded"
    return pipeline, {
        "student": student,
        "codec": None if codec is None else str(codec),
        "text_encoder": text,
    }


def _world_student(args: argparse.Namespace) -> Path | None:
    """The student without --wan: --checkpoint, else the shipped one unless --model-preset; None with --wan."""
    if args.wan is not None:
        return None
    if args.checkpoint is not None or args.model_preset is not None:
        return args.checkpoint
    from contextforcing.world.shipped import shipped

    return shipped(DEFAULT_STUDENT) / "model"


def _world_run_config(checkpoint: Path | None) -> dict | None:
    """The config.json of the world run whose `model/` folder `checkpoint` is; None for anything else."""
    import json

    if checkpoint is None or checkpoint.name != "model":
        return None
    config = checkpoint.parent / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict) or "world" not in data["data"]:
        return None
    return data


def _run_memory(checkpoint: Path | None) -> MemoryConfig | None:
    """The memory a world run's config.json names (for a student's run, the memory it was trained with);
    None for anything that is not a world run's `model/`."""
    config = _world_run_config(checkpoint)
    if config is None or not isinstance(config.get("memory"), dict):
        return None
    try:
        return MemoryConfig.from_dict(config["memory"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{checkpoint.parent / 'config.json'}: memory: {error}") from None


def _run_codec(checkpoint: Path) -> Path | None:
    """The codec a world run was trained with, for the run's `model/` folder: its config.json names a
    shipped codec, a folder, or "" (the first world's); None for anything else."""
    from contextforcing.world.shipped import codec_folder

    config = _world_run_config(checkpoint)
    if config is None or not isinstance(config["data"].get("codec"), str):
        return None
    folder = codec_folder(config["data"]["codec"])
    return folder if folder.is_dir() else None

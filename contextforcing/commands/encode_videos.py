"""`contextforcing encode-videos SOURCE --wan DIR [--clip-frames F] [--out CACHE]`: VAE latents of video
clips and UMT5 features of their captions, once."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contextforcing.arguments import non_negative_int, positive_int
from contextforcing.text_encoder import WAN_NEGATIVE_PROMPT

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode-videos", help="encode videos with captions into a latent cache (Wan VAE, UMT5)"
    )
    parser.add_argument("source", help="folder of NAME.mp4 + NAME.txt, or a JSONL of {video, caption}")
    parser.add_argument("--wan", required=True, help="Wan2.1 folder with vae/, text_encoder/, tokenizer/")
    parser.add_argument("--out", help="cache folder (default: SOURCE.cache beside the source)")
    parser.add_argument("--clip-frames", type=positive_int, default=102,
                        help="latent frames per clip (102: the longest clip of wan-context-teacher)")  # fmt: skip
    parser.add_argument(
        "--stride",
        type=non_negative_int,
        default=0,
        help="pixel frames between clip starts (0: back to back)",
    )
    parser.add_argument("--max-clips-per-video", type=non_negative_int, default=0, help="0: as many as fit")
    parser.add_argument("--height", type=positive_int, default=480, help="pixel height after resize and crop")
    parser.add_argument("--width", type=positive_int, default=832, help="pixel width after resize and crop")
    parser.add_argument(
        "--fps", type=float, default=16.0, help="resample to this rate (0 keeps each video's)"
    )
    parser.add_argument("--max-length", type=positive_int, default=512, help="caption tokens (Wan: 512)")
    parser.add_argument(
        "--videos-per-shard", type=positive_int, default=16, help="videos per safetensors file"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="stored dtype")
    parser.add_argument("--negative-prompt", default=WAN_NEGATIVE_PROMPT,
                        help="the unconditional branch of guidance to encode beside the prompts (default: Wan's "
                        "own negative prompt, as the wan-* presets expect; '' for the empty prompt)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="where the VAE and UMT5 run")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.codec.loading import load_codec
    from contextforcing.runtime import resolve_device
    from contextforcing.text_encoder import UMT5TextEncoder
    from contextforcing.training.caches import (
        VideoClips,
        cache_folder,
        encode_videos,
        list_videos,
        source_hash,
    )

    source, device = Path(args.source), resolve_device(args.device)
    videos, skipped = list_videos(source)
    codec = load_codec(args.wan)
    factor = codec.spatial_factor
    if args.height % factor or args.width % factor:
        raise ValueError(f"--height and --width must be multiples of the VAE's factor {factor}")
    clips = VideoClips(clip_frames=args.clip_frames, stride=args.stride, fps=args.fps,
                       latent_size=(args.height // factor, args.width // factor),
                       max_clips_per_video=args.max_clips_per_video)  # fmt: skip
    out = Path(args.out) if args.out else cache_folder(source)
    identity = {"source": str(source.resolve()), "source_sha256": source_hash(source),
                "wan": str(Path(args.wan).resolve()), "max_length": args.max_length}  # fmt: skip

    def text_encoder() -> UMT5TextEncoder:
        encoder = UMT5TextEncoder.from_pretrained(args.wan, max_length=args.max_length)
        encoder.encoder.to(device)
        return encoder

    codec.vae.to(device)
    report = encode_videos(videos, out, codec, text_encoder, clips, identity=identity, skipped=skipped,
                           videos_per_shard=args.videos_per_shard, dtype=args.dtype,
                           negative_prompt=args.negative_prompt)  # fmt: skip
    for item in report.skipped:
        logger.info("skipped %s: %s", item.get("video", f"line {item.get('line')}"), item["reason"])
    logger.info(
        "%s: %d clips encoded now, %d from an earlier run, %d videos skipped",
        report.folder,
        report.written,
        report.reused,
        len(report.skipped),
    )
    return 0

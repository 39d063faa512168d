"""`contextforcing encode-prompts FILE --wan DIR [--out CACHE]`: UMT5 features of a prompt file, once."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from contextforcing.arguments import positive_int
from contextforcing.text_encoder import WAN_NEGATIVE_PROMPT

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode-prompts", help="encode a prompt file (one prompt a line) with UMT5 into a prompt cache"
    )
    parser.add_argument("prompts", help="text file, one prompt a line")
    parser.add_argument("--wan", required=True, help="Wan2.1 folder with text_encoder/ and tokenizer/")
    parser.add_argument("--out", help="cache folder (default: FILE.cache beside the file)")
    parser.add_argument("--max-length", type=positive_int, default=512, help="tokens per prompt (Wan: 512)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="prompts per encoder call")
    parser.add_argument("--shard-size", type=positive_int, default=1024, help="prompts per safetensors file")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="stored dtype")
    parser.add_argument("--negative-prompt", default=WAN_NEGATIVE_PROMPT,
                        help="the unconditional branch of guidance to encode beside the prompts (default: Wan's "
                        "own negative prompt, as the wan-* presets expect; '' for the empty prompt)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="where UMT5 runs: auto, cpu, cuda, cuda:N")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.runtime import resolve_device
    from contextforcing.text_encoder import UMT5TextEncoder
    from contextforcing.training.caches import cache_folder, encode_prompts, read_prompt_file, source_hash

    source = Path(args.prompts)
    prompts, skipped = read_prompt_file(source)
    for item in skipped:
        logger.info("skipped line %d: %s", item["line"], item["reason"])
    encoder = UMT5TextEncoder.from_pretrained(args.wan, max_length=args.max_length)
    encoder.encoder.to(resolve_device(args.device))
    identity = {"source": str(source.resolve()), "source_sha256": source_hash(source),
                "encoder": str(Path(args.wan).resolve()), "max_length": args.max_length}  # fmt: skip
    report = encode_prompts(prompts, args.out or cache_folder(source), encoder, identity=identity,
                            skipped=skipped, shard_size=args.shard_size, batch_size=args.batch_size,
                            dtype=args.dtype,
                            negative_prompt=args.negative_prompt)  # fmt: skip
    logger.info(
        "%s: %d prompts encoded now, %d from an earlier run, %d lines skipped",
        report.folder,
        report.written,
        report.reused,
        len(report.skipped),
    )
    return 0

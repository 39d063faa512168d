"""`contextforcing pool FILE...`: `probe-recall` or `free-run` JSONs of one run on several seeds, pooled
(per gap and answer, or over the videos), with 95 % intervals."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from contextforcing.files import check_output_file, write_text_atomically
from contextforcing.world.commands.free_run import log_summary, share_text

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pool", help="pool probe-recall or free-run JSONs of one run on several seeds"
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="JSONs written by `probe-recall --out` or `free-run --out`, one run read alike, "
                        "one seed each")  # fmt: skip
    parser.add_argument("--out", help="write the pooled record as JSON here")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.world.pooling import pool

    if args.out:
        check_output_file(args.out)
    records = [_load(path) for path in args.files]
    pooled = pool(records, [str(path) for path in args.files])
    logger.info("%s, step %s, seeds %s", pooled["run"], pooled["step"], pooled["seeds"])
    if "results" in pooled:
        _log_probes(pooled["results"])
    else:
        summary = pooled["summary"]
        log_summary(summary)
        logger.info("free recall 95 %% interval [%.2f, %.2f]  a subject standing in %s of %d videos",
                    *summary["free_recall_interval"], summary["still_videos"], pooled["videos"])  # fmt: skip
    if args.out:
        write_text_atomically(args.out, json.dumps(pooled, indent=1))
    return 0


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not JSON ({error}): expected JSON written by `probe-recall` or `free-run`"
        ) from None


def _log_probes(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        low, high = row["interval"]
        shares = "".join(
            f"  {key.replace('_', ' ')} {row[key]:.2f}" for key in ("stale", "answer_kept") if key in row
        )
        logger.info("gap %5.1f s %-5s recall %s [%.2f, %.2f]%s  (n=%d)", row["gap_seconds"], row["answer"],
                    share_text(row["recall"]), low, high, shares, row["count"])  # fmt: skip

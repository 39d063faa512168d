"""`contextforcing pool FILE...`: `probe-recall` or `free-run` JSONs of one run on several seeds, pooled
(per gap and answer, or over the videos), with 95 % intervals."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from contextforcing.files import check_output_file, write_text_atomically

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
        _log_free_runs(pooled["summary"], pooled["videos"])
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
                    _fmt(row["recall"]), low, high, shares, row["count"])  # fmt: skip


def _log_free_runs(summary: dict[str, Any], videos: int) -> None:
    world, low_high = summary["world_dynamics"], summary["free_recall_interval"]
    logger.info("presence %.2f (world %.2f)  visits/min %.1f (world %.1f)  passes %s", summary["dynamics"]["presence"],
                world["presence"]["mean"], summary["dynamics"]["visits_per_minute"],
                world["visits_per_minute"]["mean"], summary["dynamics_check"]["passes"])  # fmt: skip
    logger.info("free recall %s (n=%d) [%.2f, %.2f], chance %s  standing %s of %d videos  incoherent/min %.1f  "
                "identities %.1f a video", _fmt(summary["free_recall"]), summary["free_returns"], *low_high,
                _fmt(summary["free_recall_chance"]),
                summary["still_videos"], videos, summary["incoherent_per_minute"],
                summary["cast"]["identities"])  # fmt: skip


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"

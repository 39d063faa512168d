"""`contextforcing compare`: evaluate the rows of the miniature comparison on the world and write one
JSON per row (recall against gap with a true history, and one-minute rollouts), per seed."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from contextforcing.arguments import positive_int, seed
from contextforcing.files import output_folder, write_text_atomically

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from contextforcing.world.rows import ROWS, TEACHER_ROW

    names = [row.name for row in (TEACHER_ROW, *ROWS)]
    parser = subparsers.add_parser("compare", help="evaluate the comparison rows on the world")
    parser.add_argument("--rows", nargs="+", choices=names, default=names, metavar="ROW",
                        help=f"rows to evaluate (default: all of {', '.join(names)})")  # fmt: skip
    parser.add_argument("--seeds", type=seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=positive_int, default=12, help="probe returns per gap and seed")
    parser.add_argument("--videos", type=positive_int, default=3, help="one-minute rollouts per seed")
    parser.add_argument("--out", type=Path, default=Path("docs/results/eval"), help="folder of the row JSONs")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.world.compare import evaluate_row
    from contextforcing.world.rows import ROWS, TEACHER_ROW

    with output_folder(args.out):
        for row in (TEACHER_ROW, *ROWS):
            if row.name not in args.rows:
                continue
            record = evaluate_row(row, seeds=args.seeds, episodes=args.episodes, videos=args.videos)
            path = args.out / f"{row.name}.json"
            write_text_atomically(path, json.dumps(record, indent=1))
            logger.info("%s: wrote %s", row.name, path)
    return 0

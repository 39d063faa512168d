"""`contextforcing results`: write docs/RESULTS.md and its plots from the row JSONs of `compare`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="the results page from the comparison's JSONs")
    parser.add_argument("--eval", type=Path, default=Path("docs/results/eval"), help="folder of row JSONs")
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"), help="the page")
    parser.add_argument("--figures", type=Path, default=Path("docs/results"), help="folder of the plots")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.eval.results_page import load_rows, write_results_page

    page = write_results_page(load_rows(args.eval), args.out, args.figures)
    logger.info("wrote %s", page)
    return 0

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
    parser.add_argument("--learnability", type=Path, default=Path("docs/results/learnability"),
                        help="folder of the learnability check's probe-recall JSONs (if any)")  # fmt: skip
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="file whose results block gets the headline table (skipped if absent)")  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from contextforcing.files import check_output_file, check_output_folder
    from contextforcing.world.results_page import headline_table, load_rows, update_block, write_results_page

    check_output_file(args.out)
    check_output_folder(args.figures, "--figures")
    for path in sorted(args.eval.glob("*.json")) + sorted(args.learnability.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path} is not JSON ({error}): expected JSON written by `contextforcing compare` or `probe-recall`"
            ) from None
    rows = load_rows(args.eval)
    probes = [json.loads(p.read_text()) for p in sorted(args.learnability.glob("*.json"))]
    page = write_results_page(rows, args.out, args.figures, probes)
    logger.info("wrote %s", page)
    if args.readme.is_file():
        args.readme.write_text(update_block(args.readme.read_text(), headline_table(rows)))
        logger.info("updated the results block of %s", args.readme)
    return 0

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
    parser.add_argument("--world2-eval", type=Path, default=Path("docs/results/world2/eval"),
                        help="folder of the second world's row JSONs (`compare --world 2`; its section is "
                        "skipped if there are none)")  # fmt: skip
    parser.add_argument("--world2-learnability", type=Path, default=Path("docs/results/world2/learnability"),
                        help="folder of the second world's learnability JSONs (probe-recall and free-run)")  # fmt: skip
    parser.add_argument("--learnability", type=Path, default=Path("docs/results/learnability"),
                        help="folder of the learnability check's probe-recall JSONs (if any)")  # fmt: skip
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="file whose results block gets the headline table (skipped if absent)")  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from contextforcing.files import check_output_file, check_output_folder
    from contextforcing.world.results_page import headline_table, load_rows, update_block, write_results_page
    from contextforcing.world.results_world2 import world2_headline
    from contextforcing.world.rows import comparison

    check_output_file(args.out)
    check_output_folder(args.figures, "--figures")
    world2 = sorted(args.world2_eval.glob("*.json"))
    checks = sorted(args.world2_learnability.glob("*.json"))
    for path in sorted(args.eval.glob("*.json")) + sorted(args.learnability.glob("*.json")) + world2 + checks:
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path} is not JSON ({error}): expected JSON written by `contextforcing compare` or `probe-recall`"
            ) from None
    rows = load_rows(args.eval) if sorted(args.eval.glob("*.json")) or not (world2 or checks) else []
    probes = [json.loads(p.read_text()) for p in sorted(args.learnability.glob("*.json"))]
    world2_rows = load_rows(args.world2_eval, world=2) if world2 else None
    records = [json.loads(p.read_text()) for p in checks]
    world2_checks = ([r for r in records if "results" in r], [r for r in records if "free_run" in r])
    page = write_results_page(rows, args.out, args.figures, probes, world2_rows, world2_checks)
    logger.info("wrote %s", page)
    # The second world's table takes the README's place once its comparison has every row.
    whole = bool(world2_rows) and {r.name for r in comparison(2)} <= {row["row"] for row in world2_rows}
    headline = world2_headline(world2_rows) if whole else headline_table(rows) if rows else None
    if args.readme.is_file() and headline is not None:
        args.readme.write_text(update_block(args.readme.read_text(), headline))
        logger.info("updated the results block of %s", args.readme)
    return 0

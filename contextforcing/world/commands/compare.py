"""`contextforcing compare`: evaluate the rows of the miniature comparison on a world and write one JSON
per row, per seed: recall against gap with a true history, and one-minute rollouts from a true prefix
(first world) or minutes from the prompt alone (second world). `--keep-probes` measures the videos again
and keeps each row's probes from its JSON."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from contextforcing.arguments import positive_int, seed
from contextforcing.files import output_folder, write_text_atomically

__all__ = ["register"]

logger = logging.getLogger(__name__)

_DEFAULTS = {1: {"episodes": 12, "videos": 3, "out": "docs/results/eval"},
             2: {"episodes": 24, "videos": 8, "out": "docs/results/world2/eval"}}  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="evaluate the comparison rows on the world")
    parser.add_argument("--world", type=int, choices=sorted(_DEFAULTS), default=1,
                        help="which world's comparison (its rows, models and defaults)")  # fmt: skip
    parser.add_argument(
        "--rows", nargs="+", metavar="ROW", help="rows to evaluate (default: all of the world's)"
    )
    parser.add_argument("--seeds", type=seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=positive_int,
                        help="probe returns per gap and seed (default: 12 on world 1, 24 on world 2)")  # fmt: skip
    parser.add_argument("--videos", type=positive_int,
                        help="one-minute videos per seed (default: 3 on world 1, 8 on world 2)")  # fmt: skip
    parser.add_argument("--keep-probes", action="store_true",
                        help="measure the rollouts (free runs on world 2) again and keep each row's probes "
                        "from its JSON in --out, which must exist, with the same seeds and memory")  # fmt: skip
    parser.add_argument("--out", type=Path, help="folder of the row JSONs (default: docs/results/eval, "
                        "or docs/results/world2/eval)")  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.world.compare import earlier_probes, evaluate_row, with_probes
    from contextforcing.world.rows import comparison

    rows, defaults = comparison(args.world), _DEFAULTS[args.world]
    names = [row.name for row in rows]
    unknown = sorted(set(args.rows or ()) - set(names))
    if unknown:
        raise ValueError(f"--rows: unknown row(s) {', '.join(unknown)} on world {args.world}; choose from "
                         f"{', '.join(names)}")  # fmt: skip
    out = args.out or Path(defaults["out"])
    episodes, videos = args.episodes or defaults["episodes"], args.videos or defaults["videos"]
    with output_folder(out):
        for row in rows:
            if args.rows and row.name not in args.rows:
                continue
            path = out / f"{row.name}.json"
            earlier = earlier_probes(path, args.seeds) if args.keep_probes else None
            record = evaluate_row(row, seeds=args.seeds, episodes=episodes, videos=videos,
                                  probe=earlier is None)  # fmt: skip
            if earlier is not None:
                record = with_probes(record, earlier, path)
            write_text_atomically(path, json.dumps(record, indent=1))
            logger.info("%s: wrote %s", row.name, path)
    return 0

"""The `contextforcing` command line: a thin map from subcommands to library calls.

Each subcommand lives in `contextforcing/commands/<name>.py` (the miniature's in
`contextforcing/world/commands/`) and exposes
`register(subparsers)`, which adds its parser and sets `run=<function(args) -> int>`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["build_parser", "main"]

_COMMANDS = (
    "contextforcing.commands.convert",
    "contextforcing.commands.generate",
    "contextforcing.world.commands.world",
    "contextforcing.world.commands.train_codec",
    "contextforcing.commands.evaluate",
    "contextforcing.commands.train",
    "contextforcing.commands.encode_prompts",
    "contextforcing.commands.encode_videos",
    "contextforcing.commands.plan_budget",
    "contextforcing.world.commands.probe_recall",
    "contextforcing.world.commands.compare",
    "contextforcing.world.commands.results",
)
"""The modules of the subcommands: the library's, then the miniature's."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contextforcing", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except ValueError as error:
        # User-facing errors (bad input, bad config) are ValueErrors that name the problem.
        print(f"contextforcing {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

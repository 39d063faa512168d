"""The `contextforcing` command line: a thin map from subcommands to library calls.

Each subcommand lives in `contextforcing/commands/<name>.py` (the miniature's in
`contextforcing/world/commands/`) and exposes
`register(subparsers)`, which adds its parser and sets `run=<function(args) -> int>`.

User errors are ValueErrors that name the file, flag or key at fault: they print one line and exit 2
(with `--verbose`, the traceback too). An operating-system error (a full disk, a file that vanished)
prints one line and exits 1; an interrupt (Ctrl-C) exits 130. Anything else is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

__all__ = ["build_parser", "main"]

_COMMANDS: dict[str, str] = {
    "convert": "contextforcing.commands.convert",
    "generate": "contextforcing.commands.generate",
    "world": "contextforcing.world.commands.world",
    "train-codec": "contextforcing.world.commands.train_codec",
    "evaluate": "contextforcing.commands.evaluate",
    "train": "contextforcing.commands.train",
    "presets": "contextforcing.commands.train",
    "encode-prompts": "contextforcing.commands.encode_prompts",
    "encode-videos": "contextforcing.commands.encode_videos",
    "plan-budget": "contextforcing.commands.plan_budget",
    "probe-recall": "contextforcing.world.commands.probe_recall",
    "free-run": "contextforcing.world.commands.free_run",
    "compare": "contextforcing.world.commands.compare",
    "results": "contextforcing.world.commands.results",
    "pool": "contextforcing.world.commands.pool",
}
"""Each subcommand and the module that registers it: the library's, then the miniature's."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `command` alone (a known name): a run imports only the
    module of the command it runs, not what the others need to build their parsers."""
    parser = argparse.ArgumentParser(prog="contextforcing", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG level, tracebacks on errors"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [_COMMANDS[command]] if command in _COMMANDS else list(dict.fromkeys(_COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    for subparser in subparsers.choices.values():
        # Also accepted after the subcommand; SUPPRESS keeps the top-level value when it is absent.
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="log at DEBUG level, tracebacks on errors")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_of(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except ValueError as error:
        # User-facing errors (bad input, bad config) are ValueErrors that name the problem.
        return _report(args, str(error), 2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _report(args, f"{where}{error.strerror or error}", 1)
    except KeyboardInterrupt:
        return _report(args, "interrupted", 130)


def _command_of(argv: list[str]) -> str | None:
    """The subcommand a command line names: its first argument that is not a top-level flag."""
    words = [word for word in argv if word not in ("-v", "--verbose")]
    return words[0] if words else None


def _report(args: argparse.Namespace, message: str, code: int) -> int:
    if args.verbose:
        traceback.print_exc()
    # One line: continuation lines of a message are joined so the error reads as one.
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"contextforcing {args.command}: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

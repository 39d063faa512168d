"""`contextforcing plan-budget [--gpus 8] [--preset NAME ...] [--set key=value ...]`: memory per GPU and
FLOPs per step of the wan-* stages, on paper."""

from __future__ import annotations

import argparse

from contextforcing.arguments import positive_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan-budget", help="print memory per GPU and FLOPs per step of training stages, on paper"
    )
    parser.add_argument("--gpus", type=positive_int, default=8, help="processes the stage is sharded over")
    parser.add_argument("--preset", action="append", help="a preset (repeatable; default: every wan-*)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field of every preset")  # fmt: skip
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.config import override, parse_assignments
    from contextforcing.presets import preset
    from contextforcing.training.budget import format_budgets, stage_budget
    from contextforcing.training.wan_presets import WAN_PRESETS

    updates = parse_assignments(args.assignments)
    budgets = []
    for name in args.preset or list(WAN_PRESETS):
        config = override(preset(name), updates)
        budgets.append(stage_budget(name, config, args.gpus, config.data.latent_size))
    print(f"Per GPU (GiB) on {args.gpus} GPUs with FSDP2 full sharding; PFLOP of one trainer step, all GPUs:")
    print(format_budgets(budgets))
    return 0

"""`contextforcing probe-teacher RUN`: identity recall against gap of a trained (context) teacher."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from contextforcing.config import from_dict
from contextforcing.eval.teacher_probe import ProbeConfig, probe_teacher

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe-teacher", help="identity recall vs gap of a teacher, with a true history"
    )
    parser.add_argument("folder", metavar="RUN", help="a teacher run folder (config.json + model/)")
    parser.add_argument(
        "--gaps", type=float, nargs="+", default=list(ProbeConfig().gaps_seconds), help="seconds"
    )
    parser.add_argument(
        "--episodes", type=int, default=ProbeConfig().episodes_per_gap, help="returns per gap"
    )
    parser.add_argument("--steps", type=int, default=ProbeConfig().num_steps, help="Euler steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from contextforcing.codec.loading import load_codec
    from contextforcing.data.world_text import WorldTextEncoder
    from contextforcing.model.weights import load_model
    from contextforcing.training.config import ExperimentConfig

    folder = Path(args.folder)
    if not (folder / "config.json").is_file() or not (folder / "model").is_dir():
        raise ValueError(f"{folder} is not a run folder: expected config.json and model/")
    config = from_dict(ExperimentConfig, json.loads((folder / "config.json").read_text()))
    probe = ProbeConfig(gaps_seconds=tuple(args.gaps), episodes_per_gap=args.episodes, num_steps=args.steps,
                        seed=args.seed)  # fmt: skip
    model = load_model(folder / "model").eval()
    text_encoder = WorldTextEncoder(config.model.text_dim, config.model.text_len)
    results = probe_teacher(
        model, load_codec(config.data.codec), text_encoder, config.teacher, config.data.world, probe
    )
    for row in results:
        logger.info("gap %5.1f s  recall %.2f  colour %.2f  (n=%d)", row["gap_seconds"], row["recall"],
                    row["colour_recall"], row["count"])  # fmt: skip
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"run": str(folder), "step": json.loads((folder / "model" / "config.json").read_text()).get("step"),
                  "probe": {"episodes_per_gap": args.episodes, "num_steps": args.steps, "seed": args.seed},
                  "results": results}  # fmt: skip
        Path(args.out).write_text(json.dumps(record, indent=2))
    return 0

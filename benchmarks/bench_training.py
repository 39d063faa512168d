"""Wall time of one training step of every stage, at tiny and world scale, to plan the pipeline.

    python benchmarks/bench_training.py [--scale tiny world] [--steps 3] [--threads 1]

Every stage runs from random weights (its `init` paths are cleared) with a randomly initialised
world codec of the right channel count, through the real trainer. The first step is a warm-up; the
median of the remaining steps is reported, with a projection of the preset's full step count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from contextforcing.config import override
from contextforcing.presets import preset, preset_names
from contextforcing.world.codec import WorldCodec, WorldCodecConfig, save_world_codec
from contextforcing.world.components import train_world

SCALES = {"tiny": "tiny-", "world": "world-"}


def _time_preset(name: str, steps: int, codec: str, folder: Path) -> tuple[float, int]:
    config = preset(name)
    full_steps = config.train.steps
    config = override(config, {
        "init.model": "", "init.teacher": "", "init.critic": "", "data.codec": codec,
        "train.steps": steps, "train.log_every": 1, "train.checkpoint_every": steps,
    })  # fmt: skip
    train_world(config, folder / name)
    lines = [json.loads(line) for line in (folder / name / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(line["seconds"] for line in lines[1:]), full_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", nargs="+", default=["tiny", "world"], choices=sorted(SCALES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} steps={args.steps} (median after one warm-up step)")
    print(f"{'preset':24s} {'s/step':>8s} {'preset steps':>12s} {'projected':>10s}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        codec = str(save_world_codec(WorldCodec(WorldCodecConfig(latent_channels=8)), folder / "codec"))
        for scale in args.scale:
            for name in (n for n in preset_names() if n.startswith(SCALES[scale])):
                seconds, full_steps = _time_preset(name, args.steps, codec, folder)
                print(f"{name:24s} {seconds:8.3f} {full_steps:12d} {seconds * full_steps / 60:8.1f} min")


if __name__ == "__main__":
    main()

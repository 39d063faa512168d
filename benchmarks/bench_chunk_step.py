"""The chunk loop, eager against compiled, on the CPU: the world's minute and a chunk of Wan2.1-1.3B width.

Two measurements, each interleaved (A B C A B C ...) so that a shared machine's drift hits every
variant alike; every run is its own process, and the figure is the median over runs:

    world  the shipped world student (`contextforcing/world/checkpoints/context-forcing`), text only,
           the `context` memory, 8 x 8 latents, 60 s = 80 chunks: the seconds spent in the chunk loop
           (the sum of `StreamingGenerator.stats.chunk_seconds`, i.e. sampling, refresh and memory
           bookkeeping; no decoding). Each process streams the minute once to warm up (and, when
           compiling, to compile) and times the second minute.
    wan    `model_preset("wan2.1-1.3b")` with two layers and random weights, latents --wan-latent (a
           reduced pixel size), the `context` memory filled: median milliseconds per chunk over
           chunks 10-20 of a stream, after a warm-up stream.

Variants: `eager` and `compiled` (`StreamingGenerator(compile=True)`) of this checkout, and, with
`--baseline PATH`, `before`: the eager loop of another checkout of the library at PATH (a worktree of
the commit to compare against), run with PYTHONPATH=PATH.

    python benchmarks/bench_chunk_step.py [--runs 3] [--threads 1] [--baseline ../main] [--only world]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("bench_chunk_step")

ROOT = Path(__file__).resolve().parents[1]
WORLD_MODEL = "contextforcing/world/checkpoints/context-forcing/model"


def _streamer(model, compile: bool, latent: tuple[int, int]):
    from contextforcing.inference.streaming import StreamingGenerator
    from contextforcing.memory import memory_preset

    if compile:
        return StreamingGenerator(model, memory_preset("context"), latent_size=latent, compile=True)
    return StreamingGenerator(model, memory_preset("context"), latent_size=latent)  # also runs on older code


def _stream(streamer, text, num_chunks: int) -> list[float]:
    import torch

    for _ in streamer.stream(text, num_chunks=num_chunks, generator=torch.Generator().manual_seed(0)):
        pass
    return list(streamer.stats.chunk_seconds)


def worker_world(compile: bool) -> dict[str, float]:
    import torch

    from contextforcing.model.weights import load_model
    from contextforcing.world.components import world_text_encoder

    model = load_model(ROOT / WORLD_MODEL).eval()
    text = world_text_encoder(model.config).encode([""])
    streamer = _streamer(model, compile, (8, 8))
    started = time.perf_counter()
    _stream(streamer, text, 80)  # warm-up (and compilation)
    warm = time.perf_counter() - started
    with torch.no_grad():
        seconds = _stream(streamer, text, 80)
    return {"loop_s": sum(seconds), "first_minute_s": warm}


def worker_wan(compile: bool, latent: tuple[int, int]) -> dict[str, float]:
    import dataclasses

    import torch

    from contextforcing.model.config import model_preset
    from contextforcing.model.dit import CausalDiT

    config = dataclasses.replace(model_preset("wan2.1-1.3b"), num_layers=2)
    torch.manual_seed(0)
    model = CausalDiT(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.02)
    text = torch.randn(1, 16, config.text_dim, generator=torch.Generator().manual_seed(0))
    streamer = _streamer(model, compile, latent)
    _stream(streamer, text, 12)  # warm-up (and compilation)
    seconds = _stream(streamer, text, 20)
    return {"chunk_ms": 1e3 * statistics.median(seconds[10:20])}


def _run_worker(which: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    root = Path(args.baseline).resolve() if variant == "before" else ROOT
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", which, "--variant", variant,
               "--threads", str(args.threads), "--wan-latent", *map(str, args.wan_latent)]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{which}/{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per variant (interleaved)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (OMP_NUM_THREADS too)")
    parser.add_argument("--baseline", help="another checkout of the library, timed as 'before' (eager)")
    parser.add_argument("--only", choices=("world", "wan"), help="one of the two measurements")
    parser.add_argument("--wan-latent", type=int, nargs=2, default=(12, 20), metavar=("H", "W"))
    parser.add_argument("--worker", choices=("world", "wan"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        compile = args.variant == "compiled"
        result = (
            worker_world(compile) if args.worker == "world" else worker_wan(compile, tuple(args.wan_latent))
        )
        print(json.dumps(result))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plans = {"world": ["eager", "compiled"], "wan": ["eager", "compiled"]}
    if args.baseline:
        plans["world"].insert(0, "before")
        plans["wan"].insert(0, "before")
    for which, variants in plans.items():
        if args.only and which != args.only:
            continue
        results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for _ in range(args.runs):
            for variant in variants:
                results[variant].append(_run_worker(which, variant, args))
        key = "loop_s" if which == "world" else "chunk_ms"
        medians = {v: statistics.median(r[key] for r in runs) for v, runs in results.items()}
        reference = medians["before" if "before" in medians else "eager"]
        for variant in variants:
            extra = ""
            if which == "world":
                warm = statistics.median(r["first_minute_s"] for r in results[variant])
                extra = f"  (first minute, compilation included: {warm:.2f} s)"
            logger.info("%s  %-8s  %s %.3f  (runs %s)  speed-up x%.2f%s", which, variant, key, medians[variant],
                        ", ".join(f"{r[key]:.3f}" for r in results[variant]), reference / medians[variant],
                        extra)  # fmt: skip


if __name__ == "__main__":
    main()

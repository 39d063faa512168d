"""Time per chunk and memory of streamed generation at 10 s, 60 s and 5 min of video (tiny model, CPU).

Once the memory is full, time per chunk and memory should stay flat however long the video runs.
The script prints, per length, the median time of the first chunks after the cache fills and of the
last chunks, their ratio, and the process's resident memory right after the cache fills and at the end.

    .venv/bin/python benchmarks/bench_streaming.py [--memory context] [--latent-size 8]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics

import torch

from contextforcing.inference import StreamingGenerator
from contextforcing.inference.generate import LATENT_FRAMES_PER_SECOND
from contextforcing.memory import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT

logger = logging.getLogger("bench_streaming")

WINDOW = 10  # chunks averaged at each end


def resident_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(seconds: float, memory: str, latent: int) -> dict[str, float]:
    config = memory_preset(memory)
    model = CausalDiT(model_preset("tiny")).eval()
    streamer = StreamingGenerator(model, config, latent_size=(latent, latent))
    num_chunks = math.ceil(seconds * LATENT_FRAMES_PER_SECOND / config.frames_per_chunk)
    full_at = math.ceil((config.num_cache_frames or 0) / config.frames_per_chunk)
    text = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(0))
    rss = []
    for _ in streamer.stream(text, num_chunks=num_chunks, generator=torch.Generator().manual_seed(0)):
        rss.append(resident_bytes())
    times = streamer.stats.chunk_seconds
    first = times[full_at : full_at + WINDOW]
    last = times[-WINDOW:]
    return {
        "seconds": seconds, "chunks": num_chunks,
        "first_ms": 1e3 * statistics.median(first), "last_ms": 1e3 * statistics.median(last),
        "time_ratio": statistics.median(last) / statistics.median(first),
        "rss_after_fill_mb": rss[min(full_at + WINDOW, len(rss) - 1)] / 2**20, "rss_end_mb": rss[-1] / 2**20,
        "store_kb": streamer.memory.store.nbytes / 1024,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="context")
    parser.add_argument("--latent-size", type=int, default=8)
    parser.add_argument("--lengths", type=float, nargs="+", default=[10.0, 60.0, 300.0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    run(10.0, args.memory, args.latent_size)  # warm-up
    for seconds in args.lengths:
        r = run(seconds, args.memory, args.latent_size)
        logger.info(
            "%6.0f s  %4d chunks  after fill %.2f ms/chunk  last %.2f ms/chunk  ratio %.3f  "
            "rss after fill %.1f MiB  at end %.1f MiB  (ratio %.3f)  store %.1f KiB",
            r["seconds"], r["chunks"], r["first_ms"], r["last_ms"], r["time_ratio"],
            r["rss_after_fill_mb"], r["rss_end_mb"], r["rss_end_mb"] / r["rss_after_fill_mb"], r["store_kb"],
        )  # fmt: skip


if __name__ == "__main__":
    main()

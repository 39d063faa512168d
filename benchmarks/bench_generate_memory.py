"""Peak memory and speed of `contextforcing generate` against the video's length (the world, CPU).

Each length runs in a fresh process (`contextforcing generate --seconds S`, the shipped Context
Forcing student and world codec, one thread), so each peak resident set size is that run's alone.
Frames are encoded into the mp4 as they are decoded, so the peak should not grow with the length.
The script prints, per length, the peak RSS, its ratio to the first length's, end-to-end and
denoising-only frames per second and the time to the first chunk, all read from report.json.

    .venv/bin/python benchmarks/bench_generate_memory.py [--lengths 60 600] [--gif 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(seconds: float, out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "contextforcing",
        "generate",
        "--seconds",
        str(seconds),
        "--out",
        str(out),
    ]
    subprocess.run([*command, *extra], check=True, env=env, stderr=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[60.0, 600.0])
    parser.add_argument("--gif", type=int, default=0, help="also write the GIF at this scale")
    args = parser.parse_args()
    extra = ["--gif", str(args.gif)] if args.gif else []
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.lengths:
            report = run(seconds, Path(tmp) / f"run{seconds:g}", extra)
            rss = report["peak_rss_bytes"]
            first = first or rss
            print(
                f"{seconds:7.0f} s  {report['num_frames']:6d} frames  peak RSS {rss / 2**20:7.1f} MiB "
                f"(x{rss / first:.3f})  end to end {report['frames_per_second']:6.1f} frames/s  denoising "
                f"{report['denoising_frames_per_second']:6.1f} frames/s  first chunk "
                f"{report['time_to_first_chunk_seconds']:.3f} s  wall {report['wall_seconds']:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()

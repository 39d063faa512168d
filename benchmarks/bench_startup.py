"""The whole `contextforcing generate` process against a bare `import torch`, and against another checkout.

Every run is its own process, the variants interleaved (A B C A B C ...) so that a shared machine's drift
hits each alike; the figures are medians over runs of the wall time and of the peak resident memory of
the child (the operating system's accounting, `resource.getrusage(RUSAGE_CHILDREN)`):

    torch     `python -c "import torch"`: the floor any start-up stands on;
    generate  `python -m contextforcing generate --out DIR` with its defaults (the shipped world student,
              60 s), this checkout;
    before    the same command run with PYTHONPATH=PATH, another checkout of the library (`--baseline`).

The ratios generate / torch and generate / before are taken run by run, then their median.

    python benchmarks/bench_startup.py [--runs 5] [--baseline PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# A helper process runs one command and reports its wall time and peak resident memory: ru_maxrss of
# RUSAGE_CHILDREN is the largest child a process has had, so each run needs a parent of its own.
_HELPER = (
    "import resource, subprocess, sys, time; start = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
)


def _one(variant: str, baseline: Path | None, out: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one run of a variant."""
    command = (
        ["-c", "import torch"]
        if variant == "torch"
        else ["-m", "contextforcing", "generate", "--out", str(out / variant)]
    )
    # Run from `out`: `python -m` puts the working directory first on the path, before PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(baseline if variant == "before" else ROOT)}
    done = subprocess.run([sys.executable, "-c", _HELPER, sys.executable, *command],
                          env=env, cwd=out, check=True, capture_output=True, text=True)  # fmt: skip
    wall, peak = (float(x) for x in done.stdout.split())
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout of the library (variant 'before')")
    args = parser.parse_args()
    variants = ["generate", "torch"] + (["before"] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:  # warm-up: file caches, the shipped weights read once
            _one(variant, args.baseline, Path(tmp))
        runs = {v: [] for v in variants}
        for _ in range(args.runs):
            for variant in variants:
                runs[variant].append(_one(variant, args.baseline, Path(tmp)))
    for variant in variants:
        walls, peaks = zip(*runs[variant], strict=True)
        print(f"{variant:9s} wall {statistics.median(walls):7.2f} s (min {min(walls):.2f}, max {max(walls):.2f})"
              f"  peak {statistics.median(peaks):7.1f} MiB")  # fmt: skip
    for other in variants[1:]:
        ratios = [a[0] / b[0] for a, b in zip(runs["generate"], runs[other], strict=True)]
        print(
            f"generate / {other}: wall {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()

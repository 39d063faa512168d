"""Time our DiT forward against diffusers' WanTransformer3DModel on the same weights and input.

    python benchmarks/bench_forward.py [--preset tiny|world|wan2.1-1.3b] [--frames 21] [--height 16] ...

Both models get identical weights (ours are loaded from the diffusers model's state dict through
our converter) and the same input; each forward is timed over several repeats after a warm-up,
alternating the two to share any drift of the machine. Prints the median times and the ratio
ours / diffusers (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from contextforcing.model.config import model_preset
from contextforcing.model.weights import diffusers_config, load_model


def _diffusers_model(config):
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(**diffusers_config(config)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random everywhere: Wan's init zeroes the head, which would make the check vacuous
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def _time(fn, repeats: int, clock) -> list[float]:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="world")
    parser.add_argument("--frames", type=int, default=21)
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall time, or this process's CPU time (steadier on a shared machine; with one thread)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = model_preset(args.preset)
    reference = _diffusers_model(config)
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = load_model(folder).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, config.in_channels, args.frames, args.height, args.width, generator=g)
    t = torch.rand(args.batch, generator=g) * 1000
    text = torch.randn(args.batch, config.text_len, config.text_dim, generator=g)
    with torch.inference_mode():
        ours_out = ours(x, t, text)
        diff = (ours_out - reference(x, t, text, return_dict=False)[0]).abs().max().item()
        scale = ours_out.abs().max().item()
        ours_times, ref_times = [], []
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        ours(x, t, text), reference(x, t, text, return_dict=False)  # warm-up
        for _ in range(args.repeats):  # alternate so both see the same machine state
            ours_times += _time(lambda: ours(x, t, text), 1, clock)
            ref_times += _time(lambda: reference(x, t, text, return_dict=False), 1, clock)
    ours_ms, ref_ms = 1e3 * statistics.median(ours_times), 1e3 * statistics.median(ref_times)
    tokens = args.frames * config.tokens_per_frame(args.height, args.width)
    print(
        f"preset={args.preset} batch={args.batch} tokens={tokens} threads={args.threads} max|diff|={diff:.2e} max|out|={scale:.2f}"
    )
    print(f"ours      {ours_ms:9.2f} ms (median of {len(ours_times)})")
    print(f"diffusers {ref_ms:9.2f} ms (median of {len(ref_times)})")
    print(f"ratio ours/diffusers = {ours_ms / ref_ms:.3f}")


if __name__ == "__main__":
    main()

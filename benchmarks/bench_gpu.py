"""End-to-end streaming speed on one GPU: Wan2.1-1.3B at 480 x 832, eager against compiled against
compiled with CUDA graphs.

For each variant, in its own process (so that peak memory and compilation are its own), the script
streams a warm-up video (compilation happens there, and its time to the first chunk is printed as
`first chunk cold`), then times a second video of --seconds:

    denoise   the chunk loop (`StreamingGenerator.stats.chunk_seconds`: the sampler's passes, the
              refresh and the memory's bookkeeping, synchronised per chunk)
    decode    the Wan VAE's streamed decode of every chunk (synchronised)
    encode    writing the mp4 (`contextforcing.video_io.write_video`)
    first     time from the start of the stream to the first decoded chunk (warm)
    peak      peak accelerator memory of the process (`torch.accelerator.max_memory_allocated`)

and prints frames per second end to end (pixel frames / (denoise + decode + encode)) next to the
denoise-only figure (pixel frames / denoise). Pixel frames are what the VAE decodes: 4 per latent
frame after the first chunk's 1 + 4 (F - 1).

    python benchmarks/bench_gpu.py [--model WAN_FOLDER] [--vae WAN_FOLDER] [--seconds 10]
        [--variants eager compiled cudagraphs] [--dtype bfloat16]

Without --model the DiT has random weights of `model_preset("wan2.1-1.3b")`; without --vae the VAE has
random weights of diffusers' default `AutoencoderKLWan` (the Wan2.1 VAE's shape). Speed does not depend
on the weights. Text features are random, [1, 512, 4096] as umT5 gives them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("bench_gpu")

LATENT = (60, 104)  # 480 x 832 pixels
VARIANTS = {"eager": (False, None), "compiled": (True, None), "cudagraphs": (True, "reduce-overhead")}


def _sync() -> None:
    import torch

    torch.accelerator.synchronize()


def _video(streamer, codec, text, num_chunks: int, seed: int) -> dict[str, float]:
    import torch

    from contextforcing.video_io import write_video

    decoder = codec.stream_decoder()
    generator = torch.Generator(device=text.device).manual_seed(seed)
    pieces, decode, first = [], 0.0, None
    started = time.perf_counter()
    for chunk in streamer.stream(text, num_chunks=num_chunks, generator=generator):
        start = time.perf_counter()
        with torch.no_grad():
            pieces.append(decoder.decode(chunk)[0].float().cpu())
        _sync()
        decode += time.perf_counter() - start
        first = first or time.perf_counter() - started
    frames = torch.cat(pieces, dim=1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        write_video(Path(folder) / "video.mp4", frames, 16.0)
    encode = time.perf_counter() - start
    denoise = sum(streamer.stats.chunk_seconds)
    return {"frames": frames.shape[1], "denoise_s": denoise, "decode_s": decode, "encode_s": encode,
            "first_chunk_s": first}  # fmt: skip


def worker(variant: str, args: argparse.Namespace) -> dict[str, float]:
    import torch

    from contextforcing.codec.wan_vae import WanVAECodec
    from contextforcing.inference.streaming import StreamingGenerator
    from contextforcing.memory import memory_preset
    from contextforcing.model.config import model_preset
    from contextforcing.model.dit import CausalDiT
    from contextforcing.runtime import resolve_device

    device, dtype = resolve_device("auto"), getattr(torch, args.dtype)
    if args.model:
        from contextforcing.model.weights import load_model

        model = load_model(args.model, dtype=dtype, device=device).eval()
    else:
        with torch.device(device):
            model = CausalDiT(model_preset("wan2.1-1.3b")).to(dtype).eval()
    if args.vae:
        codec = WanVAECodec.from_pretrained(args.vae, dtype=dtype)
    else:
        from diffusers import AutoencoderKLWan

        codec = WanVAECodec(AutoencoderKLWan().to(dtype))
    codec.vae.to(device)
    compile, mode = VARIANTS[variant]
    memory = memory_preset("context")
    streamer = StreamingGenerator(model, memory, latent_size=LATENT, compile=compile, compile_mode=mode)
    text = torch.randn(1, 512, model.config.text_dim, device=device, dtype=dtype)
    num_chunks = math.ceil(args.seconds * 4 / memory.frames_per_chunk)
    started = time.perf_counter()
    cold = _video(streamer, codec, text, num_chunks, seed=1)
    cold_wall = time.perf_counter() - started
    torch.accelerator.reset_peak_memory_stats()
    warm = _video(streamer, codec, text, num_chunks, seed=0)
    return {**warm, "first_chunk_cold_s": cold["first_chunk_s"], "cold_video_s": cold_wall,
            "peak_bytes": torch.accelerator.max_memory_allocated()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="DiT weights (anything `load_model` reads); default random")
    parser.add_argument("--vae", help="Wan VAE folder (or a pipeline folder with vae/); default random")
    parser.add_argument("--seconds", type=float, default=10.0, help="video length timed (4 latent frames/s)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for variant in args.variants:
        command = [sys.executable, __file__, "--worker", variant, "--seconds", str(args.seconds), "--dtype",
                   args.dtype, *(["--model", args.model] if args.model else []),
                   *(["--vae", args.vae] if args.vae else [])]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            logger.info("%s failed:\n%s", variant, done.stderr[-3000:])
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        total = r["denoise_s"] + r["decode_s"] + r["encode_s"]
        logger.info(
            "%-10s  %d frames  end-to-end %.2f FPS  denoise-only %.2f FPS  (denoise %.2f s, decode %.2f s, "
            "encode %.2f s)  first chunk %.3f s warm, %.1f s cold  peak %.1f GiB",
            variant, r["frames"], r["frames"] / total, r["frames"] / r["denoise_s"], r["denoise_s"],
            r["decode_s"], r["encode_s"], r["first_chunk_s"], r["first_chunk_cold_s"], r["peak_bytes"] / 2**30,
        )  # fmt: skip


if __name__ == "__main__":
    main()

"""The real configuration, run: two chunks from the `wan2.1-1.3b` student at full width and depth.

Random weights (30 layers, width 1536, 12 heads; the full-size Wan VAE, `AutoencoderKLWan()`'s default
config) stream two chunks through `ContextForcingPipeline` at a reduced pixel size on the CPU, with a
seeded embedding per prompt in place of UMT5-XXL (4096-wide, 512 tokens, as UMT5 gives). The script
prints the time of each chunk, the decode time, the peak resident memory, and the sizes a GPU must
hold at 480 x 832, computed from the config.

    .venv/bin/python benchmarks/bench_real_scale.py [--height 64 --width 112] [--dtype float32] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from contextforcing.memory.config import memory_preset
from contextforcing.model.config import DiTConfig, model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.pipeline import ContextForcingPipeline, parse_dtype
from contextforcing.text_encoder import SeededTextEncoder

GIB = 2**30


def random_student(config: DiTConfig, dtype: torch.dtype) -> CausalDiT:
    """The model with seeded random weights, built without the default init (1.4 B parameters)."""
    with torch.device("meta"):
        model = CausalDiT(config)
    model = model.to_empty(device="cpu").to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.02, generator=generator)
    return model.eval()


def real_size_budget(config: DiTConfig, height: int = 480, width: int = 832) -> None:
    """What a GPU holds at 480 x 832 with the context memory, in bf16, from the config alone."""
    memory = memory_preset("context")
    tokens = config.tokens_per_frame(height // 8, width // 8)
    frames = memory.num_cache_frames
    kv = config.num_layers * frames * tokens * config.dim * 2 * 2  # K and V, 2 bytes each
    text_kv = config.num_layers * config.text_len * config.dim * 2 * 2
    with torch.device("meta"):
        weights = sum(p.numel() for p in CausalDiT(config).parameters())
    print(f"at {height} x {width}: {tokens} tokens per latent frame, {frames} frames in the cache")
    print(f"  KV cache {config.num_layers} layers x {frames} x {tokens} x {config.dim} x 2 (K, V) in bf16: "
          f"{kv / 1e9:.2f} GB ({kv / GIB:.2f} GiB)")  # fmt: skip
    print(f"  student weights {weights / 1e9:.2f} B parameters: {2 * weights / 1e9:.2f} GB in bf16")
    print(f"  cross-attention K/V of one prompt ({config.text_len} tokens): {text_kv / 1e6:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-vae", action="store_true", help="draw the latents instead of decoding them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = model_preset("wan2.1-1.3b")
    real_size_budget(config)
    started = time.perf_counter()
    student = random_student(config, parse_dtype(args.dtype))
    codec = None
    if not args.no_vae:
        from diffusers import AutoencoderKLWan

        from contextforcing.codec.wan_vae import WanVAECodec

        torch.manual_seed(0)  # the VAE's own init
        codec = WanVAECodec(AutoencoderKLWan())
    pipe = ContextForcingPipeline(
        student, codec=codec, text_encoder=SeededTextEncoder(config.text_dim, config.text_len)
    )
    print(f"built in {time.perf_counter() - started:.1f} s")
    plan = pipe.prepare("a red fox runs through snow", seconds=1.5, height=args.height, width=args.width)
    started = time.perf_counter()
    num_frames = 0
    for chunk in pipe.stream(plan):
        num_frames += len(chunk.frames)
        print(
            f"chunk {chunk.index}: {tuple(chunk.frames.shape)} at {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    record = pipe.record
    print(
        f"{args.height} x {args.width}, {args.dtype}, {args.threads} thread(s): denoising "
        f"{', '.join(f'{s:.1f}' for s in record.streamer.stats.chunk_seconds)} s per chunk, decoding "
        f"{', '.join(f'{s:.1f}' for s in record.decode_seconds)} s, {num_frames} frames in "
        f"{time.perf_counter() - started:.1f} s; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; KV store "
        f"{record.streamer.memory.store.nbytes / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()

"""A tiny random Wan2.1 diffusers folder for tests: model_index.json, transformer/, vae/, text_encoder/
and tokenizer/, each a few kilobytes, built with diffusers' and transformers' own classes.

    make_wan_folder(path)   -> path, holding the folder
    TINY_OVERRIDES          `--set` values that shrink every wan-* stage to seconds on a CPU
    write_clips(folder)     a few captioned mp4 clips (one too short, one without a caption)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "runs", "on", "the", "beach", "red", "ball"]
TEXT_DIM = 16
LATENT_CHANNELS = 4
PIXELS = 32
"""Frames are PIXELS x PIXELS; the VAE's x8 makes 4 x 4 latents."""

TINY_OVERRIDES = {
    "data.latent_size": "4,4", "train.batch_size": "2", "train.steps": "2", "train.checkpoint_every": "2",
    "train.precision": "fp32", "train.activation_checkpointing": "false", "train.ema_start": "0",
    "teacher.num_target_frames": "6", "teacher.num_slow_frames": "2", "teacher.bank_capacity": "4",
    "teacher.bank_warmup_steps": "1", "teacher.lora_rank": "4", "teacher.lora_alpha": "4",
    "distill.num_frames": "6", "distill.num_context_frames": "6", "distill.num_grad_frames": "3",
    "distill.min_rollout_frames": "12", "distill.max_rollout_frames": "15",
    "distill.rollout_decay_steps": "2", "distill.student_every": "1", "distill.ode_steps": "4",
}  # fmt: skip
"""Two steps of any wan-* stage on the tiny folder (clips of at most 3 + 2 * 6 + 6 + 6 = 27 latents)."""


def _tokenizer():
    import tokenizers
    import transformers

    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def make_wan_folder(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Wan2.1 text-to-video pipeline folder at `path`; returns it."""
    import diffusers
    import transformers

    path = Path(path)
    torch.manual_seed(seed)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, text_dim=TEXT_DIM, freq_dim=32, ffn_dim=128, num_layers=2,
        rope_max_seq_len=64,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # Wan's init zeroes the output head; random weights make every output count
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    transformer.save_pretrained(path / "transformer")
    diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).save_pretrained(path / "vae")  # fmt: skip
    config = transformers.UMT5Config(
        vocab_size=len(WORDS), d_model=TEXT_DIM, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8,
    )  # fmt: skip
    transformers.UMT5EncoderModel(config).save_pretrained(path / "text_encoder")
    _tokenizer().save_pretrained(path / "tokenizer")
    index = {
        "_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
        "transformer": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    }  # fmt: skip
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def write_clips(folder: str | Path, *, frames: int = 109, seed: int = 0) -> Path:
    """Three captioned clips of `frames` frames (enough for 28 latents), one of 20 frames (too short for
    any clip of the tiny presets) and one without a caption, at 16 fps, 40 x 48 (resized and cropped)."""
    from contextforcing.video_io import write_video

    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    captions = {"a": "a cat runs", "b": "a dog runs on the beach", "c": "a red ball"}
    for name, caption in captions.items():
        video = torch.rand(3, frames, 40, 48, generator=generator) * 2 - 1
        write_video(folder / f"{name}.mp4", video, fps=16)
        (folder / f"{name}.txt").write_text(caption + "\n")
    write_video(folder / "short.mp4", torch.zeros(3, 20, 40, 48), fps=16)
    (folder / "short.txt").write_text("a cat\n")
    write_video(folder / "nocaption.mp4", torch.zeros(3, frames, 40, 48), fps=16)
    return folder

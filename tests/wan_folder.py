"""A tiny random Wan2.1 text-to-video folder, saved by diffusers' own `WanPipeline.save_pretrained`,
and captioned clips to train on.

    make_tiny_wan_folder(path)  -> path, holding the folder (the session fixture `tiny_wan`)
    TINY_OVERRIDES              `--set` values that shrink every wan-* stage to seconds on a CPU
    write_clips(folder)         a few captioned mp4 clips (one too short, one without a caption)

Real formats at toy sizes: a word-level tokenizer, a 2-layer UMT5 encoder (d_model 16), a small
`AutoencoderKLWan` (z_dim 4, spatial factor 8, temporal factor 4) and a 2-layer
`WanTransformer3DModel` (2 heads of 128, as Wan's head dim) with random, non-zero weights everywhere.
Pixel sizes must be multiples of 16; 32 x 48 gives 4 x 6 latents.
"""

from __future__ import annotations

from pathlib import Path

import torch

from helpers import randomize

WORDS = (
    "a",
    "red",
    "blue",
    "fox",
    "cat",
    "runs",
    "sits",
    "on",
    "the",
    "beach",
    "in",
    "snow",
    "city",
    "at",
    "night",
    "dog",
    "ball",
)
SIZE = (32, 48)

TINY_OVERRIDES = {
    "data.latent_size": "4,4", "train.batch_size": "2", "train.grad_accumulation": "2", "train.steps": "2",
    "train.checkpoint_every": "2",
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

    vocab = {word: i for i, word in enumerate(("<pad>", "</s>", "<unk>", *WORDS))}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def make_tiny_wan_folder(folder: Path) -> Path:
    """Write the tiny Wan folder into `folder`; returns it."""
    import diffusers
    import transformers

    torch.manual_seed(0)  # the modules' own init; every weight is then randomized from explicit generators
    text_encoder = transformers.UMT5EncoderModel(
        transformers.UMT5Config(
            vocab_size=3 + len(WORDS),
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    ).eval()
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64,
    ).eval()  # fmt: skip
    randomize(transformer, seed=1, scale=0.05)
    randomize(text_encoder, seed=2, scale=0.1)
    pipeline = diffusers.WanPipeline(
        tokenizer=_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=5.0),
    )  # fmt: skip
    pipeline.save_pretrained(folder)
    return folder


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

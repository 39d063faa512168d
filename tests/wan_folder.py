"""A tiny random Wan2.1 text-to-video folder, saved by diffusers' own `WanPipeline.save_pretrained`.

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
)
SIZE = (32, 48)


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

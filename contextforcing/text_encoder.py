"""Text encoders: prompts -> [B, S, text_dim] features for the DiT's cross-attention.

`UMT5TextEncoder` wraps transformers' UMT5 encoder as Wan2.1 uses it: tokenize to at most
`max_length` (512) tokens, encode, zero every position past the prompt's own tokens, and pad with
zeros to `max_length`. Wan's DiT attends to the zero padding (there is no text mask), so the zeros
matter and are reproduced exactly.

A prompt longer than `max_length` tokens is cut there, with a warning that says so.
`SeededTextEncoder` gives each prompt a fixed random embedding (random-weight models, smoke tests).

Every text encoder exposes `encode(prompts: list[str]) -> Tensor [B, S, D]`.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["WAN_NEGATIVE_PROMPT", "SeededTextEncoder", "TextEncoder", "UMT5TextEncoder"]

# fmt: off
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# fmt: on
"""Wan2.1's default negative prompt: the unconditional branch of the teacher's guidance in the released
Self-Forcing and Context Forcing code (Chinese, as Wan's own)."""


@runtime_checkable
class TextEncoder(Protocol):
    def encode(self, prompts: list[str]) -> Tensor:
        """Prompts -> features [B, S, D]."""
        ...


class UMT5TextEncoder:
    """UMT5 features padded as in Wan2.1; build from modules or with `from_pretrained(folder)`."""

    def __init__(self, tokenizer: Any, encoder: Any, *, max_length: int = 512) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        max_length: int = 512,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> UMT5TextEncoder:
        """Load from a local folder holding `tokenizer/` and `text_encoder/` (a Wan diffusers pipeline)."""
        from transformers import AutoTokenizer, UMT5EncoderModel

        folder = Path(folder)
        tokenizer_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        encoder_dir = folder / "text_encoder" if (folder / "text_encoder").is_dir() else folder
        if not (encoder_dir / "config.json").is_file():
            raise ValueError(f"no UMT5 encoder at {encoder_dir}: expected config.json and weights")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        encoder = UMT5EncoderModel.from_pretrained(encoder_dir, torch_dtype=dtype)
        return cls(tokenizer, encoder.to(device), max_length=max_length)

    def _warn_if_cut(self, prompts: list[str]) -> None:
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=True)["input_ids"]]
        for prompt, length in zip(prompts, lengths, strict=True):
            if length > self.max_length:
                shown = prompt if len(prompt) <= 40 else prompt[:37] + "..."
                warnings.warn(
                    f"the prompt {shown!r} has {length} tokens; the text encoder reads the first "
                    f"{self.max_length} and the rest is cut",
                    stacklevel=3,
                )

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """Prompts -> [B, max_length, d_model], zero past each prompt's tokens."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        self._warn_if_cut(prompts)
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.encoder.parameters()).device
        mask = tokens.attention_mask.to(device)
        hidden = self.encoder(input_ids=tokens.input_ids.to(device), attention_mask=mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype)


class SeededTextEncoder:
    """A fixed random embedding [text_len, text_dim] per prompt, seeded by the prompt's CRC32.

    For random-weight models, where no real encoder fits: different prompts still condition
    differently, and the same prompt always the same.
    """

    def __init__(self, text_dim: int, text_len: int) -> None:
        self.text_dim, self.text_len = text_dim, text_len

    def encode(self, prompts: list[str]) -> Tensor:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        rows = []
        for prompt in prompts:
            generator = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            rows.append(torch.randn(self.text_len, self.text_dim, generator=generator))
        return torch.stack(rows)

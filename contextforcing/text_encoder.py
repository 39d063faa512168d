"""Text encoders: prompts -> [B, S, text_dim] features for the DiT's cross-attention.

`UMT5TextEncoder` wraps transformers' UMT5 encoder as Wan2.1 uses it: tokenize to at most
`max_length` (512) tokens, encode, zero every position past the prompt's own tokens, and pad with
zeros to `max_length`. Wan's DiT attends to the zero padding (there is no text mask), so the zeros
matter and are reproduced exactly.

Every text encoder exposes `encode(prompts: list[str]) -> Tensor [B, S, D]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["TextEncoder", "UMT5TextEncoder"]


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
        cls, folder: str | Path, *, max_length: int = 512, dtype: torch.dtype = torch.float32
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
        return cls(tokenizer, encoder, max_length=max_length)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Tensor:
        """Prompts -> [B, max_length, d_model], zero past each prompt's tokens."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
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

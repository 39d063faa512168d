"""Text conditioning for the synthetic world: one fixed embedding per scene-class prompt.

The world's prompts are a closed set (`world_assets.SCENE_CLASSES`), so a text encoder only has to give
each of them a distinct, deterministic embedding. The empty prompt is the unconditional branch of
classifier-free guidance and maps to zeros.

Shape legend:
    B  prompts        L  text tokens (text_len)        D  text embedding width (text_dim)
"""

from __future__ import annotations

import torch
from torch import Tensor

from contextforcing.world.assets import SCENE_CLASSES

__all__ = ["WorldTextEncoder"]

_SEED = 20_260_206


class WorldTextEncoder:
    """Maps scene-class prompts to seeded random token embeddings.

    Each prompt gets ``num_tokens = min(text_len, 4)`` non-zero tokens of unit RMS followed by zero
    padding, like a padded sentence; the embeddings depend only on (prompt index, text_dim, text_len).

    Args:
        text_dim: D.
        text_len: L.
    """

    def __init__(self, text_dim: int, text_len: int) -> None:
        if text_dim < 1:
            raise ValueError(f"text_dim must be >= 1, got {text_dim}")
        if text_len < 1:
            raise ValueError(f"text_len must be >= 1, got {text_len}")
        self.text_dim = text_dim
        self.text_len = text_len
        self.prompts: tuple[str, ...] = tuple(scene.prompt for scene in SCENE_CLASSES)
        generator = torch.Generator().manual_seed(_SEED)
        num_tokens = min(text_len, 4)
        table = torch.zeros(len(self.prompts), text_len, text_dim)
        table[:, :num_tokens] = torch.randn(len(self.prompts), num_tokens, text_dim, generator=generator)
        self._table = table

    def encode(self, prompts: list[str]) -> Tensor:
        """Embed prompts.

        Args:
            prompts: B scene-class prompts; "" is the unconditional prompt.

        Returns:
            [B, L, D] float32.

        Raises:
            ValueError: for a prompt that is neither a scene-class prompt nor "".
        """
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of strings, not a single string")
        rows = []
        for prompt in prompts:
            if prompt == "":
                rows.append(torch.zeros(self.text_len, self.text_dim))
            elif prompt in self.prompts:
                rows.append(self._table[self.prompts.index(prompt)])
            else:
                raise ValueError(
                    f"unknown world prompt {prompt!r}; valid prompts: {list(self.prompts)} or ''"
                )
        if not rows:
            return torch.zeros(0, self.text_len, self.text_dim)
        return torch.stack(rows)

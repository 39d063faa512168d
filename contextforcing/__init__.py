"""contextforcing: consistent minute-long autoregressive video generation with long context.

An implementation of Context Forcing (Chen, Wei et al., ICML 2026, arXiv 2602.06028) on the Wan2.1
video diffusion transformer.
"""

from contextforcing.model.config import DiTConfig, model_preset
from contextforcing.model.dit import CausalDiT, TextCache
from contextforcing.model.layout import FrameAttention, LayerContext, bidirectional, block_causal
from contextforcing.model.weights import convert, load_model, save_model

__all__ = [
    "CausalDiT",
    "DiTConfig",
    "FrameAttention",
    "LayerContext",
    "TextCache",
    "bidirectional",
    "block_causal",
    "convert",
    "load_model",
    "model_preset",
    "save_model",
]

__version__ = "0.1.0"

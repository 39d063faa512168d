"""Memory and time on paper: what one step of a stage holds per GPU and how many FLOPs it costs.

Computed from the DiTConfig and the stage's config alone (nothing is built but a model on the meta
device, to count parameters), for FSDP2 full sharding over `gpus` processes:

    parameters   every role's weights, fp32 shards (the frozen teacher and LoRA bases included)
    gradients    fp32 shards of the trained parameters (reduced in fp32)
    optimizer    AdamW's two fp32 moments of the trained parameters, sharded
    EMA          an fp32 shard of the trained model when train.ema_decay > 0
    KV cache     the student's rollout cache (distillation), K and V of every cached frame and layer
    activations  what autograd keeps for the largest backward of the step, with and without activation
                 checkpointing (per block); the per-token bytes were measured on CausalDiT's own forward
                 (`tests/test_budget.py` pins them), flash-style attention keeps no token-squared term

FLOPs count matmuls (2 per multiply-add) and attention (4 T K d), forward once, backward twice, plus a
forward of recomputation under activation checkpointing. A distillation step is the critic's step plus
1 / `student_every` of the student's, at the longest rollout, every random exit at its mean.

Shape legend: T query tokens, K key tokens, d model width, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from contextforcing.model.config import DiTConfig
from contextforcing.training.config import ExperimentConfig

__all__ = [
    "StageBudget",
    "activation_bytes_per_token",
    "block_bytes_per_token",
    "checkpointed_bytes_per_token",
    "format_budgets",
    "forward_flops",
    "stage_budget",
]

GiB = 2**30
_PER_LAYER = {"bf16": (64.15, 4.0), "fp32": (88.1, 8.0)}
"""Bytes autograd keeps per token and block: a * dim + b * ffn_dim (measured; see the module doc)."""
_OUTSIDE_BLOCKS = {"bf16": 10.4, "fp32": 12.7}
"""Bytes per token kept outside the blocks (embeddings, head), times dim."""
_PER_CHECKPOINTED_LAYER = {"bf16": 2.0, "fp32": 4.0}
"""Bytes per token and block kept under activation checkpointing (the block's input), times dim."""
_DTYPE_BYTES = {"bf16": 2, "fp32": 4}


def block_bytes_per_token(config: DiTConfig, precision: str) -> float:
    """Bytes autograd keeps per token for one block's forward."""
    a, b = _PER_LAYER[precision]
    return a * config.dim + b * config.ffn_dim


def activation_bytes_per_token(config: DiTConfig, precision: str) -> float:
    """Bytes autograd keeps per token for a forward of the whole model."""
    return (
        config.num_layers * block_bytes_per_token(config, precision) + _OUTSIDE_BLOCKS[precision] * config.dim
    )


def checkpointed_bytes_per_token(config: DiTConfig, precision: str) -> float:
    """Peak bytes per token under per-block checkpointing: every block's input and what lies outside
    the blocks, and one block's activations while it is recomputed."""
    kept = (config.num_layers * _PER_CHECKPOINTED_LAYER[precision] + _OUTSIDE_BLOCKS[precision]) * config.dim
    return kept + block_bytes_per_token(config, precision)


def forward_flops(config: DiTConfig, tokens: int, keys: int) -> float:
    """FLOPs of one forward over `tokens` query tokens attending to `keys` tokens (own ones included)."""
    d, f, s = config.dim, config.ffn_dim, config.text_len
    patch = config.patch_size[1] * config.patch_size[2]
    per_layer = 2 * tokens * (6 * d * d + 2 * d * f) + 4 * s * d * d + 4 * tokens * (keys + s) * d
    io = 2 * tokens * patch * (config.in_channels + config.out_channels) * d + 2 * s * config.text_dim * d
    return config.num_layers * per_layer + io


def _numel(config: DiTConfig) -> tuple[int, int]:
    """(parameters of the model, LoRA parameters per unit of rank on q, k, v, o and the FFN)."""
    from contextforcing.model.dit import CausalDiT
    from contextforcing.training.lora import LORA_TARGETS

    with torch.device("meta"):
        model = CausalDiT(config)
    lora = sum(
        module.in_features + module.out_features
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.endswith("." + t) for t in LORA_TARGETS)
    )
    return sum(p.numel() for p in model.parameters()), lora


@dataclass(frozen=True, slots=True)
class StageBudget:
    """Per-GPU bytes and per-step FLOPs of one stage (see the module docstring)."""

    name: str
    gpus: int
    samples_per_gpu: float
    """Samples one GPU holds at once: its share of the batch over the micro-batches."""
    parameters: float
    gradients: float
    optimizer: float
    ema: float
    kv_cache: float
    activations: float
    activations_checkpointed: float
    flops: float

    def total(self, checkpointed: bool) -> float:
        act = self.activations_checkpointed if checkpointed else self.activations
        return self.parameters + self.gradients + self.optimizer + self.ema + self.kv_cache + act


def stage_budget(name: str, config: ExperimentConfig, gpus: int, latent_size: tuple[int, int]) -> StageBudget:
    """The budget of `config` on `gpus` GPUs with latents of `latent_size` (h, w)."""
    from contextforcing.training.stages import stage_spec

    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    spec, model, dist = stage_spec(config.stage), config.model, config.distill
    per_frame = model.tokens_per_frame(*latent_size)
    numel, lora_unit = _numel(model)
    lora = spec.lora and config.teacher.lora_rank > 0
    trained = lora_unit * config.teacher.lora_rank if lora else numel
    trainable = trained + (numel if spec.is_distillation else 0)
    stored = numel * len(spec.roles) + (trained if lora else 0)
    samples = config.train.batch_size / gpus / config.train.grad_accumulation  # held at once
    precision = config.train.precision
    chunk = config.memory.frames_per_chunk

    def grad_pass(frames: int, keys: int | None = None) -> float:
        """FLOPs of forward + backward (+ recompute) over `frames` frames per sample."""
        passes = 3 + config.train.activation_checkpointing
        return passes * forward_flops(model, frames * per_frame, (keys or frames) * per_frame)

    kv_cache = 0.0
    if spec.trained == "teacher":
        frames = config.teacher.num_context_frames + config.teacher.num_target_frames
        grad_frames, flops = frames, grad_pass(frames)
    elif config.stage == "ode-init":
        grad_frames = dist.num_frames
        steps = len(set(dist.ode.timesteps.tolist()) | set(dist.sampler.timesteps.tolist())) - 1
        teacher = 2 * steps * forward_flops(model, dist.num_frames * per_frame, dist.num_frames * per_frame)
        flops = teacher + grad_pass(dist.num_frames)
    else:
        length = dist.longest_step_frames if spec.curriculum else dist.num_frames
        cached = min(config.memory.context_capacity(length), length)
        kv_cache = samples * 2 * model.num_layers * cached * per_frame * model.dim * _DTYPE_BYTES[precision]
        judged = dist.num_frames + (dist.num_context_frames if spec.judges_context else 0)
        student_grad = dist.num_frames if spec.exit_policy == "every-chunk" else dist.num_grad_frames
        grad_frames = max(judged, student_grad)
        rollout = _rollout_flops(config, spec.exit_policy, length, per_frame, cached)
        judge = forward_flops(model, judged * per_frame, judged * per_frame)
        critic_step = rollout + grad_pass(judged)
        student_step = (
            rollout
            + 3 * judge
            + 2 * student_grad / chunk * forward_flops(model, chunk * per_frame, (cached + chunk) * per_frame)
        )
        flops = critic_step + student_step / dist.student_every
    tokens = samples * grad_frames * per_frame
    return StageBudget(
        name=name,
        gpus=gpus,
        samples_per_gpu=samples,
        parameters=4 * stored / gpus,
        gradients=4 * trainable / gpus,
        optimizer=8 * trainable / gpus,
        ema=4 * trained / gpus if config.train.ema_decay else 0.0,
        kv_cache=kv_cache,
        activations=tokens * activation_bytes_per_token(model, precision),
        activations_checkpointed=tokens * checkpointed_bytes_per_token(model, precision),
        flops=config.train.batch_size * flops,
    )


def _rollout_flops(
    config: ExperimentConfig, exit_policy: str, length: int, per_frame: int, cached: int
) -> float:
    """Forwards of a self-rollout: each chunk's denoising steps up to its exit, and its refresh."""
    dist, chunk = config.distill, config.memory.frames_per_chunk
    steps = len(dist.denoising_steps)
    mean_exit = (steps + 1) / 2
    total = 0.0
    for index in range(length // chunk):
        start = index * chunk
        random_exit = exit_policy == "every-chunk" or start > length - dist.num_grad_frames
        calls = (mean_exit if random_exit else steps) + 1
        keys = min(start, cached) + chunk
        total += calls * forward_flops(config.model, chunk * per_frame, keys * per_frame)
    return total


def format_budgets(budgets: list[StageBudget]) -> str:
    """A Markdown table of the budgets, in GiB per GPU and PFLOP per step."""
    head = ("| stage | samples / GPU at once | parameters | gradients | optimizer | EMA | KV cache | activations "
            "| activations (checkpointed) | total | total (checkpointed) | PFLOP / step |")  # fmt: skip
    rows = [head, "|" + "---|" * 12]
    for b in budgets:
        values = [b.parameters, b.gradients, b.optimizer, b.ema, b.kv_cache, b.activations,
                  b.activations_checkpointed, b.total(False), b.total(True)]  # fmt: skip
        cells = " | ".join(f"{v / GiB:.1f}" for v in values)
        rows.append(f"| {b.name} | {b.samples_per_gpu:g} | {cells} | {b.flops / 1e15:.1f} |")
    return "\n".join(rows)

"""Training configuration: one ExperimentConfig composes the model, memory, data, optimisation and
stage settings; every stage of the pipeline is a value of it (see `contextforcing.presets`). The
stages themselves are declared in `contextforcing.training.stages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from contextforcing.diffusion.sampling import EulerConfig
from contextforcing.inference.streaming import SamplerConfig
from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.model.config import DiTConfig, model_preset
from contextforcing.runtime import Precision, check_device_name, check_seed

__all__ = [
    "ContextTeacherConfig",
    "DataConfig",
    "DistillConfig",
    "ExperimentConfig",
    "InitConfig",
    "OptimConfig",
    "TrainConfig",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimConfig:
    """AdamW settings of one trained role."""

    lr: float = 1e-4
    """Learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas; Self-Forcing's generator uses (0, 0.999), its critic (0.5, 0.95) in Context Forcing."""
    weight_decay: float = 0.01
    """Decoupled weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip; 0 disables it."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up, in updates of this role."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"OptimConfig.lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"OptimConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError("OptimConfig.grad_clip, weight_decay and warmup_steps must be >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    """Where clips come from and how they become latents.

    The library knows two sources: "videos" (a folder of mp4 files, captions beside them, encoded on the
    fly) and "cache" (prompt and latent caches encoded once by `contextforcing encode-prompts` and
    `encode-videos`, so training holds neither UMT5 nor the VAE). Other sources extend this section with
    their own fields and hand the trainer their components (the miniature's
    `contextforcing.world.config.WorldDataConfig` is one).
    """

    source: str = "videos"
    """Name of the clip source: "videos", "cache", or one a caller provides with its components."""
    video_folder: str = ""
    """Folder of .mp4 files when source = "videos"."""
    codec: str = ""
    """Folder of the codec that turns frames into latents (a Wan VAE folder); "" is the source's own."""
    text_encoder: str = ""
    """Folder of the UMT5 text encoder (a Wan folder with tokenizer/ and text_encoder/) for "videos"."""
    wan: str = ""
    """A Wan2.1 diffusers folder (model_index.json, transformer/, vae/, text_encoder/, tokenizer/): the
    model's shape comes from it, and an `init` path "{wan}" names its transformer."""
    negative_prompt: str = ""
    """The unconditional branch of the teacher's guidance ("" the empty prompt; the wan presets use Wan's
    default, `text_encoder.WAN_NEGATIVE_PROMPT`, as the released code does). Classifier-free dropout
    in training always drops to the empty prompt."""
    prompt_cache: str = ""
    """source = "cache": a prompt cache written by `contextforcing encode-prompts` (prompt-only stages)."""
    latent_cache: str = ""
    """source = "cache": a latent cache written by `contextforcing encode-videos` (stages that read clips)."""
    latent_size: tuple[int, int] = (60, 104)
    """source = "cache": (h, w) of the latents of prompt-only stages (480 x 832 pixels through the Wan
    VAE); a latent cache must hold latents of this size."""

    def __post_init__(self) -> None:
        if len(self.latent_size) != 2 or min(self.latent_size) < 1:
            raise ValueError(f"data.latent_size must be two positive ints, got {self.latent_size}")


@dataclass(frozen=True, kw_only=True, slots=True)
class InitConfig:
    """Checkpoints each role starts from ("" = random initialisation)."""

    model: str = ""
    """The trained model's starting weights (teacher stages: the teacher; others: the student)."""
    teacher: str = ""
    """The frozen teacher (ode-init, dmd, cdmd, long-tuning); "" is a random one, for smoke tests only."""
    critic: str = ""
    """The critic's starting weights; "" starts it from the teacher, as DMD does."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ContextTeacherConfig:
    """Layout and Error-Recycling Fine-Tuning of the teacher stages."""

    num_target_frames: int = 21
    """Latent frames the teacher denoises."""
    num_sink_frames: int = 3
    """Leading frames of the clip given as clean context (context-teacher)."""
    num_slow_frames: int = 12
    """At most this many sparse frames from the middle of the clip (context-teacher)."""
    slow_interval: int = 6
    """One slow frame every this many latent frames (6 = two chunks of three)."""
    num_recent_frames: int = 6
    """Frames right before the target (the student's fast memory)."""
    recent_only: bool = False
    """Learnability control: clips are laid out as with the sink and slow frames (the same targets, deep
    in the episode), but only the `num_recent_frames` most recent frames are given as context."""
    history: Literal["layout", "chunks"] = "layout"
    """context-teacher: the histories a training clip has before its target. "layout": a whole number of
    slow groups (sink + k slow groups + recent frames, k uniform in 0..num_slow_frames), the layout
    exactly. "chunks": any whole number of chunks (`memory.frames_per_chunk`) up to the longest layout,
    uniform, laid out as a sampler lays out any history (`plan.history_indices`): the short histories of a
    video's first chunks and the targets between layouts are then trained too."""
    memory_history_prob: float = 0.0
    """context-teacher: probability that a step's history is instead laid out as a student's memory keeps
    it (`memory.policy.kept_after` with the run's `memory` config: the sink, the frames of its slow and
    fast tiers in every layer, sorted), the context Contextual DMD's teacher gets with
    `distill.teacher_context="memory"`. Its length is any whole number of chunks up to
    `memory_history_frames`; each layer (one, with shared decisions) promotes a chunk with its own
    probability, drawn uniformly below `memory_promotion_prob`."""
    memory_history_frames: int = 160
    """context-teacher: the longest history laid out as a memory keeps it (see `memory_history_prob`)."""
    memory_promotion_prob: float = 0.25
    """context-teacher: the highest per-layer promotion rate of a history laid out as a memory keeps it."""
    no_context_prob: float = 0.0
    """context-teacher: probability of a step without any context, so one model also serves as a short
    teacher (Context Forcing's Stage 1 uses its context teacher without context)."""
    context_timestep: Literal["zero", "target"] = "zero"
    """Timestep embedding of context frames: 0 (clean), or the target's (the released teacher code)."""
    cfg_dropout: float = 0.1
    """Probability that a sample's text is replaced by the empty prompt, so guidance works."""
    timestep_shift: float = 5.0
    """Shift of the training timestep distribution (higher favours high noise)."""
    loss_weighting: Literal["none", "wan"] = "wan"
    """Per-timestep loss weight: none, or Wan's Gaussian bump around t = 500."""
    erft: bool = False
    """Error-Recycling Fine-Tuning: perturb context and target with the model's own past errors."""
    clean_prob: float = 0.5
    """ERFT: probability of a step without any injected error."""
    latent_error_prob: float = 0.9
    """ERFT: probability of perturbing the clean target with an x0-space error of the same bin."""
    context_error_prob: float = 0.9
    """ERFT: probability of perturbing the recent context with x0-space errors from any bin."""
    noise_error_prob: float = 0.01
    """ERFT: probability of perturbing the target's noise with a noise-space error."""
    bank_bins: int = 50
    """ERFT: timestep bins of each error bank."""
    bank_capacity: int = 500
    """ERFT: errors kept per bin."""
    bank_warmup_steps: int = 0
    """ERFT: during the first this many steps every process adds the errors of all processes (gathered)
    to its banks; afterwards only its own."""
    clean_bank_update_prob: float = 1.0
    """ERFT: during the warm-up, a step without injected errors adds its errors with this probability."""
    lora_rank: int = 0
    """Train LoRA adapters of this rank on q, k, v, o and the FFN (peft); 0 trains every weight."""
    lora_alpha: float = 128.0
    """LoRA scaling numerator."""

    def __post_init__(self) -> None:
        for name in (
            "clean_prob",
            "latent_error_prob",
            "context_error_prob",
            "noise_error_prob",
            "cfg_dropout",
            "clean_bank_update_prob",
            "memory_history_prob",
            "memory_promotion_prob",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ContextTeacherConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in (
            "num_target_frames",
            "slow_interval",
            "bank_bins",
            "bank_capacity",
            "memory_history_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ContextTeacherConfig.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.num_sink_frames, self.num_slow_frames, self.num_recent_frames, self.lora_rank) < 0:
            raise ValueError("ContextTeacherConfig frame counts and lora_rank must be >= 0")
        if self.bank_warmup_steps < 0:
            raise ValueError(
                f"ContextTeacherConfig.bank_warmup_steps must be >= 0, got {self.bank_warmup_steps}"
            )
        if self.erft and self.context_error_prob > 0 and self.num_recent_frames > self.num_target_frames:
            raise ValueError(
                f"ContextTeacherConfig.num_recent_frames ({self.num_recent_frames}) must not exceed "
                f"num_target_frames ({self.num_target_frames}) while ERFT recycles errors into the recent "
                "frames (context_error_prob > 0): the errors it recycles are the target's"
            )

    @property
    def num_context_frames(self) -> int:
        return self.num_sink_frames + self.num_slow_frames + self.num_recent_frames


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillConfig:
    """ODE initialisation and distribution matching (dmd, cdmd, long-tuning)."""

    denoising_steps: tuple[int, ...] = (1000, 750, 500, 250)
    """The student's nominal few-step list, warped through the shifted schedule."""
    timestep_shift: float = 5.0
    """Shift of the schedule and of the DMD timestep distribution."""
    num_frames: int = 21
    """Frames the teacher and critic judge: the whole rollout in dmd, the target window otherwise."""
    min_rollout_frames: int = 84
    """cdmd / long-tuning: shortest rollout of the curriculum (latent frames)."""
    max_rollout_frames: int = 105
    """cdmd / long-tuning: longest rollout, reached after `rollout_decay_steps`."""
    rollout_decay_steps: int = 600
    """Trainer steps over which the longest rollout grows linearly from min to max."""
    rollout_cap_frames: int = 0
    """cdmd / long-tuning: if > 0, no rollout is longer than this; the longest rollout grows at the pace
    min, max and the decay steps set, and holds here (0: it grows to `max_rollout_frames`)."""
    num_context_frames: int = 21
    """cdmd: clean student-made context frames given to teacher and critic."""
    num_grad_frames: int = 18
    """cdmd: only the last this many frames receive gradient."""
    prefix_frames: int = 0
    """cdmd / long-tuning: the rollout starts from this many true frames of a training clip (written into
    the student's memory as a prefix, never judged); 0 rolls out from the prompt alone, as the paper."""
    prefix_events: bool = False
    """cdmd / long-tuning with a prefix: the prefix is the start of a clip drawn as the context teacher's
    clips are (`target_frames` = `num_frames`: the world source's `data.return_prob` and
    `data.novelty_prob`), so that a return or a new identity falls on the frames right after it, which a
    rollout of exactly `prefix_frames + num_frames` frames judges."""
    prefix_prob: float = 1.0
    """cdmd / long-tuning with `prefix_events`: the share of steps that continue a true prefix (a rollout of
    `prefix_frames + num_frames`); the other steps roll out from the prompt alone on the curriculum
    (`min/max_rollout_frames`), so that one run is judged both on events after a long true history and on
    the minutes it makes on its own."""
    teacher_context: Literal["window", "memory", "layout"] = "window"
    """cdmd: the teacher sees the contiguous window before the target (released code), the student's
    sink/slow/fast memory layout (the paper's wording), or the rollout before the target laid out as the
    teacher was trained (`teacher.*`: sink, slow frames every `slow_interval`, recent frames)."""
    guidance_scale: float = 3.0
    """Teacher CFG, cond + g (cond - uncond); the critic has none."""
    min_timestep: float = 20.0
    """Lowest DMD / critic timestep."""
    max_timestep: float = 980.0
    """Highest DMD / critic timestep."""
    student_every: int = 5
    """The critic updates every step, the student every this many steps."""
    ode_steps: int = 24
    """ode-init: Euler steps of the teacher's ODE (the student's steps are added to the grid)."""
    regression_weight: float = 0.0
    """dmd / cdmd / long-tuning: weight of a regression onto the teacher's ODE added to every student update
    (ode-init's loss on `num_frames` frames from prompts alone): the regression term of the first DMD, which
    holds the student's map from noise to video near the teacher's while distribution matching seeks its
    modes. 0 (the paper, and DMD2) leaves it out."""
    regression_prefix_frames: int = 0
    """ode-init, and the regression term: if > 0, the regression continues this many true frames of a clip
    drawn as the context teacher's clips are (a return or a new identity on the `num_frames` after them,
    `data.return_prob` and `data.novelty_prob`). The student writes them into its memory and regresses each
    chunk after them, reading that memory; the teacher's ODE reads the same frames laid out as it was
    trained (`teacher.*`). 0 regresses `num_frames` frames from prompts alone."""

    @property
    def longest_rollout_frames(self) -> int:
        """The longest rollout the curriculum reaches: `max_rollout_frames`, or the cap if one is set."""
        return min(self.max_rollout_frames, self.rollout_cap_frames or self.max_rollout_frames)

    @property
    def mixes_prefix(self) -> bool:
        """Whether some steps continue a true prefix and the others roll out from the prompt alone."""
        return self.prefix_frames > 0 and self.prefix_prob < 1.0

    @property
    def longest_step_frames(self) -> int:
        """The longest rollout of any step: the curriculum's, or a mixed run's prefix steps if longer."""
        prefix_step = self.prefix_frames + self.num_frames if self.mixes_prefix else 0
        return max(self.longest_rollout_frames, prefix_step)

    def __post_init__(self) -> None:
        if not self.denoising_steps or list(self.denoising_steps) != sorted(
            self.denoising_steps, reverse=True
        ):
            raise ValueError(f"DistillConfig.denoising_steps must decrease, got {self.denoising_steps}")
        if not 0 <= self.min_timestep <= self.max_timestep <= 1000:
            raise ValueError("DistillConfig needs 0 <= min_timestep <= max_timestep <= 1000")
        if self.min_rollout_frames > self.max_rollout_frames:
            raise ValueError("DistillConfig.min_rollout_frames exceeds max_rollout_frames")
        if self.rollout_cap_frames and self.rollout_cap_frames < self.min_rollout_frames:
            raise ValueError(
                f"DistillConfig.rollout_cap_frames must be 0 or at least min_rollout_frames "
                f"({self.min_rollout_frames}), got {self.rollout_cap_frames}"
            )
        if not 0.0 <= self.prefix_prob <= 1.0:
            raise ValueError(f"DistillConfig.prefix_prob must lie in [0, 1], got {self.prefix_prob}")
        # A mixed run's prefix steps are `prefix_frames + num_frames` long, its other steps the curriculum's.
        if self.mixes_prefix:
            if not self.prefix_events:
                raise ValueError("DistillConfig.prefix_prob < 1 mixes steps judged right after a true prefix "
                                 "with steps from the prompt alone: it needs prefix_events")  # fmt: skip
        elif self.prefix_frames < 0 or self.prefix_frames > self.min_rollout_frames - self.num_frames:
            raise ValueError("DistillConfig.prefix_frames must lie in [0, min_rollout_frames - num_frames]")
        elif self.prefix_events and not (
            self.prefix_frames > 0
            and self.min_rollout_frames == self.max_rollout_frames == self.prefix_frames + self.num_frames
        ):
            raise ValueError(
                "DistillConfig.prefix_events judges the frames right after the prefix: it needs prefix_frames > 0 "
                "and min_rollout_frames = max_rollout_frames = prefix_frames + num_frames"
            )
        if self.num_grad_frames > self.num_frames:
            raise ValueError("DistillConfig.num_grad_frames exceeds num_frames")
        if self.regression_weight < 0:
            raise ValueError(f"DistillConfig.regression_weight must be >= 0, got {self.regression_weight}")
        if self.regression_prefix_frames < 0:
            raise ValueError(
                f"DistillConfig.regression_prefix_frames must be >= 0, got {self.regression_prefix_frames}"
            )
        for name in ("student_every", "ode_steps", "num_frames", "rollout_decay_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"DistillConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def sampler(self) -> SamplerConfig:
        """The student's few-step sampler: `denoising_steps` warped through the shifted schedule."""
        return SamplerConfig(
            denoising_steps=tuple(float(t) for t in self.denoising_steps), shift=self.timestep_shift
        )

    @property
    def ode(self) -> EulerConfig:
        """The teacher's ODE sampler of ode-init: `ode_steps` Euler steps with `guidance_scale`."""
        return EulerConfig(
            num_steps=self.ode_steps, shift=self.timestep_shift, guidance_scale=self.guidance_scale
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """The loop: length, batch, seed, precision, logging and checkpoint cadence."""

    steps: int = 1000
    """Trainer steps."""
    batch_size: int = 8
    """Samples per step, over all processes."""
    grad_accumulation: int = 1
    """Micro-batches per step: each process runs its share of the batch in this many equal pieces, one
    forward and backward each, and the optimiser steps once on their summed gradients."""
    seed: int = 0
    """Seed of every random draw (derived per step, so resumed runs replay exactly)."""
    precision: Precision = "fp32"
    """fp32, or bf16 autocast with fp32 norms, RoPE and modulation."""
    activation_checkpointing: bool = False
    """Recompute block activations in the backward pass."""
    ema_decay: float = 0.0
    """EMA decay of the trained model (0 disables the EMA)."""
    ema_start: int = 0
    """Step from which the EMA averages (before it, it tracks the weights)."""
    log_every: int = 10
    """Steps between metric lines."""
    checkpoint_every: int = 100
    """Steps between checkpoints (and at the end)."""
    device: str = "auto"
    """Device: auto, cpu, cuda, cuda:N."""
    tensorboard: bool = False
    """Also write TensorBoard scalars (needs the tensorboard package)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accumulation", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accumulation:
            raise ValueError(
                f"TrainConfig.batch_size {self.batch_size} does not split into grad_accumulation="
                f"{self.grad_accumulation} micro-batches"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        check_seed(self.seed, "train.seed")
        check_device_name(self.device, "train.device")


@dataclass(frozen=True, kw_only=True, slots=True)
class ExperimentConfig:
    """Everything one training run needs; saved as JSON beside every checkpoint."""

    stage: str
    """Which stage of the pipeline this run trains (a name of `training.stages.STAGES`)."""
    model: DiTConfig = field(default_factory=lambda: model_preset("world"))
    """Shape of every network (teacher, student, critic share it)."""
    memory: MemoryConfig = field(default_factory=lambda: memory_preset("context"))
    """The student's memory during rollouts."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training clips."""
    init: InitConfig = field(default_factory=InitConfig)
    """Starting checkpoints."""
    teacher: ContextTeacherConfig = field(default_factory=ContextTeacherConfig)
    """teacher / context-teacher settings."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """ode-init / dmd / cdmd / long-tuning settings."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The loop."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser of the trained model (teacher or student)."""
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-7, betas=(0.5, 0.95)))
    """Optimiser of the critic (distillation stages)."""

    def __post_init__(self) -> None:
        from contextforcing.training.stages import stage_spec

        spec = stage_spec(self.stage)
        chunk = self.memory.frames_per_chunk
        for name in (
            "num_frames",
            "num_context_frames",
            "min_rollout_frames",
            "max_rollout_frames",
            "regression_prefix_frames",
        ):
            if getattr(self.distill, name) % chunk:
                raise ValueError(
                    f"distill.{name}={getattr(self.distill, name)} is not a multiple of the chunk {chunk}"
                )
        if (
            spec.judges_context
            and self.distill.min_rollout_frames < self.distill.num_frames + self.distill.num_context_frames
        ):
            raise ValueError(f"{self.stage} needs min_rollout_frames >= num_frames + num_context_frames")
        regresses = self.stage == "ode-init" or (spec.is_distillation and self.distill.regression_weight > 0)
        if self.distill.regression_prefix_frames and not regresses:
            raise ValueError(
                f"distill.regression_prefix_frames is set, but stage {self.stage} runs no regression "
                "(ode-init, or distill.regression_weight > 0)"
            )

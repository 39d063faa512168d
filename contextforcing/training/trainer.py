"""The trainer: one loop for every stage. What a stage builds, trains and keeps is its `StageSpec`
(`stages.py`): the roles, the step function, ERFT error banks, LoRA.

A run writes into its folder:

    config.json        the resolved ExperimentConfig
    metrics.jsonl      one JSON line per logged step
    checkpoint/        full state (weights, EMA, optimisers, error banks, step), written atomically
    model/             the trained model in our layout (EMA weights when an EMA is kept), ready for
                       `contextforcing generate --checkpoint` or the next stage's `init`

Randomness is derived from (seed, step, purpose), so a run stopped after k steps and resumed ends
with exactly the weights of an uninterrupted run. A NaN or Inf loss stops the run with an error and
leaves the last good checkpoint in place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from contextforcing.config import from_dict, to_dict
from contextforcing.model.weights import save_model
from contextforcing.runtime import autocast, resolve_device, step_generator
from contextforcing.training.checkpoint import (
    flatten_optimizer,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from contextforcing.training.config import ExperimentConfig
from contextforcing.training.data import ClipSource, SourceFactory, video_folder_source
from contextforcing.training.ema import EMA
from contextforcing.training.erft import new_banks
from contextforcing.training.parallel import (
    all_finite,
    full_model_state,
    full_optimizer_state,
    full_tensor,
    gather_rows,
    init_distributed,
    load_model_state,
    load_optimizer_state,
    mean_over_processes,
    parallelize,
    shard_like,
)
from contextforcing.training.roles import Roles, build_roles
from contextforcing.training.sharded_checkpoint import is_sharded, load_sharded_checkpoint
from contextforcing.training.stages import StageSpec, stage_spec

__all__ = ["Run", "TrainingDiverged", "train"]

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


class Run:
    """Everything a step function needs: roles, data, derived generators and `update`."""

    def __init__(self, config: ExperimentConfig, folder: Path, source: SourceFactory) -> None:
        self.config, self.folder = config, folder
        self.device = resolve_device(config.train.device)
        self.rank, self.world_size = init_distributed(self.device)
        if config.train.batch_size % self.world_size:
            raise ValueError(
                f"batch_size {config.train.batch_size} does not split over {self.world_size} processes"
            )
        self.stage: StageSpec = stage_spec(config.stage)
        self.roles: Roles = build_roles(config, self.stage, self.device)
        self.lora = self.stage.lora and config.teacher.lora_rank > 0
        if self.lora:
            from contextforcing.training.lora import add_lora

            add_lora(
                self.roles.trained_model,
                config.teacher.lora_rank,
                config.teacher.lora_alpha,
                seed=config.train.seed,
            )
        for module in self.roles.models().values():  # frozen roles are sharded too
            parallelize(
                module,
                world_size=self.world_size,
                activation_checkpointing=config.train.activation_checkpointing,
                precision=config.train.precision,
            )
        self.source: ClipSource = source(config, self.device)
        self.optimizers = {name: self._optimizer(name, m) for name, m in self.roles.trainable().items()}
        self.updates = dict.fromkeys(self.optimizers, 0)
        self.ema = (
            EMA(self.roles.trained_model, config.train.ema_decay, config.train.ema_start)
            if config.train.ema_decay
            else None
        )
        self.banks = new_banks(config.teacher) if self.stage.error_banks and config.teacher.erft else {}
        self.step = 0

    def _optimizer(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        optim = self.config.optim if name == self.roles.trained else self.config.critic_optim
        parameters = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.AdamW(parameters, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.config.train.precision)

    def generator(self, step: int, stream: str) -> torch.Generator:
        """A generator shared by all processes (rollout lengths, exit steps, layouts)."""
        return step_generator(self.config.train.seed, step, stream)

    def sample_generators(self, step: int, stream: str) -> list[torch.Generator]:
        """This process's share of one generator per sample of the global batch."""
        per_rank = self.config.train.batch_size // self.world_size
        first = self.rank * per_rank
        return [
            step_generator(self.config.train.seed, step, f"{stream}/{i}")
            for i in range(first, first + per_rank)
        ]

    def gather(self, value: Tensor) -> Tensor:
        """`value` [N, ...] of every process, concatenated in rank order (collective)."""
        return gather_rows(value, self.world_size)

    def update(self, role: str, loss: Tensor) -> None:
        """Backward, clip, warm-up, optimiser step (and EMA for the trained model)."""
        if not all_finite(loss.detach(), self.world_size):
            raise TrainingDiverged(
                f"step {self.step}: {role} loss is {loss.item()}; stopping, the last good checkpoint is kept in "
                f"{self.folder / 'checkpoint'}"
            )
        optim_config = self.config.optim if role == self.roles.trained else self.config.critic_optim
        module, optimizer = self.roles.trainable()[role], self.optimizers[role]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if optim_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for p in module.parameters() if p.grad is not None], optim_config.grad_clip
            )
        self.updates[role] += 1
        warmup = optim_config.warmup_steps
        for group in optimizer.param_groups:
            group["lr"] = optim_config.lr * (min(1.0, self.updates[role] / warmup) if warmup else 1.0)
        optimizer.step()
        if role == self.roles.trained and self.ema is not None:
            self.ema.update(module, self.step)

    def state(self) -> tuple[dict, dict[str, dict[str, Tensor]]]:
        """The full training state (gathered on rank 0 when sharded)."""
        groups: dict[str, dict[str, Tensor]] = {}
        meta = {"step": self.step, "updates": self.updates, "config": to_dict(self.config), "optimizers": {}}
        for name, module in self.roles.trainable().items():
            # Gathering is collective: every process takes part, only rank 0 receives the tensors.
            groups[name] = full_model_state(module)
            optim_state = full_optimizer_state(module, self.optimizers[name])
            if self.rank != 0:
                continue
            tensors, scalars = flatten_optimizer(optim_state)
            groups[f"optim.{name}"] = tensors
            meta["optimizers"][name] = scalars
        if self.ema is not None:
            groups["ema"] = {k: full_tensor(v) for k, v in self.ema.state_dict().items()}
        for name, bank in self.banks.items():
            groups[f"bank.{name}"] = bank.state_dict()
        return meta, groups

    def load_state(self, meta: dict, groups: dict[str, dict[str, Tensor]]) -> None:
        meta, groups = _legacy_role_names(meta, groups, self.roles.trained)
        saved = from_dict(type(self.config), meta["config"])
        if saved.model != self.config.model:
            raise ValueError("the checkpoint was written for another model architecture")
        for name, module in self.roles.trainable().items():
            load_model_state(module, groups[name])
            state = unflatten_optimizer(groups[f"optim.{name}"], meta["optimizers"][name])
            load_optimizer_state(module, self.optimizers[name], state)
        if self.ema is not None:
            params = dict(self.roles.trained_model.named_parameters())
            self.ema.load_state_dict({k: shard_like(v, params[k]) for k, v in groups["ema"].items()})
        for name, bank in self.banks.items():
            bank.load_state_dict(groups[f"bank.{name}"])
        self.step, self.updates = meta["step"], meta["updates"]


def _legacy_role_names(meta: dict, groups: dict, trained: str) -> tuple[dict, dict]:
    """Checkpoints written before the roles had their own names call the trained role "model"."""
    if trained in groups or "model" not in groups:
        return meta, groups
    renames = {"model": trained, "optim.model": f"optim.{trained}"}
    groups = {renames.get(name, name): group for name, group in groups.items()}
    optimizers = {trained if k == "model" else k: v for k, v in meta["optimizers"].items()}
    updates = {trained if k == "model" else k: v for k, v in meta["updates"].items()}
    return {**meta, "optimizers": optimizers, "updates": updates}, groups


@contextlib.contextmanager
def _metric_sinks(run: Run) -> Iterator:
    writer = None
    if run.config.train.tensorboard and run.rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.folder / "tensorboard"))
    with open(run.folder / "metrics.jsonl", "a") as jsonl:
        yield jsonl, writer
    if writer is not None:
        writer.close()


def _save(run: Run) -> None:
    if run.world_size > 1:  # sharded: no process gathers the training state
        from contextforcing.training.sharded_checkpoint import save_sharded_checkpoint

        save_sharded_checkpoint(run)
        if run.ema is not None:
            exported = {"ema": {k: full_tensor(v).cpu() for k, v in run.ema.state_dict().items()}}
        else:
            exported = {run.roles.trained: full_model_state(run.roles.trained_model)}
        if run.rank == 0:
            _export(run, exported)
        return
    meta, groups = run.state()
    if run.rank != 0:
        return
    save_checkpoint(run.folder, meta, groups)
    _export(run, groups)


def _export(run: Run, groups: dict[str, dict[str, Tensor]]) -> None:
    model = run.roles.trained_model
    export = dict(groups["ema"] if run.ema is not None else groups[run.roles.trained])
    if run.lora:
        from contextforcing.training.lora import merged_state

        export = merged_state(export, run.config.teacher.lora_alpha / run.config.teacher.lora_rank)
    from contextforcing.model.dit import CausalDiT

    with torch.device("meta"):
        shell = CausalDiT(model.config)
    shell.load_state_dict(export, assign=True, strict=True)
    save_model(shell, run.folder / "model", extra={"stage": run.config.stage, "step": run.step})


def train(
    config: ExperimentConfig,
    folder: str | Path,
    *,
    resume: bool = False,
    source: SourceFactory = video_folder_source,
) -> Path:
    """Run a training run in `folder`, or with `resume` continue the checkpoint there (if any);
    returns the folder of the trained model. `source` builds the run's clip source (with its codec
    and text encoder) from the config: by default a folder of videos; the world passes its own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not resume and (folder / "checkpoint").exists():
        raise ValueError(
            f"{folder} already holds a checkpoint: pass --resume to continue it, or another --out"
        )
    run = Run(config, folder, source)
    if resume and not (folder / "checkpoint").exists():
        logger.info("no checkpoint in %s yet: starting from step 0", folder)
    elif resume and is_sharded(folder):
        load_sharded_checkpoint(run)
        logger.info("resumed %s at step %d from a sharded checkpoint", folder, run.step)
    elif resume:
        meta, groups = load_checkpoint(folder)
        run.load_state(meta, groups)
        logger.info("resumed %s at step %d", folder, run.step)
    (folder / "config.json").write_text(json.dumps(to_dict(config), indent=2, sort_keys=True))
    step_function = run.stage.step
    cfg = config.train
    with _metric_sinks(run) as (jsonl, writer):
        while run.step < cfg.steps:
            started = time.perf_counter()
            metrics = mean_over_processes(step_function(run, run.step), run.world_size)
            metrics["seconds"] = time.perf_counter() - started
            run.step += 1
            if run.rank == 0 and (run.step % cfg.log_every == 0 or run.step == cfg.steps):
                jsonl.write(json.dumps({"step": run.step, **metrics}) + "\n")
                jsonl.flush()
                logger.info("step %d %s", run.step, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                if writer is not None:
                    for key, value in metrics.items():
                        writer.add_scalar(key, value, run.step)
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
                _save(run)
    return folder / "model"

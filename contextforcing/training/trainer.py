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

Resuming recovers a checkpoint whose write was interrupted (`checkpoint.recover_folder`), refuses the
checkpoint of another stage, architecture or config (naming the differing keys; the config check can be
waived), drops the metric lines after the checkpoint's step (they are trained again) and says when
there is nothing left to train. A run that fails before its first checkpoint removes the folder it
created.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from contextforcing.config import to_dict
from contextforcing.files import check_output_folder, write_text_atomically
from contextforcing.model.weights import save_model
from contextforcing.runtime import autocast, peak_memory, resolve_device, step_generator
from contextforcing.training.checkpoint import (
    find_checkpoint,
    flatten_optimizer,
    load_checkpoint,
    recover_folder,
    replace_folder,
    save_checkpoint,
    unflatten_optimizer,
)
from contextforcing.training.config import ExperimentConfig
from contextforcing.training.data import ClipSource, SourceFactory, video_folder_source
from contextforcing.training.ema import EMA
from contextforcing.training.erft import new_banks
from contextforcing.training.parallel import (
    all_finite,
    barrier,
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
from contextforcing.training.resume import check_resumable, exported_step, trim_metrics
from contextforcing.training.roles import Roles, build_roles
from contextforcing.training.sharded_checkpoint import is_sharded, load_sharded_checkpoint
from contextforcing.training.stages import StageSpec, stage_spec

__all__ = ["Run", "TrainingDiverged", "train"]

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


MicroLoss = Callable[[list[torch.Generator]], tuple[Tensor, dict[str, float]]]
"""(the generators of a micro-batch, one per sample) -> (its mean loss, float metrics)."""


class Run:
    """Everything a step function needs: roles, data, derived generators and `update`."""

    def __init__(self, config: ExperimentConfig, folder: Path, source: SourceFactory) -> None:
        self.config, self.folder = config, folder
        self.device = resolve_device(config.train.device)
        self.rank, self.world_size = init_distributed(self.device)
        pieces = self.world_size * config.train.grad_accumulation
        if config.train.batch_size % pieces:
            raise ValueError(
                f"batch_size {config.train.batch_size} does not split over {self.world_size} processes x "
                f"{config.train.grad_accumulation} micro-batches"
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

    def accumulate(
        self, role: str, generators: list[torch.Generator], micro_loss: MicroLoss
    ) -> dict[str, float]:
        """One optimiser step of `role` on this process's share of the batch (`generators`, one per sample).

        The share is split into `train.grad_accumulation` equal micro-batches; `micro_loss` computes the
        mean loss (and metrics) of one, whose gradient is added in with weight 1 / micro-batches, so that
        the step follows the gradient of the whole share's mean loss. Then: clip, warm-up, step (and EMA
        for the trained model). Returns the metrics averaged over the micro-batches.
        """
        optim_config = self.config.optim if role == self.roles.trained else self.config.critic_optim
        module, optimizer = self.roles.trainable()[role], self.optimizers[role]
        pieces = self.config.train.grad_accumulation
        size = len(generators) // pieces
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for index in range(pieces):
            loss, metrics = micro_loss(generators[index * size : (index + 1) * size])
            if not all_finite(loss.detach(), self.world_size):
                raise TrainingDiverged(
                    f"step {self.step}: {role} loss is {loss.item()}; stopping, the last good checkpoint is kept "
                    f"in {self.folder / 'checkpoint'}"
                )
            (loss / pieces).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / pieces
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
        return totals

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
        """Restore a `state()`; raises ValueError naming what is missing or does not fit."""
        meta, groups = _legacy_role_names(meta, groups, self.roles.trained)
        where = self.folder / "checkpoint"
        expected = [name for module in self.roles.trainable() for name in (module, f"optim.{module}")]
        expected += ["ema"] * (self.ema is not None) + [f"bank.{name}" for name in self.banks]
        missing = [name for name in expected if name not in groups]
        missing += [f"optimizers.{n}" for n in self.roles.trainable() if n not in meta["optimizers"]]
        if missing:
            raise ValueError(
                f"{where} lacks {missing} ({', '.join(f'{n}.safetensors' for n in missing)}): it was written by "
                f"another kind of run or is damaged; it holds {sorted(groups)}"
            )
        try:
            for name, module in self.roles.trainable().items():
                load_model_state(module, groups[name])
                state = unflatten_optimizer(groups[f"optim.{name}"], meta["optimizers"][name])
                load_optimizer_state(module, self.optimizers[name], state)
            if self.ema is not None:
                params = dict(self.roles.trained_model.named_parameters())
                self.ema.load_state_dict({k: shard_like(v, params[k]) for k, v in groups["ema"].items()})
            for name, bank in self.banks.items():
                bank.load_state_dict(groups[f"bank.{name}"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ValueError(f"{where} does not fit this run: {error}") from None
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
            weights = {k: full_tensor(v).cpu() for k, v in run.ema.state_dict().items()}
        else:
            weights = full_model_state(run.roles.trained_model)
        if run.rank == 0:
            _export(run, weights)
        return
    meta, groups = run.state()
    if run.rank != 0:
        return
    save_checkpoint(run.folder, meta, groups)
    _export(run, groups["ema"] if run.ema is not None else groups[run.roles.trained])


def _export(run: Run, weights: dict[str, Tensor]) -> None:
    """Write model/ (weights and a config that names their step), swapped in whole like a checkpoint."""
    export = dict(weights)
    if run.lora:
        from contextforcing.training.lora import merged_state

        export = merged_state(export, run.config.teacher.lora_alpha / run.config.teacher.lora_rank)
    from contextforcing.model.dit import CausalDiT

    with torch.device("meta"):
        shell = CausalDiT(run.roles.trained_model.config)
    shell.load_state_dict(export, assign=True, strict=True)
    extra = {"stage": run.config.stage, "step": run.step}
    replace_folder(run.folder / "model", lambda tmp: save_model(shell, tmp, extra=extra), "config.json")


def _resume(run: Run, allow_config_change: bool) -> None:
    """Continue the (recovered) checkpoint in the run folder, if there is one."""
    folder = run.folder
    if run.rank == 0:
        recover_folder(folder / "checkpoint")
        recover_folder(folder / "model", "config.json")
    barrier(run.world_size)
    if find_checkpoint(folder / "checkpoint") is None:
        logger.info("no checkpoint in %s yet: starting from step 0", folder)
        return
    sharded = is_sharded(folder)
    if sharded:
        meta = json.loads((folder / "checkpoint" / "state.json").read_text())
        check_resumable(
            meta["config"], run.config, folder / "checkpoint", allow_config_change=allow_config_change
        )
        load_sharded_checkpoint(run)
    else:
        meta, groups = load_checkpoint(folder)
        check_resumable(
            meta["config"], run.config, folder / "checkpoint", allow_config_change=allow_config_change
        )
        run.load_state(meta, groups)
    if run.step > run.config.train.steps:
        raise ValueError(
            f"{folder} is already at step {run.step}, past train.steps={run.config.train.steps}: pass --steps "
            f"larger than {run.step} to train on"
        )
    logger.info("resumed %s at step %d%s", folder, run.step, " from a sharded checkpoint" if sharded else "")


def train(
    config: ExperimentConfig,
    folder: str | Path,
    *,
    resume: bool = False,
    allow_config_change: bool = False,
    source: SourceFactory = video_folder_source,
) -> Path:
    """Run a training run in `folder`, or with `resume` continue the checkpoint there (if any);
    returns the folder of the trained model. `source` builds the run's clip source (with its codec
    and text encoder) from the config: by default a folder of videos; the world passes its own.
    `allow_config_change` lets a resumed run continue with settings other than those it was saved with."""
    folder = check_output_folder(folder, "run folder")
    found = find_checkpoint(folder / "checkpoint")
    if not resume and found is not None:
        raise ValueError(
            f"{folder} already holds a checkpoint ({found.name}/): pass --resume to continue it, or another --out"
        )
    run = Run(config, folder, source)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _train(run, resume, allow_config_change)
    except BaseException:
        if created and run.rank == 0 and find_checkpoint(folder / "checkpoint") is None:
            # Nothing recoverable was written: leave no half-made run folder behind.
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _train(run: Run, resume: bool, allow_config_change: bool) -> Path:
    folder, config, cfg = run.folder, run.config, run.config.train
    if resume:
        _resume(run, allow_config_change)
    if run.rank == 0:
        write_text_atomically(folder / "config.json", json.dumps(to_dict(config), indent=2, sort_keys=True))
        trim_metrics(folder / "metrics.jsonl", run.step)
    if run.step == cfg.steps:
        logger.info("nothing left to train: %s is already at step %d of %d", folder, run.step, cfg.steps)
        if exported_step(folder / "model") != run.step:
            _save(run)  # killed between the checkpoint and the model: export the model of this step
        return folder / "model"
    step_function = run.stage.step
    with _metric_sinks(run) as (jsonl, writer):
        while run.step < cfg.steps:
            started = time.perf_counter()
            if run.device.type != "cpu":
                torch.accelerator.reset_peak_memory_stats(run.device)
            metrics = mean_over_processes(step_function(run, run.step), run.world_size)
            # This process's wall time and peak memory of the step (accelerator), or of the process (CPU).
            metrics["seconds"] = time.perf_counter() - started
            metrics["peak_memory_gib"] = peak_memory(run.device)["peak_memory_bytes"] / 2**30
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

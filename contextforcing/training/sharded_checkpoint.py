"""Sharded training checkpoints: what a run on several processes writes instead of gathering its
state on rank 0.

    DIR/checkpoint/
        .metadata, *.distcp       DCP shards of the trained roles, their optimizers and the EMA, each
                                  process writing its own part (`parallel.save_sharded`)
        bank.rank<R>.safetensors  the ERFT error banks of process R (each process keeps its own)
        state.json                step, updates, resolved config, world size, "format": "sharded"

The folder is written as DIR/checkpoint.tmp and swapped in by rank 0 once every process has written,
so a run killed at any moment leaves the previous checkpoint or the new one. DCP reshards on load: a
checkpoint resumes on any number of processes, bitwise on the same number. A process without a bank
file of its own rank (a run resumed on more processes) takes the banks of rank R mod the saved world
size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file

from contextforcing.config import from_dict, to_dict
from contextforcing.training.parallel import (
    barrier,
    load_model_state,
    load_optimizer_state,
    load_sharded,
    save_sharded,
    sharded_model_state,
    sharded_optimizer_state,
)

if TYPE_CHECKING:
    from contextforcing.training.trainer import Run

__all__ = ["is_sharded", "load_sharded_checkpoint", "save_sharded_checkpoint"]

_STATE = "state.json"
FORMAT = "sharded"


def is_sharded(folder: str | Path) -> bool:
    """Whether DIR/checkpoint is a sharded checkpoint."""
    state = Path(folder) / "checkpoint" / _STATE
    try:
        return json.loads(state.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False  # missing or damaged: the full checkpoint's loader names what is wrong


def _state(run: Run) -> dict:
    """The DCP state of the run, as this process holds it (also the structure loading fills in)."""
    state: dict = {"models": {}, "optimizers": {}}
    for name, module in run.roles.trainable().items():
        state["models"][name] = sharded_model_state(module)
        state["optimizers"][name] = sharded_optimizer_state(module, run.optimizers[name])
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    return state


def save_sharded_checkpoint(run: Run) -> Path:
    """Write DIR/checkpoint from every process (collective); returns its path."""
    final, tmp, old = (run.folder / name for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"))
    if run.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(run.world_size)
    save_sharded(tmp, _state(run))
    for name, bank in run.banks.items():
        save_file(bank.state_dict(), tmp / f"bank.rank{run.rank}.{name}.safetensors")
    if run.rank == 0:
        meta = {"format": FORMAT, "step": run.step, "updates": run.updates, "config": to_dict(run.config),
                "world_size": run.world_size}  # fmt: skip
        (tmp / _STATE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    barrier(run.world_size)
    if run.rank == 0:
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.replace(old)
        tmp.replace(final)
        shutil.rmtree(old, ignore_errors=True)
    barrier(run.world_size)
    return final


def load_sharded_checkpoint(run: Run) -> None:
    """Resume `run` from DIR/checkpoint (collective), resharded to this run's processes."""
    path = run.folder / "checkpoint"
    meta = json.loads((path / _STATE).read_text())
    saved = from_dict(type(run.config), meta["config"])
    if saved.model != run.config.model:
        raise ValueError("the checkpoint was written for another model architecture")
    state = _state(run)
    load_sharded(path, state)
    for name, module in run.roles.trainable().items():
        load_model_state(module, state["models"][name], full=False)
        load_optimizer_state(module, run.optimizers[name], state["optimizers"][name], full=False)
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    source_rank = run.rank % meta["world_size"]
    for name, bank in run.banks.items():
        file = path / f"bank.rank{source_rank}.{name}.safetensors"
        if not file.is_file():
            raise ValueError(f"{path} holds no error bank {name!r} of rank {source_rank}")
        bank.load_state_dict(load_file(file))
    run.step, run.updates = meta["step"], meta["updates"]

"""Training checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is a folder:

    DIR/checkpoint/
        state.json            step, resolved config, optimizer hyperparameters, anything JSON
        <name>.safetensors    one file per group of tensors: model weights, EMA, optimizer moments,
                              error banks

It is first written to DIR/checkpoint.tmp and then swapped in by renames, so a run killed at any
moment leaves either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["flatten_optimizer", "load_checkpoint", "save_checkpoint", "unflatten_optimizer"]

_STATE = "state.json"


def save_checkpoint(folder: str | Path, meta: dict[str, Any], groups: dict[str, dict[str, Tensor]]) -> Path:
    """Write DIR/checkpoint atomically; returns its path."""
    run = Path(folder)
    final, tmp, old = run / "checkpoint", run / "checkpoint.tmp", run / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, tensors in groups.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / f"{name}.safetensors")
    (tmp / _STATE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.replace(old)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """Read DIR/checkpoint (or recover DIR/checkpoint.old after an interrupted swap)."""
    run = Path(folder)
    path = run / "checkpoint"
    if not (path / _STATE).is_file() and (run / "checkpoint.old" / _STATE).is_file():
        path = run / "checkpoint.old"
    if not (path / _STATE).is_file():
        raise ValueError(f"no checkpoint in {run}: expected {path / _STATE}")
    meta = json.loads((path / _STATE).read_text())
    groups = {file.stem: load_file(file) for file in sorted(path.glob("*.safetensors"))}
    return meta, groups


def flatten_optimizer(state: dict) -> tuple[dict[str, Tensor], dict]:
    """A full optimizer state {"state": {fqn: {k: v}}, "param_groups": [...]} -> (tensors keyed
    "fqn::k", JSON-ready rest)."""
    tensors, scalars = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for fqn, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{fqn}::{key}"] = value
            else:
                scalars["scalars"][f"{fqn}::{key}"] = value
    return tensors, scalars


def unflatten_optimizer(tensors: dict[str, Tensor], scalars: dict) -> dict:
    """Inverse of `flatten_optimizer`."""
    state: dict[str, dict] = {}
    for name, value in [*tensors.items(), *scalars["scalars"].items()]:
        fqn, key = name.split("::")
        state.setdefault(fqn, {})[key] = value
    return {"state": state, "param_groups": scalars["param_groups"]}

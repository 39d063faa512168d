"""Training checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint is a folder:

    DIR/checkpoint/
        state.json            step, resolved config, optimizer hyperparameters, anything JSON
        <name>.safetensors    one file per group of tensors: model weights, EMA, optimizer moments,
                              error banks

It is first written to DIR/checkpoint.tmp (state.json last, itself by a rename, so a folder with a
state.json is complete) and then swapped in by two renames: checkpoint -> checkpoint.old, then
checkpoint.tmp -> checkpoint. A run killed at any instant leaves a complete checkpoint in one of the
three folders; `recover_folder` finds the newest (a complete checkpoint.tmp, which exists only between
the end of its write and its rename, else checkpoint, else checkpoint.old) and puts it back in place. The trainer's exported model/ is swapped in the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from contextforcing.files import read_safetensors, write_text_atomically

__all__ = [
    "find_checkpoint",
    "flatten_optimizer",
    "load_checkpoint",
    "recover_folder",
    "replace_folder",
    "save_checkpoint",
    "unflatten_optimizer",
]

logger = logging.getLogger(__name__)

_STATE = "state.json"
_NAME = "checkpoint"


def _siblings(final: Path) -> tuple[Path, Path]:
    return final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")


def replace_folder(final: Path, write: Callable[[Path], None], marker: str) -> Path:
    """Build a folder with `write(tmp)` beside `final` and swap it in by renames; `marker` is the file that
    `write` creates last (a folder holding it is complete). Interrupted at any instant, `final`, `final.tmp`
    or `final.old` holds a complete folder (see `recover_folder`)."""
    tmp, old = _siblings(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    assert (tmp / marker).is_file(), f"{write} did not write {marker}"
    if (final / marker).is_file():
        # The previous complete folder becomes .old only once the new one is complete.
        shutil.rmtree(old, ignore_errors=True)
        final.replace(old)
    else:
        shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(final: Path, marker: str = _STATE) -> Path | None:
    """The newest complete folder: `final.tmp` once complete (written, not yet swapped in), else `final`,
    else `final.old` (the previous one, when killed between the two renames); None when there is none."""
    tmp, old = _siblings(final)
    return next((path for path in (tmp, final, old) if (path / marker).is_file()), None)


def recover_folder(final: Path, marker: str = _STATE) -> Path | None:
    """Put the newest complete folder (see `find_checkpoint`) back at `final` and remove the others;
    returns `final`, or None when no complete folder exists."""
    found = find_checkpoint(final, marker)
    if found is None:
        return None
    tmp, old = _siblings(final)
    if found != final:
        logger.warning("%s was interrupted while being replaced: recovering it from %s", final, found.name)
        shutil.rmtree(final, ignore_errors=True)
        found.replace(final)
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    return final


def save_checkpoint(folder: str | Path, meta: dict[str, Any], groups: dict[str, dict[str, Tensor]]) -> Path:
    """Write DIR/checkpoint atomically; returns its path."""

    def write(tmp: Path) -> None:
        for name, tensors in groups.items():
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / f"{name}.safetensors"
            )
        write_text_atomically(tmp / _STATE, json.dumps(meta, indent=2, sort_keys=True))

    return replace_folder(Path(folder) / _NAME, write, _STATE)


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """Read the newest complete checkpoint of DIR (see `find_checkpoint`; nothing is moved); raises
    ValueError naming the file when it is missing or damaged."""
    run = Path(folder)
    path = find_checkpoint(run / _NAME)
    if path is None:
        raise ValueError(f"no checkpoint in {run}: expected {run / _NAME / _STATE}")
    try:
        meta = json.loads((path / _STATE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path / _STATE} is damaged (not JSON: {error}); the checkpoint cannot be resumed"
        ) from None
    required = ("step", "updates", "config", "optimizers")
    if not isinstance(meta, dict) or any(key not in meta for key in required):
        raise ValueError(f"{path / _STATE} is damaged: expected the keys {list(required)}")
    groups = {file.stem: read_safetensors(file) for file in sorted(path.glob("*.safetensors"))}
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

"""Resuming a run: which config changes a checkpoint tolerates, and the run folder's bookkeeping.

A checkpoint continues only under the stage and architecture it was written for, and (unless the user
waives it) under the same config but for `RESUMABLE_CHANGES`. After a resume, metrics.jsonl keeps each
step once and model/config.json names the step of its weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from contextforcing.config import from_dict, to_dict
from contextforcing.files import write_text_atomically
from contextforcing.training.config import ExperimentConfig

__all__ = ["RESUMABLE_CHANGES", "check_resumable", "exported_step", "trim_metrics"]

logger = logging.getLogger(__name__)

# Keys a resumed run may change without a word: how long, how often to log and save, and where it runs.
RESUMABLE_CHANGES = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.tensorboard",
    "train.device",
)


def _flat(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _with_defaults(saved: dict, kind: type[ExperimentConfig]) -> dict:
    """A saved config with the keys added since it was written set to their defaults (a key the library
    added does not change the run); as saved if it no longer loads, so that the comparison names the keys."""
    try:
        return to_dict(from_dict(kind, saved))
    except (TypeError, ValueError):
        return saved


def check_resumable(saved: dict, config: ExperimentConfig, where: Path, *, allow_config_change: bool) -> None:
    """Raise ValueError unless the config a checkpoint was written with fits `config`: the same stage and
    architecture always; the same everything else (but `RESUMABLE_CHANGES`, and keys added since, at their
    defaults) unless `allow_config_change`."""
    old, new = _flat(_with_defaults(saved, type(config))), _flat(to_dict(config))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))

    def listing(keys: list[str]) -> str:
        shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys[:8])
        return shown + (f", ... and {len(keys) - 8} more" if len(keys) > 8 else "")

    fixed = [k for k in changed if k == "stage" or k.startswith("model.")]
    if fixed:
        raise ValueError(
            f"{where} was written by a run of another stage or model architecture ({listing(fixed)}); "
            "use another --out"
        )
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed and not allow_config_change:
        raise ValueError(
            f"{where} was written with another config ({listing(changed)}); resume with the same settings, or "
            "pass --allow-config-change to continue it with the new ones"
        )
    if changed:
        logger.warning("resuming %s with a changed config: %s", where, listing(changed))


def trim_metrics(path: Path, step: int) -> None:
    """Keep the metric lines of steps up to `step` (those after a checkpoint are trained again), dropping a
    line torn by a kill."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            if json.loads(line)["step"] <= step:
                kept.append(line)
    if kept != lines:
        write_text_atomically(path, "".join(f"{line}\n" for line in kept))


def exported_step(model_folder: Path) -> int | None:
    """The step named by model/config.json, or None when there is none."""
    with contextlib.suppress(OSError, json.JSONDecodeError):
        step = json.loads((model_folder / "config.json").read_text()).get("step")
        return step if isinstance(step, int) else None
    return None

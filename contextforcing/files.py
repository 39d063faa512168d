"""Files users hand the library, and the places its commands write to.

Reading: `read_safetensors` and `read_torch_file` turn every way a file can be unreadable (empty,
truncated, random bytes, a pickle that would run code) into a ValueError that names the file. `.pt`
files are only ever read with `weights_only=True`, and no message suggests otherwise. `check_finite`
refuses NaN or Inf weights.

Writing: `output_folder` checks an output folder before anything is computed (not an existing file,
inside a writable place) and, when the command fails, removes what it created, so a failed request
leaves no empty or half-written folder behind. `check_output_file` does the same check for a single
output file, and `write_text_atomically` replaces a file in one rename.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

__all__ = [
    "check_finite",
    "check_output_file",
    "check_output_folder",
    "output_folder",
    "read_safetensors",
    "read_torch_file",
    "write_text_atomically",
]


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a .safetensors file; raises ValueError naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: expected a .safetensors file")
    try:
        return load_file(path)
    except SafetensorError as error:
        size = path.stat().st_size
        raise ValueError(
            f"{path} is not a readable safetensors file ({size} bytes; {error}): it is empty, truncated or "
            "not safetensors"
        ) from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None


_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_torch_file(path: str | Path) -> Any:
    """The contents of a `torch.save` file, read with `weights_only=True` (tensors and plain containers,
    never code); raises ValueError naming the file if it cannot be read that way."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before failing; the ValueError below says what matters.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message suggests weights_only=False, which would run the file's code: never pass it on.
        blocked = _BLOCKED_GLOBAL.search(str(error))
        reason = (
            f"it refers to {blocked.group(1)}, which is not a tensor type"
            if blocked
            else "it is not a torch.save file of tensors"
        )
        raise ValueError(
            f"{path} cannot be loaded as tensors only ({reason}); only weights are read from .pt files, "
            "never code"
        ) from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # random bytes fail in the unpickler in many ways (EOF, index, key, decode)
        first = str(error).split(".")[0][:120]
        first = type(error).__name__ if not first or "weights_only" in first else first
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint: empty, truncated or corrupt ({first})"
        ) from None


def check_finite(state: dict[str, Tensor], source: str | Path) -> None:
    """Raise ValueError naming `source` and the tensors that hold NaN or Inf."""
    bad = [
        key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{source} holds non-finite weights (NaN or Inf) in {len(bad)} of {len(state)} tensors: {shown}"
        )


def _writable_ancestor(path: Path, flag: str) -> Path:
    """The nearest existing ancestor of `path`, checked to be a writable folder."""
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in {ancestor} (permission denied)")
    return ancestor


def check_output_folder(path: str | Path, flag: str = "--out") -> Path:
    """Raise ValueError naming `flag` unless `path` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{flag} {path} is an existing file: expected a folder (new or existing)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: cannot write in this folder (permission denied)")
        return path
    _writable_ancestor(path, flag)
    return path


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Raise ValueError naming `flag` unless `path` is, or can be made, a writable file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path}: cannot overwrite this file (permission denied)")
    if not path.exists():
        _writable_ancestor(path, flag)
    return path


@contextlib.contextmanager
def output_folder(path: str | Path, flag: str = "--out") -> Iterator[Path]:
    """Check and create an output folder; if the body raises (or is interrupted), remove every folder this
    call created, so nothing partial is left. An existing folder is kept."""
    path = check_output_folder(path, flag)
    created = path
    while not created.parent.exists():
        created = created.parent
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot create the folder ({error.strerror or error})") from None
    try:
        yield path
    except BaseException:
        if not existed:
            shutil.rmtree(created, ignore_errors=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path` and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path

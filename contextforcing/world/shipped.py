"""The models shipped with the package: the world codec and the trained world models.

They are package data (`contextforcing/world/checkpoints/`), read through `importlib.resources`, so they
resolve from the installed package whatever the working directory. `make ship` refreshes them from
the runs of `make pipeline`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SHIPPED_NAMES", "codec_folder", "shipped"]

SHIPPED_NAMES = (
    "codec",
    "codec-world2",
    "teacher",
    "self-forcing",
    "longlive",
    "context-forcing",
    "world2-teacher",
    "world2-self-forcing",
    "world2-context-forcing",
)
"""The codecs of the first and second world, the run folders (config.json + model/) of the first
world's trained models, and the second world's (stored in float16, `make ship-world2`): its context
teacher after ERFT (the distillation stages' teacher), its Stage-1 (DMD) student and its Stage-2
(Contextual DMD) student, the one trained from the ODE initialisation on the teacher's unguided score
(preset world2-cdmd-prompt-unguided). The first world's two prefix variants, the second world's LongLive
baseline and its other Stage-2 students are not shipped (the package keeps its models under 50 MB):
their rows read the run folders that `make pipeline` and `make students-world2` train."""


def shipped(name: str) -> Path:
    """The folder of a shipped model (`SHIPPED_NAMES`); raises ValueError for an unknown or missing one."""
    if name not in SHIPPED_NAMES:
        raise ValueError(f"unknown shipped model {name!r}; choose one of {list(SHIPPED_NAMES)}")
    folder = Path(str(files("contextforcing.world") / "checkpoints" / name))
    if not folder.is_dir():
        raise ValueError(f"the shipped model {name!r} is missing at {folder}: reinstall the package")
    return folder


def codec_folder(name: str | Path = "") -> Path:
    """The folder of a world codec as a run's `data.codec` names it: a shipped codec's name, a folder, or
    "" for the shipped codec of the first world."""
    if str(name) in SHIPPED_NAMES:
        return shipped(str(name))
    return Path(name) if str(name) else shipped("codec")

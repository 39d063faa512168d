"""The rows of the miniature comparison: which trained model, with which memory at inference.

Every row is a shipped run folder under `checkpoints/world/` (`make ship` copies them from the runs of
`make pipeline`: teacher, self-forcing = the Stage-1 student, longlive, context-forcing = the Stage-2
student, and the -prefix variants trained on rollouts that continue true clips) and a memory policy. The Stage-1
student is used three times (Self-Forcing's window, Infinity-RoPE's training-free sink and short window,
and Context Forcing's memory without contextual distillation), the Stage-2 student four times (the full
method and three inference-time ablations). The uniform ablations of the paper train with uniform memory;
here they change the memory of the Context Forcing student at inference only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.world.shipped import SHIPPED_NAMES, shipped

__all__ = ["ROWS", "TEACHER_ROW", "Row", "row_folder"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One line of the comparison table."""

    name: str
    run: str
    """A shipped run's name (`contextforcing.world.shipped`), or a run folder (config.json + model/)."""
    memory: MemoryConfig | None
    """Memory at inference; None for a teacher, which sees its training layout."""
    description: str


_STAGE1 = "self-forcing"
_STAGE2 = "context-forcing"

ROWS: tuple[Row, ...] = (
    Row(name="self-forcing", run=_STAGE1, memory=memory_preset("window"),
        description="Stage-1 (DMD) student, rolling window of 21 frames"),
    Row(name="longlive", run="longlive", memory=memory_preset("sink"),
        description="long tuning with a short teacher, sink + window"),
    Row(name="infinity-rope", run=_STAGE1, memory=memory_preset("infinity-rope"),
        description="Stage-1 student, training-free sink + short window, block-relative positions"),
    Row(name="context-forcing", run=_STAGE2, memory=memory_preset("context"),
        description="Stage-2 (Contextual DMD) student, sink + slow + fast memory"),
    Row(name="uniform-every-1", run=_STAGE2, memory=memory_preset("uniform", promotion_interval=1),
        description="ablation: slow memory promoted every chunk (inference only)"),
    Row(name="uniform-every-2", run=_STAGE2, memory=memory_preset("uniform", promotion_interval=2),
        description="ablation: slow memory promoted every 2 chunks (inference only)"),
    Row(name="no-contextual-distillation", run=_STAGE1, memory=memory_preset("context"),
        description="ablation: Stage-1 student with the context memory"),
    Row(name="stage2-from-prefixes", run="context-forcing-prefix", memory=memory_preset("context"),
        description="variant: Stage 2 rollouts continue 3 s of a true clip (distill.prefix_frames=12)"),
    Row(name="longlive-from-prefixes", run="longlive-prefix", memory=memory_preset("sink"),
        description="variant: long tuning on the same true prefixes (distill.prefix_frames=12)"),
    Row(name="surprisal-tau-0.995", run=_STAGE2, memory=memory_preset("context", similarity_threshold=0.995),
        description="Context Forcing student, promotion threshold fitted to the world (0.95 never fires)"),
    Row(name="no-bounded-positions", run=_STAGE2, memory=memory_preset("context", positions="absolute"),
        description="ablation: Context Forcing student, absolute positions at inference"),
)  # fmt: skip

TEACHER_ROW = Row(name="teacher", run="teacher", memory=None,
                  description="the context teacher (bidirectional, 20 Euler steps, CFG 3)")  # fmt: skip


def row_folder(row: Row) -> Path:
    """The run folder of a row: the shipped one of that name, else the path itself."""
    return shipped(row.run) if row.run in SHIPPED_NAMES else Path(row.run)

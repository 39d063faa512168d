"""The rows of the miniature comparison: which trained model, with which memory at inference.

Every first-world row is a run folder and a memory policy: a shipped one under `checkpoints/world/` (`make
ship` copies them from the runs of `make pipeline`: teacher, self-forcing = the Stage-1 student, longlive,
context-forcing = the Stage-2 student), or for the -prefix variants, trained on rollouts that continue
true clips, their runs of `make pipeline`. The Stage-1
student is used three times (Self-Forcing's window, Infinity-RoPE's training-free sink and short window,
and Context Forcing's memory without contextual distillation), the Stage-2 student four times (the full
method and three inference-time ablations). The uniform ablations of the paper train with uniform memory;
here they change the memory of the Context Forcing student at inference only. The second world's rows
also read run folders that do not ship (`runs/world2-*`, trained by `make students-world2`): the LongLive
baseline, the Stage-2 student under the released rule (`runs/world2-cdmd`), the Stage-2 students trained
with whole-chunk promotion, on returns or on rollouts from the prompt alone, with their own ablations, and
the one trained from the ODE initialisation on the teacher's unguided score
(`runs/world2-cdmd-prompt-unguided`, shipped in float16 as world2-context-forcing); and the long teacher's
students under its context as memory (`runs/world2-cdmd-grid*`, `make students-long-world2`), whose
ablations are measured both at inference and trained under their own memory, as the paper's are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from contextforcing.memory.config import MemoryConfig, memory_preset
from contextforcing.world.presets import WORLD_PRESETS
from contextforcing.world.shipped import SHIPPED_NAMES, shipped

__all__ = ["ROWS", "TEACHER_ROW", "WORLD2_ROWS", "WORLD2_TEACHER_ROW", "Row", "comparison", "row_folder"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One line of the comparison table."""

    name: str
    run: str
    """A shipped run's name (`contextforcing.world.shipped`), or a run folder (config.json + model/)."""
    memory: MemoryConfig | None
    """Memory at inference; None for a teacher, which sees its training layout."""
    description: str
    fit_share: float | None = None
    """If set, the memory's surprisal threshold is fitted before the row is measured: the quantile of the
    similarities of a calibration seed's runs (`fit_on`) under which this share of the tests falls."""
    fit_per_layer: bool = False
    """With `fit_share`: fit one threshold per layer on that layer's similarities (`layer_thresholds`)."""
    fit_on: Literal["free", "world"] = "free"
    """With `fit_share`: the similarities fitted on, those of the row's own free runs ("free"), or those its
    memory takes on the world's own episodes, written in as clean history ("world"). A memory that changes
    what the model draws changes its free runs' similarities, not the world's."""


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
    Row(name="stage2-from-prefixes", run="runs/world-cdmd-prefix", memory=memory_preset("context"),
        description="variant: Stage 2 rollouts continue 3 s of a true clip (distill.prefix_frames=12)"),
    Row(name="longlive-from-prefixes", run="runs/world-long-tuning-prefix", memory=memory_preset("sink"),
        description="variant: long tuning on the same true prefixes (distill.prefix_frames=12)"),
    Row(name="surprisal-tau-0.995", run=_STAGE2, memory=memory_preset("context", similarity_threshold=0.995),
        description="Context Forcing student, promotion threshold fitted to the world (0.95 never fires)"),
    Row(name="no-bounded-positions", run=_STAGE2, memory=memory_preset("context", positions="absolute"),
        description="ablation: Context Forcing student, absolute positions at inference"),
)  # fmt: skip

TEACHER_ROW = Row(name="teacher", run="teacher", memory=None,
                  description="the context teacher (bidirectional, 20 Euler steps, CFG 3)")  # fmt: skip


# The second world: the same rows on its own trained models (`make pipeline-world2`). The Stage-1 student
# ships (world2-self-forcing); the released-rule rows read the Stage-2 student of preset world2-cdmd, which
# shipped as world2-context-forcing until that name went to the student of `cdmd-prompt-unguided`.
_W2_STAGE1, _W2_STAGE2 = "world2-self-forcing", "runs/world2-cdmd"
_EVENT_SHARE = 0.2
"""The share of promotion tests that fire with a fitted threshold: about the share of the world's chunks
in which a subject enters, leaves or changes (some 15 events a minute over 80 chunks)."""

_WHOLE_CHUNK_SHARE = 0.5
"""The share of promoting tests when a promotion keeps whole chunks: a slow tier of 12 frames then holds 4
promotions, and at the event share the first entrance stays in the layers that seldom promote."""

_WHOLE = memory_preset("context", num_promoted_frames=3)
_WHOLE_24 = memory_preset("context", num_promoted_frames=3, num_slow_frames=24)
_UNGUIDED = "runs/world2-cdmd-prompt-unguided"
_GRID = WORLD_PRESETS["world2-cdmd-grid-long"]().memory
"""The long teacher's context as a student's memory, the one its grid students are trained with: the sink, a
slow frame every 9 counted back from the 6 recent frames, the kept frames re-encoded before each chunk."""
_GRID_RUN = "runs/world2-cdmd-grid-long"
_GRID_UNIFORM = replace(_GRID, promotion="uniform")
_GRID_ABSOLUTE = replace(_GRID, positions="absolute")


def _world_fit(*, name: str, run: str, memory: MemoryConfig, description: str) -> Row:
    """A row whose tau is fitted on the world's own episodes so that `_EVENT_SHARE` of the tests promote."""
    return Row(
        name=name, run=run, memory=memory, fit_share=_EVENT_SHARE, fit_on="world", description=description
    )


def _uniform_every_2(*, name: str, run: str, memory: MemoryConfig, of: str) -> Row:
    """Inference-time ablation of row `of`: its memory promoting every second chunk instead of on surprisal."""
    return Row(name=name, run=run, memory=replace(memory, promotion="uniform", promotion_interval=2),
               description=f"ablation: {of} promoting every 2 chunks (inference only)")  # fmt: skip


def _absolute_positions(*, name: str, run: str, memory: MemoryConfig, of: str) -> Row:
    """Inference-time ablation of row `of`: its memory with absolute positions, tau fitted on the world."""
    return _world_fit(name=name, run=run, memory=replace(memory, positions="absolute"),
                      description=f"ablation: {of} with absolute positions at inference")  # fmt: skip


WORLD2_ROWS: tuple[Row, ...] = (
    Row(name="self-forcing", run=_W2_STAGE1, memory=memory_preset("window"),
        description="Stage-1 (DMD) student, rolling window of 21 frames"),
    Row(name="longlive", run="runs/world2-long-tuning", memory=memory_preset("sink"),
        description="long tuning with a short teacher, sink + window"),
    Row(name="infinity-rope", run=_W2_STAGE1, memory=memory_preset("infinity-rope"),
        description="Stage-1 student, training-free sink + short window, block-relative positions"),
    Row(name="context-forcing", run=_W2_STAGE2, memory=memory_preset("context"), fit_share=_EVENT_SHARE,
        description=f"Stage-2 (Contextual DMD) student, sink + slow + fast memory, tau fitted so that "
                    f"{_EVENT_SHARE:.0%} of the tests promote"),
    Row(name="context-forcing-layer-fit", run=_W2_STAGE2, memory=memory_preset("context"), fit_share=_EVENT_SHARE,
        fit_per_layer=True, description=f"Stage-2 student, one tau per layer fitted so that {_EVENT_SHARE:.0%} of "
                                        "each layer's tests promote"),
    Row(name="context-forcing-tau-0.95", run=_W2_STAGE2, memory=memory_preset("context"),
        description="Stage-2 student with the paper's threshold, tau = 0.95"),
    Row(name="context-forcing-whole-chunks", run=_W2_STAGE2, memory=memory_preset("context", num_promoted_frames=3),
        fit_share=_WHOLE_CHUNK_SHARE,
        description=f"Stage-2 student, a promotion keeps the chunk's 3 frames (the released rule: its first), tau "
                    f"fitted so that {_WHOLE_CHUNK_SHARE:.0%} of the tests promote"),
    Row(name="whole-chunks-slow-24", run=_W2_STAGE2,
        memory=memory_preset("context", num_promoted_frames=3, num_slow_frames=24), fit_share=_WHOLE_CHUNK_SHARE,
        description="variant: the same with a slow tier of 24 frames (a cache of 33, 8 promotions)"),
    Row(name="whole-chunks-slow-24-tau-0.9914", run=_W2_STAGE2,
        memory=memory_preset("context", num_promoted_frames=3, num_slow_frames=24, similarity_threshold=0.9914),
        description="variant: the same at a fixed tau of 0.9914 (the Stage-1 student's fitted tau)"),
    _world_fit(name="whole-chunks-slow-24-world-fit", run=_W2_STAGE2, memory=_WHOLE_24,
               description=f"variant: whole chunks, a slow tier of 24, tau fitted on the world's own episodes so "
                           f"that {_EVENT_SHARE:.0%} of the tests promote"),
    _world_fit(name="cdmd-whole-chunks", run="runs/world2-cdmd-whole", memory=_WHOLE,
               description="Stage 2 trained with whole-chunk promotion (preset world2-cdmd-whole), tau fitted on "
                           "the world"),
    _world_fit(name="cdmd-whole-chunks-slow-24", run="runs/world2-cdmd-whole-slow24", memory=_WHOLE_24,
        description="the same trained and measured with a slow tier of 24 (preset world2-cdmd-whole-slow24)"),
    _world_fit(name="cdmd-whole-prompt", run="runs/world2-cdmd-whole-prompt", memory=_WHOLE,
               description="Stage 2 with whole-chunk promotion on rollouts from the prompt alone (preset "
                           "world2-cdmd-whole-prompt), tau fitted on the world"),
    _world_fit(name="cdmd-whole-prompt-slow-24", run="runs/world2-cdmd-whole-prompt-slow24", memory=_WHOLE_24,
        description="the same with a slow tier of 24 (preset world2-cdmd-whole-prompt-slow24)"),
    _world_fit(name="cdmd-whole-prompt-read-slow-24", run="runs/world2-cdmd-whole-prompt", memory=_WHOLE_24,
        description="variant: cdmd-whole-prompt (trained with a slow tier of 12) read with a slow tier of 24"),
    _world_fit(name="cdmd-whole-prompt-every-5", run="runs/world2-cdmd-whole-prompt-every5", memory=_WHOLE,
        description="cdmd-whole-prompt with a student update every 5 steps (preset world2-cdmd-whole-prompt-every5)"),
    _world_fit(name="cdmd-whole-prompt-slow-24-every-5", run="runs/world2-cdmd-whole-prompt-slow24-every5",
        memory=_WHOLE_24,
        description="cdmd-whole-prompt-slow-24 with a student update every 5 steps "
                    "(preset world2-cdmd-whole-prompt-slow24-every5)"),
    _world_fit(name="cdmd-short-slow-24", run="runs/world2-cdmd-short-slow24", memory=_WHOLE_24,
        description="cdmd-whole-prompt-slow-24 on rollouts from 3 s on, 12 frames growing to 84 "
                    "(preset world2-cdmd-short-slow24)"),
    _world_fit(name="cdmd-short-only-slow-24", run="runs/world2-cdmd-shortonly-slow24", memory=_WHOLE_24,
        description="cdmd-whole-prompt-slow-24 on rollouts of 3 to 9 s only (preset world2-cdmd-shortonly-slow24)"),
    _world_fit(name="cdmd-short-only-layout-slow-24", run="runs/world2-cdmd-shortonly-layout-slow24",
        memory=_WHOLE_24,
        description="cdmd-short-only-slow-24 judged by a teacher reading the rollout in its own layout "
                    "(preset world2-cdmd-shortonly-layout-slow24)"),
    _uniform_every_2(name="cdmd-prompt-slow-24-uniform-every-2", run="runs/world2-cdmd-whole-prompt-slow24",
                     memory=_WHOLE_24, of="cdmd-whole-prompt-slow-24"),
    _absolute_positions(name="cdmd-prompt-slow-24-no-bounded-positions", run="runs/world2-cdmd-whole-prompt-slow24",
                        memory=_WHOLE_24, of="cdmd-whole-prompt-slow-24"),
    _uniform_every_2(name="cdmd-slow-24-uniform-every-2", run="runs/world2-cdmd-whole-slow24", memory=_WHOLE_24,
                     of="cdmd-whole-chunks-slow-24"),
    _world_fit(name="no-contextual-distillation-slow-24-world-fit", run=_W2_STAGE1, memory=_WHOLE_24,
        description="ablation: Stage-1 student (what cdmd-whole-chunks-slow-24 was trained from), same memory"),
    _absolute_positions(name="cdmd-slow-24-no-bounded-positions", run="runs/world2-cdmd-whole-slow24",
                        memory=_WHOLE_24, of="cdmd-whole-chunks-slow-24"),
    _world_fit(name="cdmd-prompt-unguided", run=_UNGUIDED, memory=_WHOLE,
        description="Stage 2 from the ODE initialisation, the teacher's score unguided and read in its own layout "
                    "(preset world2-cdmd-prompt-unguided, 200 steps), whole chunks, tau fitted on the world"),
    _world_fit(name="cdmd-slow-24-unguided", run="runs/world2-cdmd-slow24-from-ode-unguided-layout", memory=_WHOLE_24,
        description="the same trained and measured with a slow tier of 24, 300 steps "
                    "(preset world2-cdmd-slow24-from-ode-unguided-layout)"),
    _world_fit(name="cdmd-slow-24-unguided-held-66", run="runs/world2-cdmd-slow24-held66", memory=_WHOLE_24,
        description="the same with rollouts held at 66 frames from step 200 on, 300 steps "
                    "(preset world2-cdmd-slow24-held66)"),
    _uniform_every_2(name="cdmd-prompt-unguided-uniform-every-2", run=_UNGUIDED, memory=_WHOLE,
                     of="cdmd-prompt-unguided"),
    _world_fit(name="ode-init-whole-world-fit", run="runs/world2-ode-init", memory=_WHOLE,
        description="ablation: the ODE initialisation (what cdmd-prompt-unguided was trained from), same memory"),
    _absolute_positions(name="cdmd-prompt-unguided-no-bounded-positions", run=_UNGUIDED, memory=_WHOLE,
                        of="cdmd-prompt-unguided"),
    Row(name="cdmd-grid", run=_GRID_RUN, memory=_GRID,
        description="Stage 2 judged by the long teacher (clips reaching 24.5 s) under its context as memory "
                    "(preset world2-cdmd-grid-long, 200 steps)"),
    Row(name="cdmd-grid-regression", run="runs/world2-cdmd-grid-regression-long", memory=_GRID,
        description="the same with the regression after 30 s of a true clip as the term of every student update "
                    "(preset world2-cdmd-grid-regression-long)"),
    Row(name="cdmd-grid-uniform", run=_GRID_RUN, memory=_GRID_UNIFORM,
        description="ablation: cdmd-grid's slow tier on a grid fixed from the first frame (inference only)"),
    Row(name="ode-init-grid", run="runs/world2-ode-init-long", memory=_GRID,
        description="ablation: the ODE initialisation cdmd-grid was trained from, same memory"),
    Row(name="cdmd-grid-no-bounded-positions", run=_GRID_RUN, memory=_GRID_ABSOLUTE,
        description="ablation: cdmd-grid with absolute positions at inference"),
    Row(name="cdmd-grid-uniform-trained", run="runs/world2-cdmd-layout-reencode-long",
        memory=_GRID_UNIFORM,
        description="ablation trained: cdmd-grid's Stage 2 under the uniform grid (preset world2-cdmd-layout-reencode-long)"),
    Row(name="cdmd-grid-no-bounded-positions-trained", run="runs/world2-cdmd-grid-absolute-long",
        memory=_GRID_ABSOLUTE,
        description="ablation trained: cdmd-grid's Stage 2 with absolute positions (preset world2-cdmd-grid-absolute-long)"),
    Row(name="uniform-every-1", run=_W2_STAGE2, memory=memory_preset("uniform", promotion_interval=1),
        description="ablation: slow memory promoted every chunk (inference only)"),
    Row(name="uniform-every-2", run=_W2_STAGE2, memory=memory_preset("uniform", promotion_interval=2),
        description="ablation: slow memory promoted every 2 chunks (inference only)"),
    Row(name="no-contextual-distillation", run=_W2_STAGE1, memory=memory_preset("context"),
        fit_share=_EVENT_SHARE, description="ablation: Stage-1 student with the context memory (tau fitted)"),
    Row(name="no-contextual-distillation-whole-chunks", run=_W2_STAGE1,
        memory=memory_preset("context", num_promoted_frames=3), fit_share=_WHOLE_CHUNK_SHARE,
        description="ablation: Stage-1 student with whole-chunk promotion (as context-forcing-whole-chunks)"),
    Row(name="no-bounded-positions", run=_W2_STAGE2, memory=memory_preset("context", positions="absolute"),
        fit_share=_EVENT_SHARE, description="ablation: Stage-2 student, absolute positions at inference (tau fitted)"),
)  # fmt: skip

WORLD2_TEACHER_ROW = Row(name="teacher", run="world2-teacher", memory=None,
                         description="the context teacher after ERFT (bidirectional, 20 Euler steps, CFG 3)")  # fmt: skip


def comparison(world: int) -> tuple[Row, ...]:
    """The rows of the comparison on world `world` (1 or 2), the teacher first."""
    if world == 1:
        return (TEACHER_ROW, *ROWS)
    if world == 2:
        return (WORLD2_TEACHER_ROW, *WORLD2_ROWS)
    raise ValueError(f"no comparison for world {world}: choose 1 or 2")


def row_folder(row: Row) -> Path:
    """The run folder of a row: the shipped one of that name, else the path itself."""
    return shipped(row.run) if row.run in SHIPPED_NAMES else Path(row.run)

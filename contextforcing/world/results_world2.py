"""The second world's section of docs/RESULTS.md, from the row JSONs of `contextforcing compare --world 2`.

Every number is read from those files: free-running dynamics, recall and coherence, the memory's
promotions and threshold (`free_run`), and forced recall against gap split by where the answer lies,
pooled over seeds with its 95 % Wilson interval (`recall_probe`). The ablation order is judged on a
composite fixed before any row was measured (`MEMORY_SCORE_GAPS`).
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from contextforcing.world.dynamics import pooled_chance
from contextforcing.world.free_run import still_videos
from contextforcing.world.recall_probe import wilson_interval

__all__ = [
    "ABLATION_ORDER",
    "GRID_ORDER",
    "MEMORY_SCORE_GAPS",
    "PROMPT_WHOLE_CHUNK_ORDER",
    "TRAINED_GRID_ORDER",
    "TRAINED_WHOLE_CHUNK_ORDER",
    "UNGUIDED_ORDER",
    "WHOLE_CHUNK_ORDER",
    "memory_score",
    "world2_headline",
    "world2_learnability",
    "world2_section",
]

MEMORY_SCORE_GAPS = (6.0, 12.0, 18.0, 24.0)
"""The composite of the ablation order: forced recall pooled over these gaps, both answers and all seeds
(the gaps a window of 21 frames cannot bridge)."""
ABLATION_ORDER = ("context-forcing", "uniform-every-2", "no-contextual-distillation", "no-bounded-positions")
"""Table 3's order, best first (uniform every 2 chunks is the paper's uniform ablation)."""
WHOLE_CHUNK_ORDER = (
    "context-forcing-whole-chunks",
    "uniform-every-2",
    "no-contextual-distillation-whole-chunks",
)
"""The same order where a promotion keeps the whole chunk (the rows with bounded positions)."""
TRAINED_WHOLE_CHUNK_ORDER = (
    "cdmd-whole-chunks-slow-24",
    "cdmd-slow-24-uniform-every-2",
    "no-contextual-distillation-slow-24-world-fit",
    "cdmd-slow-24-no-bounded-positions",
)
"""The whole order under one memory (whole chunks, a slow tier of 24, tau fitted on the world), the full
row's student trained with it."""
PROMPT_WHOLE_CHUNK_ORDER = (
    "cdmd-whole-prompt-slow-24",
    "cdmd-prompt-slow-24-uniform-every-2",
    "no-contextual-distillation-slow-24-world-fit",
    "cdmd-prompt-slow-24-no-bounded-positions",
)
"""The same order with the full row's student trained under that memory on rollouts from the prompt alone."""
UNGUIDED_ORDER = (
    "cdmd-prompt-unguided",
    "cdmd-prompt-unguided-uniform-every-2",
    "ode-init-whole-world-fit",
    "cdmd-prompt-unguided-no-bounded-positions",
)
"""The same order for the student trained from the ODE initialisation on the teacher's unguided score, read
in the teacher's own layout (whole chunks, a slow tier of 12, tau fitted on the world); without contextual
distillation is the ODE initialisation it was trained from."""
GRID_ORDER = ("cdmd-grid", "cdmd-grid-uniform", "ode-init-grid", "cdmd-grid-no-bounded-positions")
"""The same order for the long teacher's student under its teacher's context as memory (no threshold: the
slow tier keeps every chunk's first frame); uniform keeps the same spacing on a grid fixed from the start."""
TRAINED_GRID_ORDER = (
    "cdmd-grid",
    "cdmd-grid-uniform-trained",
    "ode-init-grid",
    "cdmd-grid-no-bounded-positions-trained",
)
"""The same order with each ablation's Stage 2 trained under its own memory, as Table 3's are."""


def _pooled(row: dict[str, Any], gaps: tuple[float, ...] | None = None, answer: str | None = None):
    """(recalled, count) over the seeds' probe results at `gaps` (all if None) and `answer` (both if None)."""
    recalled = count = 0
    for seed in row["seeds"]:
        for result in seed["probe"]:
            if (gaps is None or result["gap_seconds"] in gaps) and answer in (None, result["answer"]):
                recalled += round(result["recall"] * result["count"])
                count += result["count"]
    return recalled, count


def memory_score(row: dict[str, Any]) -> float | None:
    """Forced recall pooled over `MEMORY_SCORE_GAPS`, both answers, all seeds."""
    recalled, count = _pooled(row, MEMORY_SCORE_GAPS)
    return recalled / count if count else None


def _cell(recalled: int, count: int) -> str:
    if not count:
        return "–"
    low, high = wilson_interval(recalled, count)
    return f"{recalled / count:.2f} [{low:.2f}, {high:.2f}]"


def _spread(values: list[float | None], digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def _free(row: dict[str, Any], *keys: str) -> list[Any]:
    values = []
    for seed in row["seeds"]:
        value = seed["free"]["summary"]
        for key in keys:
            value = None if value is None else value.get(key)
        values.append(value)
    return values


def _videos(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Every free-running video of a row, seed after seed."""
    return [video for seed in row["seeds"] for video in seed["free"]["videos"]]


def _median_measured(row: dict[str, Any]) -> bool:
    """Whether the row's subjects were found against each video's median alone (a JSON from before
    `dynamics.video_background`)."""
    return still_videos(_videos(row)) is None


def _name(row: dict[str, Any]) -> str:
    """The row's name, marked † where `_median_measured`."""
    return row["row"] + (" †" if _median_measured(row) else "")


_MEDIAN_NOTE = (
    "† Measured before subjects were found against the prompt's room (`dynamics.video_background`): "
    "against each video's median alone, a subject standing in one place for more than half of a minute "
    "is missed, and the frames without it read as a visit. Its run does not ship and was not measured again."
)


def _median_note(rows: list[dict[str, Any]]) -> list[str]:
    return ["", _MEDIAN_NOTE] if any(map(_median_measured, rows)) else []


def _still(row: dict[str, Any]) -> str:
    """Videos of the row that leave a subject standing for more than half of the minute (`free_run.still_videos`)."""
    videos = _videos(row)
    still = still_videos(videos)
    return "–" if still is None else f"{still} / {len(videos)}"


def _free_recall(row: dict[str, Any]) -> str:
    """Free-running recall pooled over the row's videos, and the chance it would have with each video's
    return identities shuffled among its returns (`dynamics.shuffled_recall`)."""
    per_video = [video["free_recall"]["returns"] for video in _videos(row)]
    returns = [r for video in per_video for r in video]
    chance = pooled_chance(per_video)
    return _cell(sum(r["recalled"] for r in returns), len(returns)) + (
        f" (n={len(returns)}; chance {chance:.2f})" if chance is not None else f" (n={len(returns)})"
    )


def _tau(row: dict[str, Any]) -> str:
    if row["memory"] is None or row["memory"]["promotion"] != "surprisal":
        return "–"
    fitted = row.get("fitted_threshold")
    notes = [] if fitted is None else [f"fitted{' on the world' if fitted.get('on') == 'world' else ''}",
                                       f"{fitted['share']:.0%}"]  # fmt: skip
    layers = row["memory"].get("layer_thresholds")
    if layers:
        taus = ", ".join(f"{tau:.4f}" for tau in layers)
        return f"{taus} ({', '.join(['per layer', *notes])})"
    tau = row["memory"]["similarity_threshold"]
    return f"{tau:.4f} ({', '.join(notes)})" if notes else f"{tau:g}"


def _free_table(rows: list[dict[str, Any]]) -> list[str]:
    world = rows[0]["seeds"][0]["free"]["summary"]["world_dynamics"]
    lines = [
        f"| row | presence (world {world['presence']['mean']:.2f}) | visits / min (world "
        f"{world['visits_per_minute']['mean']:.1f}) | mean dwell, s (world {world['mean_dwell_seconds']['mean']:.1f}) "
        "| videos with a subject standing | dynamics within 25 %, seeds | free-running recall (chance) | "
        "incoherent / min | tau | promotions / min | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        passed = [s["free"]["summary"]["dynamics_check"]["passes"] for s in row["seeds"]]
        promoted = row["memory"] is not None and row["memory"]["promotion"] != "none"
        lines.append(
            f"| {_name(row)} | {_spread(_free(row, 'dynamics', 'presence'))} "
            f"| {_spread(_free(row, 'dynamics', 'visits_per_minute'), 1)} "
            f"| {_spread(_free(row, 'dynamics', 'mean_dwell_seconds'), 1)} | {_still(row)} | {sum(passed)} / {len(passed)} "
            f"| {_free_recall(row)} | {_spread(_free(row, 'incoherent_per_minute'), 1)} | {_tau(row)} "
            + (f"| {_spread(_free(row, 'promotions', 'per_minute'), 1)} "
               f"| {_spread(_free(row, 'promotions', 'precision'))} | {_spread(_free(row, 'promotions', 'recall'))} |"
               if promoted else "| – | – | – |")
        )  # fmt: skip
    return lines + _median_note(rows)


def _gaps(rows: list[dict[str, Any]]) -> list[float]:
    return sorted({r["gap_seconds"] for r in rows[0]["seeds"][0]["probe"]})


def _forced_table(rows: list[dict[str, Any]], answer: str) -> list[str]:
    gaps = _gaps(rows)
    lines = ["| row | " + " | ".join(f"{g:g} s" for g in gaps) + " |", "|---|" + "---|" * len(gaps)]
    for row in rows:
        lines.append(
            f"| {row['row']} | " + " | ".join(_cell(*_pooled(row, (g,), answer)) for g in gaps) + " |"
        )
    return lines


def _ablation(rows: list[dict[str, Any]]) -> list[str]:
    scores = {row["row"]: memory_score(row) for row in rows}
    lines = []
    orders = ((ABLATION_ORDER, ""), (WHOLE_CHUNK_ORDER, ", promotions keeping whole chunks"),
              (TRAINED_WHOLE_CHUNK_ORDER, ", Stage 2 trained with whole chunks and a slow tier of 24"),
              (PROMPT_WHOLE_CHUNK_ORDER, ", the same trained on rollouts from the prompt alone"),
              (UNGUIDED_ORDER, ", Stage 2 from the ODE initialisation on the teacher's unguided score"),
              (GRID_ORDER, ", the long teacher's student under its teacher's context as memory"),
              (TRAINED_GRID_ORDER, ", the same with each ablation's Stage 2 trained under its memory"))  # fmt: skip
    for order, rule in orders:
        present = [name for name in order if scores.get(name) is not None]
        if len(present) < 2:
            continue
        cells = " > ".join(f"{name} {scores[name]:.2f}" for name in present)
        ordered = all(scores[a] > scores[b] for a, b in itertools.pairwise(present))
        lines += [f"Memory score (forced recall over {', '.join(f'{g:g}' for g in MEMORY_SCORE_GAPS)} s, both "
                  f"answers, all seeds), in Table 3's order{rule}: {cells}. The order "
                  f"{'holds' if ordered else 'does not hold'}.", ""]  # fmt: skip
    return lines


def _plot(rows: list[dict[str, Any]], path: Path) -> Path:
    fig = Figure(figsize=(11, 4))
    for index, answer in enumerate(("early", "late")):
        ax = fig.add_subplot(1, 2, index + 1)
        for row in rows:
            gaps = _gaps(rows)
            pooled = [_pooled(row, (g,), answer) for g in gaps]
            ax.plot(gaps, [r / n if n else float("nan") for r, n in pooled], marker="o", label=row["row"])
        ax.axhline(rows[0]["chance"], color="grey", linestyle=":", label="chance")
        ax.set(xlabel="gap (s)", ylabel="identity recall", ylim=(0, 1),
               title=f"answer {'in the first 10 s' if answer == 'early' else 'after 10 s'}")  # fmt: skip
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def world2_headline(rows: list[dict[str, Any]]) -> list[str]:
    """The README's table: free-running dynamics and recall, and forced recall at 24 s by answer."""
    lines = [
        "| row | presence | visits / min | mean dwell, s | videos with a subject standing | free-running recall (chance) "
        "| incoherent / min | forced recall 12 s | forced recall 24 s, answer early | forced recall 24 s, answer late "
        "| memory score |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score = memory_score(row)
        lines.append(
            f"| {_name(row)} | {_spread(_free(row, 'dynamics', 'presence'))} "
            f"| {_spread(_free(row, 'dynamics', 'visits_per_minute'), 1)} "
            f"| {_spread(_free(row, 'dynamics', 'mean_dwell_seconds'), 1)} | {_still(row)} | {_free_recall(row)} "
            f"| {_spread(_free(row, 'incoherent_per_minute'), 1)} | {_cell(*_pooled(row, (12.0,)))} "
            f"| {_cell(*_pooled(row, (24.0,), 'early'))} | {_cell(*_pooled(row, (24.0,), 'late'))} "
            f"| {'–' if score is None else f'{score:.2f}'} |"
        )
    return lines + _median_note(rows)


def world2_section(
    rows: list[dict[str, Any]],
    page: Path,
    figures: Path,
    probes: list[dict[str, Any]] | None = None,
    free: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The section's lines: the learnability checks (`world2_learnability`), then the comparison of the
    row JSONs `rows` (if any), whose plot goes to `figures` (linked relative to `page`)."""
    lines = ["## The second world: a cast whose memory must stay current", ""]
    lines += world2_learnability(probes or [], free or [])
    if not rows:
        return lines
    plot = _plot(rows, figures / "world2_recall_vs_gap.png")
    link = plot.relative_to(page.parent) if plot.is_relative_to(page.parent) else plot
    seeds = sorted({s["seed"] for r in rows for s in r["seeds"]})
    videos = rows[-1]["seeds"][0]["free"]["videos"]
    return [
        *lines,
        "### The comparison",
        "",
        "Generated from the row JSONs of `contextforcing compare --world 2` (`make results-world2`); models "
        "trained by `make pipeline-world2` (the students also by `make students-world2`, from the shipped teacher, "
        "and the long teacher's by `make students-long-world2`): "
        + ", ".join(f"{r['row']} = `{r['run']}` step {r['step']}" for r in rows)
        + f". Seeds {seeds}; mean ± standard deviation over seeds, or a share pooled over seeds with its "
        f"95 % Wilson interval. Chance recall is {rows[0]['chance']:.3f}.",
        "",
        "#### Minutes from the prompt alone",
        "",
        f"{len(videos)} one-minute videos per seed and student (the teacher: fewer, see each JSON), from a "
        "world prompt and nothing else, measured from the pixels (`contextforcing free-run`). The world's "
        "own figures are those of its episodes, measured the same way. Free-running recall: the returns a "
        "video makes on its own that come back as they left. Promotions: frames promoted per minute, and "
        "their precision and recall against the video's own events within one chunk.",
        "",
        *_free_table(rows),
        "",
        "#### Forced returns: recall against gap with a true history",
        "",
        "Answer in the first 10 s (the subject was last seen early; first-frame memory holds it):",
        "",
        *_forced_table(rows, "early"),
        "",
        "Answer after 10 s (the subject changed at the gate on its last visit; its first entrance shows "
        "another identity):",
        "",
        *_forced_table(rows, "late"),
        "",
        *_ablation(rows),
        f"![recall against gap, second world]({link})",
        "",
    ]


def world2_learnability(probes: list[dict[str, Any]], free: list[dict[str, Any]]) -> list[str]:
    """The two learnability checks of the second world: recall against gap of the context teacher and its
    window control, by where the answer lies (probe-recall JSONs), and the teachers' own minutes from the
    prompt against the world's dynamics (free-run JSONs)."""
    if not probes and not free:
        return []
    lines = ["### Learnability: the context teacher against its window control", ""]
    if probes:
        gaps = sorted({r["gap_seconds"] for r in probes[0]["results"]})
        lines += [
            "(a) Recall against gap with a true history (`contextforcing probe-recall RUN`, 20 Euler steps, "
            "CFG 3; n returns per gap and answer; 95 % Wilson interval):",
            "",
            "| teacher | step | answer | n | " + " | ".join(f"{g:g} s" for g in gaps) + " |",
            "|---|---|---|---|" + "---|" * len(gaps),
        ]
        for probe in probes:
            for answer in ("early", "late"):
                results = {r["gap_seconds"]: r for r in probe["results"] if r["answer"] == answer}
                cells = " | ".join(
                    _cell(round(results[g]["recall"] * results[g]["count"]), results[g]["count"])
                    for g in gaps
                )
                count = results[gaps[0]]["count"]
                lines.append(f"| `{probe['run']}` | {probe['step']} | {answer} | {count} | {cells} |")
        lines.append("")
    for record in free:
        summary = record["summary"]
        check = summary["dynamics_check"]
        summary_line = (
            f"(b) `{record['run']}` (step {record['step']}) free-running from the prompt alone "
            f"(`contextforcing free-run`, {record['free_run']['videos']} videos of {record['free_run']['seconds']:g} s, "
            f"seed {record['free_run']['seed']}): "
            f"presence {check['presence']['measured']:.2f} against the world's {check['presence']['world']:.2f}, "
            f"{check['visits_per_minute']['measured']:.1f} visits a minute against "
            f"{check['visits_per_minute']['world']:.1f}, mean dwell {summary['dynamics']['mean_dwell_seconds']:.1f} s; "
            f"{summary['free_returns']} returns made on its own, "
            + ("none" if summary["free_recall"] is None else f"{summary['free_recall']:.2f}")
            + f" of them as they left; {summary['incoherent_per_minute']:.1f} incoherent transitions a minute. "
            f"The dynamics check (both within 25 %) {'passes' if check['passes'] else 'fails'}."
        )
        lines += [summary_line, ""]
    return lines

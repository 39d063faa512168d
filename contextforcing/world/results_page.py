"""docs/RESULTS.md from the row JSONs of `contextforcing compare`: tables (mean ± spread over seeds) and
plots. Every number in the tables and plots is read from those files; the prose around them states the
settings that `compare` and the world pipeline use."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from contextforcing.world.recall import effective_context_length
from contextforcing.world.results_world2 import world2_section

__all__ = ["headline_table", "load_rows", "update_block", "write_results_page"]

BLOCK_START, BLOCK_END = "<!-- results:start -->", "<!-- results:end -->"


def load_rows(folder: str | Path, world: int = 1) -> list[dict[str, Any]]:
    """The row JSONs of a folder, the teacher first, then in the order of world `world`'s comparison."""
    from contextforcing.world.rows import comparison

    order = [row.name for row in comparison(world)]
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise ValueError(f"no row JSON in {folder}; run `contextforcing compare` first")
    rows = [json.loads(p.read_text()) for p in paths]
    return sorted(rows, key=lambda r: order.index(r["row"]) if r["row"] in order else len(order))


def _stats(values: list[float | None]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _cell(values: list[float | None], digits: int = 2) -> str:
    stats = _stats(values)
    return "–" if stats is None else f"{stats[0]:.{digits}f} ± {stats[1]:.{digits}f}"


def _gaps(row: dict[str, Any]) -> list[float]:
    return [r["gap_seconds"] for r in row["seeds"][0]["probe"]]


def _recall(row: dict[str, Any], gap: float, key: str = "recall") -> list[float]:
    return [next(r[key] for r in seed["probe"] if r["gap_seconds"] == gap) for seed in row["seeds"]]


def _pooled_context(row: dict[str, Any]) -> float:
    """Effective context length of the seed-averaged recall curve."""
    curve = [{"gap_seconds": g, "recall": statistics.fmean(_recall(row, g))} for g in _gaps(row)]
    return effective_context_length(curve)


def _seed_context(seed: dict[str, Any]) -> float:
    """Effective context length of one seed's recall curve."""
    return effective_context_length(sorted(seed["probe"], key=lambda r: r["gap_seconds"]))


def _windows(row: dict[str, Any]) -> list[str]:
    return list(row["seeds"][0]["rollout"]["summary"]["windows"])


def _window(row: dict[str, Any], label: str, key: str) -> list[float | None]:
    return [seed["rollout"]["summary"]["windows"][label][key] for seed in row["seeds"]]


def _short(row: dict[str, Any], key: str) -> list[float | None]:
    return [seed["rollout"]["summary"]["short"][key] for seed in row["seeds"]]


def _recall_table(rows: list[dict[str, Any]]) -> list[str]:
    gaps = _gaps(rows[0])
    lines = [
        "| row | "
        + " | ".join(f"{g:g} s" for g in gaps)
        + " | effective context (s), per seed | of the mean curve |",
        "|---|" + "---|" * (len(gaps) + 2),
    ]
    for row in rows:
        cells = [_cell(_recall(row, g)) for g in gaps]
        context = _cell([_seed_context(s) for s in row["seeds"]], 1)
        lines.append(f"| {row['row']} | " + " | ".join(cells) + f" | {context} | {_pooled_context(row):g} |")
    return lines


def _drift_table(rows: list[dict[str, Any]], key: str, digits: int) -> list[str]:
    students = [r for r in rows if r["memory"] is not None]
    labels = _windows(students[0])
    lines = ["| row | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for row in students:
        lines.append(
            f"| {row['row']} | " + " | ".join(_cell(_window(row, w, key), digits) for w in labels) + " |"
        )
    return lines


def _short_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| row | presence | identity consistency | background error | frames / s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        speed = [s["rollout"]["frames_per_second"] for s in row["seeds"]]
        lines.append(
            f"| {row['row']} | {_cell(_short(row, 'presence'))} | {_cell(_short(row, 'identity_consistency'))} "
            f"| {_cell(_short(row, 'background_error'), 3)} | {_cell(speed, 1)} |"
        )
    return lines


def headline_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row: recall at every gap, the effective context of the seed-averaged recall curve,
    presence, identity consistency and background error in the last window, short-horizon background error."""
    gaps = _gaps(rows[0])
    students = [r for r in rows if r["memory"] is not None]
    last = _windows(students[0])[-1] if students else None
    lines = [
        "| row | " + " | ".join(f"recall {g:g} s" for g in gaps)
        + f" | effective context (s) | presence {last} | identity consistency {last} | background error {last} | "
        "background error 0-5 s |",
        "|---|" + "---|" * (len(gaps) + 5),
    ]  # fmt: skip
    for row in rows:
        student = row["memory"] is not None
        cells = [_cell(_recall(row, g)) for g in gaps]
        cells.append(f"{_pooled_context(row):g}")
        cells.append(_cell(_window(row, last, "presence")) if student else "–")
        cells.append(_cell(_window(row, last, "identity_consistency")) if student else "–")
        cells.append(_cell(_window(row, last, "background_error"), 3) if student else "–")
        cells.append(_cell(_short(row, "background_error"), 3))
        lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
    return lines


def update_block(text: str, lines: list[str]) -> str:
    """`text` with the lines between the results markers replaced; raises ValueError without markers."""
    if BLOCK_START not in text or BLOCK_END not in text:
        raise ValueError(f"no {BLOCK_START} ... {BLOCK_END} block to update")
    head, rest = text.split(BLOCK_START, 1)
    _, tail = rest.split(BLOCK_END, 1)
    return head + BLOCK_START + "\n" + "\n".join(lines) + "\n" + BLOCK_END + tail


_MARKERS = "osD^v<>ph*"


def _styles(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One colour and marker per row, the same in every plot."""
    from matplotlib import colormaps

    colours = colormaps["tab20"]
    return {
        row["row"]: {"color": colours(i % 20), "marker": _MARKERS[i % len(_MARKERS)]}
        for i, row in enumerate(rows)
    }


def _plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """recall_vs_gap.png and drift.png under `out`; returns their names."""
    out.mkdir(parents=True, exist_ok=True)
    styles = _styles(rows)
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    for row in rows:
        gaps = _gaps(row)
        stats = [_stats(_recall(row, g)) for g in gaps]
        ax.errorbar(gaps, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=3, label=row["row"],
                    **styles[row["row"]])  # fmt: skip
    ax.axhline(rows[0]["chance"], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="gap (s)", ylabel="identity recall", title="Recall against gap (true history)", ylim=(0, 1))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "recall_vs_gap.png", dpi=110)
    fig = Figure(figsize=(12, 4))
    students = [r for r in rows if r["memory"] is not None]
    for index, (key, title) in enumerate(
        (("identity_consistency", "Identity consistency"), ("background_error", "Background error"))
    ):
        ax = fig.add_subplot(1, 2, index + 1)
        for row in students:
            labels = _windows(row)
            stats = [_stats(_window(row, w, key)) for w in labels]
            x = [float(w.split("-")[1].rstrip("s")) for w in labels]
            keep = [(xi, s) for xi, s in zip(x, stats, strict=True) if s is not None]
            ax.errorbar([k[0] for k in keep], [k[1][0] for k in keep], yerr=[k[1][1] for k in keep], capsize=3,
                        label=row["row"], **styles[row["row"]])  # fmt: skip
        ax.set(xlabel="seconds after the prefix (window end)", title=title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "drift.png", dpi=110)
    return ["recall_vs_gap.png", "drift.png"]


def _learnability(probes: list[dict[str, Any]]) -> list[str]:
    """The learnability check: recall against gap of teachers (probe-recall JSONs), one row each."""
    if not probes:
        return []
    gaps = [r["gap_seconds"] for r in probes[0]["results"]]
    lines = [
        "## Learnability check: context teacher against a 12-frame window teacher",
        "",
        "Both trained from scratch with the same recipe, clips and budget; the window teacher sees only the "
        "12 most recent frames (3 s). `contextforcing probe-recall RUN` (true history, 20 Euler steps, CFG 3; "
        "recall counts a return only where a subject is drawn; n returns per gap).",
        "",
        "| teacher | step | n | " + " | ".join(f"{g:g} s" for g in gaps) + " |",
        "|---|---|---|" + "---|" * len(gaps),
    ]
    for probe in probes:
        cells = " | ".join(f"{r['recall']:.2f}" for r in probe["results"])
        lines.append(f"| `{probe['run']}` | {probe['step']} | {probe['results'][0]['count']} | {cells} |")
    return [*lines, ""]


def write_results_page(
    rows: list[dict[str, Any]],
    page: str | Path,
    figures: str | Path,
    probes: list[dict[str, Any]] | None = None,
    world2_rows: list[dict[str, Any]] | None = None,
    world2_checks: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
) -> Path:
    """Write the page and its figures; figure links are relative to the page. `probes`: probe-recall JSONs
    of the learnability check, shown first; `world2_rows`: the second world's row JSONs, whose section
    comes before the first world's, with `world2_checks` (its learnability probe-recall and free-run
    JSONs) at its head."""
    page, figures = Path(page), Path(figures)
    second = bool(world2_rows) or any(world2_checks)
    if not rows and not second:
        raise ValueError("no row JSON of either world to write a page from")
    lines = [
        "# Results: the miniature reproduction on the world",
        "",
        "Generated by `contextforcing results` from the row JSONs that `contextforcing compare` writes. World "
        "model preset `world` (1.1 M parameters) on the first world and `world-large` (4.8 M) on the second, "
        "trained on a 2-core CPU.",
        "",
        *(world2_section(world2_rows or [], page, figures, *world2_checks) if second else []),
        *(_world1_lines(rows, page, figures, probes or [], heading=second) if rows else []),
    ]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page


def _world1_lines(rows: list[dict[str, Any]], page: Path, figures: Path, probes: list[dict[str, Any]],
                  *, heading: bool) -> list[str]:  # fmt: skip
    names = _plot(rows, figures)
    link = figures.relative_to(page.parent) if figures.is_relative_to(page.parent) else figures
    seeds = sorted({s["seed"] for r in rows for s in r["seeds"]})
    probe = rows[0]["seeds"][0]["probe"][0]["count"]
    return [
        *(["## The first world: one subject", ""] if heading else []),
        "`make results` runs `compare` and this page; models trained by `make pipeline` with the world "
        "codec; checkpoints: "
        + ", ".join(f"{r['row']} = `{r['run']}` step {r['step']}" for r in rows)
        + f". Seeds {seeds}; mean ± standard deviation over seeds. Chance recall is {rows[0]['chance']:.3f}.",
        "",
        *_learnability(probes),
        "## Identity recall against gap (true history)",
        "",
        f"Each model continues {probe} true histories per gap and seed, up to the frame where the subject "
        "comes back; a return counts when the subject is drawn with the identity it had "
        "(`contextforcing probe-recall`). Effective context: the longest gap, over the run from the shortest, "
        "recalled at 90 % or more of the shortest gap's recall, per seed and for the seed-averaged curve.",
        "",
        *_recall_table(rows),
        "",
        f"![recall against gap]({link / names[0]})",
        "",
        "## One minute of free generation: identity consistency and background error",
        "",
        "Each student continues a 3 s true prefix to 60 s. Identity consistency: the share of frames showing "
        "a subject that show the prefix's identity. Background error: mean |frame - true background| over "
        "the 80 % least different pixels (0-1). Windows are seconds after the prefix.",
        "",
        "Presence (share of frames that show a subject):",
        "",
        *_drift_table(rows, "presence", 2),
        "",
        "Identity consistency (– where no frame of the window shows a subject):",
        "",
        *_drift_table(rows, "identity_consistency", 2),
        "",
        "Background error:",
        "",
        *_drift_table(rows, "background_error", 3),
        "",
        f"![drift]({link / names[1]})",
        "",
        "## Short horizon (the first 5 s after the prefix) and speed",
        "",
        "Presence: share of frames showing a subject. Speed: generated latent frames per second of wall "
        "time, one thread, on the machine that ran `compare` (the teacher samples 20 Euler steps with CFG). "
        "`make results` runs two `compare` processes side by side, and other work may share the machine, so "
        "speed differences between students of one architecture are contention, not method; "
        "`benchmarks/bench_streaming.py` measures streaming speed on its own.",
        "",
        *_short_table(rows),
        "",
    ]

"""One run measured on several seeds, pooled (`contextforcing pool`).

`probe-recall` JSONs pool per gap and answer: returns and recalled summed, the recall's 95 % Wilson
interval over all of them, the other shares weighted by returns. `free-run` JSONs pool over their videos:
the dynamics averaged and checked against the world's, free-running recall and its chance over every
return (with its interval), the videos that leave a subject standing, recall by gap, the promotions.

Only records of one run, read alike, differing in their seed alone, pool: anything else is refused with
the file and the key at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contextforcing.world.dynamics import living_against
from contextforcing.world.free_run import mean_promotions, still_videos
from contextforcing.world.recall_probe import wilson_interval

__all__ = ["kind_of", "pool", "pool_free_runs", "pool_probes"]

_MEASURED = {"probe": ("results", "trained_reach"), "free-run": ("videos", "summary", "frames_per_second")}
"""What each kind of record measured (and may differ from seed to seed); the rest says what was measured."""
_SETTINGS = {"probe": "probe", "free-run": "free_run"}
"""Each kind's settings, which hold the seed."""
_WEIGHTED = ("colour_recall", "drawn", "stale", "answer_kept", "first_kept", "answer_frames_kept",
             "first_frames_kept", "kept_frames", "kept_from_start")  # fmt: skip
"""Probe shares pooled as means weighted by the returns (those a record lacks are left out)."""


def kind_of(record: dict[str, Any], name: str) -> str:
    """ "probe" (`probe-recall`) or "free-run" (`free-run`); ValueError naming `name` otherwise."""
    if isinstance(record, dict) and "results" in record and "probe" in record:
        return "probe"
    if isinstance(record, dict) and "videos" in record and "free_run" in record:
        return "free-run"
    raise ValueError(
        f"{name}: expected JSON written by `contextforcing probe-recall --out` or `free-run --out`"
    )


def _check_alike(records: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """The records' kind, if they are one run read alike on distinct seeds; else ValueError."""
    kind = kind_of(records[0], names[0])
    settings = _SETTINGS[kind]
    first = records[0]
    seeds = {first[settings].get("seed"): names[0]}
    for record, name in zip(records[1:], names[1:], strict=True):
        if kind_of(record, name) != kind:
            raise ValueError(
                f"{name}: a {kind_of(record, name)} record cannot pool with {names[0]}'s {kind} record"
            )
        for key in (set(first) | set(record)) - {*_MEASURED[kind], settings}:
            if record.get(key) != first.get(key):
                raise ValueError(f"{name}: '{key}' differs from {names[0]}'s; only the seed may differ")
        for key in (set(first[settings]) | set(record[settings])) - {"seed"}:
            if record[settings].get(key) != first[settings].get(key):
                raise ValueError(
                    f"{name}: '{settings}.{key}' differs from {names[0]}'s; only the seed may differ"
                )
        seed = record[settings].get("seed")
        if seed in seeds:
            raise ValueError(f"{name}: seed {seed} is {seeds[seed]}'s too; pool distinct seeds")
        seeds[seed] = name
    return kind


def pool_probes(records: Sequence[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Per gap and answer (in the first record's order): returns, recalled, recall and its interval, and
    the other shares weighted by returns. Every record must hold the same gaps and answers."""
    cells = [(r["gap_seconds"], r["answer"]) for r in records[0]["results"]]
    pooled = {cell: {"count": 0, "recalled": 0} | dict.fromkeys(_WEIGHTED, 0.0) for cell in cells}
    for record, name in zip(records, names, strict=True):
        mine = [(r["gap_seconds"], r["answer"]) for r in record["results"]]
        if sorted(mine) != sorted(cells):
            raise ValueError(
                f"{name}: its gaps and answers {sorted(set(mine))} are not {names[0]}'s {sorted(cells)}"
            )
        for result in filter(lambda r: r["count"], record["results"]):  # a cell without returns adds nothing
            cell = pooled[(result["gap_seconds"], result["answer"])]
            cell["count"] += result["count"]
            cell["recalled"] += round(result["recall"] * result["count"])
            for key in _WEIGHTED:
                cell[key] = (
                    None
                    if cell[key] is None or key not in result
                    else cell[key] + result[key] * result["count"]
                )
    rows = []
    for (gap, answer), cell in pooled.items():
        count, recalled = cell["count"], cell["recalled"]
        shares = {key: cell[key] / count for key in _WEIGHTED if cell[key] is not None and count}
        rows.append({"gap_seconds": gap, "answer": answer, "count": count, "recalled": recalled,
                     "recall": recalled / count if count else None,
                     "interval": list(wilson_interval(recalled, count)), **shares})  # fmt: skip
    return rows


def _weighted(parts: Sequence[dict[str, Any]], key: str, weight: str) -> float | None:
    known = [p for p in parts if p.get(key) is not None and p[weight]]
    total = sum(p[weight] for p in known)
    return sum(p[key] * p[weight] for p in known) / total if total else None


_VIDEO_KEYS = ("dynamics", "free_recall", "cast", "coherence")
"""What pooling reads of every free-run video; a record written before a measure existed lacks it."""


def pool_free_runs(records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The summary `free-run` gives one seed's videos, over every record's videos.

    Recall by gap and after the prefix are pooled from the records' summaries: their counts add, and the
    chance after the prefix, a mean over returns, is weighted by them, which is what the summary of all
    the videos at once would give."""
    world = records[0]["summary"]["world_dynamics"]
    for record, name in zip(records, names, strict=True):
        lacking = [key for key in _VIDEO_KEYS if any(key not in video for video in record["videos"])]
        if lacking:
            raise ValueError(
                f"{name}: its videos lack {lacking}, measures `free-run` added since it was written; "
                "run it again to pool it"
            )
        if record["summary"]["world_dynamics"] != world:
            raise ValueError(
                f"{name}: 'summary.world_dynamics' differs from {names[0]}'s; only the seed may differ"
            )
    videos = [video for record in records for video in record["videos"]]
    out = living_against(videos, world)
    returns = [r for video in videos for r in video["free_recall"]["returns"]]
    out["free_recall_interval"] = list(wilson_interval(sum(r["recalled"] for r in returns), len(returns)))
    groups = [record["summary"]["free_recall_by_gap"] for record in records]
    out["free_recall_by_gap"] = [
        {
            **group[0],
            "returns": sum(g["returns"] for g in group),
            "recalled": sum(g["recalled"] for g in group),
        }
        for group in zip(*groups, strict=True)
    ]
    out["still_videos"] = still_videos(videos)
    if all("after_prefix" in record["summary"] for record in records):
        parts = [record["summary"]["after_prefix"] for record in records]
        out["after_prefix"] = {"free_returns": sum(p["free_returns"] for p in parts),
                               **{key: _weighted(parts, key, "free_returns")
                                  for key in ("free_recall", "free_recall_chance")}}  # fmt: skip
    if all("promotions" in video for video in videos):
        out["promotions"] = mean_promotions(videos)
    return out


def pool(records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The pooled record of `probe-recall` or `free-run` records of one run on distinct seeds."""
    if not records:
        raise ValueError("pool needs at least one record")
    kind = _check_alike(records, names)
    settings = _SETTINGS[kind]
    shared = {key: value for key, value in records[0].items() if key not in (*_MEASURED[kind], settings)}
    header = {**shared, settings: {**records[0][settings], "seed": None},
              "seeds": [record[settings].get("seed") for record in records], "pooled": list(names)}  # fmt: skip
    if kind == "probe":
        return {**header, "results": pool_probes(records, names)}
    return {**header, "videos": sum(len(record["videos"]) for record in records),
            "summary": pool_free_runs(records, names)}  # fmt: skip

"""`contextforcing pool`: one run's probe-recall and free-run JSONs on several seeds, pooled."""

from __future__ import annotations

import json

import pytest
from test_world_free_run import WORLD, PixelCodec, _world_generator

from contextforcing.cli import main
from contextforcing.world.dynamics import recall_by_gap
from contextforcing.world.free_run import FreeRunConfig, free_runs
from contextforcing.world.pooling import pool
from contextforcing.world.recall_probe import wilson_interval


def _probe(seed: int, cells: list[tuple[float, str, int, float, float]], **changes) -> dict:
    """A probe-recall record: (gap, answer, count, recall, stale) a cell."""
    results = [{"gap_seconds": gap, "answer": answer, "count": count, "recall": recall, "stale": stale,
                "interval": list(wilson_interval(round((recall or 0) * count), count))}
               for gap, answer, count, recall, stale in cells]  # fmt: skip
    record = {"run": "runs/r", "stage": "cdmd", "memory": {"reencode": True}, "context_from": None, "step": 200,
              "probe": {"episodes_per_gap": 24, "num_steps": 20, "seed": seed, "num_target_frames": 21},
              "layout": None, "trained_reach": {"seed": seed}, "results": results}  # fmt: skip
    for key, value in changes.items():
        record[key] = value
    return record


def test_probes_pool_per_gap_and_answer_with_the_interval_of_all_returns() -> None:
    records = [
        _probe(0, [(6.0, "early", 24, 0.5, 0.25), (6.0, "late", 24, 1.0, 0.0)]),
        _probe(1, [(6.0, "late", 8, 0.5, 0.5), (6.0, "early", 24, 0.25, 0.5)]),
        _probe(2, [(6.0, "late", 0, None, None), (6.0, "early", 0, None, None)]),  # no subject drawn
    ]
    pooled = pool(records, ["a.json", "b.json", "c.json"])
    assert pooled["seeds"] == [0, 1, 2] and pooled["probe"]["seed"] is None and pooled["run"] == "runs/r"
    early, late = pooled["results"]
    assert (early["answer"], early["count"], early["recalled"]) == ("early", 48, 18)
    assert early["recall"] == pytest.approx(18 / 48) and early["interval"] == list(wilson_interval(18, 48))
    assert early["stale"] == pytest.approx(0.375)
    assert (late["count"], late["recalled"], late["stale"]) == (32, 28, pytest.approx(4 / 32))


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (_probe(0, [(6.0, "early", 24, 0.5, 0.0)]), "seed 0 is a.json's too"),
        (_probe(1, [(6.0, "early", 24, 0.5, 0.0)], run="runs/other"), "'run' differs"),
        (_probe(1, [(6.0, "early", 24, 0.5, 0.0)], memory={"reencode": False}), "'memory' differs"),
        (_probe(1, [(12.0, "early", 24, 0.5, 0.0)]), "gaps and answers"),
        ({"videos": [], "free_run": {"seed": 1}}, "free-run record cannot pool"),
        ({"results": []}, "expected JSON written by"),
    ],
)
def test_records_of_another_run_or_reading_or_the_same_seed_are_refused(other: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        pool([_probe(0, [(6.0, "early", 24, 0.5, 0.0)]), other], ["a.json", "b.json"])
    changed = _probe(1, [(6.0, "early", 24, 0.5, 0.0)])
    changed["probe"]["episodes_per_gap"] = 8
    with pytest.raises(ValueError, match=r"'probe\.episodes_per_gap' differs"):
        pool([_probe(0, [(6.0, "early", 24, 0.5, 0.0)]), changed], ["a.json", "b.json"])


def _free_record(seed: int) -> dict:
    config = FreeRunConfig(seconds=60.0, videos=2, seed=seed)
    result = free_runs(_world_generator(promote_events=True), PixelCodec(), WORLD, config)
    return {"run": "runs/r", "stage": "cdmd", "step": 1, "memory": None,
            "free_run": {"videos": 2, "seconds": 60.0, "seed": seed, "prefix_seconds": 0.0}, **result}  # fmt: skip


def test_free_runs_pool_over_their_videos_as_each_seed_summarises_its_own() -> None:
    records = [_free_record(0), _free_record(1)]
    summaries = [record["summary"] for record in records]
    pooled = pool(records, ["a.json", "b.json"])
    assert pooled["videos"] == 4 and pooled["seeds"] == [0, 1]
    summary = pooled["summary"]
    for key in ("presence", "visits_per_minute"):
        assert summary["dynamics"][key] == pytest.approx(sum(s["dynamics"][key] for s in summaries) / 2)
    returns = [s["free_returns"] for s in summaries]
    assert summary["free_returns"] == sum(returns) > 0
    for key in ("free_recall", "free_recall_chance"):
        assert summary[key] == pytest.approx(
            sum(n * s[key] for n, s in zip(returns, summaries, strict=True)) / sum(returns)
        )
    recalled = round(summary["free_recall"] * summary["free_returns"])
    assert summary["free_recall_interval"] == list(wilson_interval(recalled, sum(returns)))
    every_return = [
        r for record in records for video in record["videos"] for r in video["free_recall"]["returns"]
    ]
    assert summary["free_recall_by_gap"] == recall_by_gap(every_return, WORLD.fps)
    assert summary["still_videos"] == 0 and summary["world_dynamics"] == summaries[0]["world_dynamics"]
    assert summary["promotions"]["per_minute"] == pytest.approx(
        sum(s["promotions"]["per_minute"] for s in summaries) / 2
    )


def test_a_free_run_written_before_a_measure_existed_is_refused_by_name() -> None:
    old = _free_record(1)
    for video in old["videos"]:
        del video["cast"]
    with pytest.raises(ValueError, match=r"b\.json: its videos lack \['cast'\]"):
        pool([_free_record(0), old], ["a.json", "b.json"])


def test_the_pool_command_writes_the_pooled_record_and_names_a_bad_file(tmp_path, capsys) -> None:
    paths = [tmp_path / f"s{seed}.json" for seed in (0, 1)]
    for seed, path in enumerate(paths):
        path.write_text(json.dumps(_probe(seed, [(24.0, "late", 24, 0.25, 0.0)])))
    out = tmp_path / "pooled.json"
    assert main(["pool", *map(str, paths), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["recalled"] == 12
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["pool", str(paths[0]), str(broken)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("contextforcing pool: error:") and "broken.json" in error and "\n" not in error

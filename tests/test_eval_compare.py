"""The comparison: one row evaluated end to end on a small random run, and the results page built from it."""

import json
from dataclasses import replace

import pytest
import torch

from contextforcing.cli import main
from contextforcing.config import to_dict
from contextforcing.memory.config import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import save_model
from contextforcing.world.compare import earlier_probes, evaluate_row, with_probes
from contextforcing.world.config import WorldExperimentConfig
from contextforcing.world.recall import effective_context_length
from contextforcing.world.results_page import headline_table, load_rows, update_block, write_results_page
from contextforcing.world.rows import ROWS, Row, comparison


def _run_folder(path, stage):
    torch.manual_seed(0)
    config = WorldExperimentConfig(
        stage=stage, model=replace(model_preset("tiny"), in_channels=8, out_channels=8, text_len=4)
    )
    save_model(CausalDiT(config.model), path / "model", extra={"step": 7})
    (path / "config.json").write_text(json.dumps(to_dict(config)))
    return path


def test_effective_context_from_a_probe_curve():
    curve = [
        {"gap_seconds": g, "recall": r} for g, r in [(1.5, 0.8), (3, 0.75), (6, 0.73), (12, 0.7), (18, 0.9)]
    ]
    assert effective_context_length(curve) == 6  # 0.7 < 0.9 * 0.8 ends the run; 18 s is cut off
    assert effective_context_length([{"gap_seconds": 1.5, "recall": 0.0}]) == 0.0
    assert effective_context_length([]) is None


def test_rows_name_existing_memory_policies_and_distinct_names():
    assert len({row.name for row in ROWS}) == len(ROWS)
    assert {"self-forcing", "longlive", "infinity-rope", "context-forcing"} <= {row.name for row in ROWS}


@pytest.mark.slow
def test_a_row_is_evaluated_and_the_page_is_written(tmp_path):
    student = Row(name="context-forcing", run=str(_run_folder(tmp_path / "s", "cdmd")),
                  memory=memory_preset("context"), description="random")  # fmt: skip
    teacher = Row(name="teacher", run=str(_run_folder(tmp_path / "t", "context-teacher")), memory=None,
                  description="random")  # fmt: skip
    folder = tmp_path / "eval"
    folder.mkdir()
    for row in (student, teacher):
        record = evaluate_row(row, seeds=[0, 1], episodes=1, videos=1)
        assert record["step"] == 7 and len(record["seeds"]) == 2
        (folder / f"{row.name}.json").write_text(json.dumps(record))
    rows = load_rows(folder)
    assert [r["row"] for r in rows] == ["teacher", "context-forcing"]
    probe = {"run": "runs/window", "step": 3, "results": [{"gap_seconds": 1.5, "recall": 0.625, "count": 8}]}
    page = write_results_page(rows, tmp_path / "docs" / "RESULTS.md", tmp_path / "docs" / "results", [probe])
    text = page.read_text()
    assert "| `runs/window` | 3 | 8 | 0.62 |" in text
    assert "| context-forcing |" in text and "| teacher |" in text and "(results/recall_vs_gap.png)" in text
    assert (tmp_path / "docs" / "results" / "drift.png").is_file()
    readme = "intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n"
    updated = update_block(readme, headline_table(rows))
    assert "old" not in updated and updated.startswith("intro") and updated.endswith("rest\n")
    assert "| context-forcing |" in updated and "recall 6 s" in updated
    with pytest.raises(ValueError, match="results:start"):
        update_block("no markers", ["x"])
    with pytest.raises(ValueError, match="not a run folder"):
        evaluate_row(replace(student, run=str(tmp_path / "missing")), seeds=[0], episodes=1, videos=1)


def _world2_run_folder(path, stage):
    from contextforcing.world.types import world_version

    torch.manual_seed(0)
    config = WorldExperimentConfig(
        stage=stage, model=replace(model_preset("tiny"), in_channels=8, out_channels=8, text_len=4)
    )
    config = replace(config, data=replace(config.data, world=world_version(2)))
    save_model(CausalDiT(config.model), path / "model", extra={"step": 5})
    (path / "config.json").write_text(json.dumps(to_dict(config)))
    return path


@pytest.mark.slow
def test_a_second_world_row_runs_free_fits_its_threshold_and_makes_the_page(tmp_path):
    from contextforcing.world.results_world2 import memory_score, world2_headline

    folder = tmp_path / "eval2"
    folder.mkdir()
    student = _world2_run_folder(tmp_path / "s", "cdmd")
    rows = [
        Row(name="teacher", run=str(_world2_run_folder(tmp_path / "t", "context-teacher")), memory=None,
            description="random"),
        Row(name="context-forcing", run=str(student), memory=memory_preset("context"), fit_share=0.25,
            description="random, fitted"),
        Row(name="context-forcing-layer-fit", run=str(student), memory=memory_preset("context"), fit_share=0.25,
            fit_per_layer=True, description="random, fitted per layer"),
        Row(name="whole-chunks-slow-24-world-fit", run=str(student), memory=memory_preset("context"), fit_share=0.25,
            fit_on="world", description="random, fitted on the world"),
        Row(name="no-bounded-positions", run=str(student), memory=memory_preset("context", positions="absolute"),
            description="random, tau 0.95"),
    ]  # fmt: skip
    for row in rows:
        record = evaluate_row(row, seeds=[0], episodes=1, videos=1, seconds=6.0)
        free = record["seeds"][0]["free"]
        assert {r["answer"] for r in record["seeds"][0]["probe"]} == {"early", "late"}
        assert len(free["videos"]) == 1 and "dynamics_check" in free["summary"]
        (folder / f"{row.name}.json").write_text(json.dumps(record))
    # Measured again without its probes, a row keeps those of its JSON and comes out as it was.
    path = folder / "context-forcing.json"
    again = evaluate_row(rows[1], seeds=[0], episodes=1, videos=1, seconds=6.0, probe=False)
    assert "probe" not in again["seeds"][0]
    merged = json.loads(json.dumps(with_probes(again, earlier_probes(path, [0]), path)))
    before = json.loads(path.read_text())
    for record in (merged, before):
        del record["seeds"][0]["free"]["frames_per_second"]  # a timing
    assert merged == before
    with pytest.raises(ValueError, match="holds the probes of seeds \\[0\\]"):
        earlier_probes(path, [0, 1])
    with pytest.raises(ValueError, match="memory"):
        with_probes(
            {**again, "memory": {**again["memory"], "num_slow_frames": 99}}, earlier_probes(path, [0]), path
        )
    fitted = json.loads((folder / "context-forcing.json").read_text())
    tau = fitted["fitted_threshold"]["tau"]
    assert fitted["memory"]["similarity_threshold"] == tau != 0.95
    # Fitted on the world's own episodes, the same memory takes other similarities than on its free runs.
    on_world = json.loads((folder / "whole-chunks-slow-24-world-fit.json").read_text())["fitted_threshold"]
    assert on_world["on"] == "world" and fitted["fitted_threshold"]["on"] == "free"
    assert on_world["tau"] != tau
    per_layer = json.loads((folder / "context-forcing-layer-fit.json").read_text())
    taus = per_layer["fitted_threshold"]["layer_taus"]
    assert per_layer["memory"]["layer_thresholds"] == taus and len(taus) == model_preset("tiny").num_layers
    loaded = load_rows(folder, world=2)
    assert [r["row"] for r in loaded] == ["teacher", "context-forcing", "context-forcing-layer-fit",
                                          "whole-chunks-slow-24-world-fit", "no-bounded-positions"]  # fmt: skip
    assert all(memory_score(r) is not None for r in loaded)
    page = write_results_page(
        [], tmp_path / "docs" / "RESULTS.md", tmp_path / "docs" / "results", world2_rows=loaded
    )
    text = page.read_text()
    assert "## The second world" in text and "## The first world" not in text
    assert f"{tau:.4f} (fitted, 25%)" in text and "| no-bounded-positions |" in text
    assert ", ".join(f"{t:.4f}" for t in taus) + " (per layer, fitted, 25%)" in text
    assert f"{on_world['tau']:.4f} (fitted on the world, 25%)" in text
    assert "in Table 3's order: context-forcing" in text
    assert (tmp_path / "docs" / "results" / "world2_recall_vs_gap.png").is_file()
    headline = world2_headline(loaded)
    assert len(headline) == 2 + len(loaded) and headline[2].startswith("| teacher |")
    assert not any("†" in line for line in headline)
    # A row whose subjects were found against each video's median alone is marked, and a note says so.
    earlier = json.loads(json.dumps(loaded[1]))
    for video in earlier["seeds"][0]["free"]["videos"]:
        del video["background"]
    marked = world2_headline([loaded[0], earlier])
    assert marked[2].startswith("| teacher |") and marked[3].startswith("| context-forcing † |")
    # Its count of videos with a subject standing is unknown (the room was not given); the others' is read.
    still = sum(video["background"]["still_pixels"] > 0 for video in loaded[1]["seeds"][0]["free"]["videos"])
    assert headline[3].split("|")[5].strip() == f"{still} / 1" and marked[3].split("|")[5].strip() == "–"
    assert "against each video's median alone" in marked[-1]
    # The README's table is the second world's once every row is there, and left alone before.
    for name in {row.name for row in comparison(2)} - {row.name for row in rows}:
        (folder / f"{name}.json").write_text(json.dumps({**fitted, "row": name}))
    readme = tmp_path / "README.md"
    block = "intro\n<!-- results:start -->\nold\n<!-- results:end -->\n"
    argv = ["results", "--eval", str(tmp_path / "none"), "--learnability", str(tmp_path / "none"),
            "--world2-learnability", str(tmp_path / "none"), "--world2-eval", str(folder),
            "--out", str(tmp_path / "docs" / "RESULTS.md"), "--figures", str(tmp_path / "docs" / "results"),
            "--readme", str(readme)]  # fmt: skip
    readme.write_text(block)
    assert main(argv) == 0 and "| context-forcing |" in readme.read_text()
    (folder / "uniform-every-1.json").unlink()
    readme.write_text(block)
    assert main(argv) == 0 and readme.read_text() == block


def test_the_second_worlds_learnability_checks_head_its_section(tmp_path):
    from contextforcing.world.results_world2 import world2_learnability

    results = [{"gap_seconds": g, "answer": a, "recall": r, "count": 24}
               for g, a, r in [(1.5, "early", 0.5), (1.5, "late", 0.25), (24.0, "early", 0.0), (24.0, "late", 1.0)]]  # fmt: skip
    probe = {"run": "runs/ctx", "step": 9, "results": results}
    check = {"presence": {"measured": 0.4, "world": 0.44, "passes": True},
             "visits_per_minute": {"measured": 2.0, "world": 6.3, "passes": False}, "passes": False}  # fmt: skip
    free = {"run": "runs/ctx", "step": 9, "free_run": {"videos": 4, "seconds": 60.0, "seed": 3},
            "summary": {"dynamics_check": check, "dynamics": {"mean_dwell_seconds": 3.2}, "free_returns": 5,
                        "free_recall": 0.6, "incoherent_per_minute": 0.25}}  # fmt: skip
    lines = world2_learnability([probe], [free])
    text = "\n".join(lines)
    assert (
        "| `runs/ctx` | 9 | early | 24 | 0.50 [" in text and "| `runs/ctx` | 9 | late | 24 | 0.25 [" in text
    )
    assert (
        "seed 3): presence 0.40 against the world's 0.44" in text and "check (both within 25 %) fails" in text
    )
    page = write_results_page(
        [], tmp_path / "RESULTS.md", tmp_path / "figures", world2_checks=([probe], [free])
    )
    assert "## The second world" in page.read_text() and "### The comparison" not in page.read_text()
    assert world2_learnability([], []) == []


def test_the_ablation_line_states_each_order_and_whether_it_holds() -> None:
    """One line per ablation order with at least two of its rows measured; an order holds only if
    every row's memory score is above the next one's."""
    from contextforcing.world.results_world2 import _ablation

    def row(name: str, recall: float) -> dict:
        probe = [{"gap_seconds": 12.0, "answer": "late", "recall": recall, "count": 10}]
        return {"row": name, "seeds": [{"seed": 0, "probe": probe}]}

    lines = _ablation([row("context-forcing", 0.2), row("uniform-every-2", 0.4),
                       row("context-forcing-whole-chunks", 0.6), row("no-contextual-distillation-whole-chunks", 0.1),
                       row("cdmd-whole-chunks-slow-24", 0.5), row("cdmd-slow-24-uniform-every-2", 0.3),
                       row("no-contextual-distillation-slow-24-world-fit", 0.3),
                       row("cdmd-whole-prompt-slow-24", 0.7), row("cdmd-prompt-slow-24-no-bounded-positions", 0.2)])  # fmt: skip
    text = [line for line in lines if line]
    assert len(text) == 4
    assert "order: context-forcing 0.20 > uniform-every-2 0.40. The order does not hold." in text[0]
    assert "keeping whole chunks: context-forcing-whole-chunks 0.60 > uniform-every-2 0.40 > " in text[1]
    assert text[1].endswith("no-contextual-distillation-whole-chunks 0.10. The order holds.")
    assert "slow tier of 24: cdmd-whole-chunks-slow-24 0.50 > cdmd-slow-24-uniform-every-2 0.30 > " in text[2]
    assert text[2].endswith(
        "no-contextual-distillation-slow-24-world-fit 0.30. The order does not hold."
    )  # a tie
    assert (
        "prompt alone: cdmd-whole-prompt-slow-24 0.70 > no-contextual-distillation-slow-24-world-fit 0.30 > "
        in text[3]
    )
    assert text[3].endswith("cdmd-prompt-slow-24-no-bounded-positions 0.20. The order holds.")
    assert _ablation([row("context-forcing", 0.2)]) == []


def test_every_ablation_order_names_rows_of_the_second_worlds_comparison() -> None:
    """A misspelt row in an order would leave its line out of the page without a word."""
    from contextforcing.world import results_world2

    names = {row.name for row in comparison(2)}
    orders = [getattr(results_world2, name) for name in results_world2.__all__ if name.endswith("_ORDER")]
    assert len(orders) == 7
    for order in orders:
        assert set(order) <= names, set(order) - names


def test_every_row_reads_a_shipped_run_or_one_the_makefile_trains() -> None:
    """A row reading `runs/NAME` that no make target trains could not be measured from a fresh clone."""
    import re
    from pathlib import Path

    from contextforcing.world.shipped import SHIPPED_NAMES

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    trained = set(re.findall(r"train --preset ([a-z0-9][a-z0-9-]*)", makefile))
    for world in (1, 2):
        for row in comparison(world):
            if row.run not in SHIPPED_NAMES:
                assert row.run.startswith("runs/") and row.run.removeprefix("runs/") in trained, row

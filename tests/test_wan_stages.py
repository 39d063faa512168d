"""Two steps of every wan-* stage from a tiny random Wan folder, its prompt cache and its latent cache,
through the command line."""

import json

import pytest
import torch

from contextforcing.cli import main
from contextforcing.model.weights import load_model
from contextforcing.training.wan_presets import WAN_PRESETS

from wan_folder import TINY_OVERRIDES, write_clips

pytest.importorskip("diffusers")

# Each stage starts from the Wan folder instead of the previous stage's run.
_INIT = {
    "wan-context-teacher": {},
    "wan-ode-init": {"init.teacher": "{wan}"},
    "wan-dmd": {"init.teacher": "{wan}", "init.model": "{wan}"},
    "wan-cdmd": {"init.teacher": "{wan}", "init.model": "{wan}"},
    "wan-long-tuning": {"init.model": "{wan}"},
}


@pytest.fixture(scope="module")
def caches(tiny_wan, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "prompts.txt").write_text("a cat runs\na dog runs on the beach\n")
    assert main(["encode-prompts", str(root / "prompts.txt"), "--wan", str(tiny_wan)]) == 0
    videos = write_clips(root / "videos")
    argv = ["encode-videos", str(videos), "--wan", str(tiny_wan), "--clip-frames", "27", "--height", "32",
            "--width", "32", "--max-clips-per-video", "1"]  # fmt: skip
    assert main(argv) == 0
    return root / "prompts.txt", videos


def _sets(updates):
    return [item for key, value in updates.items() for item in ("--set", f"{key}={value}")]


def train_argv(stage, tiny_wan, caches, out, **updates):
    prompts, videos = caches
    return ["train", "--preset", stage, "--wan", str(tiny_wan), "--prompts", str(prompts), "--videos",
            str(videos), *_sets({**TINY_OVERRIDES, **_INIT[stage], **updates}), "--out", str(out)]  # fmt: skip


def test_every_stage_has_an_init_here():
    assert set(_INIT) == set(WAN_PRESETS)


@pytest.mark.parametrize("stage", sorted(WAN_PRESETS))
def test_two_steps_of_every_wan_stage(stage, tiny_wan, caches, tmp_path):
    torch.set_num_threads(1)
    assert main(train_argv(stage, tiny_wan, caches, tmp_path / stage)) == 0
    lines = [json.loads(line) for line in (tmp_path / stage / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for line in lines for v in line.values())
    saved = json.loads((tmp_path / stage / "config.json").read_text())
    assert saved["model"]["text_dim"] == 16 and saved["data"]["wan"] == str(tiny_wan)
    assert saved["data"]["prompt_cache"].endswith("prompts.txt.cache")
    model = load_model(tmp_path / stage / "model")
    base = load_model(tiny_wan)
    assert model.config == base.config
    changed = max(
        (a - b).abs().max().item() for a, b in zip(model.parameters(), base.parameters(), strict=True)
    )
    assert changed > 0


def test_stages_that_read_clips_need_a_latent_cache(tiny_wan, caches, tmp_path, capsys):
    prompts, _ = caches
    argv = ["train", "--preset", "wan-context-teacher", "--wan", str(tiny_wan), "--prompts", str(prompts),
            *_sets(TINY_OVERRIDES), "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "trains on clips: pass --videos" in capsys.readouterr().err

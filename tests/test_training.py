"""Every stage trains end to end at tiny scale; resume is exact; bad input is refused up front."""

import itertools
import json
from dataclasses import replace

import pytest
import torch

from contextforcing.config import override
from contextforcing.model.dit import CausalDiT
from contextforcing.model.weights import load_model, save_model
from contextforcing.presets import preset
from contextforcing.training.trainer import TrainingDiverged
from contextforcing.world.codec import WorldCodec, WorldCodecConfig, save_world_codec
from contextforcing.world.components import train_world as train

from helpers import randomize

STAGES = ["teacher", "context-teacher", "ode-init", "dmd", "cdmd", "long-tuning"]


@pytest.fixture(scope="module")
def codec_folder(tmp_path_factory):
    torch.manual_seed(0)
    return str(
        save_world_codec(WorldCodec(WorldCodecConfig(latent_channels=8)), tmp_path_factory.mktemp("codec"))
    )


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(stage, codec_folder, **updates):
    return override(preset(f"tiny-{stage}"), {"data.codec": codec_folder, **updates})


@pytest.mark.parametrize("stage", STAGES)
def test_two_step_smoke_run_of_every_stage(stage, codec_folder, tmp_path):
    updates = {"teacher.erft": True} if stage == "context-teacher" else {}
    model_folder = train(_config(stage, codec_folder, **updates), tmp_path / stage)
    lines = [json.loads(line) for line in (tmp_path / stage / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for line in lines for v in line.values())
    assert all(line["seconds"] > 0 and 0.01 < line["peak_memory_gib"] < 64 for line in lines)
    model = load_model(model_folder)
    assert model.config.in_channels == 8
    saved = json.loads((tmp_path / stage / "config.json").read_text())
    assert saved["stage"] == stage


@pytest.mark.parametrize("stage", ["ode-init", "dmd"])
def test_the_teachers_guidance_runs_against_the_negative_prompt(stage, codec_folder, tmp_path, monkeypatch):
    """Dropout trains on the empty prompt; the teacher's guidance (ODE pairs, the real score) reads the
    source's negative prompt."""
    import contextforcing.training.steps as steps
    from contextforcing.world.clips import WorldClipSource

    marked, seen, guided = 7.0, [], steps.guided_velocity

    def negative(self, batch):
        return torch.full_like(self.unconditional(batch), marked)

    def recording(model, x_t, t, text, uncond, *args, **kwargs):
        seen.append(bool((uncond == marked).all()))
        return guided(model, x_t, t, text, uncond, *args, **kwargs)

    monkeypatch.setattr(WorldClipSource, "negative", negative)
    monkeypatch.setattr(steps, "guided_velocity", recording)
    train(_config(stage, codec_folder), tmp_path)
    assert seen and all(seen)


def test_a_world_run_refuses_a_negative_prompt(codec_folder):
    with pytest.raises(ValueError, match="negative_prompt"):
        _config("dmd", codec_folder, **{"data.negative_prompt": "blurry"})


def test_tensorboard_gets_every_logged_metric(codec_folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_config("dmd", codec_folder, **{"train.tensorboard": True}), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(events.Tags()["scalars"]) == set(logged) - {"step"}
    assert [e.step for e in events.Scalars("critic_loss")] == [1, 2]
    assert events.Scalars("critic_loss")[-1].value == pytest.approx(logged["critic_loss"], rel=1e-6)


def test_training_changes_the_weights_and_lowers_a_repeated_loss(codec_folder, tmp_path):
    config = _config(
        "teacher", codec_folder, **{"train.steps": 30, "optim.lr": 3e-3, "train.checkpoint_every": 30}
    )
    train(config, tmp_path)
    lines = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(lines[-5:]) / 5 < sum(lines[:5]) / 5


def _record_gradients(monkeypatch) -> list[torch.Tensor]:
    """The list every optimiser step appends its gradients to (flattened, all parameters with one)."""
    recorded, step = [], torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        recorded.append(torch.cat([p.grad.flatten() for g in self.param_groups for p in g["params"]
                                   if p.grad is not None]))  # fmt: skip
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    return recorded


@pytest.mark.parametrize("stage", ["teacher", "ode-init", "dmd"])
def test_gradient_accumulation_follows_the_whole_batch(stage, codec_folder, tmp_path, monkeypatch):
    """Two micro-batches of 2 give the gradient of one batch of 4 (up to float summation), unlike a batch
    of 2: the gradients every optimiser step sees are recorded and compared."""
    recorded = _record_gradients(monkeypatch)
    shape = preset(f"tiny-{stage}").model
    for seed, role in ((1, "student"), (2, "teacher")):  # random heads: no gradient vanishes
        save_model(randomize(CausalDiT(shape), seed=seed), tmp_path / role)
    init = {"init.model": str(tmp_path / "student"), "init.teacher": str(tmp_path / "teacher")}
    grads = {}
    for name, extra in (("whole", {}), ("accumulated", {"train.grad_accumulation": 2}),
                        ("half", {"train.batch_size": 2})):  # fmt: skip
        recorded.clear()
        # no clipping, which would hide a gradient of the wrong scale
        unclipped = {"optim.grad_clip": 0.0, "critic_optim.grad_clip": 0.0}
        config = _config(stage, codec_folder, **{"train.steps": 2, "train.batch_size": 4, **init, **unclipped,
                                                 **extra})  # fmt: skip
        train(config, tmp_path / name)
        grads[name] = list(recorded)
    assert len(grads["whole"]) == len(grads["accumulated"]) >= 2
    for whole, accumulated, half in zip(grads["whole"], grads["accumulated"], grads["half"], strict=True):
        scale = float(whole.abs().max())
        assert scale > 0
        assert float((whole - accumulated).abs().max()) < 1e-5 * scale
        assert float((whole - half).abs().max()) > 1e-3 * scale
    with pytest.raises(ValueError, match="grad_accumulation"):
        _config(stage, codec_folder, **{"train.batch_size": 3, "train.grad_accumulation": 2})


def test_the_regression_term_adds_the_teachers_ode_to_the_student_update(codec_folder, tmp_path, monkeypatch):
    """With `distill.regression_weight` w, the student's first gradient is the distribution-matching one
    plus w times the gradient of ode-init's regression: linear in w, and not the DMD gradient alone."""
    recorded = _record_gradients(monkeypatch)
    shape = preset("tiny-dmd").model
    for seed, role in ((1, "student"), (2, "teacher")):  # random heads: no gradient vanishes
        save_model(randomize(CausalDiT(shape), seed=seed), tmp_path / role)
    firsts, logged = [], []
    for weight in (0.0, 1.0, 2.0):
        recorded.clear()
        config = _config("dmd", codec_folder, **{
            "train.steps": 1, "train.checkpoint_every": 1, "optim.grad_clip": 0.0, "distill.regression_weight": weight,
            "init.model": str(tmp_path / "student"), "init.teacher": str(tmp_path / "teacher")})  # fmt: skip
        train(config, tmp_path / f"w{weight}")
        firsts.append(recorded[0])  # the student updates before the critic
        logged.append(json.loads((tmp_path / f"w{weight}" / "metrics.jsonl").read_text().splitlines()[0]))
    dmd, once, twice = firsts
    scale = float(dmd.abs().max())
    assert scale > 0 and float((once - dmd).abs().max()) > 1e-3 * scale
    assert float(((twice - once) - (once - dmd)).abs().max()) < 1e-4 * scale
    assert (
        "regression_loss" not in logged[0]
        and logged[1]["regression_loss"] == logged[2]["regression_loss"] > 0
    )
    with pytest.raises(ValueError, match="regression_weight"):
        _config("dmd", codec_folder, **{"distill.regression_weight": -1.0})


@pytest.mark.parametrize("stage", ["context-teacher", "dmd"])
def test_resume_is_bitwise_exact(stage, codec_folder, tmp_path):
    updates = {"train.steps": 4, "train.checkpoint_every": 2, "train.ema_decay": 0.9}
    if stage == "context-teacher":
        updates["teacher.erft"] = True
    config = _config(stage, codec_folder, **updates)
    train(config, tmp_path / "straight")
    train(override(config, {"train.steps": 2}), tmp_path / "stopped")
    train(config, tmp_path / "stopped", resume=True)
    a = load_model(tmp_path / "straight" / "model").state_dict()
    b = load_model(tmp_path / "stopped" / "model").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_existing_run_needs_resume(codec_folder, tmp_path):
    train(_config("teacher", codec_folder), tmp_path)
    with pytest.raises(ValueError, match="--resume"):
        train(_config("teacher", codec_folder), tmp_path)


def test_checkpoint_of_another_architecture_is_refused(codec_folder, tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "other")
    config = _config("dmd", codec_folder, **{"init.teacher": str(tmp_path / "other")})
    with pytest.raises(ValueError, match="another architecture"):
        train(config, tmp_path / "run")


def test_codec_channels_must_match(tmp_path):
    folder = save_world_codec(WorldCodec(WorldCodecConfig(latent_channels=4)), tmp_path / "codec4")
    with pytest.raises(ValueError, match="latent channels"):
        train(_config("teacher", str(folder)), tmp_path / "run")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(codec_folder, tmp_path):
    config = _config("teacher", codec_folder, **{"train.steps": 2, "train.checkpoint_every": 1})
    train(config, tmp_path)
    state = tmp_path / "checkpoint" / "state.json"
    step_before = json.loads(state.read_text())["step"]
    poisoned = load_model(tmp_path / "model")
    # Finite weights (NaN ones are refused at load) that overflow in the forward.
    with torch.no_grad():
        for parameter in poisoned.parameters():
            parameter.fill_(1e30)
    save_model(randomize(poisoned), tmp_path / "nan-model")
    bad = override(config, {"train.steps": 4, "init.model": str(tmp_path / "nan-model")})
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf)"):
        train(bad, tmp_path / "fresh")
    assert json.loads(state.read_text())["step"] == step_before


def test_unknown_preset_and_key(codec_folder):
    with pytest.raises(ValueError, match="unknown preset"):
        preset("tiny-nothing")
    with pytest.raises(ValueError, match="unknown config key"):
        _config("teacher", codec_folder, **{"train.stepz": 3})
    with pytest.raises(ValueError, match="must be an int"):
        _config("teacher", codec_folder, **{"train.steps": "many"})


def test_bf16_autocast_and_activation_checkpointing_run(codec_folder, tmp_path):
    config = _config(
        "dmd", codec_folder, **{"train.precision": "bf16", "train.activation_checkpointing": True}
    )
    train(config, tmp_path)
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(torch.isfinite(torch.tensor(v)) for v in line.values())


def test_activation_checkpointing_gives_the_same_gradients(tiny_model, tiny_config):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, tiny_config.in_channels, 3, 4, 4, generator=g)
    text = torch.randn(1, tiny_config.text_len, tiny_config.text_dim, generator=g)
    grads = []
    for flag in (False, True):
        tiny_model.zero_grad()
        tiny_model.activation_checkpointing = flag
        tiny_model(x, torch.tensor([500.0]), text).square().sum().backward()
        grads.append([p.grad.clone() for p in tiny_model.parameters()])
    tiny_model.activation_checkpointing = False
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


def test_lora_trains_adapters_only_and_exports_merged_weights(codec_folder, tmp_path):
    train(_config("teacher", codec_folder), tmp_path / "base")
    config = _config(
        "context-teacher", codec_folder,
        **{"teacher.lora_rank": 4, "teacher.lora_alpha": 4.0, "init.model": str(tmp_path / "base" / "model"),
           "optim.lr": 1e-2},
    )  # fmt: skip
    train(config, tmp_path / "lora")
    base = load_model(tmp_path / "base" / "model").state_dict()
    tuned = load_model(tmp_path / "lora" / "model").state_dict()
    assert set(base) == set(tuned)  # merged back into plain weights
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(
        k.endswith("weight") and any(f".{m}." in k for m in ("q", "k", "v", "o", "ffn")) for k in changed
    )
    assert not any("norm" in k or "modulation" in k or "embedding" in k for k in changed)


def test_teacher_trains_on_a_folder_of_videos(codec_folder, tmp_path):
    from contextforcing.training.config import DataConfig, ExperimentConfig
    from contextforcing.training.data import VideoFolderSource
    from contextforcing.training.trainer import train as train_library
    from contextforcing.video_io import write_video
    from contextforcing.world.components import world_codec
    from contextforcing.world.episodes import sample_clip
    from contextforcing.world.text import WorldTextEncoder

    for i in range(2):
        clip = sample_clip(12, torch.Generator().manual_seed(i))
        write_video(tmp_path / "videos" / f"clip{i}.mp4", clip.frames, fps=4)
        (tmp_path / "videos" / f"clip{i}.txt").write_text(clip.prompt)
    tiny = _config("teacher", codec_folder)
    data = DataConfig(source="videos", video_folder=str(tmp_path / "videos"))
    config = ExperimentConfig(
        stage="teacher", model=tiny.model, teacher=tiny.teacher, train=tiny.train, data=data
    )

    def source(config, device):
        text = WorldTextEncoder(config.model.text_dim, config.model.text_len)
        return VideoFolderSource(config.data, world_codec(codec_folder), text, device)

    train_library(config, tmp_path / "run", source=source)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_context_teacher_without_context_and_with_forced_returns(codec_folder, tmp_path):
    config = _config(
        "context-teacher", codec_folder,
        **{"teacher.no_context_prob": 1.0, "teacher.erft": True, "data.return_prob": 1.0, "train.steps": 3},
    )  # fmt: skip
    train(config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(line["context_frames"] == 0 for line in lines)


def test_context_teacher_histories_of_any_whole_number_of_chunks(codec_folder, tmp_path):
    """With teacher.history="chunks" the histories are every whole number of chunks up to the longest
    layout, short ones given whole; with "layout", only the layout's lengths."""
    from contextforcing.training.steps import _context_history
    from contextforcing.world.config import WorldExperimentConfig

    def lengths(history):
        config = override(WorldExperimentConfig(stage="context-teacher"),
                          {"teacher.history": history, "teacher.num_target_frames": 6})  # fmt: skip
        return {_context_history(config, torch.Generator().manual_seed(i)) for i in range(400)}

    assert lengths("layout") == {9 + 6 * k for k in range(13)}
    assert lengths("chunks") == set(range(3, 82, 3))
    config = _config("context-teacher", codec_folder, **{"teacher.history": "chunks", "train.steps": 4,
                                                         "teacher.num_slow_frames": 2})  # fmt: skip
    train(config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(0 <= line["context_frames"] <= 3 + 2 + 6 for line in lines)


def test_context_teacher_histories_laid_out_as_a_memory_keeps_them(codec_folder, tmp_path):
    """With teacher.memory_history_prob, a step's history is any whole number of chunks up to
    memory_history_frames, and the teacher sees what a memory with random per-layer promotions keeps of
    it: the sink, the first frames no promotion replaced, some promoted frames, the fast frames."""
    from contextforcing.training.plan import history_indices
    from contextforcing.training.steps import _context_history, _context_layout
    from contextforcing.world.config import WorldExperimentConfig

    def config(prob):
        return override(WorldExperimentConfig(stage="context-teacher"),
                        {"teacher.memory_history_prob": prob, "teacher.history": "chunks",
                         "teacher.num_target_frames": 6, "teacher.memory_history_frames": 120})  # fmt: skip

    memory = config(1.0).memory
    past = memory.num_past_fast_frames
    layouts = [_context_layout(config(1.0), torch.Generator().manual_seed(i)) for i in range(300)]
    assert {frames for frames, _ in layouts} == set(range(3, 121, 3))
    for frames, seen in layouts:
        assert seen == sorted(set(seen)) and seen[-1] == frames - 1
        if frames >= 30:  # the sink, the slow frames, the fast frames: at most every layer's slow tier
            assert seen[:3] == [0, 1, 2] and seen[-past:] == list(range(frames - past, frames))
            assert memory.num_slow_frames <= len(seen) - 3 - past <= memory.num_slow_frames * 4
    long = [seen for frames, seen in layouts if frames >= 90]
    # A long history holds later promotions beside the first frames no promotion replaced.
    assert len(long) > 50 and all(max(seen[3:-past]) > 3 + memory.num_slow_frames for seen in long)
    # Every layer decides on its own: together they keep more than one slow tier; one decision, one tier.
    assert any(len(seen) - 3 - past > memory.num_slow_frames for _, seen in layouts)
    shared = override(config(1.0), {"memory.per_layer_decisions": False})
    for i in range(50):
        frames, seen = _context_layout(shared, torch.Generator().manual_seed(i))
        assert len(seen) <= 3 + memory.num_slow_frames + past
    # Without it the draws (and so the histories) are those of teacher.history alone.
    for i in range(20):
        frames, seen = _context_layout(config(0.0), torch.Generator().manual_seed(i))
        assert frames == _context_history(config(0.0), torch.Generator().manual_seed(i))
        assert seen == history_indices(config(0.0).teacher, frames)
    run = _config("context-teacher", codec_folder, **{"teacher.memory_history_prob": 1.0, "train.steps": 3,
                                                      "teacher.memory_history_frames": 12})  # fmt: skip
    train(run, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(1 <= line["context_frames"] <= 12 for line in lines)


def test_a_prefix_with_events_ends_where_its_clips_events_begin(codec_folder, tmp_path, monkeypatch):
    """With distill.prefix_events the prefix is the start of a clip drawn for a target of num_frames (a
    return on its first frame here), and the rollout judges exactly the frames after it."""
    from contextforcing.world.clips import WorldClipSource

    drawn, original = [], WorldClipSource.sample

    def recorded(self, num_frames, generators, *, target_frames=0):
        batch = original(self, num_frames, generators, target_frames=target_frames)
        drawn.append((num_frames, target_frames))
        return batch

    monkeypatch.setattr(WorldClipSource, "sample", recorded)
    updates = {"distill.prefix_frames": 6, "distill.prefix_events": True, "distill.min_rollout_frames": 12,
               "distill.max_rollout_frames": 12, "data.return_prob": 1.0, "data.return_at": "first",
               "train.steps": 2}  # fmt: skip
    train(_config("cdmd", codec_folder, **updates), tmp_path)
    assert drawn and set(drawn) == {(12, 6)}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["rollout_frames"] for line in lines] == [12, 12]
    for bad in ({"distill.prefix_frames": 0}, {"distill.max_rollout_frames": 15}):
        with pytest.raises(ValueError, match="prefix_events judges the frames right after the prefix"):
            _config("cdmd", codec_folder, **{**updates, **bad})


def test_forced_returns_land_in_the_target_window(codec_folder):
    from contextforcing.world.clips import WorldClipSource, _returns_within
    from contextforcing.world.components import world_codec
    from contextforcing.world.config import WorldDataConfig
    from contextforcing.world.text import WorldTextEncoder

    def share(return_prob):
        source = WorldClipSource(
            WorldDataConfig(return_prob=return_prob), world_codec(codec_folder), WorldTextEncoder(8, 4), "cpu"
        )
        episodes = [source.episode(60, torch.Generator().manual_seed(i), 21) for i in range(100)]
        return sum(_returns_within(e, 39) for e in episodes) / len(episodes)

    natural, forced = share(0.0), share(1.0)
    assert natural < 0.9 and forced > 0.97


def test_forced_returns_can_land_on_the_first_target_frame(codec_folder):
    from contextforcing.world.clips import WorldClipSource
    from contextforcing.world.components import world_codec
    from contextforcing.world.config import WorldDataConfig
    from contextforcing.world.text import WorldTextEncoder

    def share(return_at):
        data = WorldDataConfig(return_prob=1.0, return_at=return_at)
        source = WorldClipSource(data, world_codec(codec_folder), WorldTextEncoder(8, 4), "cpu")
        episodes = [source.episode(45, torch.Generator().manual_seed(i), 6) for i in range(100)]
        return sum(any(v.enter_frame == 39 for v in e.visits[1:]) for e in episodes) / len(episodes)

    assert share("anywhere") < 0.5 and share("first") > 0.97


def test_a_teachers_clip_bounds_the_gaps_of_the_returns_it_trains():
    from contextforcing.training.config import ContextTeacherConfig
    from contextforcing.training.plan import context_teacher_clip_frames
    from contextforcing.world.clips import return_gaps
    from contextforcing.world.config import WorldDataConfig
    from contextforcing.world.types import world_version

    world = world_version(2)
    data = WorldDataConfig(world=world, return_prob=0.4, novelty_prob=0.5, return_at="first")

    def gaps(slow_interval):
        layout = ContextTeacherConfig(num_target_frames=6, slow_interval=slow_interval)
        frames = context_teacher_clip_frames(layout, layout.num_slow_frames)
        return frames, return_gaps(data, frames, 6, 60, torch.Generator().manual_seed(0))

    (short_frames, short), (long_frames, long) = gaps(6), gaps(9)
    assert (short_frames, long_frames) == (87, 123) and len(short) == len(long) == 60
    # The returning subject's earlier visit (4 s) lies after the sink, before the target's first frame.
    assert max(short) <= (short_frames - 6 - 3) / world.fps - world.min_visit_seconds
    assert max(long) > max(short) + 4 and sum(g > 18 for g in long) >= 6
    assert return_gaps(data, 12, 6, 5, torch.Generator().manual_seed(0)) == []


def test_novelty_redraws_put_a_new_identity_in_the_target(codec_folder):
    from contextforcing.world.clips import WorldClipSource
    from contextforcing.world.components import world_codec
    from contextforcing.world.config import WorldDataConfig
    from contextforcing.world.text import WorldTextEncoder
    from contextforcing.world.timeline import novel_frames
    from contextforcing.world.types import world_version

    def share(novelty_prob, frames=27, target=6):
        data = WorldDataConfig(world=world_version(2), novelty_prob=novelty_prob)
        source = WorldClipSource(data, world_codec(codec_folder), WorldTextEncoder(8, 4), "cpu")
        episodes = [source.episode(frames, torch.Generator().manual_seed(i), target) for i in range(100)]
        return sum(any(f >= frames - target for f in novel_frames(e)) for e in episodes) / len(episodes)

    assert share(0.0) < 0.6 and share(1.0) > 0.97
    # A clip without context: its target is the episode's start, where the first entry must land.
    assert share(0.0, 6) < 0.7 and share(1.0, 6) > 0.97
    with pytest.raises(ValueError, match=r"data\.novelty_prob"):
        WorldDataConfig(return_prob=0.6, novelty_prob=0.5)


def test_every_stage_is_declared_once_with_a_tiny_preset():
    from contextforcing.presets import PRESETS
    from contextforcing.training.stages import STAGES as SPECS

    assert list(SPECS) == STAGES
    assert all(f"tiny-{name}" in PRESETS for name in SPECS)
    assert {name for name, spec in SPECS.items() if spec.trained == "teacher"} == {
        "teacher",
        "context-teacher",
    }
    assert [name for name, spec in SPECS.items() if spec.judges_context] == ["cdmd"]


def test_the_second_worlds_presets_chain_one_model_through_their_own_runs():
    from contextforcing.model.config import model_preset
    from contextforcing.world.presets import WORLD_PRESETS

    second = {name: make() for name, make in WORLD_PRESETS.items() if name.startswith("world2-")}
    assert {"world2-context-teacher", "world2-window-teacher", "world2-context-teacher-erft"} <= set(second)
    for name, config in second.items():
        assert config.data.world.version == 2 and config.model == model_preset("world-large"), name
        for path in (config.init.model, config.init.teacher, config.init.critic):
            assert not path or path.startswith("runs/world2-"), (name, path)
    context, window = second["world2-context-teacher"], second["world2-window-teacher"]
    assert context.data == window.data and window.teacher.recent_only and not context.teacher.recent_only
    assert second["world2-context-teacher-erft"].init.model == "runs/world2-context-teacher/model"


def test_the_long_teacher_chain_lays_out_its_teachers_context_as_the_teacher_was_trained(tmp_path):
    """world2-cdmd-prompt-unguided-long, -returns-long, -mixed-long, -regression-long, -uniform-long,
    -uniform-mixed-long, -uniform-reencode-long, -layout-reencode-long, -grid-long, -grid-regression-long,
    -regression-reencode-long, world2-ode-init-long-prefix and -prefix-uniform read their teacher in the
    layout world2-teacher-long trained, and the shipped recipe's layout (a slow frame every 6) is refused for that teacher."""
    from contextforcing.config import to_json
    from contextforcing.memory.policy import kept_after
    from contextforcing.training.plan import history_indices
    from contextforcing.training.roles import check_teacher_layout
    from contextforcing.training.stages import STAGES as SPECS
    from contextforcing.world.presets import WORLD_PRESETS

    long, erft = WORLD_PRESETS["world2-teacher-long"](), WORLD_PRESETS["world2-context-teacher-erft"]()
    assert (long.teacher.slow_interval, erft.teacher.slow_interval) == (9, 6)
    assert override(erft, {"teacher.slow_interval": 9, "train.steps": 2000, "train.ema_decay": 0.999,
                           "init.model": long.init.model}) == long  # fmt: skip
    (tmp_path / "model").mkdir()
    (tmp_path / "config.json").write_text(to_json(long))
    teacher = {"init.teacher": str(tmp_path / "model")}
    judged = override(WORLD_PRESETS["world2-cdmd-prompt-unguided-long"](), teacher)
    check_teacher_layout(judged, SPECS["cdmd"])
    returns = override(WORLD_PRESETS["world2-cdmd-returns-long"](), teacher)
    check_teacher_layout(returns, SPECS["cdmd"])
    mixed = override(WORLD_PRESETS["world2-cdmd-mixed-long"](), teacher)
    check_teacher_layout(mixed, SPECS["cdmd"])
    assert (
        mixed.distill.mixes_prefix and mixed.distill.longest_step_frames == returns.distill.max_rollout_frames
    )
    # Its judged returns come after gaps the long teacher's clips hold (up to 24.5 s), beyond 15.5 s.
    assert returns.distill.prefix_frames / returns.data.world.fps == 30.0 and returns.distill.prefix_events
    assert WORLD_PRESETS["world2-ode-init-long"]().init.teacher == "runs/world2-teacher-long/model"
    # The regression after 30 s of a true clip, and Stage 2 under a memory spaced as the teacher's.
    prefixed = override(WORLD_PRESETS["world2-ode-init-long-prefix"](), teacher)
    check_teacher_layout(prefixed, SPECS["ode-init"])
    assert prefixed.memory == judged.memory and prefixed.distill.regression_prefix_frames == 120
    check_teacher_layout(override(WORLD_PRESETS["world2-cdmd-regression-long"](), teacher), SPECS["cdmd"])
    uniform = override(WORLD_PRESETS["world2-cdmd-uniform-long"](), teacher)
    check_teacher_layout(uniform, SPECS["cdmd"])
    chunk = uniform.memory.frames_per_chunk
    assert uniform.memory.promotion_interval * chunk == uniform.teacher.slow_interval == 9
    # The same spaced memory where the late answers are asked for: the regression after a prefix, the mix.
    spaced_prefix = override(WORLD_PRESETS["world2-ode-init-long-prefix-uniform"](), teacher)
    check_teacher_layout(spaced_prefix, SPECS["ode-init"])
    assert (
        spaced_prefix.memory == uniform.memory and replace(spaced_prefix, memory=prefixed.memory) == prefixed
    )
    spaced_mixed = override(WORLD_PRESETS["world2-cdmd-uniform-mixed-long"](), teacher)
    check_teacher_layout(spaced_mixed, SPECS["cdmd"])
    assert spaced_mixed.memory == uniform.memory and spaced_mixed.distill == mixed.distill
    reencoded = override(WORLD_PRESETS["world2-cdmd-uniform-reencode-long"](), teacher)
    check_teacher_layout(reencoded, SPECS["cdmd"])
    assert reencoded.memory == replace(uniform.memory, reencode=True) and reencoded.distill == uniform.distill
    laid_out = override(WORLD_PRESETS["world2-cdmd-layout-reencode-long"](), teacher)
    check_teacher_layout(laid_out, SPECS["cdmd"])
    memory, layout = laid_out.memory, laid_out.teacher
    assert (memory.num_sink_frames, memory.num_slow_frames, memory.num_fast_frames - chunk) == (
        layout.num_sink_frames,
        layout.num_slow_frames,
        layout.num_recent_frames,
    )
    assert memory == replace(reencoded.memory, num_fast_frames=9) and laid_out.distill == uniform.distill
    grid = override(WORLD_PRESETS["world2-cdmd-grid-long"](), teacher)
    check_teacher_layout(grid, SPECS["cdmd"])
    assert grid.memory == replace(memory, promotion="grid") and grid.distill == uniform.distill
    # What the 61st chunk reads is the teacher's context before it, exactly: the sink, 12 slow frames, 6 recent.
    read = kept_after(grid.memory, 60, [[False] * 60])
    assert list(read) == history_indices(grid.teacher, 60 * chunk) and len(read) == 3 + 12 + 6
    regressed = override(WORLD_PRESETS["world2-cdmd-regression-reencode-long"](), teacher)
    check_teacher_layout(regressed, SPECS["cdmd"])
    regression = override(WORLD_PRESETS["world2-cdmd-regression-long"](), teacher)
    assert regressed.memory == reencoded.memory and regressed.distill == regression.distill
    grid_regressed = override(WORLD_PRESETS["world2-cdmd-grid-regression-long"](), teacher)
    check_teacher_layout(grid_regressed, SPECS["cdmd"])
    assert grid_regressed.memory == grid.memory and grid_regressed.distill == regression.distill
    with pytest.raises(ValueError, match=r"teacher\.slow_interval=6"):
        check_teacher_layout(override(WORLD_PRESETS["world2-cdmd-prompt-unguided"](), teacher), SPECS["cdmd"])


def test_the_shipped_second_world_student_is_the_unguided_stage_2_preset():
    """The shipped world2-context-forcing is what `make ship-world2` takes from the run of preset
    world2-cdmd-prompt-unguided: that preset's config (its teacher given as the shipped one), at the
    preset's last step."""
    from contextforcing.config import from_dict, to_dict
    from contextforcing.world.presets import WORLD_PRESETS
    from contextforcing.world.shipped import shipped

    folder = shipped("world2-context-forcing")
    config = override(
        WORLD_PRESETS["world2-cdmd-prompt-unguided"](),
        {"init.teacher": "contextforcing/world/checkpoints/world2-teacher/model"},
    )
    made = to_dict(config)
    shipped_config = from_dict(type(config), json.loads((folder / "config.json").read_text()))
    assert to_dict(shipped_config) == made  # keys added since it shipped read at their defaults
    assert json.loads((folder / "model" / "config.json").read_text())["step"] == made["train"]["steps"]


def test_a_capped_curriculum_is_the_uncapped_one_held_at_the_cap():
    """world2-cdmd-slow24-held66 draws the rollouts of world2-cdmd-slow24-from-ode-unguided-layout up to
    step 200, then those of the same run resumed with its longest rollout at 66 frames."""
    from contextforcing.training.plan import rollout_frames
    from contextforcing.training.stages import stage_spec
    from contextforcing.world.presets import WORLD_PRESETS

    base = WORLD_PRESETS["world2-cdmd-slow24-from-ode-unguided-layout"]()
    held = WORLD_PRESETS["world2-cdmd-slow24-held66"]()
    resumed = override(base, {"distill.max_rollout_frames": 66, "distill.rollout_decay_steps": 200})
    spec = stage_spec("cdmd")

    def lengths(config, steps):
        return [rollout_frames(config, spec, step, torch.Generator().manual_seed(step)) for step in steps]

    assert lengths(held, range(200)) == lengths(base, range(200))
    assert lengths(held, range(200, 300)) == lengths(resumed, range(200, 300))
    assert max(lengths(held, range(300))) == 66 < max(lengths(base, range(200, 300)))


def test_a_mixed_run_continues_a_true_prefix_on_its_share_of_the_steps():
    """distill.prefix_prob < 1: a step continues the true prefix (prefix + judged frames) with that
    probability, and the others roll out from the prompt alone on the curriculum, as a run without a
    prefix draws them."""
    from contextforcing.training.plan import distill_plan
    from contextforcing.training.stages import stage_spec

    spec = stage_spec("cdmd")
    prompt_only = override(preset("tiny-cdmd"), {"distill.prefix_frames": 0})
    mixed = override(prompt_only, {"distill.prefix_frames": 12, "distill.prefix_events": True,
                                   "distill.prefix_prob": 0.5})  # fmt: skip

    def plans(config):
        return [distill_plan(config, spec, step, torch.Generator().manual_seed(step)) for step in range(200)]

    drawn, alone = plans(mixed), plans(prompt_only)
    prefixed = [plan for plan in drawn if plan.prefix]
    assert 70 < len(prefixed) < 130 and {plan.num_frames for plan in prefixed} == {18}
    low, high = prompt_only.distill.min_rollout_frames, prompt_only.distill.max_rollout_frames
    assert all(low <= plan.num_frames <= high for plan in drawn if not plan.prefix)
    assert not any(plan.prefix for plan in alone)
    assert mixed.distill.longest_step_frames == 18 and prompt_only.distill.longest_step_frames == high
    for bad in ({"distill.prefix_events": False}, {"distill.prefix_prob": 1.5}):
        with pytest.raises(ValueError, match="prefix_prob"):
            override(mixed, bad)


@pytest.mark.parametrize(
    ("base", "judges_context", "same_as"), [("cdmd", True, "cdmd"), ("cdmd", False, "long-tuning")]
)
def test_a_new_stage_is_one_entry(codec_folder, tmp_path, monkeypatch, base, judges_context, same_as):
    """A stage declared by one spec trains through the same trainer and behaves as its spec says,
    whatever its name: a renamed Stage 2 trains as Stage 2, and without the student-made context
    exactly as long tuning."""
    from dataclasses import replace

    from contextforcing.training import stages

    spec = replace(stages.STAGES[base], name="renamed", judges_context=judges_context)
    monkeypatch.setitem(stages.STAGES, spec.name, spec)
    train(replace(_config(same_as, codec_folder), stage=spec.name), tmp_path / "new")
    train(_config(same_as, codec_folder), tmp_path / "known")
    new, known = (load_model(tmp_path / name / "model").state_dict() for name in ("new", "known"))
    assert all(torch.equal(new[k], known[k]) for k in new)


def test_checkpoints_that_name_the_trained_role_model_still_resume():
    from contextforcing.training.trainer import _legacy_role_names

    meta = {"optimizers": {"model": 1, "critic": 2}, "updates": {"model": 3, "critic": 4}, "step": 5}
    groups = {"model": {"w": 0}, "optim.model": {}, "critic": {}, "optim.critic": {}}
    meta, groups = _legacy_role_names(meta, groups, "student")
    assert set(groups) == {"student", "optim.student", "critic", "optim.critic"}
    assert meta["optimizers"] == {"student": 1, "critic": 2} and meta["updates"]["student"] == 3


@pytest.mark.parametrize("mode", ["window", "memory", "layout"])
def test_the_teacher_of_stage_2_sees_the_context_its_setting_names(mode):
    from types import SimpleNamespace

    from contextforcing.training.config import ContextTeacherConfig, DistillConfig
    from contextforcing.training.plan import history_indices
    from contextforcing.training.steps import _teacher_context

    layout = ContextTeacherConfig(num_sink_frames=3, num_slow_frames=12, slow_interval=6, num_recent_frames=6)
    config = SimpleNamespace(distill=DistillConfig(teacher_context=mode), teacher=layout)
    video = torch.arange(60.0).view(1, 1, 60, 1, 1).expand(2, 4, 60, 2, 2)
    rollout = SimpleNamespace(video=video, snapshot=video[:, :, [0, 1, 2, 30, 50, 51, 52]])
    plan = SimpleNamespace(teacher_sees_context=True, context_start=33, target_start=54)
    seen = _teacher_context(SimpleNamespace(config=config), plan, rollout)[0, 0, :, 0, 0].tolist()
    expected = {"window": list(range(33, 54)), "memory": [0, 1, 2, 30, 50, 51, 52],
                "layout": history_indices(layout, 54)}[mode]  # fmt: skip
    assert seen == [float(i) for i in expected]
    if mode == "layout":  # sink, slow frames every 6 and the recent frames: a long reach, not a window
        slow = expected[3:-6]
        assert expected[:3] == [0, 1, 2] and expected[-6:] == list(range(48, 54)) and slow[0] < 33
        assert {b - a for a, b in itertools.pairwise(slow)} == {6}
    plan = SimpleNamespace(teacher_sees_context=False, context_start=33, target_start=54)
    assert _teacher_context(SimpleNamespace(config=config), plan, rollout) is None


def test_contextual_dmd_refuses_a_teacher_layout_other_than_the_teachers_own(codec_folder, tmp_path):
    from contextforcing.config import to_json
    from contextforcing.training.roles import check_teacher_layout
    from contextforcing.training.stages import STAGES as SPECS

    trained = tmp_path / "teacher"
    (trained / "model").mkdir(parents=True)
    saved = override(preset("tiny-context-teacher"), {"teacher.slow_interval": 9})
    (trained / "config.json").write_text(to_json(saved))
    judged = {"init.teacher": str(trained / "model"), "distill.teacher_context": "layout"}
    spec = SPECS["cdmd"]
    with pytest.raises(
        ValueError, match=r"teacher\.slow_interval=6, but init\.teacher .* was trained with 9"
    ):
        check_teacher_layout(_config("cdmd", codec_folder, **judged), spec)
    check_teacher_layout(_config("cdmd", codec_folder, **judged, **{"teacher.slow_interval": 9}), spec)
    # The student's memory or the contiguous window is laid out without the teacher's layout.
    check_teacher_layout(
        _config("cdmd", codec_folder, **{**judged, "distill.teacher_context": "memory"}), spec
    )
    # A regression after a true prefix reads it in the teacher's layout, whatever the stage judges.
    regression = {"init.teacher": str(trained / "model"), "distill.regression_prefix_frames": 12}
    with pytest.raises(ValueError, match=r"teacher\.slow_interval=6"):
        check_teacher_layout(_config("ode-init", codec_folder, **regression), SPECS["ode-init"])


def _regression_run(codec_folder, tmp_path, **updates):
    """A tiny ode-init run with random-head roles, whose regression continues 12 true frames."""
    from contextforcing.training.trainer import Run
    from contextforcing.world.components import world_source

    shape = preset("tiny-ode-init").model
    for seed, role in ((1, "student"), (2, "teacher")):  # random heads: no prediction vanishes
        save_model(randomize(CausalDiT(shape), seed=seed), tmp_path / role)
    config = _config("ode-init", codec_folder, **{
        "distill.regression_prefix_frames": 12, "data.return_prob": 1.0,
        "init.model": str(tmp_path / "student"), "init.teacher": str(tmp_path / "teacher"), **updates})  # fmt: skip
    return Run(config, tmp_path / "run", world_source)


def test_a_regression_after_a_true_prefix_reads_it_in_both_roles(codec_folder, tmp_path, monkeypatch):
    """The teacher's ODE reads the prefix laid out as it was trained, and the student's loss depends on the
    prefix through its memory alone: with the teacher's ODE held fixed, another prefix gives another loss."""
    import contextforcing.training.steps as steps
    from contextforcing.training.plan import history_indices

    run = _regression_run(codec_folder, tmp_path)
    drawn, contexts, guided = [], [], steps.guided_velocity
    sample = run.source.sample
    monkeypatch.setattr(run.source, "sample", lambda *a, **k: drawn.append(sample(*a, **k)) or drawn[-1])
    monkeypatch.setattr(steps, "guided_velocity", lambda *a: contexts.append(a[6]) or guided(*a))
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    loss = steps._ode_regression(run, gens)
    layout = history_indices(run.config.teacher, 12)
    assert drawn[0].latents.shape[2] == 12 + 6 and 0 < len(layout) < 12
    assert all(torch.equal(c, drawn[0].latents[:, :, layout]) for c in contexts)
    loss.backward()
    assert all(p.grad is None for p in run.roles.teacher.parameters())
    assert sum(float(p.grad.abs().sum()) for p in run.roles.student.parameters() if p.grad is not None) > 0

    # The teacher's ODE held at its first answer: only the student's memory of the prefix changes.
    noise = torch.randn(2, 8, 6, *run.source.latent_size, generator=torch.Generator().manual_seed(3))
    ode = steps._teacher_ode(run, drawn[0].text, noise, contexts[0])
    monkeypatch.setattr(steps, "_teacher_ode", lambda *a: ode)

    def loss_after(prefix_shift: float) -> float:
        latents = drawn[0].latents.clone()
        latents[:, :, :12] += prefix_shift
        batch = replace(drawn[0], latents=latents)
        monkeypatch.setattr(run.source, "sample", lambda *a, **k: batch)
        with torch.no_grad():
            return float(steps._ode_regression(run, [torch.Generator().manual_seed(s) for s in (0, 1)]))

    same, again, shifted = loss_after(0.0), loss_after(0.0), loss_after(1.0)
    assert same == again and abs(shifted - same) > 1e-4 * same


def test_a_regression_prefix_is_refused_where_it_would_not_run(codec_folder):
    with pytest.raises(ValueError, match="regression_prefix_frames=4 is not a multiple of the chunk 3"):
        _config("ode-init", codec_folder, **{"distill.regression_prefix_frames": 4})
    with pytest.raises(ValueError, match="stage dmd runs no regression"):
        _config("dmd", codec_folder, **{"distill.regression_prefix_frames": 12})
    with pytest.raises(ValueError, match="regression_prefix_frames must be >= 0"):
        _config("ode-init", codec_folder, **{"distill.regression_prefix_frames": -3})
    _config("dmd", codec_folder, **{"distill.regression_prefix_frames": 12, "distill.regression_weight": 1.0})


def test_a_stage_reads_clips_for_a_teacher_a_prefix_or_a_regression_after_one():
    """What decides whether a latent cache is needed (`data.cache_source`) and whether a rollout continues
    a true prefix (`plan.distill_plan`)."""
    from contextforcing.training.config import DistillConfig
    from contextforcing.training.stages import STAGES as SPECS

    plain, prefixed = DistillConfig(), DistillConfig(prefix_frames=12)
    assert SPECS["teacher"].reads_clips(plain) and SPECS["context-teacher"].reads_clips(plain)
    assert not any(SPECS[s].reads_clips(plain) for s in ("ode-init", "dmd", "cdmd", "long-tuning"))
    assert SPECS["cdmd"].continues_prefix(prefixed) and SPECS["long-tuning"].reads_clips(prefixed)
    assert not SPECS["dmd"].continues_prefix(prefixed) and not SPECS["dmd"].reads_clips(prefixed)
    assert SPECS["ode-init"].reads_clips(DistillConfig(regression_prefix_frames=12))


def test_every_preset_the_makefile_and_the_docs_train_is_registered():
    """A make target or a documented command naming a preset that is not registered would fail only when
    run, hours into a pipeline."""
    import re
    from pathlib import Path

    from contextforcing.presets import PRESETS

    root = Path(__file__).resolve().parents[1]
    for doc in ("Makefile", "README.md", "docs/design.md"):
        named = set(re.findall(r"train --preset ([a-z0-9][a-z0-9-]*)", (root / doc).read_text()))
        assert named, doc
        assert named <= set(PRESETS), (doc, sorted(named - set(PRESETS)))

"""The recall probe: the teacher's history layout, and end-to-end runs for a teacher and a student."""

from dataclasses import replace

import pytest
import torch

from contextforcing.diffusion.sampling import EulerConfig
from contextforcing.memory.config import memory_preset
from contextforcing.memory.policy import kept_after
from contextforcing.model.config import model_preset
from contextforcing.model.dit import CausalDiT
from contextforcing.training.config import ContextTeacherConfig
from contextforcing.training.plan import context_teacher_indices, history_indices
from contextforcing.training.rollout import self_rollout
from contextforcing.world.codec import WorldCodec, WorldCodecConfig
from contextforcing.world.recall_probe import (
    ProbeConfig,
    kept_of_history,
    layout_keeper,
    memory_teacher_sampler,
    probe_recall,
    student_sampler,
    teacher_sampler,
)
from contextforcing.world.text import WorldTextEncoder
from contextforcing.world.types import WorldConfig


def test_history_matches_the_training_layout():
    layout = ContextTeacherConfig(num_sink_frames=3, num_slow_frames=12, slow_interval=6, num_recent_frames=6)
    assert context_teacher_indices(layout, 21) == [0, 1, 2, 3, 9, 15, 16, 17, 18, 19, 20]
    long = context_teacher_indices(layout, 200)
    assert long[:3] == [0, 1, 2] and long[-6:] == list(range(194, 200)) and len(long) == 21
    assert long[3:15] == list(range(194 - 72, 194, 6))
    window = ContextTeacherConfig(num_sink_frames=0, num_slow_frames=0, num_recent_frames=12)
    assert context_teacher_indices(window, 50) == list(range(38, 50))
    recent_only = ContextTeacherConfig(
        num_slow_frames=12, slow_interval=6, num_recent_frames=12, recent_only=True
    )
    assert context_teacher_indices(recent_only, 50) == list(range(38, 50))
    assert context_teacher_indices(recent_only, 12) == list(range(12))  # no sink to make room for
    with pytest.raises(ValueError, match="no room"):
        context_teacher_indices(layout, 5)


def test_a_short_history_is_given_whole_and_a_long_one_laid_out():
    layout = ContextTeacherConfig(num_sink_frames=3, num_slow_frames=12, slow_interval=6, num_recent_frames=6)
    assert history_indices(layout, 6) == list(range(6)) and history_indices(layout, 8) == list(range(8))
    assert history_indices(layout, 9) == list(range(9))  # the layout with no slow frame is the whole history
    assert history_indices(layout, 12) == [0, 1, 2, *range(6, 12)]
    assert history_indices(layout, 200) == context_teacher_indices(layout, 200)
    recent_only = ContextTeacherConfig(num_slow_frames=12, num_recent_frames=12, recent_only=True)
    assert history_indices(recent_only, 5) == list(range(5))
    assert history_indices(recent_only, 30) == list(range(18, 30))
    keep = layout_keeper(layout)
    assert keep(torch.zeros(1, 1, 200, 1, 1), "") == tuple(context_teacher_indices(layout, 200))
    assert keep(torch.zeros(1, 1, 0, 1, 1), "") == ()


def _random_student(frames: int):
    """A random world student, a world prompt and a random history of `frames` frames."""
    torch.manual_seed(0)
    config = model_preset("world")
    student = CausalDiT(config).eval()
    text = WorldTextEncoder(config.text_dim, config.text_len).encode(
        ["a visitor comes and goes in a tiled courtyard"]
    )
    history = torch.randn(1, config.in_channels, frames, 4, 4, generator=torch.Generator().manual_seed(1))
    return student, text, history


def test_a_students_memory_of_a_history_is_its_sink_and_its_latest_frames():
    student, text, history = _random_student(18)
    sink = memory_preset("sink")
    past = sink.context_capacity() - sink.num_sink_frames
    ids, kept = kept_of_history(student, sink, history, text)
    assert 0 < past < 15 and ids == (0, 1, 2, *range(18 - past, 18))
    assert torch.equal(kept, torch.cat([history[:, :, :3], history[:, :, -past:]], dim=2))
    # The context memory keeps its sink, the frames it promoted and its fast frames, in frame order.
    ids, kept = kept_of_history(student, memory_preset("context"), history, text)
    assert ids[:3] == (0, 1, 2) and list(ids) == sorted(set(ids)) and ids[-1] == 17
    assert torch.equal(kept, history[:, :, list(ids)])


@pytest.mark.parametrize("fill_slow", [True, False])
def test_what_a_memory_keeps_follows_from_its_decisions_alone(fill_slow):
    """`kept_after` (how the context teacher's memory-shaped histories are laid out) rebuilds the frames a
    rolled-out memory keeps from each layer's recorded promotion decisions."""
    student, text, history = _random_student(60)
    probe = replace(memory_preset("context"), num_slow_frames=4, fill_slow=fill_slow)
    rollout = _rollout_over(student, probe, history, text)
    tested = [
        layer.similarity for r in rollout.trace.records for layer in r.layers if layer.similarity is not None
    ]
    # A threshold inside the similarities, so that some layers promote a chunk and others do not.
    memory = replace(probe, similarity_threshold=float(torch.tensor(tested).median()))
    rollout = _rollout_over(student, memory, history, text)
    decisions = [
        [r.layers[layer].similarity is not None and r.layers[layer].similarity < memory.similarity_threshold
         for r in rollout.trace.records]
        for layer in range(student.config.num_layers)
    ]  # fmt: skip
    per_layer = {tuple(row) for row in decisions}
    assert len(per_layer) > 1 and any(any(row) for row in decisions)
    ids, _ = rollout.kept_frames()
    assert kept_after(memory, 20, decisions) == ids
    assert kept_after(memory, 20, decisions[:1]) != ids  # one layer's decisions do not explain them all


def _rollout_over(student, memory, history, text):
    return self_rollout(
        student, memory, student.encode_text(text), torch.zeros_like(history), timesteps=torch.zeros(1),
        generator=torch.Generator(), exit_steps=[1] * 20, grad_chunks=[False] * 20, prefix=history,
    ).memory  # fmt: skip


@pytest.mark.parametrize("role", ["teacher", "teacher-in-memory", "student"])
def test_probe_runs_and_counts_every_return(role):
    torch.manual_seed(0)
    config = model_preset("world")
    model = CausalDiT(config).eval()
    text_encoder = WorldTextEncoder(config.text_dim, config.text_len)
    probe = ProbeConfig(
        gaps_seconds=(1.5,), episodes_per_gap=2, teacher=EulerConfig(num_steps=2), num_target_frames=6
    )
    if role == "teacher":
        sampler = teacher_sampler(model, ContextTeacherConfig(num_slow_frames=2), text_encoder, probe)
    elif role == "teacher-in-memory":
        sampler = memory_teacher_sampler(
            model,
            ContextTeacherConfig(),
            CausalDiT(config).eval(),
            memory_preset("context"),
            text_encoder,
            probe,
        )
    else:
        sampler = student_sampler(model, memory_preset("context"), text_encoder, probe)
    codec = WorldCodec(WorldCodecConfig(latent_channels=8)).eval()
    results = probe_recall(sampler, codec, WorldConfig(), probe)
    assert results[0]["count"] == 2 and 0 <= results[0]["recall"] <= 1


def test_every_model_is_judged_on_the_same_episodes():
    """The episodes depend on the seed alone, not on how much noise a sampler draws."""
    seen = {}

    def recorder(name, draws):
        def sample(history, prompt, generator):
            seen.setdefault(name, []).append(history.clone())
            torch.randn(draws, generator=generator)
            return torch.zeros(1, history.shape[1], 6, *history.shape[3:])

        return sample

    probe = ProbeConfig(gaps_seconds=(1.5, 3.0), episodes_per_gap=2, num_target_frames=6)
    codec = WorldCodec(WorldCodecConfig(latent_channels=8)).eval()
    for name, draws in (("a", 1), ("b", 1000)):
        probe_recall(recorder(name, draws), codec, WorldConfig(), probe)
    assert len(seen["a"]) == 4 and all(torch.equal(x, y) for x, y in zip(seen["a"], seen["b"], strict=True))


def test_the_probe_command_reads_a_student_and_a_teacher_in_its_memory(tmp_path):
    import json

    from contextforcing.cli import main

    student, teacher = tmp_path / "student", tmp_path / "teacher"
    assert main(["train", "--preset", "tiny-dmd", "--out", str(student)]) == 0
    assert main(["train", "--preset", "tiny-context-teacher", "--out", str(teacher)]) == 0
    short = ["--gaps", "1.5", "--episodes", "1", "--steps", "2", "--kept"]
    assert main(["probe-recall", str(student), *short, "--out", str(tmp_path / "s.json")]) == 0
    argv = ["probe-recall", str(teacher), "--context-from", str(student), "--set-memory",
            "similarity_threshold=0.5", *short, "--out", str(tmp_path / "t.json")]  # fmt: skip
    assert main(argv) == 0
    assert main(["probe-recall", str(teacher), *short, "--out", str(tmp_path / "layout.json")]) == 0
    without_slow = ["probe-recall", str(teacher), *short, "--set-layout", "num_slow_frames=0", "--out",
                    str(tmp_path / "other.json")]  # fmt: skip
    assert main(without_slow) == 0
    own = json.loads((tmp_path / "s.json").read_text())
    in_memory = json.loads((tmp_path / "t.json").read_text())
    layout = json.loads((tmp_path / "layout.json").read_text())
    taught = json.loads((teacher / "config.json").read_text())["teacher"]
    clip = taught["num_sink_frames"] + taught["num_slow_frames"] * taught["slow_interval"]
    clip += taught["num_recent_frames"] + taught["num_target_frames"]
    # Only a teacher read in its own layout says how far back the returns it was trained on lie.
    assert own["trained_reach"] is None and in_memory["trained_reach"] is None
    assert layout["trained_reach"]["clip_frames"] == clip and layout["memory"] is None
    # Another layout is read as asked and recorded; the reach stays that of the layout it was trained in.
    other = json.loads((tmp_path / "other.json").read_text())
    assert layout["layout"] == taught and other["layout"] == {**taught, "num_slow_frames": 0}
    assert other["trained_reach"] == layout["trained_reach"] and own["layout"] is None
    assert other["results"][0]["kept_frames"] < layout["results"][0]["kept_frames"]
    assert (
        own["stage"] == "dmd"
        and own["context_from"] is None
        and own["memory"]["similarity_threshold"] == 0.95
    )
    assert in_memory["context_from"] == str(student) and in_memory["memory"]["similarity_threshold"] == 0.5
    for record in (own, in_memory, layout, other):
        (row,) = record["results"]
        assert row["count"] == 1 and 3 <= row["kept_from_start"] <= row["kept_frames"]

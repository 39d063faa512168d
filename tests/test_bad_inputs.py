"""Bad requests: each exits non-zero with one line naming the file, flag or key at fault, and leaves nothing
partial behind. Interrupted checkpoint writes resume from the last complete step."""

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from contextforcing.cli import main
from contextforcing.model.weights import load_model, save_model
from contextforcing.runtime import MAX_SEED
from contextforcing.training.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    recover_folder,
    save_checkpoint,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as error:  # argparse refuses a bad flag value by exiting 2
        return error.code


def _error(capsys, argv, code=2):
    """Run the CLI expecting a failure; returns its one error line."""
    assert _exit_code(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only=False" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"contextforcing {argv[0]}: error: "), err
    return line


@pytest.fixture(scope="module")
def dmd_run(tmp_path_factory):
    """A tiny-dmd run at step 2 (checkpointed at every step)."""
    folder = tmp_path_factory.mktemp("runs") / "dmd"
    assert (
        main(["train", "--preset", "tiny-dmd", "--out", str(folder), "--set", "train.checkpoint_every=1"])
        == 0
    )
    return folder


@pytest.fixture
def run_copy(dmd_run, tmp_path):
    shutil.copytree(dmd_run, tmp_path / "run")
    return tmp_path / "run"


def _train(folder, *extra):
    return [
        "train",
        "--preset",
        "tiny-dmd",
        "--out",
        str(folder),
        "--set",
        "train.checkpoint_every=1",
        *extra,
    ]


# Weights and codecs that cannot be read


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_unreadable_weights_are_named(damage, dmd_run, tmp_path, capsys):
    shutil.copytree(dmd_run / "model", tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "random": os.urandom(4096)}[damage]
    )
    line = _error(capsys, ["convert", str(tmp_path / "model"), str(tmp_path / "out")])
    assert f"{weights} is not a readable safetensors file" in line
    assert not (tmp_path / "out").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["random", "empty", "truncated", "malicious"])
def test_bad_pt_files_are_refused_without_running_them(content, tmp_path, capsys):
    path, marker = tmp_path / "model.pt", tmp_path / "ran"
    if content == "malicious":
        torch.save({"generator": _Payload(marker)}, path)
    elif content == "truncated":
        torch.save({"generator": {"w": torch.zeros(64)}}, path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        # Bytes that fail inside the unpickler itself (an IndexError), not with an UnpicklingError.
        path.write_bytes(
            bytes(random.Random(7).getrandbits(8) for _ in range(300)) if content == "random" else b""
        )
    line = _error(capsys, ["convert", str(path), str(tmp_path / "out")])
    if content == "malicious":
        assert f"{path} cannot be loaded as tensors only (it refers to posix.system" in line
    else:
        assert f"{path} is not a readable PyTorch checkpoint" in line or f"{path} cannot be loaded" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_non_finite_weights_are_refused_at_load(tiny_model, tmp_path, capsys):
    with torch.no_grad():
        next(tiny_model.parameters()).view(-1)[0] = float("nan")
    save_model(tiny_model, tmp_path / "nan")
    with pytest.raises(ValueError, match="non-finite weights"):
        load_model(tmp_path / "nan")
    line = _error(capsys, ["convert", str(tmp_path / "nan"), str(tmp_path / "out")])
    assert "non-finite weights (NaN or Inf) in 1 of" in line
    assert not (tmp_path / "out").exists()


def test_truncated_codec_is_named_and_no_run_folder_is_left(dmd_run, tmp_path, capsys):
    from contextforcing.world.shipped import shipped

    shutil.copytree(shipped("codec"), tmp_path / "codec")
    weights = next((tmp_path / "codec").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    line = _error(capsys, _train(tmp_path / "run", "--set", f"data.codec={tmp_path / 'codec'}"))
    assert f"{weights} is not a readable safetensors file" in line
    assert not (tmp_path / "run").exists()


def test_a_model_config_of_the_wrong_type_is_named(dmd_run, tmp_path, capsys):
    shutil.copytree(dmd_run / "model", tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["model"]["dim"] = "wide"
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    line = _error(capsys, ["convert", str(tmp_path / "model"), str(tmp_path / "out")])
    assert (
        f"{tmp_path / 'model' / 'config.json'}: bad 'model' section: DiTConfig.dim must be an int, got 'wide'"
        in line
    )


def test_results_names_a_row_file_that_is_not_json(tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "teacher.json").write_text("{not json")
    argv = ["results", "--eval", str(tmp_path / "eval"), "--out", str(tmp_path / "page" / "RESULTS.md"),
            "--figures", str(tmp_path / "page"), "--readme", str(tmp_path / "README.md")]  # fmt: skip
    assert f"{tmp_path / 'eval' / 'teacher.json'} is not JSON" in _error(capsys, argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_compare_keeping_probes_names_the_row_json_it_lacks(tmp_path, capsys):
    line = _error(
        capsys, ["compare", "--world", "2", "--rows", "teacher", "--keep-probes", "--out", str(tmp_path)]
    )
    assert f"{tmp_path / 'teacher.json'}: --keep-probes needs the row's earlier JSON" in line
    assert list(tmp_path.iterdir()) == []


# Output places


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "MODEL", "OUT"],
        ["train", "--preset", "tiny-dmd", "--out", "OUT"],
        ["world", "--seconds", "1", "--out", "OUT"],
        ["train-codec", "--steps", "1", "--out", "OUT"],
        ["evaluate", "MODEL", "--out", "OUT"],
        ["compare", "--rows", "teacher", "--out", "OUT"],
        ["results", "--out", "OUT"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize("place", ["existing file", "inside a file"])
def test_output_must_be_a_writable_folder(command, place, dmd_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    out = blocker if place == "existing file" else blocker / "sub"
    if command[0] == "results":  # --out is the page: a folder is the wrong kind of place
        out = tmp_path if place == "existing file" else blocker / "sub" / "page.md"
    argv = [str(out) if a == "OUT" else str(dmd_run / "model") if a == "MODEL" else a for a in command]
    line = _error(capsys, argv)
    assert f"{out}" in line and (
        "is a file" in line or "is an existing file" in line or "is a folder" in line
    )
    assert blocker.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_probe_recall_output_must_be_a_file(dmd_run, tmp_path, capsys):
    line = _error(capsys, ["probe-recall", str(dmd_run), "--out", str(tmp_path)])
    assert f"--out {tmp_path} is a folder" in line


def test_probe_recall_gives_a_students_memory_to_a_teacher_only(dmd_run, capsys):
    line = _error(capsys, ["probe-recall", str(dmd_run), "--context-from", str(dmd_run)])
    assert f"--context-from is for a teacher's run; {dmd_run} holds a dmd student" in line


def test_probe_recall_sets_the_layout_of_a_teacher_only(dmd_run, capsys):
    line = _error(capsys, ["probe-recall", str(dmd_run), "--set-layout", "slow_interval=9"])
    assert f"--set-layout sets the layout a teacher reads its history in; {dmd_run} holds a student" in line


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train", "--preset", "tiny-context-teacher", "--out", str(folder)]) == 0
    return folder


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--context-from", "TEACHER"], "--context-from needs a student's run; TEACHER holds a teacher"),
        (["--set-memory", "similarity_threshold=0.9"], "--set-memory sets a student's memory; TEACHER holds a teacher"),
        (["--memory", "sink"], "--memory sets a student's memory; TEACHER holds a teacher"),
        (["--set-layout", "slow_interval"], "--set-layout expects KEY=VALUE, got 'slow_interval'"),
        (["--set-layout", "slow_gap=9"], "--set-layout: unknown"),
        (["--set-layout", "slow_interval=9", "--context-from", "STUDENT"], "is read in a student's memory"),
    ],
)  # fmt: skip
def test_probe_recall_reads_a_teachers_own_layout_unless_given_a_student(
    teacher_run, dmd_run, flags, named, capsys
):
    runs = {"TEACHER": str(teacher_run), "STUDENT": str(dmd_run)}
    line = _error(capsys, ["probe-recall", str(teacher_run), *[runs.get(f, f) for f in flags]])
    assert named.replace("TEACHER", str(teacher_run)) in line


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--guidance", "nan"], "argument --guidance: expected a finite number >= 0, got 'nan'"),
        (["--guidance", "-1"], "argument --guidance: expected a finite number >= 0, got '-1'"),
        (["--shift", "0"], "argument --shift: expected a finite number > 0, got '0'"),
        (["--prefix-seconds", "strong"], "argument --prefix-seconds: expected a number, got 'strong'"),
        (["--prefix-seconds", "0.5"], "--prefix-seconds: a prefix of 0.5 s must be whole chunks of 3 frames"),
        (["--prefix-seconds", "60"], "shorter than the video's 60 s"),
    ],
)
def test_bad_free_run_flags_are_named(flags, named, dmd_run, tmp_path, capsys):
    out = tmp_path / "free.json"
    line = _error(capsys, ["free-run", str(dmd_run), *flags, "--out", str(out)])
    assert named in line
    assert not out.exists()


# Values that make no sense


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("train.device=bogus", "train.device must be auto, cpu, cuda or cuda:N, got 'bogus'"),
        (f"train.seed={2**70}", f"train.seed must be an integer in [0, {MAX_SEED}]"),
        ("train.seed=-1", "train.seed must be an integer"),
        ("optim.lr=nan", "optim.lr must be a finite float"),
        ("distill.num_frames=7", "distill.num_frames=7 is not a multiple of the chunk"),
        ("data.codec=/no/such/codec", "/no/such/codec"),
    ],
)
def test_bad_training_settings_are_named_and_leave_no_folder(assignment, named, tmp_path, capsys):
    line = _error(capsys, _train(tmp_path / "run", "--set", assignment))
    assert named in line
    assert not (tmp_path / "run").exists()


def test_a_teacher_reading_more_recent_frames_than_its_recycled_errors_hold_is_refused(tmp_path, capsys):
    """ERFT recycles the target's errors into the recent frames: more recent frames than target frames
    used to fail with a RuntimeError deep in the first step."""
    argv = ["train", "--preset", "world2-teacher-ema-long", "--set", "teacher.num_recent_frames=12",
            "--out", str(tmp_path / "run")]  # fmt: skip
    line = _error(capsys, argv)
    assert "num_recent_frames (12) must not exceed num_target_frames (6)" in line
    assert not (tmp_path / "run").exists()
    from contextforcing.training.config import ContextTeacherConfig

    ContextTeacherConfig(num_target_frames=6, num_recent_frames=12, erft=True, context_error_prob=0.0)
    ContextTeacherConfig(num_target_frames=6, num_recent_frames=12, erft=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_named(tmp_path, capsys):
    line = _error(capsys, _train(tmp_path / "run", "--set", "train.device=cuda"))
    assert "device 'cuda' requested but CUDA is not available" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seconds", "inf"], "--seconds must be a finite number of seconds > 0, got inf"),
        (["--seconds", "-2"], "--seconds must be a finite number of seconds > 0, got -2"),
        (["--seconds", "1", "--seed", str(2**64)], f"argument --seed: a seed must lie in [0, {MAX_SEED}]"),
        (
            ["--seconds", "1", "--gap-seconds", "nan"],
            "--gap-seconds must be a finite number of seconds > 0, got nan",
        ),
        (["--seconds", "1e12"], "--seconds 1e+12 is too long: an episode lasts at most 3600 s"),
    ],
)
def test_bad_world_arguments_are_named(flags, named, tmp_path, capsys):
    assert named in _error(capsys, ["world", *flags, "--out", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


# Evaluation references


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    folder = tmp_path_factory.mktemp("episode")
    assert main(["world", "--seconds", "3", "--out", str(folder)]) == 0
    return folder


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda m: m.pop("subjects"), "'subjects' is missing or empty"),
        (lambda m: m.update(subjects=[]), "'subjects' is missing or empty"),
        (lambda m: m.update(num_frames=m["num_frames"] + 4), "wrong frame count"),
        (lambda m: m["frames"].pop(), "wrong frame count"),
        (lambda m: m.update(fps=7), "fps is 7"),
    ],
    ids=["no-subjects", "empty-subjects", "num-frames", "frame-list", "fps"],
)
def test_evaluate_refuses_inconsistent_reference_metadata(damage, named, episode, tmp_path, capsys):
    metadata = json.loads((episode / "meta.json").read_text())
    damage(metadata)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(metadata))
    argv = ["evaluate", str(episode / "video.mp4"), "--reference", str(meta), "--backbone", "pixels",
            "--no-dynamic-degree", "--out", str(tmp_path / "eval")]  # fmt: skip
    line = _error(capsys, argv)
    assert f"reference {meta}: " in line and named in line
    assert not (tmp_path / "eval").exists()


# Resuming


def test_resume_refuses_a_damaged_checkpoint(run_copy, capsys):
    checkpoint = run_copy / "checkpoint"
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    weights = checkpoint / "student.safetensors"
    weights.write_bytes(before["student.safetensors"][:1000])
    assert f"{weights} is not a readable safetensors file" in _error(capsys, _train(run_copy, "--resume"))
    (checkpoint / "critic.safetensors").unlink()
    weights.write_bytes(before["student.safetensors"])
    line = _error(capsys, _train(run_copy, "--resume"))
    assert "lacks ['critic'] (critic.safetensors)" in line
    (checkpoint / "state.json").write_text('{"step": 2,')
    assert f"{checkpoint / 'state.json'} is damaged (not JSON" in _error(capsys, _train(run_copy, "--resume"))


@pytest.mark.parametrize(
    ("preset", "extra", "named"),
    [
        ("tiny-cdmd", [], "another stage or model architecture (stage: 'dmd' -> 'cdmd'"),
        (
            "tiny-dmd",
            ["--set", "train.seed=3"],
            "written with another config (train.seed: 0 -> 3); resume with",
        ),
        ("tiny-dmd", ["--set", "optim.lr=0.5"], "optim.lr: 0.0001 -> 0.5"),
        ("tiny-dmd", ["--steps", "1"], "is already at step 2, past train.steps=1"),
    ],
    ids=["stage", "seed", "lr", "fewer-steps"],
)
def test_resume_refuses_another_run(preset, extra, named, run_copy, capsys):
    argv = _train(run_copy, "--resume", *extra)
    argv[2] = preset
    state = (run_copy / "checkpoint" / "state.json").read_text()
    assert named in _error(capsys, argv)
    assert (run_copy / "checkpoint" / "state.json").read_text() == state


def test_resume_with_allowed_config_change_and_nothing_left(run_copy, caplog):
    caplog.set_level(logging.INFO)
    assert (
        main(_train(run_copy, "--resume", "--set", "train.seed=3", "--allow-config-change", "--steps", "3"))
        == 0
    )
    assert "resuming" in caplog.text and "train.seed: 0 -> 3" in caplog.text
    shutil.rmtree(run_copy / "model")  # as if killed after the checkpoint, before the model export
    caplog.clear()
    assert main(_train(run_copy, "--resume", "--set", "train.seed=3", "--steps", "3")) == 0
    assert "nothing left to train" in caplog.text and "model of step 3" in caplog.text
    assert json.loads((run_copy / "model" / "config.json").read_text())["step"] == 3
    steps = [json.loads(line)["step"] for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_resume_of_a_checkpoint_written_before_a_key_was_added(run_copy, caplog):
    """A key the library added since (here distill.rollout_cap_frames) resumes at its default without a
    word, and is named if set to anything else."""
    state_file = run_copy / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["distill"]["rollout_cap_frames"]
    state_file.write_text(json.dumps(state))
    caplog.set_level(logging.INFO)
    assert main(_train(run_copy, "--resume", "--steps", "3")) == 0
    assert "changed config" not in caplog.text and "model of step 3" in caplog.text
    state = json.loads(state_file.read_text())
    del state["config"]["distill"]["rollout_cap_frames"]
    state_file.write_text(json.dumps(state))
    assert main(_train(run_copy, "--resume", "--steps", "4", "--set", "distill.rollout_cap_frames=999")) != 0


# Interrupted checkpoint writes


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


_META = {"updates": {}, "config": {}, "optimizers": {}}


def _groups(value):
    return {"model": {"w": torch.full((3,), float(value))}, "optim.model": {"w::m": torch.zeros(2) + value}}


def _save_killed_at(folder, crash_at, monkeypatch):
    """Write step 2 over step 1, killed at the `crash_at`-th file operation; True if the write finished."""
    import contextforcing.training.checkpoint as checkpoint

    real = {"rmtree": shutil.rmtree, "save_file": checkpoint.save_file, "replace": Path.replace,
            "write_text": Path.write_text}  # fmt: skip
    count = [0]

    def tick(name, *args, **kwargs):
        count[0] += 1
        if count[0] == crash_at:
            if name == "rmtree" and Path(args[0]).is_dir():  # killed halfway through a removal
                next(Path(args[0]).iterdir()).unlink()
            raise Killed
        return real[name](*args, **kwargs)

    save_checkpoint(folder, {"step": 1, **_META}, _groups(1))
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: tick("rmtree", *a, **k))
    monkeypatch.setattr(checkpoint, "save_file", lambda *a, **k: tick("save_file", *a, **k))
    monkeypatch.setattr(Path, "replace", lambda *a, **k: tick("replace", *a, **k))
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: tick("write_text", *a, **k))
    try:
        save_checkpoint(folder, {"step": 2, **_META}, _groups(2))
        return True
    except Killed:
        return False
    finally:
        monkeypatch.undo()


def test_a_checkpoint_write_interrupted_anywhere_leaves_the_old_or_the_new_step(tmp_path, monkeypatch):
    seen, finished, crash_at = set(), False, 0
    while not finished:
        crash_at += 1
        folder = tmp_path / str(crash_at)
        finished = _save_killed_at(folder, crash_at, monkeypatch)
        meta, groups = load_checkpoint(folder)
        step = meta["step"]
        assert groups.keys() == _groups(step).keys()
        assert all(torch.equal(groups[g][k], v) for g, t in _groups(step).items() for k, v in t.items())
        seen.add((find_checkpoint(folder / "checkpoint").name, step))
        if not (folder / "checkpoint").exists():  # between the renames; without the new one, the old serves
            shutil.copytree(folder, tmp_path / "without-tmp")
            shutil.rmtree(tmp_path / "without-tmp" / "checkpoint.tmp")
            assert load_checkpoint(tmp_path / "without-tmp")[0]["step"] == 1
            seen.add(("checkpoint.old", 1))
        assert recover_folder(folder / "checkpoint") == folder / "checkpoint"
        assert load_checkpoint(folder)[0]["step"] == step
        assert sorted(p.name for p in folder.iterdir()) == ["checkpoint"]
    # The kills hit every folder: the old step in place, the new one complete in .tmp, the old in .old.
    assert {("checkpoint", 1), ("checkpoint", 2), ("checkpoint.tmp", 2), ("checkpoint.old", 1)} <= seen


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted tiny-dmd runs by number of steps, made once."""
    runs = {}

    def run(steps):
        if steps not in runs:
            runs[steps] = tmp_path_factory.mktemp("straight") / str(steps)
            assert main(_train(runs[steps], "--steps", str(steps))) == 0
        return runs[steps]

    return run


@pytest.mark.parametrize("kill", ["between the renames", "while writing tensors"])
def test_training_killed_in_a_checkpoint_write_resumes_bitwise(kill, straight, tmp_path, monkeypatch, capsys):
    import contextforcing.training.checkpoint as checkpoint

    real_replace, real_save = Path.replace, checkpoint.save_file

    def replace(self, target):
        if self.name == "checkpoint.tmp" and json.loads((self / "state.json").read_text())["step"] == 3:
            raise Killed  # checkpoint -> checkpoint.old is done, checkpoint.tmp -> checkpoint is not
        return real_replace(self, target)

    def save_file(tensors, path):
        # Killed in the middle of writing step 3, after its metrics line.
        run = Path(path).parents[1]
        if Path(path).name == "critic.safetensors" and (run / "metrics.jsonl").read_text().count("\n") == 3:
            raise Killed
        return real_save(tensors, path)

    if kill == "between the renames":
        monkeypatch.setattr(Path, "replace", replace)
    else:
        monkeypatch.setattr(checkpoint, "save_file", save_file)
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        main(_train(run, "--steps", "4"))
    monkeypatch.undo()
    if kill == "between the renames":
        assert not (run / "checkpoint").exists() and (run / "checkpoint.old").is_dir()
    # A plain run does not touch the recoverable checkpoint; --resume continues it.
    assert "already holds a checkpoint" in _error(capsys, _train(run, "--steps", "4"))
    assert main(_train(run, "--steps", "4", "--resume")) == 0
    a = load_model(straight(4) / "model").state_dict()
    b = load_model(run / "model").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads((run / "model" / "config.json").read_text())["step"] == 4
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "config.json", "metrics.jsonl", "model"]


def test_verbose_shows_the_traceback(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent"), str(tmp_path / "out"), "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].endswith(
        f"no checkpoint at {tmp_path / 'absent'}"
    )


@pytest.mark.slow
def test_training_killed_by_sigkill_resumes_bitwise(straight, tmp_path):
    """A real SIGKILL in a subprocess, wherever it lands after the first step."""
    run, steps = tmp_path / "killed", "4"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "contextforcing", *_train(run, "--steps", steps)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert main(_train(run, "--steps", steps, "--resume")) == 0
    a = load_model(straight(int(steps)) / "model").state_dict()
    b = load_model(run / "model").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, int(steps) + 1))


def test_an_interrupted_first_step_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    import dataclasses

    from contextforcing.training.stages import STAGES

    def interrupted(run, step):
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGES, "dmd", dataclasses.replace(STAGES["dmd"], step=interrupted))
    assert _error(capsys, _train(tmp_path / "run"), code=130).endswith("error: interrupted")
    assert not (tmp_path / "run").exists()

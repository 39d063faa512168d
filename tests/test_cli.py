"""The command line: subcommands run library calls, and bad input is a clear error with exit code 2."""

import json

import pytest
import torch
from safetensors.torch import load_file

from contextforcing.cli import main
from contextforcing.model.weights import detect_layout, load_model, save_model


def test_convert_round_trip(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    assert detect_layout(tmp_path / "dst") == "contextforcing"
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert config["converted_from"]["layout"] == "contextforcing"
    assert load_model(tmp_path / "dst").config == tiny_model.config


def test_convert_reports_a_bad_source(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent"), str(tmp_path / "dst")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_unknown_model_preset_is_named(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"")
    assert main(["convert", str(tmp_path / "model.pt"), str(tmp_path / "dst"), "--model-preset", "huge"]) == 2
    assert "unknown model preset 'huge'" in capsys.readouterr().err


def test_unknown_command_exits_nonzero():
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_convert_to_half_precision_halves_the_file_and_loads_back_close(tmp_path, tiny_model):
    """`convert --dtype float16` stores every weight in float16; loading casts back to float32, and the
    model computes what the float32 one does to float16's precision."""
    save_model(tiny_model, tmp_path / "src", extra={"stage": "cdmd", "step": 300})
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--dtype", "float16"]) == 0
    record = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert record["stage"] == "cdmd" and record["step"] == 300  # the run's record survives the conversion
    stored = load_file(tmp_path / "dst" / "model.safetensors")
    assert {value.dtype for value in stored.values()} == {torch.float16}
    size = (tmp_path / "dst" / "model.safetensors").stat().st_size
    assert size < 0.55 * (tmp_path / "src" / "model.safetensors").stat().st_size
    half = load_model(tmp_path / "dst")
    full = tiny_model.state_dict()
    for name, value in half.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, full[name], rtol=1e-3, atol=1e-4)
    assert any(not torch.equal(value, full[name]) for name, value in half.state_dict().items())

"""The command line: subcommands run library calls, and bad input is a clear error with exit code 2."""

import json

import pytest

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

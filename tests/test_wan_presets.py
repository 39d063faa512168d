"""The wan-* presets hold exactly the values of the table in docs/design.md, each with its source."""

import ast
import re
from pathlib import Path

import pytest

from contextforcing.config import override, to_dict
from contextforcing.memory.config import memory_preset
from contextforcing.model.config import model_preset
from contextforcing.presets import preset
from contextforcing.training.config import ExperimentConfig
from contextforcing.training.wan_presets import WAN_PRESETS, resolve_wan_paths

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"
_ROW = re.compile(r"^\| ([\w.]+) \| `(.+)` \| (.+) \|$")


def _tables() -> dict[str, dict[str, tuple[object, str]]]:
    """{heading: {key: (value, source)}} of the '#### ...' tables of the presets section."""
    section = DESIGN.read_text().split("## Presets at scale", 1)[1]
    tables, heading = {}, None
    for line in section.splitlines():
        if line.startswith("#### "):
            heading = line[5:].strip()
            tables[heading] = {}
        elif heading and (match := _ROW.match(line)):
            key, value, source = match.groups()
            tables[heading][key] = (ast.literal_eval(value), source.strip())
    return tables


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _json(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", sorted(WAN_PRESETS))
def test_preset_matches_the_design_table(name):
    tables = _tables()
    rows = {**tables["every wan preset"], **tables[name]}
    assert all(source for _, source in rows.values())
    config = preset(name)
    flat = _flat(to_dict(config))
    assert config.stage == rows.pop("stage")[0]
    assert config.model == model_preset(rows.pop("model")[0])
    assert config.memory == memory_preset(rows.pop("memory")[0])
    for key, (value, _) in rows.items():
        assert key in flat, f"{name}: the table names {key}, which is no config key"
        assert flat[key] == _json(value), f"{name}: {key} is {flat[key]!r}, the table says {value!r}"
    # Every value that differs from the library's default has a row.
    default = _flat(to_dict(ExperimentConfig(stage=config.stage)))
    undocumented = sorted(
        key
        for key, value in flat.items()
        if not key.startswith(("model.", "memory.")) and value != default[key] and key not in rows
    )
    assert not undocumented, f"{name}: values without a source in docs/design.md: {undocumented}"


def test_every_wan_preset_has_a_table():
    assert set(_tables()) == {"every wan preset", *WAN_PRESETS}


def test_wan_paths_need_a_wan_folder(tmp_path):
    config = preset("wan-context-teacher")
    with pytest.raises(ValueError, match=r"init\.model.*--wan"):
        resolve_wan_paths(config)
    resolved = resolve_wan_paths(override(config, {"data.wan": str(tmp_path)}))
    assert resolved.init.model == str(tmp_path)
    assert resolve_wan_paths(override(config, {"init.model": "a/b"})).init.model == "a/b"

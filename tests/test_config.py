"""Dotted overrides coerce CLI strings by field type and name the key they reject; JSON round trips."""

from dataclasses import dataclass, field

import pytest

from contextforcing.config import from_dict, override, parse_assignments, to_dict
from contextforcing.model.config import DiTConfig, model_preset


@dataclass(frozen=True, kw_only=True, slots=True)
class _Section:
    rate: float = 0.1
    mode: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    flag: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class _Root:
    model: DiTConfig = field(default_factory=lambda: model_preset("tiny"))
    section: _Section = field(default_factory=_Section)
    steps: int = 10


def test_override_coerces_strings_by_type():
    config = override(
        _Root(),
        {"steps": "20", "section.rate": "1e-5", "section.sizes": "3,4", "section.limit": "7", "section.flag": "true",
         "model.num_layers": 3},
    )  # fmt: skip
    assert config.steps == 20 and config.section.rate == 1e-5 and config.section.sizes == (3, 4)
    assert config.section.limit == 7 and config.section.flag is True and config.model.num_layers == 3
    assert override(config, {"section.limit": "none"}).section.limit is None


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"sction.rate": 1}, "unknown config key 'sction'"),
        ({"section.rte": 1}, "unknown config key 'section.rte'"),
        ({"steps": "ten"}, "steps must be an int"),
        ({"steps": 2.5}, "steps must be an int"),
        ({"section.flag": "maybe"}, "section.flag must be a bool"),
        ({"section": "x"}, "is a section"),
        ({"model.dim": "63"}, "not divisible"),
    ],
)
def test_override_rejects_with_the_key_named(updates, message):
    with pytest.raises(ValueError, match=message):
        override(_Root(), updates)


def test_json_round_trip_is_exact():
    config = override(_Root(), {"section.sizes": "5,6,7", "section.limit": "3"})
    assert from_dict(_Root, to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown _Root keys"):
        from_dict(_Root, {**to_dict(config), "extra": 1})


def test_parse_assignments():
    assert parse_assignments(["a.b=1", "c = x"]) == {"a.b": "1", "c": "x"}
    with pytest.raises(ValueError, match="key=value"):
        parse_assignments(["novalue"])

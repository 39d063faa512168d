"""The walls of the package, read from the imports of every module (lazy ones inside functions too).

The method (model, memory, diffusion, inference, training, eval, codec and the shared modules) is
usable with any data and imports nothing of the miniature (`contextforcing.world`); the command line
and the preset registry join the two.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "contextforcing"
JOINS = ("contextforcing.cli", "contextforcing.__main__", "contextforcing.presets", "contextforcing.commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _inside(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if _inside(module, *importers)
        for name in names
        if _inside(name, *forbidden)
    )


def test_the_modules_were_found():
    assert {"contextforcing.model.dit", "contextforcing.world.episodes", "contextforcing.cli"} <= set(MODULES)


def test_the_method_imports_nothing_of_the_world():
    method = [m for m in MODULES if not _inside(m, "contextforcing.world", *JOINS)]
    assert "contextforcing.training.trainer" in method and "contextforcing.eval.evaluate" in method
    bad = sorted(f"{m} imports {n}" for m in method for n in MODULES[m] if _inside(n, "contextforcing.world"))
    assert not bad, bad


def test_the_world_imports_no_command_line():
    world = tuple(m for m in MODULES if _inside(m, "contextforcing.world"))
    assert not _violations(world, JOINS)


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        (("contextforcing.model",), ("contextforcing.memory", "contextforcing.training", "contextforcing.inference",
                                     "contextforcing.eval")),
        (("contextforcing.memory",), ("contextforcing.training", "contextforcing.inference")),
        (("contextforcing.diffusion.losses",), ("contextforcing.model",)),
        (("contextforcing.eval",), ("contextforcing.training",)),
    ],
)  # fmt: skip
def test_walls_between_the_parts_of_the_method(importers, forbidden):
    bad = _violations(importers, forbidden)
    assert not bad, bad


def test_exactly_one_module_touches_torch_distributed():
    touching = sorted(
        m for m, names in MODULES.items() if any(_inside(n, "torch.distributed") for n in names)
    )
    uses = sorted(
        _module_name(path) for path in PACKAGE.rglob("*.py") if "torch.distributed" in path.read_text()
    )
    assert touching == ["contextforcing.training.parallel"]
    assert uses == ["contextforcing.training.parallel"]

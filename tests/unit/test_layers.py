"""The stage layout's import contract: dependencies point one way, from the CLI down to the core.

Every import in workbench's own modules, at module level or inside functions and TYPE_CHECKING
blocks alike, must go to the same layer or a lower one. `workbench.testing` may import anything
and nothing may import it; the embedded Argilla (`workbench_argilla_embedded`) is outside the
product: only the CLI may start it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workbench"

# Lowest first. Packages on one line are siblings: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("workbench.core",),
    ("workbench.models",),
    ("workbench.prompting",),
    ("workbench.evaluation",),
    ("workbench.reporting", "workbench.annotation"),
    ("workbench.points",),
    ("workbench.trainingdata",),
    ("workbench.finetune",),
    ("workbench.experiments",),
    ("workbench.scale",),
    ("workbench.cli",),
]
OUTSIDE = {"workbench_argilla_embedded": ("workbench.cli",)}  # who may import it


def layer_of(module: str) -> tuple[int, str] | None:
    for level, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return level, package
    return None


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from workbench import annotation` imports the module workbench.annotation
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names if name == "workbench"]
    return found


def violations(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        if module.startswith("workbench.testing"):
            continue
        own = layer_of(module)
        for line, target in imports(path, root):
            where = f"{path.relative_to(root)}:{line} imports {target}"
            if target.startswith("workbench.testing"):
                problems.append(f"{where}: nothing in the product may import workbench.testing")
                continue
            outside = next((name for name in OUTSIDE if target == name or target.startswith(name + ".")), None)
            if outside is not None:
                if own is None or own[1] not in OUTSIDE[outside]:
                    problems.append(f"{where}: only {OUTSIDE[outside]} may import {outside}")
                continue
            theirs = layer_of(target)
            if own is None or theirs is None:
                continue  # the facade (workbench/__init__.py) and third-party modules
            private = next((part for part in target.split(".")[1:] if part.startswith("_")), None)
            if private and theirs[1] != own[1]:
                problems.append(f"{where}: the private module {private} is {theirs[1]}'s own; import the name "
                                f"from {theirs[1]}")
                continue
            if theirs[0] > own[0]:
                problems.append(f"{where}: {own[1]} must not import the higher layer {theirs[1]}")
            elif theirs[0] == own[0] and theirs[1] != own[1]:
                problems.append(f"{where}: sibling packages {own[1]} and {theirs[1]} must not import each other")
    return problems


def test_every_module_belongs_to_a_layer():
    unplaced = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")
                if layer_of(".".join(path.relative_to(ROOT).with_suffix("").parts)) is None
                and path.parent != PACKAGE and "testing" not in path.parts]
    assert unplaced == []


def test_imports_point_down_the_layers():
    assert violations(sorted(PACKAGE.rglob("*.py"))) == []


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("workbench/core/planted.py", "from workbench.evaluation.errors import find_errors\n", "higher layer"),
        ("workbench/models/planted.py", "def f():\n    import workbench.prompting.runner\n", "higher layer"),
        ("workbench/reporting/planted.py", "from workbench.annotation import connect\n", "sibling"),
        ("workbench/evaluation/planted.py", "from workbench.testing.fake_model import FakeModel\n", "workbench.testing"),
        ("workbench/annotation/planted.py", "from workbench_argilla_embedded import start_server\n", "only"),
        ("workbench/core/kinds/planted.py", "from ...prompting import variants\n", "higher layer"),
        ("workbench/points/planted.py", "from workbench.annotation._argilla import Client\n", "private module"),
    ],
)
def test_a_planted_violation_fails_the_contract(tmp_path, where, source, expected):
    planted = tmp_path / where
    planted.parent.mkdir(parents=True)
    planted.write_text(source)
    found = violations([planted], root=tmp_path)
    assert len(found) == 1 and expected in found[0] and where in found[0]

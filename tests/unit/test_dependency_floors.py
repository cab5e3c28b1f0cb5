"""pyproject.toml's lower bounds and constraints/floors.txt (the versions `make test-min` installs)
name the same versions, so the floors the minimum-versions job tests are the ones users get."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
SELF = "workbench"


def direct_requirements() -> list[Requirement]:
    """Every requirement in [project.dependencies] and the optional groups, less the groups that
    only name this package's own extras (`all`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    requirements = [Requirement(line) for group in groups for line in group]
    return [requirement for requirement in requirements if canonicalize_name(requirement.name) != SELF]


def lower_bound(requirement: Requirement) -> Version | None:
    """The version after `>=` or `==` (a pin is its own floor), or None."""
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator in {">=", "=="}]
    return max(bounds) if bounds else None


def floors(text: str) -> dict[str, Version]:
    """`name==version` lines of a constraints file (comments and blank lines ignored)."""
    pinned: dict[str, Version] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match is None:
            raise ValueError(f"constraints/floors.txt line {number}: expected `name==version`, got {line!r}")
        name = canonicalize_name(match[1])
        if name in pinned:
            raise ValueError(f"constraints/floors.txt line {number}: {match[1]} is listed twice")
        pinned[name] = Version(match[2])
    return pinned


def test_every_direct_dependency_has_a_floor():
    unbounded = [str(requirement) for requirement in direct_requirements() if lower_bound(requirement) is None]
    assert unbounded == [], f"give these a lower bound (>=) in pyproject.toml and constraints/floors.txt: {unbounded}"


def test_floors_txt_names_exactly_pyprojects_floors():
    declared = {canonicalize_name(requirement.name): lower_bound(requirement) for requirement in direct_requirements()}
    listed = floors((ROOT / "constraints" / "floors.txt").read_text())
    differ = {name: (str(floor), str(listed.get(name))) for name, floor in declared.items()
              if floor is not None and listed.get(name) != floor}
    assert differ == {}, f"pyproject.toml's floor vs constraints/floors.txt (name: (pyproject, floors.txt)): {differ}"
    extra = sorted(set(listed) - set(declared))
    assert extra == [], f"constraints/floors.txt lists packages pyproject.toml does not depend on: {extra}"


def test_the_floors_file_reader_refuses_what_pip_would_read_differently():
    assert floors("# header\n\nPyYAML==6.0.1  # why\n") == {"pyyaml": Version("6.0.1")}
    with pytest.raises(ValueError, match="line 1: expected `name==version`"):
        floors("pandas>=2.0\n")
    with pytest.raises(ValueError, match="listed twice"):
        floors("numpy==1.26.0\nNumPy==2.0\n")

"""`from workbench import ...` gives each stage's verbs; heavy and optional libraries load on first use."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import workbench

HEAVY = ("plotly", "argilla", "ipywidgets", "spacy", "datasets", "llama_cpp", "openai", "torch", "transformers", "peft",
         "sentence_transformers")
# Every package of workbench is a stage but the command line and the test fakes, which are no library verbs.
STAGES = sorted(init.parent.name for init in Path(workbench.__file__).parent.glob("*/__init__.py")
                if init.parent.name not in {"cli", "testing"})


def test_importing_workbench_loads_no_heavy_or_optional_library():
    code = f"import sys, workbench; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


@pytest.mark.parametrize("name", workbench.__all__)
def test_every_public_name_resolves(name):
    assert getattr(workbench, name) is not None


def test_lazy_names_are_the_stage_functions_and_unknown_names_fail():
    from workbench.experiments.runs import load_run
    from workbench.reporting import plots

    assert workbench.load_run is load_run and workbench.plots is plots
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        workbench.nope  # noqa: B018


def stages_of(names: list[str]) -> set[str]:
    """The stage packages `names` of the facade come from: a lazy name's from its module path in
    `_LAZY` (without importing it), an eager one's from the module its object was defined in."""
    def module(name: str) -> str:
        return workbench._LAZY[name] if name in workbench._LAZY else getattr(workbench, name).__module__
    return {module(name).split(".")[1] for name in names}


def test_every_stage_package_contributes_a_public_name():
    assert STAGES == ["annotation", "core", "evaluation", "experiments", "finetune", "models", "points", "prompting",
                      "reporting", "scale", "trainingdata"]
    assert set(STAGES) - stages_of(workbench.__all__) == set()
    assert stages_of(workbench.__all__) <= set(STAGES), "the facade exports stage verbs only"
    # The check sees a stage whose names are all gone.
    without = [n for n in workbench.__all__ if not workbench._LAZY.get(n, "").startswith("workbench.trainingdata.")]
    assert set(STAGES) - stages_of(without) == {"trainingdata"}


@pytest.mark.parametrize("name", sorted(workbench._LAZY))
def test_every_lazy_name_is_defined_in_or_re_exported_by_its_module(name):
    path = workbench._LAZY[name]
    module = importlib.import_module(path)
    value = getattr(workbench, name)
    if value is module:  # `plots`: the module of chart functions itself
        assert path.rsplit(".", 1)[-1] == name
        return
    assert value is getattr(module, name)
    assert value.__module__ == path or name in getattr(module, "__all__", ()), (
        f"{name} is defined in {value.__module__}, neither in {path} nor in its __all__")

"""`from workbench import ...` gives each stage's verbs; heavy and optional libraries load on first use."""

import subprocess
import sys

import pytest

import workbench


def test_importing_workbench_loads_no_heavy_or_optional_library():
    code = ("import sys, workbench; "
            "print(sorted(m for m in ('plotly', 'argilla', 'ipywidgets', 'spacy', 'datasets', 'llama_cpp', 'openai') "
            "if m in sys.modules))")
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

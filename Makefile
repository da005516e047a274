# Quick start: `make study` (runs the embedded-default study) and `make test`.
# Both create .venv on first use and are idempotent afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first, pinned to the releases this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.synthequiv-installed
PRESET ?= quick
NAME ?= $(PRESET)

.PHONY: study test test-slow lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/synthequiv study --preset $(PRESET) --name $(NAME)

# two worker processes (pytest-xdist), each test file on one of them (module fixtures once)
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

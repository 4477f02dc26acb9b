# One target per habit; `make test` runs them all and is what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_TOOLS := maturin pytest hypothesis numpy ruff mypy

.PHONY: all venv develop demo fmt fmt-check lint test-rust test-python stubtest test bench bench-rust

all: test

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_TOOLS)

venv: $(PY)

# Builds the extension (release, as users get it) into the venv.
develop: $(PY)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release -q

demo: develop
	$(PY) examples/demo.py

fmt: $(PY)
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches examples

fmt-check: $(PY)
	cargo fmt --all -- --check
	$(VENV)/bin/ruff format --check python tests benches examples

lint: $(PY)
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples

test-rust:
	cargo test --workspace --exclude mmapfile-python

test-python: develop
	$(PY) -m pytest -q tests

stubtest: develop
	$(PY) -m mypy.stubtest mmapfile --allowlist stubtest-allowlist.txt

test: fmt-check lint test-rust test-python stubtest

# Python-level ratios against CPython's mmap (docs/performance.md).
bench: develop
	$(PY) benches/bench.py

# The core's own hot paths (criterion), without Python.
bench-rust:
	cargo bench -p mmapfile --bench core

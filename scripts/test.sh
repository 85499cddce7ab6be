#!/usr/bin/env bash
# One command for a fresh machine: create .venv, install the core + test tools + slicer-core, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" slicer-core
.venv/bin/python -m ruff check MultimodalKneeRegistration Testing
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"

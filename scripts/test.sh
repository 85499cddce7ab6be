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
# One worker process per core (pytest-xdist), each test file on one worker so its module fixtures are
# built once: the suite used 1.2 of 2 cores in one process (18 min in CI, over its 15-min budget).
# Add -n 0 to run in one process.
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile --durations=15 "$@"

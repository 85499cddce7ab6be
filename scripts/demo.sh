#!/usr/bin/env bash
# One command on a fresh machine: make .venv (if absent), install this package into it, run the demo.
#   scripts/demo.sh [OUTPUT_DIR]      (default: demo-output at the repository root)
# Needs python3 (>= 3.9) with the venv module; pip fetches SimpleITK and numpy the first time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
OUTPUT_DIR="${1:-$ROOT/demo-output}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "installing multimodal-knee-registration into $VENV"
# Editable, as scripts/test.sh installs it into the same .venv: a plain install here left a copy of
# the code that later commands ran instead of the working tree, until the tests reinstalled it.
"$VENV/bin/python" -m pip install --quiet -e "$ROOT"

echo "running the demo (about a minute)"
"$VENV/bin/python" -m MultimodalKneeRegistrationLib demo --output-dir "$OUTPUT_DIR"
echo
echo "outputs are in $OUTPUT_DIR:"
echo "  inputs/fixed_microct.nrrd, inputs/moving_mri.nrrd  the synthetic pair (load them in 3D Slicer)"
echo "  inputs/true_transform.tfm                          the true fixed -> moving transform"
echo "  transform.tfm, registered_moving.nrrd               the registration result"
echo "  qc.png, report.json                                 the QC picture and the full report"
echo
echo "to register your own images with the same installation:"
echo "  $VENV/bin/knee-register register FIXED MOVING --output-dir OUT      (or: source $VENV/bin/activate; knee-register ...)"
echo "  $VENV/bin/knee-register --help"
echo "to look at the result in 3D Slicer: see 'Load the results in 3D Slicer' in README.md"

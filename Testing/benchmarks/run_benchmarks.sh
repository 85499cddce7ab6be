#!/usr/bin/env bash
# The one command: build the benchmark environment, then run the benchmark.
#   Testing/benchmarks/run_benchmarks.sh --quick    # ~10 min smoke run -> results/RESULTS_quick.md
#   Testing/benchmarks/run_benchmarks.sh --full     # ~60 min on 2 cores -> results/RESULTS.md + PNGs
# Other options go to run_benchmarks.py (--brainsfit PATH, --data DIR, --sections ..., --help).
# The environment is Testing/benchmarks/.venv (git-ignored): a venv that sees the system's packages,
# with our package installed from the working tree plus the peers from PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${MKR_BENCH_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "antspyx>=0.5" "itk-elastix>=0.20" "matplotlib>=3.5" "psutil>=5.9" "SimpleITK>=2.2"

exec "$venv/bin/python" "$here/run_benchmarks.py" "$@"

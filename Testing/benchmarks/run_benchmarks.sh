#!/usr/bin/env bash
# The one command: build the benchmark environment, then run the benchmark.
#   Testing/benchmarks/run_benchmarks.sh --quick    # ~10 min smoke run -> results/RESULTS_quick.md
#   Testing/benchmarks/run_benchmarks.sh --full     # ~60 min on 2 cores -> results/RESULTS.md + PNGs
# Other options go to run_benchmarks.py (--brainsfit PATH, --data DIR, --sections ..., --help).
# The environment (Testing/benchmarks/.venv) is built by bench_env.sh.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench_env.sh"
exec "$venv/bin/python" "$here/run_benchmarks.py" "$@"

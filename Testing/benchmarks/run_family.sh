#!/usr/bin/env bash
# The case-family benchmark in one command (issue 15): build the benchmark environment, then run
#   Testing/benchmarks/run_family.sh [--cases N] [--tools ours,brainsfit,elastix,ants] [--seed S] [--jobs J]
# -> results/FAMILY.md, results/raw_family.json and PNGs. Other options: family.py --help (--merge,
# --resume, --only, --timeout, --save-baseline, --report-only, ...). Cases are cached in
# Testing/benchmarks/.family_cache (git-ignored) by spec hash.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench_env.sh"
exec "$venv/bin/python" "$here/family.py" "$@"

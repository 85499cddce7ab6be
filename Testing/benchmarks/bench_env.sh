# Sourced by run_benchmarks.sh and run_family.sh: build (once) and refresh the benchmark environment.
# The environment is Testing/benchmarks/.venv (git-ignored; $MKR_BENCH_VENV overrides): a venv that sees
# the system's packages, with our package installed from the working tree plus the peers from PyPI.
# Sets $here, $repo and $venv for the calling script.
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

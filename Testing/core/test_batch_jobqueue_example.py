"""The SLURM/PBS example (scripts/dask_jobqueue_example.py): its arguments, the manifest check before
any node is asked for, and the job script dask-jobqueue would submit. Nothing is submitted: no SLURM
or PBS is needed, and whether the jobs start on a real cluster is not tested here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from batch_test_helpers import batch_environment, write_manifest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dask_jobqueue_example.py"


def run_example(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, encoding="utf-8",
                          timeout=120, env=batch_environment())


@pytest.fixture
def manifest(tmp_path):
    for name in ("ct.nrrd", "mr.nrrd"):
        (tmp_path / name).write_bytes(b"placeholder")
    return write_manifest(tmp_path / "cohort.csv", [{"id": "k1", "fixed": "ct.nrrd", "moving": "mr.nrrd"}])


@pytest.mark.parametrize("system, expected", [
    ("slurm", ["#SBATCH -p compute", "#SBATCH -A lab42", "#SBATCH --cpus-per-task=32", "#SBATCH -t 02:00:00"]),
    ("pbs", ["#PBS -q compute", "#PBS -A lab42", "#PBS -l select=1:ncpus=32:mem=128GB",
             "#PBS -l walltime=02:00:00"]),
])
def test_the_job_script_asks_for_whole_nodes_and_one_thread_per_pair(manifest, tmp_path, system, expected):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (the dask-jobqueue extra)")
    done = run_example(manifest, "--output-dir", tmp_path / "out", "--system", system, "--cores-per-node", "32",
                       "--memory-per-node", "128GB", "--walltime", "02:00:00", "--queue", "compute",
                       "--account", "lab42", "--prologue", "source /opt/knee/.venv/bin/activate",
                       "--print-job-script")
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for line in expected + ["source /opt/knee/.venv/bin/activate"]:
        assert line in script.splitlines(), (line, script)
    assert "--nworkers 16" in script and "--nthreads 1" in script
    assert not (tmp_path / "out").exists()


def test_a_bad_manifest_stops_before_any_cluster_is_built(tmp_path):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (the dask-jobqueue extra)")
    bad = write_manifest(tmp_path / "cohort.csv", [{"id": "k1", "fixed": "nowhere.nrrd", "moving": "x.nrrd"}])
    done = run_example(bad, "--output-dir", tmp_path / "out", "--system", "slurm", "--print-job-script")
    assert done.returncode == 2 and "nowhere.nrrd' does not exist" in done.stderr
    assert "#SBATCH" not in done.stdout


def test_an_unknown_scheduler_system_is_refused_by_the_argument_parser(manifest, tmp_path):
    done = run_example(manifest, "--output-dir", tmp_path / "out", "--system", "lsf")
    assert done.returncode == 2 and "invalid choice: 'lsf'" in done.stderr

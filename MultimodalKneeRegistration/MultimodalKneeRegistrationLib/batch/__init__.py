"""Cohorts: register every pair of a manifest, on one machine or a Dask cluster, resumably.

Why a package of its own: a cohort run is a different job from one registration (a manifest to
check, pairs to schedule, a killed run to resume, a summary to review), and it is built only on the
stable single-pair interface, ``knee-register register``, run in a fresh process per pair.

Modules, one job each: ``columns`` (manifest columns from the real register parser), ``manifest``
(read and check the CSV), ``checksums`` (inputs' SHA-256), ``resume`` (the per-pair record and the
skip rules), ``pair_run`` (one pair in a child process, moved into place atomically), ``execution``
(local processes or Dask), ``progress``, ``summary`` (summary.csv, counts, exit code), ``html_page``
(index.html) and ``command`` (the ``batch`` sub-command).

Example:
    >>> from MultimodalKneeRegistrationLib.batch import BatchPolicy, LocalExecutor, read_manifest, run_batch
    >>> outcomes = run_batch(read_manifest("cohort.csv"), BatchPolicy("/abs/out"), LocalExecutor(2))
"""

from .command import add_batch_parser, prepare_output_dir, run_batch, run_batch_command
from .execution import DaskExecutor, LocalExecutor, default_jobs
from .manifest import PairJob, read_manifest
from .outcome import PairOutcome
from .pair_run import BatchPolicy, run_pair

__all__ = [
    "BatchPolicy",
    "DaskExecutor",
    "LocalExecutor",
    "PairJob",
    "PairOutcome",
    "add_batch_parser",
    "default_jobs",
    "prepare_output_dir",
    "read_manifest",
    "run_batch",
    "run_batch_command",
    "run_pair",
]

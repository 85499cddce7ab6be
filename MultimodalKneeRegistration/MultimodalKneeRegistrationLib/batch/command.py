"""``knee-register batch MANIFEST.csv --output-dir OUT``: register a cohort, locally or on Dask.

Why here and not in ``cli.py``: the command line only registers this sub-command and calls
``run_batch_command``; everything a batch does lives in this package.

Exit codes: 0 every pair succeeded (ok or skipped); 5 the batch ran but some pair failed or was
refused (see summary.csv); 2 unusable manifest (nothing was run); 3 output folder not writable or
in use by another batch; 130 interrupted (finished pairs stay, the rest runs on the next call).

Example:
    $ knee-register batch cohort.csv --output-dir results --jobs 4
    $ knee-register batch cohort.csv --output-dir /shared/results --dask-scheduler tls://head:8786
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional, Union

from ..errors import OutputError
from ..io.atomic import ensure_writable
from .execution import DaskExecutor, LocalExecutor, default_jobs
from .html_page import write_index_page
from .manifest import PairJob, read_manifest
from .outcome import PairOutcome
from .pair_run import BatchPolicy
from .progress import PairProgress, printable
from .summary import count_outcomes, exit_code, format_counts, write_summary_csv

LOCK_NAME = ".batch.lock"
EPILOG = ("exit codes: 0 every pair succeeded (ok or skipped), 5 some pair failed or was refused (counts on "
          "stderr, details in OUT/summary.csv), 2 unusable manifest (nothing run), 3 output folder not writable "
          "or used by another batch, 130 interrupted (rerun to resume)")


def _count(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def add_batch_parser(commands) -> None:
    """Register the ``batch`` sub-command on ``knee-register``'s sub-parsers."""
    batch = commands.add_parser(
        "batch", help="register every pair of a manifest CSV, on this machine or a Dask cluster (resumable)",
        description="Registers each manifest row (columns id, fixed, moving, and any register option named "
                    "after its flag, e.g. preset, init_mode, initial_transform, segmentation, per_bone) into "
                    "OUT/<id>/ in its own process. Pairs already done with unchanged inputs and options are "
                    "skipped, so a stopped batch resumes when run again.", epilog=EPILOG)
    batch.add_argument("manifest", metavar="MANIFEST.csv", help="one row per pair; relative paths are relative "
                                                                "to the manifest's folder")
    batch.add_argument("--output-dir", required=True, metavar="OUT", help="one folder per pair, summary.csv, "
                                                                          "index.html")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=_count, metavar="N",
                       help=f"pairs at once on this machine (default: half the cores, here {default_jobs()})")
    where.add_argument("--dask-local", type=_count, metavar="N", help="run on a local Dask cluster of N workers")
    where.add_argument("--dask-scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster (tcp://host:8786; tls:// uses the TLS settings "
                            "of the Dask configuration)")
    batch.add_argument("--overwrite-failed", action="store_true",
                       help="run again the pairs whose earlier run failed or was refused (default: report them)")
    batch.add_argument("--overwrite", action="store_true",
                       help="also replace results of other inputs or options, and folders not written by a batch")
    batch.add_argument("--timeout-per-pair", type=_seconds, metavar="S", help="stop a pair after S seconds")
    batch.add_argument("--quiet", action="store_true", help="print errors and the final counts only")
    batch.add_argument("--debug", action="store_true", help="show tracebacks")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a cluster's job end, ``kill``) stops the batch like Ctrl-C: children stopped, summary written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare_output_dir(path: Union[str, Path]):
    """Create OUT, take its lock (one batch per folder at a time) and clear what killed runs left.

    Returns the open lock file (keep it open while the batch runs; None where locks do not exist)."""
    out = ensure_writable(Path(path).expanduser().absolute() / LOCK_NAME, overwrite=True, what="lock file").parent
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(out / LOCK_NAME, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise OutputError(f"another batch is writing into '{out}'",
                          "wait for it to finish, or choose another --output-dir") from None
    for leftover in out.iterdir():  # half-finished pairs of a killed run: the pair runs again
        if leftover.name.startswith(".") and (".partial-" in leftover.name or ".old-" in leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)
    return handle


def run_batch(jobs: List[PairJob], policy: BatchPolicy, executor, progress: Optional[PairProgress] = None,
              manifest_name: str = "") -> List[PairOutcome]:
    """Run ``jobs`` with ``executor``; write summary.csv and index.html (also when interrupted).

    Returns one outcome per job, in manifest order; pairs an interruption kept from running are
    "interrupted". Re-raises KeyboardInterrupt after writing the summary.

    Example:
        >>> outcomes = run_batch(read_manifest("cohort.csv"), BatchPolicy("/abs/out"), LocalExecutor(2))
    """
    progress = progress or PairProgress(len(jobs), quiet=True)
    done = {}

    def on_done(index: int, outcome: PairOutcome) -> None:
        done[index] = outcome
        progress.update(outcome)

    try:
        with _sigterm_interrupts():
            executor.run(jobs, policy, on_done)
    finally:
        progress.close()
        outcomes = [done.get(i) or PairOutcome(job.pair_id, job.folder, "interrupted",
                                               "not finished: the batch was stopped; run it again to resume")
                    for i, job in enumerate(jobs)]
        out = Path(policy.output_dir)
        write_summary_csv(out, outcomes)
        write_index_page(out, outcomes, manifest_name)
    return outcomes


def _executor(args: argparse.Namespace):
    if args.dask_local:
        return DaskExecutor.local(args.dask_local)
    if args.dask_scheduler:
        return DaskExecutor.connect(args.dask_scheduler)
    return LocalExecutor(args.jobs or default_jobs())


def run_batch_command(args: argparse.Namespace) -> int:
    """``knee-register batch``: check the manifest, run the pairs, print the counts; return the exit code."""
    jobs = read_manifest(args.manifest)  # every manifest problem, before any work
    lock = prepare_output_dir(args.output_dir)
    out = Path(args.output_dir).expanduser().absolute()
    policy = BatchPolicy(str(out), args.overwrite_failed, args.overwrite, args.timeout_per_pair)
    try:
        with _executor(args) as executor:
            if not args.quiet:
                print(f"{len(jobs)} pair{'s' if len(jobs) != 1 else ''} from {args.manifest}, on "
                      f"{executor.describe()}, into {out}", file=sys.stderr, flush=True)
            try:
                outcomes = run_batch(jobs, policy, executor, PairProgress(len(jobs), quiet=args.quiet),
                                     Path(args.manifest).name)
            except KeyboardInterrupt:
                outcomes = None
    finally:
        if lock is not None:
            lock.close()
    if outcomes is None:
        sys.stderr.write(f"error: interrupted; finished pairs are kept and {out / 'summary.csv'} lists them. "
                         "Run the same command again to resume\n")
        return 130
    counts = format_counts(count_outcomes(outcomes))
    code = exit_code(outcomes)
    print(f"{counts}\n  summary: {out / 'summary.csv'}\n  page: {out / 'index.html'}", file=sys.stderr, flush=True)
    if code:
        failed = [o for o in outcomes if not o.succeeded]
        first = "; ".join(f"{printable(o.pair_id, 40)}: {printable(o.message, 160)}" for o in failed[:3])
        sys.stderr.write(f"error: {len(failed)} of {len(outcomes)} pairs did not succeed ({first}"
                         f"{'; ...' if len(failed) > 3 else ''}). See the summary; fix the inputs and run again "
                         "(--overwrite-failed retries failed pairs)\n")
    return code

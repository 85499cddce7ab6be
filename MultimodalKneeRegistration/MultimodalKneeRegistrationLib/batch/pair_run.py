"""One pair, start to finish: checksums, the resume decision, ``register`` in a fresh process, and
the atomic move of its folder into place. The pair's settings (checked with the manifest) go into its
folder as a file the process reads (``--settings-from``), so it runs exactly what was checked.

Why a fresh ``python -m MultimodalKneeRegistrationLib register`` process per pair: a crash, a leak or
an out-of-memory kill ends one pair, not the batch; the child's own peak memory and CPU time are
measured apart from the batch's; and the same stable command runs locally and on a Dask worker, so
both give the same bytes. The child writes into ``OUT/.<folder>.partial-XXXX``; only a finished run
is renamed to ``OUT/<folder>``, so a killed batch never leaves a half-written pair a rerun would trust.

``run_pair`` is the unit of work for every executor: a plain function of picklable arguments that
returns a ``PairOutcome`` and never raises for a pair's own failure.

Example:
    >>> outcome = run_pair(job, BatchPolicy("out"))
    >>> outcome.status, outcome.peak_rss_mb
    ('ok', 412.5)
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

from ..io.atomic import write_json_atomic
from .checksums import input_digest
from .manifest import PairJob
from .outcome import STATUS_OF_EXIT, PairOutcome, linkable_files, read_json, report_figures
from .resume import RECORD_NAME, build_record, decide, recorded_outcome

LOG_NAME = "batch_log.txt"
#: Seconds a child gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
#: The folder holding the MultimodalKneeRegistrationLib package: children import the same code.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BatchPolicy:
    """How every pair is run: the output folder, what may be replaced, and a time limit per pair."""

    output_dir: str
    overwrite_failed: bool = False
    overwrite: bool = False
    timeout_s: Optional[float] = None


@dataclass(frozen=True)
class ChildResult:
    """How the ``register`` process ended: exit code (negative: killed by that signal) and resources
    (CPU seconds from ``wait4``; peak RSS polled from ``/proc``, so a peak in the last 0.25 s is missed)."""

    exit_code: int
    seconds: float
    cpu_s: Optional[float]
    peak_rss_mb: Optional[float]
    stopped: bool = False
    timed_out: bool = False


def _environment() -> dict:
    path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONIOENCODING="utf-8")


def _reap(process: subprocess.Popen):
    """(exit code, rusage) if the child has ended, else None; rusage only where ``os.wait4`` exists."""
    if not hasattr(os, "wait4"):
        code = process.poll()
        return None if code is None else (code, None)
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return process.returncode, usage


def _peak_rss_kb(pid: int) -> int:
    """The process's own high-water RSS (``VmHWM``, Linux), 0 where unknown. Not ``wait4``'s ``ru_maxrss``:
    Linux seeds it at exec with the spawning process's RSS, which would charge the batch to every pair."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(argv: List[str], log_path: Path, should_stop: Callable[[], bool],
              timeout_s: Optional[float] = None) -> ChildResult:
    """Run ``knee-register ARGV`` with its output in ``log_path``; stop it (SIGTERM, then SIGKILL) when
    ``should_stop()`` turns true or after ``timeout_s``."""
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "MultimodalKneeRegistrationLib", *argv],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=_environment())
    stop_sent, stopped, timed_out, peak_kb = None, False, False, 0
    while True:
        peak_kb = max(peak_kb, _peak_rss_kb(process.pid))  # polled: gone once the child has exited
        ended = _reap(process)
        if ended is not None:
            break
        now = time.monotonic()
        if stop_sent is None and (should_stop() or (timeout_s and now - started > timeout_s)):
            stopped = should_stop()
            timed_out = not stopped
            process.terminate()
            stop_sent = now
        elif stop_sent is not None and now - stop_sent > STOP_GRACE_S:
            process.kill()
        time.sleep(0.1 if now - started < 3 else 0.25)
    code, usage = ended
    cpu = usage.ru_utime + usage.ru_stime if usage else None
    return ChildResult(code, time.monotonic() - started, cpu, peak_kb / 1024.0 if peak_kb else None, stopped,
                       timed_out)


def error_line(log_path: Path) -> str:
    """The child's last ``error: ...`` line (its one-paragraph message), without the prefix."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 65536))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    found = [line[len("error: "):].strip() for line in lines if line.startswith("error: ")]
    return found[-1] if found else ""


def _failure_text(child: ChildResult, log_path: Path, timeout_s: Optional[float]) -> str:
    if child.timed_out:
        return f"stopped after {timeout_s:g} s (--timeout-per-pair)"
    message = error_line(log_path)
    if message:
        return message
    if child.exit_code < 0:
        name = signal.Signals(-child.exit_code).name if -child.exit_code in signal.valid_signals() else "a signal"
        hint = " (out of memory?)" if child.exit_code == -signal.SIGKILL else ""
        return f"the registration process was killed by {name}{hint}; see {LOG_NAME}"
    return f"the registration process ended with exit code {child.exit_code}; see {LOG_NAME}"


def _outcome_of(job: PairJob, child: ChildResult, folder: Path, timeout_s: Optional[float]) -> PairOutcome:
    status = STATUS_OF_EXIT.get(child.exit_code, "failed-other")
    if child.stopped and status != "ok":
        status = "interrupted"
    elif child.timed_out:
        status = "failed-other"
    figures = report_figures(read_json(folder / "report.json"))
    message = "; ".join(figures["warnings"]) if status == "ok" else _failure_text(child, folder / LOG_NAME,
                                                                                   timeout_s)
    peak = child.peak_rss_mb if child.peak_rss_mb is not None else figures["peak_rss_mb"]
    return PairOutcome(job.pair_id, job.folder, status, message, round(child.seconds, 2),
                       None if child.cpu_s is None else round(child.cpu_s, 2),
                       None if peak is None else round(peak, 1), figures["confidence"],
                       figures["metric_after"], (folder / "qc.png").is_file(), linkable_files(folder))


def _retarget(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _retarget(v, old, new) for k, v in value.items()}
    return [_retarget(v, old, new) for v in value] if isinstance(value, list) else value


def retarget_report(partial: Path, target: Path) -> None:
    """Make the paths in ``report.json`` (outputs, command) name the folder the pair is moved to."""
    report = read_json(partial / "report.json")
    if report is not None:
        write_json_atomic(_retarget(report, str(partial), str(target)), partial / "report.json", overwrite=True)


def place(partial: Path, target: Path) -> None:
    """Move a finished pair folder to ``target``, replacing an older one (moved aside first, then deleted)."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}") if target.exists() else None
    if old is not None:
        os.rename(target, old)
    os.rename(partial, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _new_partial(output_dir: Path, folder: str) -> Path:
    """A fresh ``.<folder>.partial-XXXXXXXX`` folder (made with ``mkdir``, so the umask applies as for the
    user's own folders; ``mkdtemp`` would make it private to the user)."""
    while True:
        path = output_dir / f".{folder}.partial-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def run_pair(job: PairJob, policy: BatchPolicy, should_stop: Optional[Callable[[], bool]] = None) -> PairOutcome:
    """Register one pair unless its earlier result can stand; never raises for the pair's own failure."""
    target = Path(policy.output_dir) / job.folder
    try:
        digests = {name: input_digest(path) for name, path in job.inputs}
    except OSError as error:
        return PairOutcome(job.pair_id, job.folder, "failed-input",
                           f"cannot read input '{error.filename}' ({error.strerror or error})")
    decision = decide(job, target, digests, policy.overwrite_failed, policy.overwrite)
    if decision.action == "skip":
        return recorded_outcome(job, target, "skipped")
    if decision.action == "keep":
        return recorded_outcome(job, target, note=decision.reason)
    if decision.action == "conflict":
        return PairOutcome(job.pair_id, job.folder, "failed-other", decision.reason)
    try:
        partial = _new_partial(Path(policy.output_dir), job.folder)
    except OSError as error:  # on a cluster: this worker cannot see or write the shared output folder
        return PairOutcome(job.pair_id, job.folder, "failed-other", f"cannot write into '{policy.output_dir}' "
                           f"on {platform.node()} ({error.strerror or error})")
    try:
        job.write_settings(partial)
        child = run_child(job.register_argv(partial), partial / LOG_NAME, should_stop or (lambda: False),
                          policy.timeout_s)
        outcome = _outcome_of(job, child, partial, policy.timeout_s)
        outcome.message = outcome.message.replace(str(partial), str(target))
        if outcome.status != "interrupted":
            record = build_record(job, digests, outcome, ["knee-register", *job.register_argv(target)])
            write_json_atomic(record, partial / RECORD_NAME)
            retarget_report(partial, target)
            place(partial, target)
        return outcome
    finally:
        shutil.rmtree(partial, ignore_errors=True)

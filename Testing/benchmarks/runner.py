"""Parent side: start a worker per job, enforce its time limit, and collect its result.

Why: peak RSS is only meaningful per process, so every tool runs in a fresh worker that reports its
own high-water mark (see ``probe.py`` for why not ``wait4``'s ``ru_maxrss``). A worker past its
limit is killed with its whole process group and recorded as "timeout"; one that dies is recorded
as "crashed" with the tail of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

WORKER = Path(__file__).resolve().parent / "worker.py"


def _kill_group(pid: int, fired: threading.Event) -> None:
    fired.set()
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_job(job: Dict[str, Any], timeout_s: float, threads: int, scratch: Path) -> Dict[str, Any]:
    """Run ``job`` in a worker; return its result plus status, wall seconds and peak RSS (MB)."""
    job = dict(job, threads=threads)
    with tempfile.TemporaryDirectory(prefix="job_", dir=scratch) as tmp:
        job_file, result_file, log_file = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "log.txt")
        job_file.write_text(json.dumps(job))
        env = dict(os.environ)
        for name in (
            "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
        ):
            env[name] = str(threads)
        env["TMPDIR"] = tmp
        load_before = os.getloadavg()[0]
        began = time.perf_counter()
        with open(log_file, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), str(job_file), str(result_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=str(WORKER.parent),
            )
            fired = threading.Event()
            timer = threading.Timer(timeout_s, _kill_group, (process.pid, fired))
            timer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                timer.cancel()
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        wall = time.perf_counter() - began
        outcome: Dict[str, Any] = {
            "wall_s": round(wall, 2),
            "exit_code": process.returncode,
            "peak_rss_mb": None,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # CPU time is per process, unlike ru_maxrss
            "load_before": round(load_before, 2),
        }
        if fired.is_set():
            outcome.update(status="timeout", error=f"no answer within {timeout_s:.0f} s")
        elif result_file.is_file():
            result = json.loads(result_file.read_text())
            outcome.update(result)
            outcome["peak_rss_mb"] = result.get("peak_mb")
            outcome["status"] = "ran" if result.get("ok") else "error"
        else:
            outcome.update(status="crashed", error=f"worker exited {process.returncode} without a result")
        if outcome["status"] != "ran":
            outcome["log_tail"] = log_file.read_text(errors="replace")[-1500:]
    return outcome


def score(outcome: Dict[str, Any], truth: np.ndarray, points: np.ndarray, success_mm: float) -> Dict[str, Any]:
    """Add mean/max error (mm) to the known answer and the verdict: ok, wrong, rejected, ... ."""
    from rigid import distances

    scored = dict(outcome)
    if outcome.get("matrix") is not None:
        errors = distances(np.array(outcome["matrix"]), truth, points)
        scored["mean_mm"], scored["max_mm"] = float(errors.mean()), float(errors.max())
    if outcome["status"] == "ran":
        rejected = bool(outcome.get("extra", {}).get("rejected"))
        good = scored["mean_mm"] <= success_mm
        scored["verdict"] = "rejected" if rejected else ("ok" if good else "wrong")
    else:
        scored["verdict"] = outcome["status"]
    scored["success"] = scored["verdict"] == "ok"
    marks = outcome.get("marks", {})
    if "imported" in marks:
        scored["library_rss_mb"] = marks["imported"]["rss_mb"]
    return scored


def run_many(
    jobs: List[Dict[str, Any]],
    timeout_s: float,
    threads: int,
    scratch: Path,
    parallel: int = 1,
    on_done: Optional[Callable[[Dict[str, Any], Dict[str, Any]], None]] = None,
) -> List[Dict[str, Any]]:
    """Run ``jobs`` ``parallel`` at a time (use 1 whenever wall times will be compared)."""

    def one(job):
        outcome = run_job(job, timeout_s, threads, scratch)
        if on_done is not None:
            on_done(job, outcome)
        return outcome

    if parallel <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, jobs))

"""Time and memory marks taken inside a worker process.

Why: the peak RSS of a process includes the interpreter and the tool's libraries, which differ a lot
between tools (ANTsPy and ITK's Python wrapping load hundreds of MB). Each tool marks when its
libraries are imported, when its inputs are in memory and when it is done, so the report can
separate "memory of the run" from "memory of the libraries".
The peak is the kernel's high-water mark of this process's own address space (``VmHWM``), not
``ru_maxrss``: Linux seeds a child's ``ru_maxrss`` at exec with the RSS of the process that spawned
it, so the parent's loaded images would be counted against every worker.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Dict

import psutil


def peak_rss_mb() -> float:
    """High-water RSS of this process's address space (MB); ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    """Largest ru_maxrss of the processes this one waited for (e.g. a BRAINSFit executable); an upper
    bound, as it starts from this process's own RSS at the time it spawned them."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class Probe:
    """Records (seconds since start, current RSS MB, peak RSS MB) at named moments."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._process = psutil.Process()
        self.marks: Dict[str, Dict[str, float]] = {}
        self.mark("start")

    def mark(self, name: str) -> float:
        now = time.perf_counter() - self._start
        self.marks[name] = {
            "t": round(now, 4),
            "rss_mb": round(self._process.memory_info().rss / 2**20, 1),
            "peak_mb": round(peak_rss_mb(), 1),
        }
        return now

    def peak_mb(self) -> float:
        """Peak RSS so far of this process and of any child it waited for."""
        return round(max(peak_rss_mb(), children_peak_rss_mb() if self.marks.get("spawned") else 0.0), 1)

    def seconds_between(self, first: str, last: str) -> float:
        return self.marks[last]["t"] - self.marks[first]["t"]

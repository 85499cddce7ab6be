"""A progress bar over pairs on stderr: one redrawn line on a terminal, one line per pair in a log.

Why its own bar and not ``cli.Progress``: a batch advances by whole pairs that finish in any order,
and a cluster job's log (not a terminal) needs a line per pair that can be searched afterwards.
Pair ids come from a manifest, so control characters are shown as ``?`` (an id must not be able to
move the cursor or recolour the terminal).

Example:
    >>> bar = PairProgress(total=10)
    >>> bar.update(PairOutcome("knee01", "knee01", "ok", seconds=40.0))
    [1/10] knee01: ok (40 s)
"""

from __future__ import annotations

import time
import unicodedata
from typing import Dict, Optional, TextIO

from ..terminal import TerminalLine
from .outcome import STATUSES, PairOutcome


def printable(text: str, limit: int = 60) -> str:
    """``text`` without control characters (each shown as ``?``), cut to ``limit`` characters."""
    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


class PairProgress:
    """Counts finished pairs by status and shows them; silent when ``quiet``."""

    def __init__(self, total: int, stream: Optional[TextIO] = None, quiet: bool = False) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.terminal = TerminalLine(stream, width=140)
        self.counts: Dict[str, int] = {}
        self.started = time.monotonic()

    def update(self, outcome: PairOutcome) -> None:
        self.done += 1
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        if self.quiet:
            return
        seconds = f" ({outcome.seconds:.0f} s)" if outcome.seconds is not None and outcome.status != "skipped" else ""
        if self.terminal.tty:
            counts = ", ".join(f"{self.counts[s]} {s}" for s in STATUSES if self.counts.get(s))
            self.terminal.draw(self.done / max(self.total, 1),
                               f"{self.done}/{self.total} {time.monotonic() - self.started:5.0f}s  {counts}  "
                               f"last: {printable(outcome.pair_id, 30)}")
        else:
            detail = f": {printable(outcome.message, 200)}" if not outcome.succeeded and outcome.message else ""
            self.terminal.line(f"[{self.done}/{self.total}] {printable(outcome.pair_id)}: {outcome.status}"
                               f"{seconds}{detail}")

    def close(self) -> None:
        self.terminal.close()

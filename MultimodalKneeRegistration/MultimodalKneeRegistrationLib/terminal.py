"""One status line on stderr: a bar redrawn in place on a terminal, whole lines in a log file.

Why: both progress displays (one run's steps, a batch's pairs) must leave searchable lines in a
cluster job's log but not flood a terminal; this holds what they share.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO


class TerminalLine:
    """Writes either a redrawn bar (``draw``, on a TTY) or plain lines (``line``, elsewhere)."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 120) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.active = False

    def draw(self, fraction: float, text: str) -> None:
        """Redraw the bar ``fraction`` full, followed by ``text``, cut to the line's width."""
        filled = int(round(30 * min(max(fraction, 0.0), 1.0)))
        line = f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}"
        self.stream.write(line[: self.width - 1].ljust(self.width))
        self.stream.flush()
        self.active = True

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a redrawn bar with a newline, so that what follows starts on its own line."""
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False

"""One progress object for a whole run: sub-ranges per step, throttled reports, cancellation.

Why: every step (preparation, search, engine, checks, per-bone, outputs) reports progress and must
stop when the user cancels; the command line draws a bar and the Slicer panel keeps its Cancel
button live from the same reports. One object carries the callback, the cancel flag and the
bookkeeping (monotone fractions, at most one report per ``min_interval_s``) for all of them.

Example:
    >>> seen = []
    >>> progress = Progress(lambda fraction, message: seen.append((fraction, message)), min_interval_s=0)
    >>> search = progress.sub(0.1, 0.3)
    >>> search.report(0.5, "scored 500 poses")
    >>> seen
    [(0.2, 'scored 500 poses')]
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Union

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]


class _Shared:
    """State every sub-range of one run shares."""

    def __init__(self, callback, should_cancel, min_interval_s, clock) -> None:
        self.callback: Optional[ProgressCallback] = callback
        self.should_cancel: Optional[CancelCheck] = should_cancel
        self.min_interval_s = float(min_interval_s)
        self.clock = clock
        self.requested = False
        self.fraction = 0.0
        self.last_time: Optional[float] = None
        self.message = ""


class Progress:
    """Progress over [0, 1] for a run or one of its steps; see the module docstring.

    ``callback(fraction, message)`` receives whole-run fractions that never go back;
    ``should_cancel()`` (optional) is asked by ``cancelled`` and ``check_cancel``.
    """

    def __init__(
        self,
        callback: Optional[ProgressCallback] = None,
        should_cancel: Optional[CancelCheck] = None,
        *,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = _Shared(callback, should_cancel, min_interval_s, clock)
        self._start, self._end = 0.0, 1.0

    @classmethod
    def wrap(cls, progress: Union[Progress, ProgressCallback, None], should_cancel: Optional[CancelCheck] = None
             ) -> Progress:
        """``progress`` itself when it is a ``Progress``, else a new one around a plain callback."""
        if isinstance(progress, Progress):
            if should_cancel is not None and progress._shared.should_cancel is None:
                progress._shared.should_cancel = should_cancel
            return progress
        return cls(progress, should_cancel)

    def sub(self, start: float, end: float) -> Progress:
        """The part [start, end] of this range (fractions of it) as a progress of its own."""
        child = Progress.__new__(Progress)
        child._shared = self._shared
        span = self._end - self._start
        child._start = self._start + span * _clip(start)
        child._end = self._start + span * _clip(end)
        return child

    def split(self, count: int) -> list:
        """``count`` equal consecutive sub-ranges (for loops over rounds, bones, pairs)."""
        return [self.sub(k / count, (k + 1) / count) for k in range(max(1, count))]

    @property
    def fraction(self) -> float:
        """The whole run's fraction reported so far."""
        return self._shared.fraction

    def report(self, fraction: float, message: Optional[str] = None, *, force: bool = False) -> None:
        """Report ``fraction`` of this range done; sent on if ``min_interval_s`` passed (or ``force``)."""
        shared = self._shared
        overall = max(shared.fraction, self._start + (self._end - self._start) * _clip(fraction))
        shared.fraction = overall
        if message is not None:
            shared.message = message
        if shared.callback is None:
            return
        now = shared.clock()
        due = shared.last_time is None or now - shared.last_time >= shared.min_interval_s
        if force or due or overall >= 1.0:
            shared.last_time = now
            shared.callback(overall, shared.message)

    def done(self, message: Optional[str] = None) -> None:
        """This range is complete (always sent on)."""
        self.report(1.0, message, force=True)

    def cancel(self) -> None:
        """Ask the run to stop at its next check (the command line's Ctrl-C, the panel's Cancel)."""
        self._shared.requested = True

    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called or ``should_cancel()`` returned true."""
        shared = self._shared
        if not shared.requested and shared.should_cancel is not None and shared.should_cancel():
            shared.requested = True
        return shared.requested

    def check_cancel(self, where: str) -> None:
        """Raise ``CancelledError`` (registration cancelled ``where``) when cancellation was asked for."""
        if self.cancelled:
            raise CancelledError(f"registration cancelled {where}", "nothing was written")


def _clip(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)

"""The panel's progress callback and cancel check, which keep Slicer responsive during a run (pure Python).

Why: a registration runs in Slicer's main thread, so the window repaints and the Cancel button is
pressed only while Qt processes events. The core reports progress (throttled, ``progress.Progress``)
and asks "cancelled?" often, in the multi-start search too; both calls here process pending events,
so Cancel is seen within about ``intervalS`` wherever the core reports or checks. What stays
blocking is what never calls back: Crop Volume's interpolated crop (``ApplyAndWait``, see
``crop_volume``) and single SimpleITK filter calls (each well under a second on working images).
"""

from __future__ import annotations

import time
from typing import Callable, Optional


class PanelProgress:
    """``progress(fraction, message)`` and ``shouldCancel()`` for the logic, plus ``cancel()`` for the button.

    ``show`` updates the panel (progress bar, status text); ``processEvents`` is
    ``slicer.app.processEvents``. Events are processed on every progress report and, at most every
    ``intervalS`` seconds, on cancel checks.

    Example:
        >>> panel = PanelProgress(lambda f, m: None, processEvents=lambda: None)
        >>> panel.cancel(); panel.shouldCancel()
        True
    """

    def __init__(self, show: Callable[[float, str], None], processEvents: Optional[Callable[[], None]],
                 *, intervalS: float = 0.05, clock: Callable[[], float] = time.monotonic) -> None:
        self.show = show
        self.processEvents = processEvents
        self.intervalS = float(intervalS)
        self.clock = clock
        self.cancelRequested = False
        self._lastPump: Optional[float] = None

    def progress(self, fraction: float, message: str) -> None:
        """Show the run's progress, then let Qt repaint and deliver clicks (Cancel)."""
        self.show(fraction, message)
        self.pump(force=True)

    def shouldCancel(self) -> bool:
        """True once Cancel was pressed; processes pending events first (throttled)."""
        self.pump()
        return self.cancelRequested

    def cancel(self) -> None:
        """What the Cancel button calls: the run stops at its next cancel check."""
        self.cancelRequested = True

    def pump(self, force: bool = False) -> None:
        """Process pending events if ``intervalS`` passed since the last time (or ``force``)."""
        if self.processEvents is None:
            return
        now = self.clock()
        if force or self._lastPump is None or now - self._lastPump >= self.intervalS:
            self._lastPump = now
            self.processEvents()

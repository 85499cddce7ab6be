"""The one place that runs a Slicer CLI module (BRAINSFit): it checks the outcome and cleans up.

Why: ``slicer.cli.runSync`` does not raise when the CLI fails, and the Extension Wizard template
deletes the CLI node without looking at its status, so a failed BRAINSFit passes silently and the
user sees an old or identity transform. Here every run is checked with
``cliNode.GetStatus() & cliNode.ErrorsMask``, a failure raises ``EngineError`` with the
end of ``GetErrorText()``, a cancelled run raises ``CancelledError``, and the CLI node is removed
in ``finally``, whatever happened (the caller removes its own nodes).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

from MultimodalKneeRegistrationLib.engines.external_process import last_words
from MultimodalKneeRegistrationLib.errors import CancelledError, EngineError
from MultimodalKneeRegistrationLib.progress import ProgressCallback

from .temporary_nodes import removeNodes


def _defaultRun():
    import slicer

    return slicer.cli.run


def _defaultProcessEvents() -> Optional[Callable[[], None]]:
    try:
        import slicer
    except ImportError:
        return None
    app = getattr(slicer, "app", None)
    return app.processEvents if app is not None else None


def _waitWhileBusy(cliNode, title: str, pump, progress, shouldCancel, pollSeconds: float) -> bool:
    """Keep the application responsive and report progress while ``cliNode`` runs; ask it to cancel
    once ``shouldCancel()`` turns true. Returns whether a cancel was requested."""
    cancelRequested = False
    while cliNode.IsBusy():
        pump()
        if shouldCancel is not None and not cancelRequested and shouldCancel():
            cliNode.Cancel()
            cancelRequested = True
        if progress is not None:
            progress(min(1.0, max(0.0, cliNode.GetProgress() / 100.0)), f"{title} running")
        time.sleep(pollSeconds)
    return cancelRequested


def _raiseUnlessCompleted(cliNode, title: str, cancelRequested: bool) -> None:
    """``CancelledError`` for a cancelled run, ``EngineError`` with the CLI's own error
    text for a failed one, nothing for a completed one."""
    status = cliNode.GetStatus()
    if status == cliNode.Cancelled or (cancelRequested and status != cliNode.Completed):
        raise CancelledError(f"{title} was cancelled", "nothing was written")
    if status & cliNode.ErrorsMask:
        raise EngineError(
            f"{title} failed ({cliNode.GetStatusString()}): {last_words(cliNode.GetErrorText() or '')}",
            "the full message is in the application's error log; try the SimpleITK engine or another preset",
        )
    if status != cliNode.Completed:
        raise EngineError(
            f"{title} ended in state '{cliNode.GetStatusString()}'",
            "run it again; if it persists, report it with the error log",
        )


def runCliModule(
    module,
    parameters: Dict[str, Any],
    *,
    scene,
    title: str = "CLI module",
    progress: Optional[ProgressCallback] = None,
    shouldCancel: Optional[Callable[[], bool]] = None,
    runFunction: Optional[Callable[..., Any]] = None,
    processEvents: Optional[Callable[[], None]] = None,
    pollSeconds: float = 0.1,
) -> str:
    """Run ``module`` with ``parameters``; return its standard output or raise. Always cleans up.

    The CLI runs in the background while this function keeps the application responsive
    (``processEvents``), reports ``progress`` and asks ``cliNode.Cancel()`` once ``shouldCancel()``
    turns true. ``runFunction`` defaults to ``slicer.cli.run`` (tests pass a fake one, since no
    CLI binary runs outside Slicer).

    Example:
        >>> runCliModule(slicer.modules.brainsfit, params, scene=slicer.mrmlScene,
        ...              title="BRAINSFit")  # doctest: +SKIP
    """
    run = runFunction or _defaultRun()
    pump = processEvents if processEvents is not None else _defaultProcessEvents()
    cliNode = None
    try:
        background = pump is not None
        cliNode = run(module, None, parameters, wait_for_completion=not background, update_display=False)
        if cliNode is None:
            raise EngineError(
                f"{title} could not be started", "check that the module is installed"
            )
        cancelRequested = background and _waitWhileBusy(cliNode, title, pump, progress, shouldCancel, pollSeconds)
        _raiseUnlessCompleted(cliNode, title, cancelRequested)
        if progress is not None:
            progress(1.0, f"{title} finished")
        return cliNode.GetOutputText() or ""
    finally:
        removeNodes(scene, [cliNode])

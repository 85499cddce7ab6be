"""One external program run: live output, progress, cancellation, and a failure that says why.

Why: an external registration (BRAINSFit) can run for minutes; the user must be able to stop it, see
it progress, and, when it fails, read its own last words rather than an exit status. Like
SlicerElastix's runner, the process is one small object's job: started, watched, stopped, checked.
"""

from __future__ import annotations

import re
import subprocess
import threading
from typing import List

from ..errors import CancelledError, EngineError
from ..progress import Progress

#: SlicerExecutionModel programs print their progress as ``<filter-progress>0.42</filter-progress>``.
_PROGRESS = re.compile(r"<filter-progress>\s*([0-9.eE+-]+)\s*</filter-progress>")
_POLL_SECONDS = 0.2


def run_external(command: List[str], title: str, progress: Progress) -> str:
    """Run ``command``; return its output (stdout and stderr), raise when it fails or is cancelled."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace")
    except OSError as error:
        raise EngineError(f"{title} could not be started ({error.strerror or error})",
                                      "check that the program exists and can run on this machine") from None
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        while process.poll() is None:
            if progress.cancelled:
                process.terminate()
                process.wait(timeout=10)
                raise CancelledError(f"{title} was cancelled", "nothing was written")
            progress.report(progress_fraction(lines), f"{title} running")
            reader.join(_POLL_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    output = "".join(lines)
    if process.returncode != 0:
        raise EngineError(
            f"{title} failed (exit status {process.returncode}): {last_words(output)}",
            "check its inputs; rerun with --debug to see its whole output, or use the SimpleITK engine",
        )
    progress.done(f"{title} finished")
    return output


def progress_fraction(lines: List[str]) -> float:
    """The last ``<filter-progress>`` value printed so far (0 when none)."""
    for line in reversed(lines[-50:]):
        match = _PROGRESS.search(line)
        if match:
            return min(max(float(match.group(1)), 0.0), 1.0)
    return 0.0


def last_words(output: str, count: int = 4, limit: int = 600) -> str:
    """The cause in a program's output: from its first error line on, else its last few lines.

    ITK prints the cause last ("Could not create IO object ..."); a command-line parser prints it
    first ("PARSE ERROR: ... does not meet constraint") and a page of usage after it.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip() and "<filter-" not in line]
    errors = [k for k, line in enumerate(lines) if re.search(r"error|exception|what\(\)", line, re.IGNORECASE)]
    chosen = lines[errors[0]:errors[0] + count] if errors else lines[-count:]
    text = " | ".join(chosen)
    return text[:limit] if text else "no message"

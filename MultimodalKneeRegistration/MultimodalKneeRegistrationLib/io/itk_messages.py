"""ITK's own words, made fit for a user: the cause without addresses, and warnings kept quiet.

Why: an ITK exception is a stack of file names, class names and addresses; the user needs its last
line, the cause, inside a sentence that says what to do.
"""

from __future__ import annotations

import re
from typing import Any

import SimpleITK as sitk


def short_cause(error: BaseException) -> str:
    """The last meaningful line of an ITK message, without file names, addresses or class names."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    cause = lines[-1]
    cause = re.sub(r"^.*?(itk|sitk)::ERROR:\s*", "", cause)
    cause = re.sub(r"^.*?ITK ERROR:\s*", "", cause)
    cause = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", cause)
    cause = re.sub(r"^\[\w+\]\s*", "", cause)
    return cause[:160]


class QuietItk:
    """Silence ITK's warnings printed to stderr (we check the conditions ourselves)."""

    def __enter__(self) -> None:
        self._previous = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)

    def __exit__(self, *exc: Any) -> None:
        sitk.ProcessObject.SetGlobalWarningDisplay(self._previous)



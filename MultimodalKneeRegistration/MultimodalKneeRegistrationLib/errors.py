"""Errors a user can meet, each saying what is wrong and what to do.

Why: the forum user's BRAINSFit runs ended in "completed with errors" and an unreadable ITK log.
Every failure path of this package raises one of these instead, so the command line and the Slicer
panel can show one readable paragraph (``str(error)``) and never a traceback.
"""

from __future__ import annotations


class KneeRegistrationError(Exception):
    """Base class: ``what`` went wrong and what the user can ``do`` about it.

    Example:
        >>> raise InputError("fixed image 'a.nrrd' does not exist", "check the path")
    """

    exit_code = 2

    def __init__(self, what: str, do: str = "") -> None:
        self.what = what
        self.do = do
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.what}. {self.do}" if self.do else f"{self.what}."


class InputError(KneeRegistrationError):
    """An input file, folder, image or transform cannot be used as given."""

    exit_code = 2


class OutputError(KneeRegistrationError):
    """An output cannot be written (folder not writable, file exists without --overwrite)."""

    exit_code = 3


class RegistrationFailedError(KneeRegistrationError):
    """The registration ran but its result failed the sanity checks (see the report)."""

    exit_code = 4


class EngineError(KneeRegistrationError):
    """The optimiser program could not run or crashed (BRAINSFit missing, killed, exit status not 0).

    Not a refusal: nothing was judged, so there is no report to look at; the user fixes the tool
    (its path, its installation) or picks another engine.
    """

    exit_code = 6


class CancelledError(KneeRegistrationError):
    """The caller asked to stop; nothing was written."""

    exit_code = 130

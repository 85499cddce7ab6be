"""Progress on stderr: a redrawn bar on a terminal, searchable whole lines in a log file."""

from __future__ import annotations

import io

from MultimodalKneeRegistrationLib.batch.outcome import PairOutcome
from MultimodalKneeRegistrationLib.batch.progress import PairProgress
from MultimodalKneeRegistrationLib.cli_commands import ProgressPrinter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_progress_redraws_one_line_on_a_terminal_and_ends_it():
    stream = Terminal()
    printer = ProgressPrinter(stream=stream)
    printer(0.5, "search: scoring positions (1/2)")
    printer(1.0, "done")
    printer.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[###############...............]  50%" in text and "[" + "#" * 30 + "] 100%" in text


def test_run_progress_in_a_log_writes_a_line_per_tenth_and_per_phase():
    stream = io.StringIO()
    printer = ProgressPrinter(stream=stream)
    for fraction, message in [(0.10, "search: a"), (0.11, "search: b"), (0.12, "Rigid: round 1"), (0.25, "Rigid: 2")]:
        printer(fraction, message)
    printer.close()
    assert stream.getvalue().splitlines() == [" 10% (0 s) search: a", " 12% (0 s) Rigid: round 1",
                                              " 25% (0 s) Rigid: 2"]


def test_pair_progress_shows_counts_on_a_terminal_and_messages_in_a_log():
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = PairProgress(total=2, stream=stream)
        bar.update(PairOutcome("knee\x1b[31m01", "knee01", "ok", seconds=40.0))
        bar.update(PairOutcome("knee02", "knee02", "failed-input", seconds=1.0, message="bad file"))
        bar.close()
    assert "2/2" in terminal.getvalue() and "1 ok, 1 failed-input" in terminal.getvalue()
    assert "\x1b" not in terminal.getvalue() + log.getvalue()
    assert log.getvalue().splitlines() == ["[1/2] knee?[31m01: ok (40 s)", "[2/2] knee02: failed-input (1 s): bad file"]

"""``knee-register``: the command line (register, inspect, list-series, demo, batch).

Why: a registration that "just works" must also work without Slicer, in scripts and on servers,
and fail the way a person can act on: one paragraph saying what is wrong and what to do, an exit
code a script can test, and never a half-written output or a silently overwritten one.

Exit codes: 0 success, 1 unexpected failure (a bug), 2 unusable input, 3 output not writable,
4 result failed its sanity checks, 5 a batch in which some pair did not succeed, 6 the engine could
not run (BRAINSFit missing or crashed), 130 interrupted.

Example:
    $ knee-register register CT.nrrd MR_T2_dicom/ --output-dir out --preset mri-ct
    $ python -m MultimodalKneeRegistrationLib inspect CT.nrrd MR.nrrd
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Optional, Sequence

from .batch import add_batch_parser
from .cli_options import EPILOG, add_register_arguments, add_settings_arguments, settings_from_options
from .errors import CancelledError, KneeRegistrationError
from .settings import RegistrationSettings

log = logging.getLogger("knee-register")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix (the README's promise), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knee-register`` (exposed for documentation and tests)."""
    parser = _Parser(
        prog="knee-register",
        description="MRI <-> CT / micro-CT registration that plans resolution, field of view and sampling "
                    "from the images. Transforms map fixed points to moving points (LPS, ITK convention).",
        epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    register = commands.add_parser("register", help="register MOVING to FIXED and write the results", epilog=EPILOG)
    add_register_arguments(register)
    inspect = commands.add_parser("inspect", help="describe both images and the plan; writes nothing")
    inspect.add_argument("fixed", metavar="FIXED")
    inspect.add_argument("moving", metavar="MOVING")
    add_settings_arguments(inspect)
    series = commands.add_parser("list-series", help="list the DICOM series in a folder")
    series.add_argument("folder", metavar="FOLDER")
    series.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    series.add_argument("--debug", action="store_true", help="show tracebacks")
    demo = commands.add_parser("demo", help="register a synthetic knee pair and show how well it worked")
    demo.add_argument("--output-dir", default="demo-output", metavar="DIR",
                      help="default: ./demo-output (an earlier demo's outputs there are replaced)")
    demo.add_argument("--quiet", action="store_true", help="print errors only")
    demo.add_argument("--debug", action="store_true", help="show tracebacks")
    add_batch_parser(commands)
    return parser


def settings_from_args(args: argparse.Namespace) -> RegistrationSettings:
    """The preset (or ``--settings-from``'s settings) with the flags the user gave applied and recorded."""
    return settings_from_options(vars(args))


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``knee-register`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    from . import cli_commands

    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    level = logging.DEBUG if args.debug else (logging.ERROR if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s" if args.debug else "%(message)s",
                        stream=sys.stderr)
    printer = cli_commands.ProgressPrinter(quiet=args.quiet)
    try:
        return cli_commands.COMMANDS[args.command](args, printer)
    except KeyboardInterrupt:
        printer.close()
        return _fail("interrupted (Ctrl-C) before the outputs were moved into place: nothing was written",
                     CancelledError.exit_code)
    except KneeRegistrationError as error:
        printer.close()
        if args.debug:
            traceback.print_exc()
        return _fail(error.message, error.exit_code)
    except Exception as error:  # a bug: one paragraph, the traceback only on request
        printer.close()
        if args.debug:
            traceback.print_exc()
        cause = " ".join(str(error).split())[:300]
        return _fail(f"unexpected failure ({type(error).__name__}: {cause}). This is a bug: rerun with "
                     "--debug to see the traceback, and report it with the command you ran", 1)

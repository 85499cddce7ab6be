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
import dataclasses
import logging
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from .errors import CancelledError, InputError, KneeRegistrationError
from .io import STREAM_ABOVE_MB
from .outputs.grids import AUTO_RESAMPLE_VOXELS
from .settings import (
    DEFAULT_ENGINE,
    DEFAULT_PRESET,
    ENGINE_NAMES,
    INITIALIZE_MODES,
    PRESETS,
    RegistrationSettings,
    settings_for_preset,
)

log = logging.getLogger("knee-register")
EPILOG = ("exit codes: 0 success, 1 unexpected failure (a bug), 2 unusable input, 3 output not writable or "
          "already there, 4 result failed its sanity checks, 5 a batch with pairs that did not succeed, "
          "6 the engine could not run (BRAINSFit missing or crashed), 130 interrupted")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix (the README's promise), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _sampling(text: str) -> float:
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction like 0.05 or a percentage like 5%") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _engine_name(text: str) -> str:
    """``--engine brainsfit`` is BRAINSFit: the name in any case (an unknown one is left for ``choices``)."""
    from .engines import engine_name
    from .errors import InputError

    try:
        return engine_name(text)
    except InputError:
        return text


def _spacing(text: str):
    from .io.microct import parse_spacing

    try:
        return parse_spacing(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registration settings (defaults come from the preset)")
    group.add_argument("--preset", choices=sorted(PRESETS),
                       help=f"starting settings (default: {DEFAULT_PRESET}, chosen from the images: mri-ct, or "
                            "mri-microct-knee when one image is a fine, small scan inside the other)")
    group.add_argument("--settings-from", metavar="REPORT",
                       help="rerun with the settings an earlier run used (its report.json, overrides included); "
                            "other options given here change them")
    group.add_argument("--initial-transform", metavar="T", help="ITK transform file, fixed -> moving (LPS)")
    group.add_argument("--series-uid", metavar="UID", help="DICOM series to load from folders with several")
    group.add_argument("--fixed-series-uid", metavar="UID", help="series UID for the fixed folder only")
    group.add_argument("--moving-series-uid", metavar="UID", help="series UID for the moving folder only")
    group.add_argument("--spacing", type=_spacing, metavar="MM", help="voxel size of TIFF/BMP slice folders "
                       "without a SkyScan *_rec.log or TIFF tags: 0.02 or 0.02,0.02,0.04 (mm)")
    group.add_argument("--fixed-spacing", type=_spacing, metavar="MM", help="voxel size of the fixed slice folder")
    group.add_argument("--stream-above-mb", type=float, default=STREAM_ABOVE_MB, metavar="MB",
                       help="read inputs larger than this in slabs, block-averaged as they arrive, never whole "
                            "(default: %(default)g; 0 streams every input that can be)")
    group.add_argument("--moving-spacing", type=_spacing, metavar="MM", help="voxel size of the moving slice folder")
    group.add_argument("--stages", metavar="LIST", help="transform stages, e.g. Rigid or Rigid,Affine")
    group.add_argument("--init-mode", choices=INITIALIZE_MODES, help="initialisation (default: search)")
    group.add_argument("--edge-correlation", choices=("auto", "on", "off"), default="auto",
                       help="also find the small image anywhere in the large one by edge correlation "
                            "(auto: when its field of view is under 1/8 of the other's, e.g. a micro-CT)")
    group.add_argument("--spacing-multiplier", type=float, metavar="X",
                       help="Crop Volume spacing multiplier for the fine image (default: planned)")
    group.add_argument("--sampling-percentage", type=_sampling, metavar="P",
                       help="fraction of working voxels the metric samples: 0.05 or 5%% (default: planned)")
    group.add_argument("--iterations", type=_positive_int, metavar="N", help="optimizer iterations per level")
    group.add_argument("--seed", type=int, metavar="N", help="random seed of the metric sampling")
    group.add_argument(
        "--threads", type=_positive_int, metavar="N",
        help="use N threads everywhere: faster on many cores, but repeated runs may differ slightly "
        "(default: a fixed thread plan that gives bit-identical results on any machine)",
    )
    group.add_argument("--engine", type=_engine_name, choices=ENGINE_NAMES, default=DEFAULT_ENGINE,
                       help="the optimiser after the search, any case (default: %(default)s)")
    group.add_argument("--brainsfit", metavar="PATH",
                       help="BRAINSFit executable for --engine BRAINSFit (default: $BRAINSFIT, PATH, a Slicer install)")
    parser.add_argument("--quiet", action="store_true", help="print errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug messages")


def _register_parser(commands) -> None:
    register = commands.add_parser("register", help="register MOVING to FIXED and write the results", epilog=EPILOG)
    register.add_argument("fixed", metavar="FIXED", help="image file or DICOM folder (the reference grid)")
    register.add_argument("moving", metavar="MOVING", help="image file or DICOM folder (the image to align)")
    register.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the outputs")
    register.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
    register.add_argument("--no-resampled", action="store_true", help="do not write registered_moving.nrrd")
    register.add_argument("--resample-spacing", type=float, metavar="MM",
                          help="write registered_moving.nrrd on a copy of the fixed grid with at least this "
                               f"spacing (automatic above {AUTO_RESAMPLE_VOXELS // 1_000_000} M fixed voxels)")
    register.add_argument("--qc-mode", choices=("edges", "checkerboard"), default="edges",
                          help="QC picture style (default: %(default)s)")
    register.add_argument("--no-fail-on-sanity", action="store_true",
                          help="write the transform even when the result fails its sanity checks")
    bones = register.add_argument_group("per-bone registration (knees scanned at different flexion angles)")
    bones.add_argument("--per-bone", action="store_true",
                       help="after the whole-volume registration, register each bone rigidly on its own "
                            "(writes transform_<bone>.tfm per bone and a per_bone section in report.json)")
    bones.add_argument("--segmentation", metavar="FILE",
                       help="bone label map or Slicer .seg.nrrd (default: bones found automatically in the CT)")
    bones.add_argument("--segmentation-on", choices=("fixed", "moving"), default="fixed",
                       help="the image the segmentation was drawn on (default: fixed)")
    bones.add_argument("--expected-bones", type=_positive_int, metavar="N",
                       help="automatic segmentation: split touching bones until N are found (e.g. 3)")
    _settings_options(register)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knee-register`` (exposed for documentation and tests)."""
    parser = _Parser(
        prog="knee-register",
        description="MRI <-> CT / micro-CT registration that plans resolution, field of view and sampling "
                    "from the images. Transforms map fixed points to moving points (LPS, ITK convention).",
        epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    _register_parser(commands)
    inspect = commands.add_parser("inspect", help="describe both images and the plan; writes nothing")
    inspect.add_argument("fixed", metavar="FIXED")
    inspect.add_argument("moving", metavar="MOVING")
    _settings_options(inspect)
    series = commands.add_parser("list-series", help="list the DICOM series in a folder")
    series.add_argument("folder", metavar="FOLDER")
    series.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    series.add_argument("--debug", action="store_true", help="show tracebacks")
    demo = commands.add_parser("demo", help="register a synthetic knee pair and show how well it worked")
    demo.add_argument("--output-dir", default="demo-output", metavar="DIR",
                      help="default: ./demo-output (an earlier demo's outputs there are replaced)")
    demo.add_argument("--quiet", action="store_true", help="print errors only")
    demo.add_argument("--debug", action="store_true", help="show tracebacks")
    from .batch import add_batch_parser

    add_batch_parser(commands)
    return parser


def settings_from_args(args: argparse.Namespace) -> RegistrationSettings:
    """The preset (or ``--settings-from``'s settings) with the flags the user gave applied and recorded."""
    flags = {k: v for k, v in _flag_settings(args).items() if v is not None}
    if not getattr(args, "settings_from", None):
        return settings_for_preset(args.preset or DEFAULT_PRESET, **flags)
    if args.preset:
        raise InputError("--preset and --settings-from both name the preset", "drop one of them")
    earlier = settings_from_report(args.settings_from)
    if not flags:
        return earlier
    return dataclasses.replace(earlier.replace(**flags), overrides=tuple(sorted({*earlier.overrides, *flags})))


def settings_from_report(path) -> RegistrationSettings:
    """The settings a run used, from its ``report.json`` (``result.settings``)."""
    import json

    try:
        report = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        stored = report["result"]["settings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the settings of report '{path}' ({type(error).__name__}: {error})",
                         "give the report.json an earlier run wrote") from None
    return RegistrationSettings.from_dict(stored)


def _flag_settings(args: argparse.Namespace) -> dict:
    """The settings the flags name, ``None`` where a flag was not given."""
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip()) if args.stages else None
    return dict(
        transform_stages=stages, initialize_transform_mode=args.init_mode,
        spacing_multiplier=args.spacing_multiplier, sampling_percentage=args.sampling_percentage,
        number_of_iterations=args.iterations, random_seed=args.seed, number_of_threads=args.threads,
        search_edge_correlation={"on": True, "off": False}.get(getattr(args, "edge_correlation", "auto")),
        deterministic=False if args.threads else None,
        fail_on_sanity_check=False if getattr(args, "no_fail_on_sanity", False) else None)


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

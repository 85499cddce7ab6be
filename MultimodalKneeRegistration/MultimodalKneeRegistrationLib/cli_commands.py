"""What each ``knee-register`` command does, and the terminal's progress bar.

Why: the parser (``cli``) says what a user can type; this module turns a parsed command into the one
``run`` (or ``inspect``, ``list-series``, ``demo``) and into words and exit codes on the terminal.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np

from .errors import InputError, RegistrationFailedError
from .progress import Progress
from .settings import DEFAULT_PRESET
from .terminal import TerminalLine

log = logging.getLogger("knee-register")


class ProgressPrinter:
    """A text progress bar on stderr (a TTY); otherwise a line every 10% and at each new phase (for
    logs); nothing when quiet."""

    def __init__(self, quiet: bool = False, stream=None) -> None:
        self.quiet = quiet
        self.terminal = TerminalLine(stream)
        self.last_step, self.started = -1, time.perf_counter()
        self.phase = ""

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        if self.terminal.tty:
            self.terminal.draw(fraction, f"{100 * fraction:3.0f}% {elapsed:5.0f}s  {message}")
        elif int(fraction * 10) > self.last_step or _phase(message) != self.phase:
            self.last_step, self.phase = int(fraction * 10), _phase(message)
            self.terminal.line(f"{100 * fraction:3.0f}% ({elapsed:.0f} s) {message}")

    def close(self) -> None:
        self.terminal.close()


def _phase(message: str) -> str:
    """The step a progress message belongs to ("search: scoring rotations (200/1368)" -> "search")."""
    return message.split(":")[0].split(" (")[0].strip()


class _CtrlC:
    """First Ctrl-C asks the run to stop at its next check; a second one interrupts at once."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._previous = None

    def __enter__(self) -> _CtrlC:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.progress.cancelled:
            raise KeyboardInterrupt
        self.progress.cancel()
        sys.stderr.write("\nstopping at the next safe point (press Ctrl-C again to abort now)\n")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _print(args: argparse.Namespace, text: str = "") -> None:
    if not args.quiet:
        print(text, flush=True)


def cmd_register(args: argparse.Namespace, printer: ProgressPrinter) -> int:
    from .cli import settings_from_args
    from .outputs.writers import check_output_folder, write_outputs
    from .run import run

    out = check_output_folder(args.output_dir, args.overwrite)  # before any work: never find out after an hour
    settings = settings_from_args(args)
    args.preset = settings.preset if args.settings_from else (args.preset or DEFAULT_PRESET)  # for the report
    if args.segmentation and not args.per_bone:
        raise InputError("--segmentation is only used with --per-bone", "add --per-bone or drop --segmentation")
    fixed, moving, initial = _load_inputs(args)
    bone_labels, labels_space = _bone_labels(args, fixed, moving) if args.per_bone else (None, "fixed")
    if bone_labels is not None:
        check_output_folder(out, args.overwrite, [f"transform_{n}.tfm" for n in bone_labels.names.values()])
    engine = _engine(args)
    progress = Progress(printer)
    with _CtrlC(progress):
        try:
            outcome = run(fixed, moving, settings, engine=engine, initial_transform=initial, bone_labels=bone_labels,
                          labels_space=labels_space, resample=not args.no_resampled,
                          resample_spacing_mm=args.resample_spacing, qc_mode=args.qc_mode,
                          inputs=_inputs(args, fixed, moving), command=_command(args), progress=progress)
        finally:
            printer.close()
    written = write_outputs(outcome, out, args.overwrite)
    if outcome.refusal is not None:
        what = ", ".join(f"the {kind.replace('_', ' ')} {path}" for kind, path in written.items())
        raise RegistrationFailedError(outcome.refusal.what, f"{outcome.refusal.do}. No transform was written; "
                                                            f"written: {what}")
    _summarise(args, outcome, written)
    return 0


def _engine(args: argparse.Namespace):
    from .engines import engine_named

    return engine_named(args.engine, args.brainsfit)


def _command(args: argparse.Namespace) -> str:
    return "knee-register " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)


def _load_inputs(args: argparse.Namespace):
    from .io import STREAM_ABOVE_MB
    from .io.transforms import read_transform

    limit = getattr(args, "stream_above_mb", STREAM_ABOVE_MB)
    fixed = _input(args.fixed, args.fixed_series_uid or args.series_uid, "fixed image",
                   _folder_spacing(args, "fixed"), limit)
    moving = _input(args.moving, args.moving_series_uid or args.series_uid, "moving image",
                    _folder_spacing(args, "moving"), limit)
    initial = read_transform(args.initial_transform) if args.initial_transform else None
    return fixed, moving, initial


def _input(path, series_uid, name: str, spacing, stream_above_mb: float):
    """A large streamable input as a ``FileSource`` (read in slabs), anything else read whole."""
    from .errors import KneeRegistrationError
    from .io.headers import read_header
    from .io.images import load_image
    from .io.sources import FileSource

    try:
        header = read_header(path, series_uid, spacing, name)
    except (KneeRegistrationError, RuntimeError, OSError, ValueError):
        header = None  # load_image says what is wrong, in the words every other input gets
    if header is not None and header.streamable and header.nbytes > stream_above_mb * 1e6:
        return FileSource(path, series_uid, spacing, name, header)
    return load_image(path, series_uid, name, spacing=spacing)


def _folder_spacing(args: argparse.Namespace, which: str):
    """``--fixed-spacing``/``--moving-spacing``, else ``--spacing`` where that input is a slice folder."""
    own = getattr(args, f"{which}_spacing", None)
    if own is not None or args.spacing is None:
        return own
    from .io.microct import slice_files_in

    path = Path(getattr(args, which)).expanduser()
    return args.spacing if path.is_dir() and slice_files_in(path) else None


def _inputs(args: argparse.Namespace, fixed, moving) -> Dict[str, object]:
    """The report's record of the inputs: resolved paths, the DICOM series actually loaded, options."""
    from .io.images import SERIES_UID_KEY

    def uid(image):
        if hasattr(image, "header"):  # a source read in slabs
            return (image.header.layout or {}).get("uid") if isinstance(image.header.layout, dict) else None
        return image.GetMetaData(SERIES_UID_KEY) if image.HasMetaDataKey(SERIES_UID_KEY) else None

    return {"fixed": str(Path(args.fixed).resolve()), "moving": str(Path(args.moving).resolve()),
            "initial_transform": str(Path(args.initial_transform).resolve()) if args.initial_transform else None,
            "preset": args.preset, "settings_from": args.settings_from, "engine": args.engine,
            "fixed_series_uid": uid(fixed), "moving_series_uid": uid(moving)}


def _bone_labels(args: argparse.Namespace, fixed, moving):
    """The bone labels for --per-bone and the image they belong to: the file, else the CT's bones."""
    from .bones.masks import load_bone_labels, looks_like_ct, segment_bones
    from .io.sources import pixels

    if args.segmentation:
        return load_bone_labels(args.segmentation), args.segmentation_on
    for space, image in (("fixed", pixels(fixed, 64_000_000)), ("moving", pixels(moving, 64_000_000))):
        if looks_like_ct(image):
            return segment_bones(image, args.expected_bones), space
    raise InputError("--per-bone without --segmentation needs a CT (in Hounsfield units) to find the bones in",
                     "give a bone segmentation with --segmentation FILE")


def _summarise(args: argparse.Namespace, outcome, written: Dict[str, Path]) -> None:
    from .geometry import rotation_angle_deg, transform_to_matrix

    result = outcome.result
    matrix = transform_to_matrix(result.transform)
    _print(args, f"registered in {result.timings.get('total', 0.0):.1f} s: rotation "
                 f"{rotation_angle_deg(matrix):.1f} deg, translation {np.linalg.norm(matrix[:3, 3]):.1f} mm; "
                 f"Mattes MI {result.metric_before:.4f} -> {result.metric_after:.4f} (lower is better)")
    labels = {"transform": "transform (fixed -> moving, LPS)", "registered_moving": "registered moving image",
              "qc": "QC picture", "report": "report"}
    for key, path in written.items():
        _print(args, f"  {labels.get(key, key.replace('_', ' '))}: {path}")
    for note in outcome.notes:
        _print(args, f"  note: {note}")
    if outcome.per_bone is not None:
        _print(args, "per bone (rigid, fixed -> moving):")
        for line in outcome.per_bone.summary().splitlines():
            _print(args, f"  {line}")
    if not result.passed_sanity_checks:
        sys.stderr.write("warning: the result FAILED its sanity checks; it was written because of "
                         "--no-fail-on-sanity. Check the QC picture before using it.\n")
    for warning in result.warnings:
        log.warning("warning: %s", warning)


def cmd_inspect(args: argparse.Namespace, printer: ProgressPrinter) -> int:
    from .cli import settings_from_args
    from .steps.inspection import inspect_pair
    from .steps.plan_resolution import plan_for

    settings = settings_from_args(args)
    fixed, moving, initial = _load_inputs(args)
    print(inspect_pair(fixed, moving, initial, settings.choices.initialize_transform_mode).format_summary())
    settings, plan = plan_for(fixed, moving, settings)
    print(format_plan(settings, plan))
    return 0


def format_plan(settings, plan) -> str:
    """The plan as ``inspect`` prints it and ``register`` logs it: the preset used, then each choice."""
    return "\n".join([f"plan ({settings.preset}):", *(f"  - {sentence}" for sentence in plan.explanation)])


def cmd_list_series(args: argparse.Namespace, printer: ProgressPrinter) -> int:
    from .io.images import list_dicom_series

    series = list_dicom_series(args.folder)
    if not series:
        raise InputError(f"folder '{args.folder}' holds no DICOM series", "check the folder")
    print(f"{len(series)} DICOM series in {args.folder}:")
    for info in series:
        print(f"  {info.describe()}")
    return 0


def cmd_demo(args: argparse.Namespace, printer: ProgressPrinter) -> int:
    from .synthetic.demo import run_demo

    try:
        outcome = run_demo(Path(args.output_dir).expanduser(), printer)
    finally:
        printer.close()
    _print(args, outcome.summary())
    return 0


def cmd_batch(args: argparse.Namespace, printer: ProgressPrinter) -> int:
    from .batch import run_batch_command

    return run_batch_command(args)


COMMANDS = {"register": cmd_register, "inspect": cmd_inspect, "list-series": cmd_list_series, "demo": cmd_demo,
            "batch": cmd_batch}

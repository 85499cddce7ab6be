"""``knee-register``: the command line (register, inspect, list-series, demo).

Why: a registration that "just works" must also work without Slicer, in scripts and on servers,
and fail the way a person can act on: one paragraph saying what is wrong and what to do, an exit
code a script can test, and never a half-written output or a silently overwritten one.

Exit codes: 0 success, 1 unexpected failure (a bug), 2 unusable input, 3 output not writable,
4 result failed its sanity checks, 130 interrupted.

Example:
    $ knee-register register CT.nrrd MR_T2_dicom/ --output-dir out --preset mri-ct
    $ python -m MultimodalKneeRegistrationLib inspect CT.nrrd MR.nrrd
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import CancelledError, InputError, KneeRegistrationError, OutputError, RegistrationFailedError
from .geometry import coarser_grid
from .settings import INITIALIZE_MODES, PRESETS, RegistrationSettings, settings_for_preset

#: Above this many fixed voxels, ``registered_moving.nrrd`` goes onto a coarser copy of the fixed grid.
AUTO_RESAMPLE_VOXELS = 64_000_000
log = logging.getLogger("knee-register")


class Progress:
    """A text progress bar on stderr (a TTY), occasional lines otherwise, nothing when quiet."""

    def __init__(self, quiet: bool = False, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_step, self.active, self.started = -1, False, time.perf_counter()

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        elapsed = time.perf_counter() - self.started
        if self.tty:
            filled = int(round(fraction * 30))
            bar = "#" * filled + "." * (30 - filled)
            line = f"\r[{bar}] {100 * fraction:3.0f}% {elapsed:5.0f}s  {message}"
            self.stream.write(line[:119].ljust(120))
            self.active = True
        elif int(fraction * 10) > self.last_step:
            self.last_step = int(fraction * 10)
            self.stream.write(f"{100 * fraction:3.0f}% ({elapsed:.0f} s) {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False


class _CtrlC:
    """First Ctrl-C asks the registration to stop cleanly; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _CtrlC:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nstopping at the next safe point (press Ctrl-C again to abort now)\n")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def __call__(self) -> bool:
        return self.requested


def _sampling(text: str) -> float:
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction like 0.05 or a percentage like 5%") \
            from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registration settings (defaults come from the preset)")
    group.add_argument("--preset", default="mri-ct", choices=sorted(PRESETS), help="starting settings")
    group.add_argument("--initial-transform", metavar="T", help="ITK transform file, fixed -> moving (LPS)")
    group.add_argument("--series-uid", metavar="UID", help="DICOM series to load from folders with several")
    group.add_argument("--fixed-series-uid", metavar="UID", help="series UID for the fixed folder only")
    group.add_argument("--moving-series-uid", metavar="UID", help="series UID for the moving folder only")
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
    parser.add_argument("--quiet", action="store_true", help="print errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug messages")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``knee-register`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="knee-register",
        description="MRI <-> CT / micro-CT registration that plans resolution, field of view and sampling "
                    "from the images. Transforms map fixed points to moving points (LPS, ITK convention).",
        epilog="exit codes: 0 success, 1 unexpected failure (a bug), 2 unusable input, 3 output not "
               "writable or already there, 4 result failed its sanity checks, 130 interrupted")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register = commands.add_parser("register", help="register MOVING to FIXED and write the results")
    register.add_argument("fixed", metavar="FIXED", help="image file or DICOM folder (the reference grid)")
    register.add_argument("moving", metavar="MOVING", help="image file or DICOM folder (the image to align)")
    register.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the outputs")
    register.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    register.add_argument("--no-resampled", action="store_true", help="do not write registered_moving.nrrd")
    register.add_argument("--resample-spacing", type=float, metavar="MM",
                          help="write registered_moving.nrrd on a copy of the fixed grid with at least "
                               f"this spacing (automatic above {AUTO_RESAMPLE_VOXELS // 1_000_000} M fixed "
                               "voxels)")
    register.add_argument("--qc-mode", choices=("edges", "checkerboard"), default="edges",
                          help="QC picture style")
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
    inspect = commands.add_parser("inspect", help="describe both images and the plan; writes nothing")
    inspect.add_argument("fixed", metavar="FIXED")
    inspect.add_argument("moving", metavar="MOVING")
    _settings_options(inspect)
    series = commands.add_parser("list-series", help="list the DICOM series in a folder")
    series.add_argument("folder", metavar="FOLDER")
    series.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    series.add_argument("--debug", action="store_true", help="show tracebacks")
    demo = commands.add_parser("demo", help="register a synthetic knee pair and show how well it worked")
    demo.add_argument("--output-dir", default="demo-output", metavar="DIR", help="default: ./demo-output")
    demo.add_argument("--quiet", action="store_true", help="print errors only")
    demo.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def settings_from_args(args: argparse.Namespace) -> RegistrationSettings:
    """The preset with the command-line overrides applied (validated)."""
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip()) if args.stages else None
    return settings_for_preset(
        args.preset, transform_stages=stages, initialize_transform_mode=args.init_mode,
        spacing_multiplier=args.spacing_multiplier, sampling_percentage=args.sampling_percentage,
        number_of_iterations=args.iterations, random_seed=args.seed, number_of_threads=args.threads,
        search_edge_correlation={"on": True, "off": False}.get(getattr(args, "edge_correlation", "auto")),
        deterministic=False if args.threads else None,
        fail_on_sanity_check=False if getattr(args, "no_fail_on_sanity", False) else None)


def _load_inputs(args: argparse.Namespace):
    from .image_io import load_image, read_transform

    fixed = load_image(args.fixed, args.fixed_series_uid or args.series_uid, "fixed image")
    moving = load_image(args.moving, args.moving_series_uid or args.series_uid, "moving image")
    initial = read_transform(args.initial_transform) if args.initial_transform else None
    return fixed, moving, initial


def resample_reference(fixed: sitk.Image, spacing_mm: Optional[float]) -> Optional[sitk.Image]:
    """A coarser grid covering the fixed field of view (None: use the fixed grid itself)."""
    spacing = np.array(fixed.GetSpacing())
    size = np.array(fixed.GetSize())
    if spacing_mm is None:
        if fixed.GetNumberOfPixels() <= AUTO_RESAMPLE_VOXELS:
            return None
        def count(mm: float) -> float:
            return float(np.prod(np.round(size * spacing / np.maximum(spacing, mm))))

        # Finest spacing that fits: isotropic ``high`` always does (it spreads the whole volume).
        low, high = float(spacing.min()), float((np.prod(spacing * size) / AUTO_RESAMPLE_VOXELS) ** (1 / 3))
        high = max(high, low) * 1.01
        for _ in range(40):
            low, high = (low, (low + high) / 2) if count((low + high) / 2) <= AUTO_RESAMPLE_VOXELS \
                else ((low + high) / 2, high)
        spacing_mm = high
    new_spacing = np.maximum(spacing, spacing_mm)
    if np.allclose(new_spacing, spacing):
        return None
    return coarser_grid(fixed, new_spacing, np.maximum(np.round(size * spacing / new_spacing), 1).astype(int))


def _print(args: argparse.Namespace, text: str = "") -> None:
    if not args.quiet:
        print(text, flush=True)


def _cmd_register(args: argparse.Namespace, progress: Progress) -> int:
    from .image_io import ensure_writable, write_image_atomic, write_transform_atomic
    from .inspection import inspect_pair
    from .pipeline import register, resample_moving
    from .qc_image import write_qc_png
    from .report import build_report, write_report

    out = Path(args.output_dir).expanduser()
    paths = {"transform": out / "transform.tfm", "registered_moving": out / "registered_moving.nrrd",
             "qc": out / "qc.png", "report": out / "report.json"}
    if args.no_resampled:
        del paths["registered_moving"]
    for name, path in paths.items():  # before any work: never find out after an hour
        if path.exists() and not args.overwrite:
            raise OutputError(f"{name} output '{path}' already exists",
                              "pass --overwrite to replace it, or choose another --output-dir")
    settings = settings_from_args(args)
    if args.segmentation and not args.per_bone:
        raise InputError("--segmentation is only used with --per-bone", "add --per-bone or drop --segmentation")
    fixed, moving, initial = _load_inputs(args)
    bone_labels, labels_space = _bone_labels(args, fixed, moving) if args.per_bone else (None, "fixed")
    if bone_labels is not None:
        for name in bone_labels.names.values():
            paths[f"transform_{name}"] = out / f"transform_{name}.tfm"
    for name, path in paths.items():
        if path.exists() and not args.overwrite:
            raise OutputError(f"{name} output '{path}' already exists",
                              "pass --overwrite to replace it, or choose another --output-dir")
        ensure_writable(path, args.overwrite, f"{name} output")
    inspection = inspect_pair(fixed, moving, initial, settings.initialize_transform_mode)
    for note in inspection.all_warnings:
        log.info("note: %s", note)
    inputs = {"fixed": str(Path(args.fixed).resolve()), "moving": str(Path(args.moving).resolve()),
              "initial_transform": args.initial_transform, "preset": args.preset,
              "fixed_series_uid": args.fixed_series_uid or args.series_uid,
              "moving_series_uid": args.moving_series_uid or args.series_uid}
    command = "knee-register " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    failure: Optional[RegistrationFailedError] = None
    with _CtrlC() as cancel:
        try:
            result = register(fixed, moving, settings, initial_transform=initial, progress=progress,
                              should_cancel=cancel)
        except RegistrationFailedError as error:
            failure, result = error, getattr(error, "result", None)
        finally:
            progress.close()
    written: Dict[str, Path] = {}
    if result is not None:
        if failure is None:
            written["transform"] = write_transform_atomic(result.transform, paths["transform"],
                                                          args.overwrite)
            if "registered_moving" in paths:
                reference = resample_reference(fixed, args.resample_spacing)
                resampled = resample_moving(fixed, moving, result.transform, reference)
                written["registered_moving"] = write_image_atomic(resampled, paths["registered_moving"],
                                                                  args.overwrite)
        written["qc"] = write_qc_png(fixed, moving, paths["qc"], args.qc_mode, transform=result.transform,
                                     overwrite=args.overwrite)
    per_bone = None
    if failure is None and result is not None and bone_labels is not None:
        per_bone = _run_per_bone(fixed, moving, result, bone_labels, labels_space, settings, progress)
        for bone in per_bone.bones:
            key = f"transform_{bone.name}"
            written[key] = write_transform_atomic(bone.transform, paths[key], args.overwrite)
    report = build_report(result, inputs=inputs, inspection=inspection, command=command,
                          outputs={**{k: str(v.resolve()) for k, v in written.items()},
                                   "report": str(paths["report"].resolve())})
    if per_bone is not None:
        report["per_bone"] = per_bone.to_dict()
    written["report"] = write_report(paths["report"], report, args.overwrite)
    if failure is not None:
        raise RegistrationFailedError(failure.what, f"{failure.do}. No transform was written; the report "
                                      f"is {written['report']}" + (f" and the QC picture {written['qc']}"
                                                                   if "qc" in written else ""))
    _summarise(args, result, written)
    if per_bone is not None:
        _print(args, "per bone (rigid, fixed -> moving):")
        for line in per_bone.summary().splitlines():
            _print(args, f"  {line}")
    return 0


def _bone_labels(args: argparse.Namespace, fixed: sitk.Image, moving: sitk.Image):
    """The bone labels for --per-bone and the image they belong to: the file, else the CT's bones."""
    from .bone_masks import load_bone_labels, looks_like_ct, segment_bones

    if args.segmentation:
        return load_bone_labels(args.segmentation), args.segmentation_on
    for space, image in (("fixed", fixed), ("moving", moving)):
        if looks_like_ct(image):
            return segment_bones(image, args.expected_bones), space
    raise InputError("--per-bone without --segmentation needs a CT (in Hounsfield units) to find the bones in",
                     "give a bone segmentation with --segmentation FILE")


def _run_per_bone(fixed, moving, result, labels, labels_space, settings, progress):
    from .per_bone import register_per_bone

    bar = Progress(progress.quiet, progress.stream)  # a fresh bar: the whole-volume one ended at 100%
    with _CtrlC() as cancel:
        try:
            return register_per_bone(fixed, moving, result, labels, settings, bar, cancel,
                                     labels_space=labels_space)
        finally:
            bar.close()


def _summarise(args: argparse.Namespace, result, written: Dict[str, Path]) -> None:
    from .geometry import rotation_angle_deg, transform_to_matrix

    matrix = transform_to_matrix(result.transform)
    _print(args, f"registered in {result.timings.get('total', 0.0):.1f} s: rotation "
                 f"{rotation_angle_deg(matrix):.1f} deg, translation {np.linalg.norm(matrix[:3, 3]):.1f} mm; "
                 f"metric {result.metric_before:.4f} -> {result.metric_after:.4f} (lower is better)")
    labels = {"transform": "transform (fixed -> moving, LPS)", "registered_moving": "registered moving image",
              "qc": "QC picture", "report": "report"}
    for key, path in written.items():
        _print(args, f"  {labels.get(key, key.replace('_', ' '))}: {path}")
    if not result.passed_sanity_checks:
        sys.stderr.write("warning: the result FAILED its sanity checks; it was written because of "
                         "--no-fail-on-sanity. Check the QC picture before using it.\n")
    for warning in result.warnings:
        log.warning("warning: %s", warning)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspection import inspect_pair
    from .planning import plan_registration

    settings = settings_from_args(args)
    fixed, moving, initial = _load_inputs(args)
    print(inspect_pair(fixed, moving, initial, settings.initialize_transform_mode).format_summary())
    plan = plan_registration(fixed, moving, settings, initial)
    print(f"plan ({settings.preset}):")
    for sentence in plan.explanation:
        print(f"  - {sentence}")
    return 0


def _cmd_list_series(args: argparse.Namespace) -> int:
    from .image_io import list_dicom_series

    series = list_dicom_series(args.folder)
    if not series:
        raise InputError(f"folder '{args.folder}' holds no DICOM series", "check the folder")
    print(f"{len(series)} DICOM series in {args.folder}:")
    for info in series:
        print(f"  {info.describe()}")
    return 0


def _cmd_demo(args: argparse.Namespace, progress: Progress) -> int:
    from .demo import run_demo

    try:
        outcome = run_demo(Path(args.output_dir).expanduser(), progress)
    finally:
        progress.close()
    _print(args, outcome.summary())
    return 0


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``knee-register`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    level = logging.DEBUG if args.debug else (logging.ERROR if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s" if args.debug else "%(message)s",
                        stream=sys.stderr)
    progress = Progress(quiet=args.quiet)
    try:
        if args.command == "register":
            return _cmd_register(args, progress)
        if args.command == "inspect":
            return _cmd_inspect(args)
        if args.command == "list-series":
            return _cmd_list_series(args)
        return _cmd_demo(args, progress)
    except KeyboardInterrupt:
        progress.close()
        return _fail("interrupted (Ctrl-C). Outputs already written are complete; nothing is half-written",
                     CancelledError.exit_code)
    except KneeRegistrationError as error:
        progress.close()
        if args.debug:
            traceback.print_exc()
        return _fail(error.message, error.exit_code)
    except Exception as error:  # a bug: one paragraph, the traceback only on request
        progress.close()
        if args.debug:
            traceback.print_exc()
        cause = " ".join(str(error).split())[:300]
        return _fail(f"unexpected failure ({type(error).__name__}: {cause}). This is a bug: rerun with "
                     "--debug to see the traceback, and report it with the command you ran", 1)


"""The options of ``knee-register register`` (and ``inspect``), and the settings each one sets.

Why apart from ``cli``: a batch manifest's columns are these options (``batch.columns``), and ``cli``
registers the batch's own sub-command, so the options live where both import them without importing
each other. ``SETTINGS_OPTIONS`` is the one table from an option (a flag; a manifest column of the
same name) to the settings fields it sets; the command line and the batch both turn option values
into settings through ``settings_from_options``, and the batch hands a pair's process the result.

Example:
    >>> settings_from_options({"preset": "mri-ct", "seed": 3}).optimizer.random_seed
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

from .errors import InputError
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

EPILOG = ("exit codes: 0 success, 1 unexpected failure (a bug), 2 unusable input, 3 output not writable or "
          "already there, 4 result failed its sanity checks, 5 a batch with pairs that did not succeed, "
          "6 the engine could not run (BRAINSFit missing or crashed), 130 interrupted")


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


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that set registration settings (``SETTINGS_OPTIONS``), and --quiet/--debug."""
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
    group.add_argument("--search-retry", action="store_true",
                       help="when the result is refused, search once more over 1232 rotations and keep that "
                       "result if it passes (a refused micro-CT takes about twice as long; it can also pass an "
                       "answer the images themselves favour wrongly)")
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


def add_register_arguments(register: argparse.ArgumentParser) -> None:
    """The ``register`` sub-command's arguments: the images, the outputs, per-bone and the settings."""
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
    add_settings_arguments(register)


def register_parser() -> argparse.ArgumentParser:
    """A parser of the ``register`` sub-command alone (the batch reads its options as manifest columns)."""
    parser = argparse.ArgumentParser(prog="knee-register register", epilog=EPILOG)
    add_register_arguments(parser)
    return parser


def _stages(text: str) -> tuple:
    return tuple(s.strip() for s in text.split(",") if s.strip())


#: Fill rotations of the second search ``--search-retry`` asks for (1,232 rotations in all).
RETRY_FILL_ROTATIONS = 1400

#: Option (its ``dest``: the flag in snake case, a manifest column) -> the settings (flat names) its
#: parsed value sets. Options not here (inputs, outputs, the engine, per-bone) are not settings.
SETTINGS_OPTIONS: Dict[str, Callable[[Any], Dict[str, Any]]] = {
    "stages": lambda v: {"transform_stages": _stages(v)},
    "init_mode": lambda v: {"initialize_transform_mode": v},
    "edge_correlation": lambda v: {"search_edge_correlation": {"on": True, "off": False}.get(v)},
    "spacing_multiplier": lambda v: {"spacing_multiplier": v},
    "sampling_percentage": lambda v: {"sampling_percentage": v},
    "iterations": lambda v: {"number_of_iterations": v},
    "seed": lambda v: {"random_seed": v},
    "threads": lambda v: {"number_of_threads": v, "deterministic": False},
    "no_fail_on_sanity": lambda v: {"fail_on_sanity_check": False} if v else {},
    "search_retry": lambda v: {"search_retry_fill_rotations": RETRY_FILL_ROTATIONS} if v else {},
}


def settings_from_options(values: Mapping[str, Any]) -> RegistrationSettings:
    """The preset (or the ``settings_from`` file's settings) with the options in ``values`` applied and
    recorded as the user's. ``values`` maps option names to parsed values (``vars(args)``, or a
    manifest row's cells parsed by their options); a missing or ``None`` value leaves a setting alone.
    """
    flags: Dict[str, Any] = {}
    for name, settings_of in SETTINGS_OPTIONS.items():
        if values.get(name) is not None:
            flags.update({k: v for k, v in settings_of(values[name]).items() if v is not None})
    if not values.get("settings_from"):
        return settings_for_preset(values.get("preset") or DEFAULT_PRESET, **flags)
    if values.get("preset"):
        raise InputError("--preset and --settings-from both name the preset", "drop one of them")
    earlier = settings_from_file(values["settings_from"])
    if not flags:
        return earlier
    return dataclasses.replace(earlier.replace(**flags), overrides=tuple(sorted({*earlier.overrides, *flags})))


def settings_from_file(path) -> RegistrationSettings:
    """The settings a run used, from its ``report.json`` (``result.settings``), or a settings file
    (``RegistrationSettings.to_dict``'s JSON, as a batch hands each pair)."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        stored = data["result"]["settings"] if "result" in data else data
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the settings of report '{path}' ({type(error).__name__}: {error})",
                         "give the report.json an earlier run wrote") from None
    return RegistrationSettings.from_dict(stored)

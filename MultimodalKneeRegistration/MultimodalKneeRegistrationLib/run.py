"""``run``: one registration and everything a person gets from it, in memory; writers are apart.

Why: the command line, the demo, batch runs and the Slicer logic all register, maybe per bone,
resample, draw the QC picture and report. They did so each their own way (two reports with different
keys). ``run`` does it once and returns a ``RunOutcome``; ``outputs.writers.write_outputs`` writes it
as one set of files, or nothing.

Example:
    >>> outcome = run(ct, mr, settings_for_preset("mri-ct"), inputs={"fixed": "CT.nrrd", "moving": "MR.nrrd"})
    >>> write_outputs(outcome, "out")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputError, RegistrationFailedError
from .io.sources import VolumeSource, pixels, whole
from .outputs.grids import resample_grid
from .outputs.qc_image import render_qc
from .outputs.report import build_report
from .pipeline import READ_SHARE, register, resample_moving
from .progress import Progress, ProgressCallback
from .results import RegistrationResult
from .settings import DEFAULT_ENGINE, DEFAULT_PRESET, PRESETS, RegistrationSettings
from .steps.inspection import inspect_pair
from .steps.reading import needs_reading, read_inputs


@dataclass
class RunOutcome:
    """What one run produced: the result (or the refused one), per-bone results, images and the report."""

    result: Optional[RegistrationResult]
    refusal: Optional[RegistrationFailedError]
    report: Dict[str, Any]
    per_bone: Any = None
    resampled: Optional[sitk.Image] = None
    qc: Optional[np.ndarray] = None
    notes: List[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``ok``, or ``refused`` when the result failed its sanity checks (no transform is handed out)."""
        return "refused" if self.refusal is not None else "ok"

    @property
    def transform(self) -> Optional[sitk.Transform]:
        """The accepted fixed -> moving transform (None when refused)."""
        return None if self.refusal is not None or self.result is None else self.result.transform


def run(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: Optional[RegistrationSettings] = None,
    *,
    engine: Any = DEFAULT_ENGINE,
    initial_transform: Optional[sitk.Transform] = None,
    bone_labels: Any = None,
    labels_space: str = "fixed",
    whole_volume: Union[RegistrationResult, sitk.Transform, None] = None,
    bone_dilation_mm: Optional[float] = None,
    bone_names: Optional[Sequence[str]] = None,
    resample: Union[bool, sitk.Image, None] = True,
    resample_spacing_mm: Optional[float] = None,
    qc_mode: Optional[str] = "edges",
    inputs: Optional[Dict[str, Any]] = None,
    command: Optional[str] = None,
    kind: str = "register",
    progress: Union[Progress, ProgressCallback, None] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
) -> RunOutcome:
    """Register, then (when accepted) register each bone and resample; draw the QC picture; report.

    ``resample``: True for the fixed grid (a coarser copy above ``outputs.grids.AUTO_RESAMPLE_VOXELS``
    voxels, or with at least ``resample_spacing_mm``), an image for its grid, False for none.
    ``qc_mode`` None draws no picture. A refused result is not raised: the outcome says
    ``status == "refused"`` and still carries its report and QC picture, so the caller can write
    them and exit with the refusal's code. Other errors (bad input, cancel) are raised.

    ``whole_volume`` (an earlier ``RegistrationResult`` or fixed -> moving transform, e.g. Slicer's) skips
    the whole-volume step: each bone of ``bone_labels`` (required) starts from it, with ``settings``. A
    cancel raises, so an earlier result stays the caller's. ``bone_dilation_mm``, ``bone_names``: per bone.
    """
    began, cpu = time.perf_counter(), time.process_time()
    settings = settings or PRESETS[DEFAULT_PRESET]
    settings.validate()
    given = None if whole_volume is None else _given_whole(whole_volume, bone_labels)  # checked before any work
    progress = Progress.wrap(progress, should_cancel)
    grid = _resample_reference(fixed, resample, resample_spacing_mm)[0] if isinstance(moving, VolumeSource) else None
    read = READ_SHARE if needs_reading(fixed, moving, settings, grid) else 0.0
    read_inputs(fixed, moving, settings, progress.sub(0.0, read), grid)  # each streamed input read once
    start = initial_transform if given is None else getattr(whole_volume, "transform", whole_volume)
    inspection = inspect_pair(fixed, moving, start, settings.choices.initialize_transform_mode)
    share = read if given is not None else (0.75 if bone_labels is not None else 0.9)
    outcome = given if given is not None else _register_whole(fixed, moving, settings, engine, initial_transform,
                                                              progress.sub(read, share))
    if outcome.refusal is None and bone_labels is not None:  # given start: these settings; else the result's
        bones_from = (start, settings) if given is not None else (outcome.result, outcome.result.settings)
        outcome.per_bone = _register_bones(fixed, moving, *bones_from, bone_labels, progress.sub(share, 0.9),
                                           labels_space, bone_dilation_mm, bone_names)
    progress.report(0.9, "resampling and drawing the QC picture", force=True)
    _pictures(outcome, fixed, moving, resample, resample_spacing_mm, qc_mode)
    outcome.report = build_report(
        outcome, inputs=inputs or {}, inspection=inspection, command=command, kind=kind,
        resources={"wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu,
                   **_reading(fixed, moving)},
    )
    progress.done("done")
    return outcome


def _register_whole(fixed, moving, settings: RegistrationSettings, engine: Any,
                    initial_transform: Optional[sitk.Transform], progress: Progress) -> RunOutcome:
    """The whole-volume registration as an outcome: accepted, or refused (the refused result kept for the report)."""
    try:
        result = register(fixed, moving, settings, engine=engine, initial_transform=initial_transform,
                          progress=progress)
    except RegistrationFailedError as error:
        return RunOutcome(getattr(error, "result", None), error, {})
    return RunOutcome(result, None, {})


def _register_bones(fixed, moving, start: Any, settings: RegistrationSettings, bone_labels: Any, progress: Progress,
                    labels_space: str, dilation_mm: Optional[float], names: Optional[Sequence[str]]) -> Any:
    """Each bone from ``start`` (a whole-volume result or transform), on the whole images (masks limit it)."""
    from .bones.per_bone import DEFAULT_DILATION_MM, register_per_bone

    return register_per_bone(whole(fixed), whole(moving), start, bone_labels, settings, progress,
                             labels_space=labels_space, bones=names,
                             dilation_mm=DEFAULT_DILATION_MM if dilation_mm is None else dilation_mm)


def _given_whole(whole_volume: Union[RegistrationResult, sitk.Transform], bone_labels: Any) -> RunOutcome:
    """An outcome around an earlier whole-volume result (or bare transform) that the bones start from.

    A bare transform has no result to report: the outcome's ``result`` is None and a note says where
    the transform came from (the per-bone report records its matrix).
    """
    if bone_labels is None:
        raise InputError("a whole-volume result was given but no bone labels",
                         "pass bone_labels to register each bone from it, or leave whole_volume out")
    if isinstance(whole_volume, RegistrationResult):
        return RunOutcome(whole_volume, None, {}, notes=["The whole-volume result was given (an earlier run): "
                                                         "only the bones were registered."])
    if not isinstance(whole_volume, sitk.Transform):
        raise InputError("the whole-volume result is not a registration result or a transform",
                         "pass an earlier run's result or its fixed -> moving transform")
    return RunOutcome(None, None, {}, notes=["The whole-volume transform was given, not registered in this run: "
                                             "only the bones were registered, starting from it."])


def _pictures(outcome: RunOutcome, fixed, moving, resample, spacing_mm, qc_mode) -> None:
    """The resampled moving image (accepted results only) and the QC picture (any result)."""
    result = outcome.result
    if result is None:
        return
    if outcome.refusal is None and resample is not False and resample is not None:
        reference, note = _resample_reference(fixed, resample, spacing_mm)
        outcome.resampled = resample_moving(fixed, moving, result.transform, reference)
        if note:
            outcome.notes.append(note)
    if qc_mode:
        outcome.qc = render_qc(pixels(fixed), pixels(moving), qc_mode, transform=result.transform,
                               caption=_caption(outcome))


def _resample_reference(fixed, resample, spacing_mm):
    """(the grid ``registered_moving`` goes on, a note or None); (None, None) for no resampling.

    The grid is known before the registration, so a streamed moving image's copy for it is read in
    the run's one pass (``steps.reading``).
    """
    if resample is False or resample is None:
        return None, None
    if isinstance(resample, sitk.Image):
        return resample, None
    grid, note = resample_grid(fixed, spacing_mm)
    return (fixed if grid is None else grid), note


def _reading(fixed, moving) -> Dict[str, float]:
    """The report's record of passes over streamed inputs: seconds, passes and GB read."""
    reads = [record for image in (fixed, moving) if isinstance(image, VolumeSource) for record in image.reads]
    if not reads:
        return {}
    return {"read_s": sum(r.seconds for r in reads), "read_passes": float(len(reads)),
            "read_gb": sum(r.bytes for r in reads) / 1e9}


def _caption(outcome: RunOutcome) -> List[str]:
    """The QC picture's verdict and key numbers."""
    result = outcome.result
    checks = result.sanity
    verdict = "PASSED ITS CHECKS" if outcome.refusal is None else "REFUSED: " + "; ".join(
        name.replace("_", " ") for name, check in checks.items() if not check.get("passed", True))
    shared = checks.get("shared_information", {}).get("value")
    overlap = checks.get("overlap_after", {}).get("value")
    numbers = f"MATTES MI {result.metric_before:.3f} -> {result.metric_after:.3f}"
    if shared is not None:
        numbers += f"   SHARED INFORMATION {shared:.2f}"
    if overlap is not None:
        numbers += f"   OVERLAP {100 * overlap:.0f}%"
    confidence = getattr(result, "confidence", None)
    if confidence is not None:
        numbers += f"   CONFIDENCE {confidence:.2f}"
    return [verdict, numbers]

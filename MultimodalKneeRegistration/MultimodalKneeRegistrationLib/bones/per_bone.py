"""Per-bone rigid registration, for knees scanned at different flexion angles.

Why: a knee MRI and CT are often taken with the joint at different angles, so no single rigid
transform aligns femur, tibia and patella at once: the whole-volume result is a compromise. Starting
from it, each bone is registered again with the metric restricted to a dilated mask of that bone
(ITKv4 fixed-image mask; BRAINSFit's ``maskProcessingMode ROI`` does the same), giving one rigid
transform per bone, the relative rotation between bones (the flexion change), and optionally a
displacement field that moves each bone rigidly and blends in between (``blended_field``).

Conventions: transforms map fixed-image LPS points to moving-image points (ITK resampling
convention, like the whole-volume result). The bone labels belong to the image they were drawn on:
``labels_space="fixed"`` (default, e.g. an automatic CT segmentation of a fixed CT) or ``"moving"``
(a segmentation of the moving image): then the moving image is the one sampled under the mask and
each result is inverted back, so no label is ever resampled through an imprecise transform.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..execution import global_threads, preparation_threads
from ..geometry import apply_matrix, rigid_from_matrix, rotation_angle_deg, transform_to_matrix
from ..progress import Progress, ProgressCallback
from ..settings import PRESETS, RegistrationSettings
from .bone_registration import register_bone
from .masks import BoneLabels, bone_regions, bone_values

#: Margin (mm) added around each bone: the metric needs the bone's edges and a rim of soft tissue.
DEFAULT_DILATION_MM = 5.0


@dataclass
class BoneResult:
    """One bone's rigid transform (fixed -> moving, LPS) and how it was found."""

    name: str
    label: int
    transform: sitk.VersorRigid3DTransform
    centroid_lps: np.ndarray
    metric_before: float
    metric_after: float
    stop_condition: str
    iterations: int
    seconds: float
    rotation_from_whole_deg: float
    shift_from_whole_mm: float
    #: The bone's verdict (``bone_verdict``): passed, its confidence and the failed checks' sentences.
    passed: bool = True
    confidence: Optional[float] = None
    failures: List[str] = field(default_factory=list)
    #: True when the bone's own pose failed its verdict and ``fail_on_sanity_check`` is set: ``transform``
    #: is then the whole-volume one, and ``refused_matrix`` (fixed -> moving) the pose that was refused.
    refused: bool = False
    refused_matrix: Optional[np.ndarray] = None

    @property
    def status(self) -> str:
        """``ok``, ``refused`` (the whole-volume transform stands in) or ``failed-checks`` (kept anyway)."""
        return "refused" if self.refused else ("ok" if self.passed else "failed-checks")

    def to_dict(self) -> Dict[str, Any]:
        matrix = transform_to_matrix(self.transform)
        return {
            "name": self.name,
            "label": int(self.label),
            "transform": {
                "class": self.transform.GetName(),
                "parameters": list(self.transform.GetParameters()),
                "fixed_parameters": list(self.transform.GetFixedParameters()),
                "matrix_lps_fixed_to_moving": matrix.round(8).tolist(),
            },
            "centroid_lps_mm": np.round(self.centroid_lps, 3).tolist(),
            "metric_before": round(float(self.metric_before), 6),
            "metric_after": round(float(self.metric_after), 6),
            "stop_condition": self.stop_condition,
            "iterations": int(self.iterations),
            "seconds": round(self.seconds, 3),
            "rotation_from_whole_deg": round(self.rotation_from_whole_deg, 3),
            "shift_from_whole_mm_at_centroid": round(self.shift_from_whole_mm, 3),
            "status": self.status,
            "passed": bool(self.passed),
            "confidence": None if self.confidence is None else round(float(self.confidence), 3),
            "failures": list(self.failures),
            "refused_matrix_lps_fixed_to_moving": None if self.refused_matrix is None
            else np.round(self.refused_matrix, 8).tolist(),
        }


@dataclass
class PerBoneResult:
    """All bones' results plus the relative rotation of every pair of bones."""

    bones: List[BoneResult]
    whole_transform: sitk.Transform
    labels_space: str
    dilation_mm: float
    warnings: List[str] = field(default_factory=list)

    def bone(self, name: str) -> BoneResult:
        for b in self.bones:
            if b.name == name:
                return b
        raise InputError(f"no bone named {name!r} in the per-bone result",
                         f"use one of {', '.join(b.name for b in self.bones)}")

    def transforms(self) -> Dict[str, sitk.Transform]:
        return {b.name: b.transform for b in self.bones}

    def relative_rotation_deg(self, first: str, second: str) -> float:
        """Rotation angle of ``second`` relative to ``first`` between the two scans (the flexion change)."""
        return relative_motion(self.bone(first).transform, self.bone(second).transform)["rotation_deg"]

    def relative_rotations(self) -> List[Dict[str, Any]]:
        return [{"bones": [a.name, b.name], **relative_motion(a.transform, b.transform)}
                for a, b in itertools.combinations(self.bones, 2)]

    def summary(self) -> str:
        lines = [f"{b.name}: {b.rotation_from_whole_deg:.1f} deg / {b.shift_from_whole_mm:.1f} mm from the "
                 f"whole-volume result, metric {b.metric_before:.4f} -> {b.metric_after:.4f}, {_verdict_words(b)}"
                 for b in self.bones]
        lines += [f"{r['bones'][1]} relative to {r['bones'][0]}: rotated {r['rotation_deg']:.1f} deg"
                  for r in self.relative_rotations()]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def to_dict(self) -> Dict[str, Any]:
        return {
            "labels_space": self.labels_space,
            "dilation_mm": self.dilation_mm,
            "whole_volume_matrix_lps": transform_to_matrix(self.whole_transform).round(8).tolist(),
            "bones": [b.to_dict() for b in self.bones],
            "relative_rotations": [
                {**r, "axis_lps": np.round(r["axis_lps"], 4).tolist(), "rotation_deg": round(r["rotation_deg"], 3)}
                for r in self.relative_rotations()
            ],
            "warnings": list(self.warnings),
        }


def _verdict_words(bone: BoneResult) -> str:
    """The bone's verdict in a few words for ``summary`` (the sentences are among the warnings)."""
    confidence = "" if bone.confidence is None else f" (confidence {bone.confidence:.2f})"
    return {"ok": "passed its checks", "refused": "REFUSED: whole-volume transform kept",
            "failed-checks": "FAILED its checks, kept as asked"}[bone.status] + confidence


def relative_motion(first: sitk.Transform, second: sitk.Transform) -> Dict[str, Any]:
    """How ``second`` moved relative to ``first`` between the scans: angle (deg) and axis (fixed LPS).

    With fixed -> moving transforms A and B, ``inverse(A) * B`` is the second bone's motion seen
    from the first bone: for femur and tibia, its angle is the change of knee flexion.

    Example:
        >>> relative_motion(femur_transform, tibia_transform)["rotation_deg"]  # doctest: +SKIP
        15.02
    """
    matrix = np.linalg.inv(transform_to_matrix(first)) @ transform_to_matrix(second)
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rotation = u @ vt
    axis = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0],
                     rotation[1, 0] - rotation[0, 1]])
    norm = np.linalg.norm(axis)
    return {"rotation_deg": rotation_angle_deg(matrix), "axis_lps": axis / norm if norm > 1e-12 else axis}


def register_per_bone(
    fixed: sitk.Image,
    moving: sitk.Image,
    whole: Union[sitk.Transform, Any],
    labels: BoneLabels,
    settings: Optional[RegistrationSettings] = None,
    progress: Union[Progress, ProgressCallback, None] = None,
    should_cancel: Optional[Callable[[], bool]] = None,
    *,
    labels_space: str = "fixed",
    dilation_mm: float = DEFAULT_DILATION_MM,
    bones: Optional[Sequence[str]] = None,
) -> PerBoneResult:
    """One rigid registration per bone, each restricted to that bone's dilated mask.

    ``whole`` is the whole-volume result (a ``RegistrationResult`` or its fixed -> moving transform):
    every bone starts there, tries a few rotations about its own centre, and is optimised with
    Mattes mutual information sampled only inside its mask, on working images the planner chose for
    that bone's region. ``labels`` are on the fixed image (``labels_space="fixed"``) or on the moving
    one (``"moving"``). Raises ``InputError`` for labels that miss the image, ``CancelledError`` once
    cancellation is asked for.

    Example:
        >>> whole = register(ct, mr, settings)  # doctest: +SKIP
        >>> per_bone = register_per_bone(ct, mr, whole, segment_bones(ct, expected_bones=3))  # doctest: +SKIP
        >>> per_bone.relative_rotation_deg("femur", "tibia")  # doctest: +SKIP
    """
    settings = settings or PRESETS["mri-ct"]
    progress = Progress.wrap(progress, should_cancel)
    if labels_space not in ("fixed", "moving"):
        raise InputError(f"labels_space {labels_space!r} is not 'fixed' or 'moving'",
                         "say which image the segmentation was drawn on")
    whole_transform = getattr(whole, "transform", whole)
    if not isinstance(whole_transform, sitk.Transform):
        raise InputError("the whole-volume result is not a transform", "pass register()'s result or its transform")
    whole_matrix = transform_to_matrix(whole_transform)
    swapped = labels_space == "moving"
    sampled, other = (moving, fixed) if swapped else (fixed, moving)
    start = np.linalg.inv(whole_matrix) if swapped else whole_matrix
    values = bone_values(labels, bones)
    regions = bone_regions(labels, dilation_mm)
    results: List[BoneResult] = []
    for value, part in zip(values, progress.split(len(values))):
        name = labels.names[value]
        part.check_cancel(f"before registering the {name}")
        began = time.perf_counter()
        with global_threads(preparation_threads(settings.execution)):
            outcome = register_bone(sampled, other, regions[value], labels.mask(value), start, settings, part, name)
        results.append(_bone_result(name, value, outcome, start, swapped, whole_matrix, time.perf_counter() - began,
                                    settings.checks.fail_on_sanity_check))
    progress.done("per-bone registration done")
    return PerBoneResult(results, whole_transform, labels_space, float(dilation_mm), _warnings(results))


def _bone_result(name: str, value: int, outcome: dict, start: np.ndarray, swapped: bool, whole_matrix: np.ndarray,
                 seconds: float, refuse: bool) -> BoneResult:
    """The bone's fixed -> moving rigid transform and how far it moved from the whole-volume result.

    A pose that failed its verdict is refused when ``refuse`` (``fail_on_sanity_check``), as a whole-volume
    result would be: the bone keeps the whole-volume transform (which passed its own checks) and the
    refused pose is reported beside it. Otherwise it is kept with the failures as warnings.
    """
    verdict = outcome["verdict"]
    refused = refuse and not verdict.passed
    pose = start if refused else outcome["matrix"]  # sampled -> other
    own = np.linalg.inv(outcome["matrix"]) if swapped else outcome["matrix"]
    centroid = outcome["centroid"]
    matrix = np.linalg.inv(pose) if swapped else pose
    # Swapped: the centroid is in the moving image; its fixed-space place is where the pose sends it.
    fixed_centroid = apply_matrix(pose, centroid[None])[0] if swapped else centroid
    change = np.linalg.inv(whole_matrix) @ matrix
    shift = float(np.linalg.norm(apply_matrix(change, fixed_centroid[None])[0] - fixed_centroid))
    after = outcome["before"] if refused else outcome["after"]
    return BoneResult(name, value, rigid_from_matrix(matrix, fixed_centroid), fixed_centroid, outcome["before"],
                      after, outcome["stop"], outcome["iterations"], seconds, rotation_angle_deg(change), shift,
                      verdict.passed, verdict.confidence, list(verdict.failures), refused, own if refused else None)


def _warnings(results: List[BoneResult]) -> List[str]:
    warnings = []
    for result in results:
        if not result.metric_after <= result.metric_before + 1e-6:
            warnings.append(f"the {result.name}'s metric did not improve ({result.metric_before:.4f} -> "
                            f"{result.metric_after:.4f}); its transform may be no better than the whole-volume one")
        failed = "; ".join(result.failures)
        if result.refused:
            warnings.append(f"the {result.name}'s own pose was refused ({failed}): it keeps the whole-volume "
                            "transform")
        elif not result.passed:
            warnings.append(f"the {result.name}'s pose failed its checks ({failed}); kept anyway, as asked "
                            "(fail_on_sanity_check off)")
    return warnings

"""BRAINSFit, driven the way the expert on the forum drove it by hand, but with the plan's numbers.

Why: BRAINSFit is what Slicer users know and trust, and it works on MRI <-> micro-CT once it is
given (1) a start inside its capture range, (2) the micro-CT downsampled with Crop Volume's spacing
multiplier, (3) the large image cropped to the small one's footprint and (4) enough samples. The
core plans (2)-(4) and finds (1) with its multi-start search (cheap, SimpleITK); BRAINSFit then
optimises with ``initializeTransformMode`` "Off" and our start as ``initialTransform``. The result
is checked with the same sanity checks as the core's own engine.
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.brainsfit_parameters import brainsfit_parameters
from MultimodalKneeRegistrationLib.engines.base import mattes_value
from MultimodalKneeRegistrationLib.errors import CancelledError, RegistrationFailedError
from MultimodalKneeRegistrationLib.geometry import (
    Box,
    apply_matrix,
    corner_points,
    image_center,
    physical_box,
    transform_to_matrix,
)
from MultimodalKneeRegistrationLib.metrics import check_result
from MultimodalKneeRegistrationLib.pipeline import initialize_transform
from MultimodalKneeRegistrationLib.planning import plan_registration
from MultimodalKneeRegistrationLib.preprocessing import crop_to_box, downsample, validate_volume
from MultimodalKneeRegistrationLib.results import RegistrationResult, StageResult

from .cli_runner import runCliModule
from .crop_volume import cropVolume, interpolatedCropAvailable
from .roi_adapter import addRoiNodeFromBox
from .temporary_nodes import removeNodes
from .transform_adapter import setTransformNodeFromSitk, sitkTransformFromTransformNode
from .volume_adapter import addVolumeNodeFromSitkImage, sitkImageFromVolumeNode, voxelCount

ProgressCallback = Callable[[float, str], None]


def footprintRoi(small: sitk.Image, large: sitk.Image, smallToLarge: sitk.Transform, marginMm: float) -> Box:
    """The part of ``large`` the ``small`` image can reach under ``smallToLarge``, plus a margin.

    Raises ``RegistrationFailedError`` when the two do not overlap at all.
    """
    footprint = apply_matrix(transform_to_matrix(smallToLarge), corner_points(small))
    box = Box(footprint.min(axis=0), footprint.max(axis=0)).grow(marginMm).intersect(physical_box(large))
    if np.any(box.size <= 0):
        raise RegistrationFailedError(
            "after initialisation the two images do not overlap at all",
            "give an initial transform that roughly aligns them",
        )
    return box


def mattesMetric(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, plan, settings
) -> Optional[float]:
    """Mattes MI (negative; lower is better) of the images under ``transform``, as BRAINSFit scores them."""
    voxels = float(np.prod(fixed.GetSize()))
    matrix = transform_to_matrix(transform)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    affine.SetTranslation(matrix[:3, 3].tolist())
    return mattes_value(
        sitk.Cast(fixed, sitk.sitkFloat32),
        sitk.Cast(moving, sitk.sitkFloat32),
        affine,
        settings,
        plan.number_of_histogram_bins,
        float(min(1.0, plan.metric_samples / max(voxels, 1.0))),
        settings.random_seed,
    )


def _inverse(transform: sitk.Transform) -> sitk.AffineTransform:
    matrix = np.linalg.inv(transform_to_matrix(transform))
    inverse = sitk.AffineTransform(3)
    inverse.SetMatrix(matrix[:3, :3].ravel().tolist())
    inverse.SetTranslation(matrix[:3, 3].tolist())
    return inverse


class BrainsFitRunner:
    """Prepares working volumes with Crop Volume (or the core), runs BRAINSFit once, checks the result."""

    def __init__(self, scene, cropLogic, brainsFitModule, runFunction=None, processEvents=None) -> None:
        self.scene = scene
        self.cropLogic = cropLogic
        self.brainsFitModule = brainsFitModule
        self.runFunction = runFunction
        self.processEvents = processEvents

    def register(
        self,
        fixedNode,
        movingNode,
        fixed: sitk.Image,
        moving: sitk.Image,
        start: Optional[sitk.Transform],
        settings,
        progress: Optional[ProgressCallback] = None,
        shouldCancel: Optional[Callable[[], bool]] = None,
    ) -> RegistrationResult:
        """Register ``moving`` to ``fixed`` (images of ``movingNode``/``fixedNode``); never modifies them."""
        report = progress or (lambda fraction, message: None)
        began = time.perf_counter()
        timings = {}
        warnings = validate_volume(fixed, "fixed") + validate_volume(moving, "moving")
        startTransform = start if start is not None else sitk.AffineTransform(3)
        report(0.02, "planning resolution and field of view")
        plan = plan_registration(fixed, moving, settings, startTransform)
        report(0.05, f"initialising ({settings.initialize_transform_mode})")
        initial = initialize_transform(fixed, moving, settings, startTransform)
        timings["initialize"] = time.perf_counter() - began
        self._checkCancel(shouldCancel)

        if plan.large_fov_image == "moving":
            roi = footprintRoi(fixed, moving, initial, plan.roi_margin_mm)
        else:
            roi = footprintRoi(moving, fixed, _inverse(initial), plan.roi_margin_mm)
        plan = plan.with_roi(
            roi,
            f"The {plan.large_fov_image} image is cropped to the {plan.small_fov_image} "
            f"image's footprint plus {plan.roi_margin_mm:g} mm before BRAINSFit.",
        )
        temporary: List = []
        try:
            tick = time.perf_counter()
            report(0.3, "cropping and downsampling with Crop Volume")
            working = {}
            for name, node, image, shrink in (
                ("fixed", fixedNode, fixed, plan.fixed_shrink),
                ("moving", movingNode, moving, plan.moving_shrink),
            ):
                box = roi if plan.large_fov_image == name else None
                multiplier = plan.spacing_multiplier if plan.fine_image == name else 1.0
                working[name] = self._workingNode(node, image, box, multiplier, shrink, temporary)
            timings["prepare"] = time.perf_counter() - tick
            self._checkCancel(shouldCancel)

            initialNode = self._temporaryNode(
                "vtkMRMLLinearTransformNode", "MKR initial transform", temporary
            )
            setTransformNodeFromSitk(initialNode, initial)
            outputNode = self._temporaryNode("vtkMRMLLinearTransformNode", "MKR BRAINSFit result", temporary)
            parameters = brainsfit_parameters(
                plan,
                settings,
                fixed_volume=working["fixed"].GetID(),
                moving_volume=working["moving"].GetID(),
                linear_transform=outputNode.GetID(),
                initial_transform=initialNode.GetID(),
                fixed_voxel_count=voxelCount(working["fixed"]),
            )
            tick = time.perf_counter()
            output = runCliModule(
                self.brainsFitModule,
                parameters,
                scene=self.scene,
                title="BRAINSFit",
                progress=lambda fraction, message: report(0.4 + 0.55 * fraction, message),
                shouldCancel=shouldCancel,
                runFunction=self.runFunction,
                processEvents=self.processEvents,
            )
            timings["optimize"] = time.perf_counter() - tick
            transform = sitkTransformFromTransformNode(outputNode, center=image_center(fixed))
            report(0.96, "checking the result")
            fixedWork = sitkImageFromVolumeNode(working["fixed"], "fixed working")
            movingWork = sitkImageFromVolumeNode(working["moving"], "moving working")
        finally:
            removeNodes(self.scene, temporary)

        before = mattesMetric(fixedWork, movingWork, startTransform, plan, settings)
        after = mattesMetric(fixedWork, movingWork, transform, plan, settings)
        if plan.small_fov_image == "fixed":
            sampled, other, sampledToOther = fixedWork, movingWork, transform
        else:
            sampled, other, sampledToOther = movingWork, fixedWork, _inverse(transform)
        checks, failures = check_result(
            transform, startTransform, before, after, sampled, other, sampledToOther, settings,
            plan.search_spacing_mm,
        )
        warnings.extend(f"sanity check failed: {text}" for text in failures)
        timings["total"] = time.perf_counter() - began
        stage = StageResult(
            "BRAINSFit " + "+".join(plan.transform_stages),
            -1,
            _stopCondition(output),
            np.nan if after is None else after,
            timings["optimize"],
        )
        result = RegistrationResult(
            transform=transform,
            initial_transform=initial,
            plan=plan,
            settings=settings,
            metric_before=np.nan if before is None else before,
            metric_after=np.nan if after is None else after,
            stages=[
                StageResult(
                    "Initialize (search)", 0, "multi-start search in the core", np.nan, timings["initialize"]
                ),
                stage,
            ],
            timings=timings,
            warnings=warnings,
            sanity=checks,
            passed_sanity_checks=not failures,
            overlap_after=checks["overlap_after"]["value"],
        )
        report(1.0, "done")
        if failures and settings.fail_on_sanity_check:
            error = RegistrationFailedError(
                "the BRAINSFit result failed its sanity checks: " + "; ".join(failures),
                "try the SimpleITK engine, another preset, or an ROI around the anatomy both images show",
            )
            error.result = result  # type: ignore[attr-defined]
            raise error
        return result

    def _temporaryNode(self, className: str, name: str, temporary: List):
        node = self.scene.AddNewNodeByClass(className, self.scene.GenerateUniqueName(name))
        node.SetHideFromEditors(True)
        node.SetSaveWithScene(False)
        temporary.append(node)
        return node

    def _workingNode(
        self, sourceNode, image: sitk.Image, box: Optional[Box], multiplier: float, shrink, temporary: List
    ):
        """The volume BRAINSFit sees: cropped to ``box``, downsampled, without parent transform."""
        name = f"MKR {sourceNode.GetName()} working"
        downsampling = multiplier > 1.0 and any(int(f) > 1 for f in shrink)
        if (downsampling and interpolatedCropAvailable()) or (box is not None and not downsampling):
            roi = addRoiNodeFromBox(
                self.scene,
                box if box is not None else physical_box(image),
                "MKR crop region",
                volumeNode=sourceNode,
            )
            temporary.append(roi)
            node = cropVolume(
                self.scene,
                self.cropLogic,
                sourceNode,
                roi,
                spacingMultiplier=multiplier if downsampling else 1.0,
                outputName=name,
            )
        else:
            work = crop_to_box(image, box) if box is not None else image
            work = downsample(work, shrink) if downsampling else work
            node = addVolumeNodeFromSitkImage(self.scene, work, name, hidden=True)
        temporary.append(node)
        return node

    @staticmethod
    def _checkCancel(shouldCancel: Optional[Callable[[], bool]]) -> None:
        if shouldCancel is not None and shouldCancel():
            raise CancelledError("registration cancelled before BRAINSFit ran", "nothing was written")


def _stopCondition(outputText: str) -> str:
    """BRAINSFit's last words about convergence, if it printed any."""
    lines = [line.strip() for line in (outputText or "").splitlines() if line.strip()]
    stops = [line for line in lines if "stop" in line.lower() or "converge" in line.lower()]
    return (stops[-1] if stops else (lines[-1] if lines else "BRAINSFit completed"))[:200]

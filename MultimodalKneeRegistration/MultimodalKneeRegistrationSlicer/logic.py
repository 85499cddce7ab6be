"""``KneeRegistrationLogic.register``: MRML nodes in, a linear transform node on the moving volume out.

Why: users press Apply in the panel, type one line in the Python console, or run a headless test;
all three call this. It validates every input before any work, converts the nodes for the core
(``volume_adapter``, ``transform_adapter``, ``roi_adapter``), runs the core's one ``run`` with the
SimpleITK engine or BRAINSFit (through Slicer's CLI module, ``brainsfit_runner``), and writes the
result as the parent transform of the *original* moving volume.
Inputs are never modified (nothing is hardened unless asked), temporary nodes never outlive a run,
progress goes to a callback and cancellation is a flag the caller sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.bones.per_bone import DEFAULT_DILATION_MM, register_per_bone
from MultimodalKneeRegistrationLib.engines import SimpleITKEngine
from MultimodalKneeRegistrationLib.engines.brainsfit import BrainsFitEngine
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.geometry import rotation_angle_deg, transform_to_matrix
from MultimodalKneeRegistrationLib.pipeline import DEFAULT_PRESET, resample_moving
from MultimodalKneeRegistrationLib.progress import ProgressCallback
from MultimodalKneeRegistrationLib.results import RegistrationResult
from MultimodalKneeRegistrationLib.run import run
from MultimodalKneeRegistrationLib.settings import PRESETS, RegistrationSettings

from .brainsfit_runner import SlicerBrainsFitRunner
from .coordinates import imageGeometryFromIjkToRas
from .crop_volume import cropVolume
from .parameters import ENGINE_NAMES
from .per_bone_adapter import (
    SceneBoneLabels,
    SlicerPerBoneResult,
    addBoneNodes,
    readBoneLabels,
    wholeVolumeTransform,
)
from .roi_adapter import addRoiNodeFromBox, boxFromRoiNode
from .temporary_nodes import removeNodes
from .transform_adapter import applyResultTransform, checkOutputTransformNode, startTransform
from .volume_adapter import ijkToRasOfNode, sitkImageFromVolumeNode, updateVolumeNodeFromSitkImage


@dataclass
class SlicerRegistrationResult:
    """What ``register`` did in the scene, plus the core's ``RegistrationResult`` (``.result``)."""

    result: RegistrationResult
    engine: str
    outputTransformNode: Any
    outputVolumeNode: Any = None
    startDescription: str = ""
    seconds: float = 0.0
    notes: List[str] = field(default_factory=list)
    #: The core's report (``report.json``'s content) of this run.
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for the panel and the console: metric before/after, time, checks, warnings."""
        r = self.result
        matrix = transform_to_matrix(r.transform)
        lines = [
            f"Engine: {self.engine}. Time: {self.seconds:.1f} s.",
            f"Mattes mutual information (lower is better): {r.metric_before:.4f} before -> "
            f"{r.metric_after:.4f} after.",
            f"Result: rotation {rotation_angle_deg(matrix):.1f} deg, translation "
            f"{np.linalg.norm(matrix[:3, 3]):.1f} mm (fixed -> moving, LPS).",
            "Sanity checks: " + ("passed." if r.passed_sanity_checks else "FAILED (see warnings)."),
            self.startDescription,
        ]
        lines += [f"{s.name}: {s.stop_condition}" for s in r.stages if s.stop_condition]
        lines += [f"Warning: {w}" for w in r.warnings] + list(self.notes)
        return "\n".join(line for line in lines if line)


def _slicerModule(name: str):
    try:
        import slicer
    except ImportError:
        return None
    modules = getattr(slicer, "modules", None)
    return getattr(modules, name, None) if modules is not None else None


class KneeRegistrationLogic:
    """Registration on MRML nodes; usable from the Python console without the widget.

    Inside Slicer every dependency comes from the application; tests pass a scene, a Crop Volume
    logic and (for BRAINSFit) a fake ``cliRunFunction``.
    """

    def __init__(
        self, scene=None, cropVolumeLogic=None, brainsFitModule=None, cliRunFunction=None, processEvents=None
    ) -> None:
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        cropModule = _slicerModule("cropvolume")
        self.scene = scene
        if cropVolumeLogic is None and cropModule is not None:
            cropVolumeLogic = cropModule.logic()
        self.cropVolumeLogic = cropVolumeLogic
        self.brainsFitModule = brainsFitModule if brainsFitModule is not None else _slicerModule("brainsfit")
        self.cliRunFunction = cliRunFunction
        self.processEvents = processEvents

    def _engine(self, name: str):
        """The core engine called ``name``; BRAINSFit runs through Slicer's CLI module."""
        if name == "BRAINSFit":
            return BrainsFitEngine(SlicerBrainsFitRunner(self.scene, self.brainsFitModule, self.cliRunFunction,
                                                         self.processEvents))
        return SimpleITKEngine()

    def availableEngines(self) -> List[str]:
        """Engines that can run here: SimpleITK always, BRAINSFit where its CLI module is loaded."""
        return [e for e in ENGINE_NAMES if e != "BRAINSFit" or self.brainsFitModule is not None]

    def register(
        self,
        fixedNode,
        movingNode,
        settings: Optional[RegistrationSettings] = None,
        *,
        engine: str = "SimpleITK",
        initialTransformNode=None,
        roiNode=None,
        outputTransformNode=None,
        outputVolumeNode=None,
        harden: bool = False,
        progress: Optional[ProgressCallback] = None,
        shouldCancel: Optional[Callable[[], bool]] = None,
    ) -> SlicerRegistrationResult:
        """Register ``movingNode`` to ``fixedNode``; the result becomes the moving volume's parent transform.

        ``initialTransformNode`` (optional) moves the moving volume roughly onto the fixed one;
        without it, the transform the moving volume already sits under is the start. ``roiNode``
        (markups ROI) limits the fixed image to the anatomy to register. ``outputTransformNode``
        None creates a new linear transform; ``outputVolumeNode`` (optional) receives the moving
        volume resampled on the fixed grid. ``harden`` bakes the transform into the moving volume
        (off by default: inputs are not modified).

        Example:
            >>> logic = MultimodalKneeRegistrationLogic()  # doctest: +SKIP
            >>> out = logic.register(getNode("CTBrain"), getNode("MRBrainT1"),
            ...                      settings_for_preset("mri-ct"))  # doctest: +SKIP
            >>> print(out.summary())  # doctest: +SKIP
        """
        began = time.perf_counter()
        settings = settings or PRESETS[DEFAULT_PRESET]
        settings.validate()
        self._validate(fixedNode, movingNode, engine, roiNode, outputTransformNode, outputVolumeNode)
        start, startDescription = startTransform(fixedNode, movingNode, initialTransformNode)
        fixed = self._fixedImage(fixedNode, roiNode)
        moving = sitkImageFromVolumeNode(movingNode, "moving")
        outcome = run(fixed, moving, settings, engine=self._engine(engine), initial_transform=start, resample=False,
                      qc_mode=None, inputs={"fixed": fixedNode.GetName(), "moving": movingNode.GetName()},
                      command="MultimodalKneeRegistrationLogic.register", progress=progress,
                      should_cancel=shouldCancel)
        if outcome.refusal is not None:
            raise outcome.refusal
        result = outcome.result
        notes = [] if roiNode is None else [f"The fixed image was limited to the ROI '{roiNode.GetName()}'."]
        if outputTransformNode is None:
            outputTransformNode = self.scene.AddNewNodeByClass(
                "vtkMRMLLinearTransformNode",
                self.scene.GenerateUniqueName(f"{movingNode.GetName()} to {fixedNode.GetName()}"),
            )
        applyResultTransform(result.transform, fixedNode, movingNode, outputTransformNode)
        if outputVolumeNode is not None:
            self._writeResampled(fixedNode, moving, result.transform, outputVolumeNode)
        if harden:
            import slicer

            slicer.vtkSlicerTransformLogic.hardenTransform(movingNode)
            notes.append(f"The transform was hardened into '{movingNode.GetName()}' (as requested).")
        return SlicerRegistrationResult(
            result,
            engine,
            outputTransformNode,
            outputVolumeNode,
            startDescription,
            time.perf_counter() - began,
            notes,
            outcome.report,
        )

    def readBoneLabels(
        self, fixedNode, movingNode, segmentationNode=None, *, expectedBones: Optional[int] = None
    ) -> SceneBoneLabels:
        """The bones for ``registerPerBone``: the segmentation's segments, or the bones found in the CT.

        Call it *before* ``register`` when the segmentation was drawn on the moving volume: the
        registration puts the moving volume under its result, and a segmentation is read where it is
        shown (see ``per_bone_adapter.segmentationSpace``). Raises ``InputError`` (an empty
        segmentation, no CT to find bones in) before any registration work.

        Example:
            >>> bones = logic.readBoneLabels(getNode("CT"), getNode("MR"), getNode("Bones"))  # doctest: +SKIP
        """
        self._validate(fixedNode, movingNode, "SimpleITK", None, None, None)
        return readBoneLabels(fixedNode, movingNode, segmentationNode, expectedBones)

    def registerPerBone(
        self,
        fixedNode,
        movingNode,
        whole=None,
        segmentationNode=None,
        settings: Optional[RegistrationSettings] = None,
        *,
        boneLabels: Optional[SceneBoneLabels] = None,
        expectedBones: Optional[int] = None,
        bones: Optional[Sequence[str]] = None,
        dilationMm: float = DEFAULT_DILATION_MM,
        cloneVolumes: bool = True,
        progress: Optional[ProgressCallback] = None,
        shouldCancel: Optional[Callable[[], bool]] = None,
    ) -> SlicerPerBoneResult:
        """Register each bone on its own, starting from the whole-volume result; one transform node per bone.

        ``whole``: ``register``'s result, a transform node or ``None`` (the transform the moving
        volume is under now). The bones come from ``boneLabels`` (``readBoneLabels``), else from
        ``segmentationNode`` (one segment per bone, named after the bone), else from the CT. Creates
        "<moving> <bone> transform" nodes and, with ``cloneVolumes``, "<moving> (<bone>)" copies of
        the moving volume under them; the inputs are not modified and nothing is written when the
        run fails or is cancelled.

        Example:
            >>> bones = logic.readBoneLabels(ct, mr, getNode("Bones"))  # doctest: +SKIP
            >>> whole = logic.register(ct, mr)  # doctest: +SKIP
            >>> out = logic.registerPerBone(ct, mr, whole, boneLabels=bones)  # doctest: +SKIP
            >>> print(out.summary())  # doctest: +SKIP
        """
        began = time.perf_counter()
        settings = settings or PRESETS[DEFAULT_PRESET]
        settings.validate()
        self._validate(fixedNode, movingNode, "SimpleITK", None, None, None)
        if boneLabels is not None and segmentationNode is not None:
            raise InputError(
                "both bone labels and a segmentation were given", "pass the segmentation or its labels, not both"
            )
        start = wholeVolumeTransform(fixedNode, movingNode, whole)
        if boneLabels is None:
            boneLabels = readBoneLabels(fixedNode, movingNode, segmentationNode, expectedBones)
        result = register_per_bone(
            sitkImageFromVolumeNode(fixedNode, "fixed"),
            sitkImageFromVolumeNode(movingNode, "moving"),
            start,
            boneLabels.labels,
            settings,
            progress,
            shouldCancel,
            labels_space=boneLabels.space,
            dilation_mm=dilationMm,
            bones=bones,
        )
        transformNodes, volumeNodes = addBoneNodes(self.scene, fixedNode, movingNode, result, cloneVolumes)
        return SlicerPerBoneResult(
            result,
            transformNodes,
            volumeNodes,
            boneLabels.source,
            time.perf_counter() - began,
            list(boneLabels.notes),
        )

    def _validate(
        self, fixedNode, movingNode, engine, roiNode, outputTransformNode, outputVolumeNode
    ) -> None:
        for role, node in (("fixed", fixedNode), ("moving", movingNode)):
            if node is None:
                raise InputError(f"no {role} volume is selected", f"select the {role} volume")
            if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputError(
                    f"the {role} volume '{node.GetName()}' is not a grey-level scalar volume",
                    "select a scalar volume (not a label map, segmentation or vector volume)",
                )
            if node.GetImageData() is None:
                raise InputError(f"the {role} volume '{node.GetName()}' has no voxels", "load it again")
        if fixedNode is movingNode:
            raise InputError("the fixed and moving volumes are the same node", "select two different volumes")
        if engine not in self.availableEngines():
            raise InputError(
                f"the {engine} engine is not available here",
                f"use one of {', '.join(self.availableEngines())}",
            )
        if roiNode is not None and not roiNode.IsA("vtkMRMLMarkupsROINode"):
            raise InputError(f"'{roiNode.GetName()}' is not a markups ROI", "select a markups ROI or none")
        if roiNode is not None and self.cropVolumeLogic is None:
            raise InputError(
                "cropping to an ROI needs the Crop Volume module", "clear the ROI or enable Crop Volume"
            )
        checkOutputTransformNode(outputTransformNode, fixedNode)
        if outputVolumeNode is not None and any(outputVolumeNode is node for node in (fixedNode, movingNode)):
            raise InputError(
                "the output volume is one of the inputs (inputs are never overwritten)",
                "select a new volume for the output",
            )

    def _fixedImage(self, fixedNode, roiNode) -> sitk.Image:
        """The fixed image, limited to ``roiNode`` by voxel-based Crop Volume (no copy of cut voxels)."""
        if roiNode is None:
            return sitkImageFromVolumeNode(fixedNode, "fixed")
        box = boxFromRoiNode(roiNode, fixedNode)
        localRoi = addRoiNodeFromBox(self.scene, box, "MKR fixed ROI", volumeNode=fixedNode)
        cropped = None
        try:
            cropped = cropVolume(
                self.scene, self.cropVolumeLogic, fixedNode, localRoi, outputName="MKR fixed in ROI"
            )
            return sitkImageFromVolumeNode(cropped, "fixed (in the ROI)")
        finally:
            removeNodes(self.scene, [localRoi, cropped])

    def _writeResampled(
        self, fixedNode, moving: sitk.Image, transform: sitk.Transform, outputVolumeNode
    ) -> None:
        """The moving image on the fixed volume's full grid, shown where the fixed volume is."""
        origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRasOfNode(fixedNode))
        reference = sitk.Image([int(d) for d in fixedNode.GetImageData().GetDimensions()], sitk.sitkUInt8)
        reference.SetOrigin(origin)
        reference.SetSpacing(spacing)
        reference.SetDirection(direction)
        updateVolumeNodeFromSitkImage(outputVolumeNode, resample_moving(reference, moving, transform))
        outputVolumeNode.SetAndObserveTransformNodeID(fixedNode.GetTransformNodeID())
        if outputVolumeNode.GetDisplayNode() is None:
            outputVolumeNode.CreateDefaultDisplayNodes()

"""``KneeRegistrationLogic.register``: MRML nodes in, a linear transform node on the moving volume out.

Why: users press Apply in the panel, type one line in the Python console, or run a headless test;
all three call this. It validates every input before any work, converts the nodes for the core
(``volume_adapter``, ``transform_adapter``, ``roi_adapter``), runs the core's one ``run`` with the
SimpleITK engine or BRAINSFit (through Slicer's CLI module, ``brainsfit_runner``), and writes the
result as the parent transform of the *original* moving volume.
Inputs are never modified (nothing is hardened unless asked), temporary nodes never outlive a run,
progress goes to a callback and cancellation is a flag the caller sets.

Light at import: Slicer imports every scripted module file at start-up, and the module file imports
this one (its logic class derives from ``KneeRegistrationLogic``). So SimpleITK and the core's
registration code are imported inside the methods that run them, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence

from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.io import STREAM_ABOVE_MB
from MultimodalKneeRegistrationLib.settings import (
    DEFAULT_ENGINE,
    DEFAULT_PRESET,
    ENGINE_NAMES,
    PRESETS,
    RegistrationSettings,
)

from .temporary_nodes import removeNodes

if TYPE_CHECKING:  # annotations only: importing them here would load SimpleITK at Slicer start-up
    import SimpleITK as sitk
    from MultimodalKneeRegistrationLib.progress import ProgressCallback
    from MultimodalKneeRegistrationLib.results import RegistrationResult

    from .per_bone_adapter import SceneBoneLabels, SlicerPerBoneResult

#: How the working images are made: the core's block average (default), or Crop Volume's
#: interpolated mode on exactly the same grid (``crop_volume_source``), as the forum recipe did by hand.
PREPARATIONS = ("BlockAverage", "CropVolume")


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
        import numpy as np
        from MultimodalKneeRegistrationLib.geometry import rotation_angle_deg, transform_to_matrix

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


def _recordPreparation(outcome, sources) -> List[str]:
    """Crop Volume's notes (what made each working image), added to the run's facts and the report."""
    notes = [note for source in sources for note in source.notes]
    result = outcome.result
    if notes and result is not None:
        result.facts = replace(result.facts, notes=tuple(result.facts.notes) + tuple(notes))
        plan = outcome.report.get("plan") if isinstance(outcome.report, dict) else None
        if isinstance(plan, dict) and isinstance(plan.get("explanation"), list):
            plan["explanation"].extend(notes)
    return notes


def _slicerModule(name: str):
    try:
        import slicer
    except ImportError:
        return None
    modules = getattr(slicer, "modules", None)
    return getattr(modules, name, None) if modules is not None else None


#: Volumes whose voxels take more memory than this reach the core in place (``_coreInput``): the
#: command line's streaming limit.
IN_PLACE_ABOVE_BYTES = int(STREAM_ABOVE_MB * 1_000_000)


def voxelComponents(volumeNode) -> int:
    """Components per voxel of the node's image: 1 for a grey-level volume, 0 without voxels.

    Vector, colour and diffusion-weighted volumes (``vtkMRMLVectorVolumeNode``,
    ``vtkMRMLDiffusionWeightedVolumeNode``, ...) derive from ``vtkMRMLScalarVolumeNode`` and have
    more than one; a plain scalar volume node can hold such an image too.

    Example:
        >>> voxelComponents(getNode("MRHead"))  # doctest: +SKIP
        1
    """
    imageData = volumeNode.GetImageData() if volumeNode is not None else None
    scalars = imageData.GetPointData().GetScalars() if imageData is not None else None
    return 0 if scalars is None else int(scalars.GetNumberOfComponents())


def _checkInputVolume(node, role: str) -> None:
    """Raise ``InputError`` unless ``node`` is a grey-level volume with one component per voxel."""
    if node is None:
        raise InputError(f"no {role} volume is selected", f"select the {role} volume")
    name = node.GetName()
    if not node.IsA("vtkMRMLScalarVolumeNode") or any(
        node.IsA(kind) for kind in ("vtkMRMLLabelMapVolumeNode", "vtkMRMLDiffusionImageVolumeNode")
    ):
        raise InputError(
            f"the {role} volume '{name}' is not a grey-level scalar volume",
            "select a scalar volume (not a label map, segmentation or tensor volume)",
        )
    components = voxelComponents(node)
    if components == 0:
        raise InputError(f"the {role} volume '{name}' has no voxels", "load it again")
    if components > 1:
        raise InputError(
            f"the {role} volume '{name}' has {components} values per voxel (a vector, colour or "
            "diffusion-weighted volume); registration needs one grey level per voxel",
            "convert it to a single scalar component first, for example with the Vector to Scalar Volume module",
        )


def _coreInput(volumeNode, role: str):
    """A large volume node as the core's in-place source, a small one as a SimpleITK copy."""
    from .volume_adapter import sitkImageFromVolumeNode, sourceFromVolumeNode, volumeBytes

    if volumeBytes(volumeNode) > IN_PLACE_ABOVE_BYTES:
        return sourceFromVolumeNode(volumeNode, role)
    return sitkImageFromVolumeNode(volumeNode, role)


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
        from MultimodalKneeRegistrationLib.engines import SimpleITKEngine
        from MultimodalKneeRegistrationLib.engines.brainsfit import BrainsFitEngine

        from .brainsfit_runner import SlicerBrainsFitRunner

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
        engine: str = DEFAULT_ENGINE,
        initialTransformNode=None,
        roiNode=None,
        outputTransformNode=None,
        outputVolumeNode=None,
        harden: bool = False,
        preparation: str = "BlockAverage",
        progress: Optional[ProgressCallback] = None,
        shouldCancel: Optional[Callable[[], bool]] = None,
    ) -> SlicerRegistrationResult:
        """Register ``movingNode`` to ``fixedNode``; the result becomes the moving volume's parent transform.

        ``initialTransformNode`` (optional) moves the moving volume roughly onto the fixed one;
        without it, the transform the moving volume already sits under is the start. ``roiNode``
        (markups ROI) limits the fixed image to the anatomy to register. ``outputTransformNode``
        None creates a new linear transform; ``outputVolumeNode`` (optional) receives the moving
        volume resampled on the fixed grid. ``harden`` bakes the transform into the moving volume
        (off by default: inputs are not modified). ``preparation`` "CropVolume" makes the working
        images with Crop Volume's interpolated mode on the planned grid (see ``crop_volume_source``;
        the default "BlockAverage" anti-aliases, Crop Volume's linear interpolation does not).

        Example:
            >>> logic = MultimodalKneeRegistrationLogic()  # doctest: +SKIP
            >>> out = logic.register(getNode("CTBrain"), getNode("MRBrainT1"),
            ...                      settings_for_preset("mri-ct"))  # doctest: +SKIP
            >>> print(out.summary())  # doctest: +SKIP
        """
        from MultimodalKneeRegistrationLib.run import run

        from .transform_adapter import startTransform

        began = time.perf_counter()
        settings = settings or PRESETS[DEFAULT_PRESET]
        settings.validate()
        self._validate(fixedNode, movingNode, engine, roiNode, outputTransformNode, outputVolumeNode, preparation)
        start, startDescription = startTransform(fixedNode, movingNode, initialTransformNode)
        temporary: List = []
        try:
            fixed, moving, sources = self._inputImages(fixedNode, movingNode, roiNode, preparation, temporary)
            outcome = run(fixed, moving, settings, engine=self._engine(engine), initial_transform=start,
                          resample=False, qc_mode=None,
                          inputs={"fixed": fixedNode.GetName(), "moving": movingNode.GetName()},
                          command="MultimodalKneeRegistrationLogic.register", progress=progress,
                          should_cancel=shouldCancel)
        finally:
            removeNodes(self.scene, temporary)
        notes = [] if roiNode is None else [f"The fixed image was limited to the ROI '{roiNode.GetName()}'."]
        notes += _recordPreparation(outcome, sources)
        if outcome.refusal is not None:
            raise outcome.refusal
        outputTransformNode = self._placeResult(outcome.result, fixedNode, movingNode, moving, outputTransformNode,
                                                outputVolumeNode, harden, notes)
        return SlicerRegistrationResult(outcome.result, engine, outputTransformNode, outputVolumeNode,
                                        startDescription, time.perf_counter() - began, notes, outcome.report)

    def _placeResult(self, result, fixedNode, movingNode, moving, outputTransformNode, outputVolumeNode, harden,
                     notes: List[str]):
        """Write the result into the output transform (a new one if None) over the moving volume; resample
        into ``outputVolumeNode`` and harden when asked. Returns the output transform node."""
        from .transform_adapter import applyResultTransform

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
        return outputTransformNode

    def _inputImages(self, fixedNode, movingNode, roiNode, preparation: str, temporary: List):
        """(fixed, moving, Crop Volume sources) for the core; nodes the run needs go into ``temporary``.

        A volume larger than ``IN_PLACE_ABOVE_BYTES`` reaches the core as a source over its own voxels
        (averaged slab by slab where they lie: no SimpleITK copy of a multi-gigabyte micro-CT); smaller
        ones as SimpleITK copies, as always.
        """
        fixedSource = fixedNode
        if roiNode is not None:
            fixedSource = self._fixedInRoi(fixedNode, roiNode)
            temporary.append(fixedSource)
        if preparation != "CropVolume":
            return _coreInput(fixedSource, "fixed"), _coreInput(movingNode, "moving"), []
        from .crop_volume_source import CropVolumeSource

        sources = [CropVolumeSource(self.scene, self.cropVolumeLogic, fixedSource, "fixed"),
                   CropVolumeSource(self.scene, self.cropVolumeLogic, movingNode, "moving")]
        return sources[0], sources[1], sources

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
        from .per_bone_adapter import readBoneLabels

        self._validate(fixedNode, movingNode, DEFAULT_ENGINE, None, None, None)
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
        dilationMm: Optional[float] = None,
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
        run fails or is cancelled (the whole-volume result stays). The bones go through the core's one
        ``run`` (``whole_volume``: no second whole-volume registration); its report is ``.report``.
        No ROI: each bone's dilated mask already limits where the metric looks.

        Example:
            >>> bones = logic.readBoneLabels(ct, mr, getNode("Bones"))  # doctest: +SKIP
            >>> whole = logic.register(ct, mr)  # doctest: +SKIP
            >>> out = logic.registerPerBone(ct, mr, whole, boneLabels=bones)  # doctest: +SKIP
            >>> print(out.summary())  # doctest: +SKIP
        """
        from MultimodalKneeRegistrationLib.run import run

        from .per_bone_adapter import SlicerPerBoneResult, addBoneNodes, readBoneLabels, wholeVolumeStart
        from .volume_adapter import sitkImageFromVolumeNode

        began = time.perf_counter()
        settings = settings or PRESETS[DEFAULT_PRESET]
        settings.validate()
        self._validate(fixedNode, movingNode, DEFAULT_ENGINE, None, None, None)
        if boneLabels is not None and segmentationNode is not None:
            raise InputError("both bone labels and a segmentation were given",
                             "pass the segmentation or its labels, not both")
        start = wholeVolumeStart(fixedNode, movingNode, whole)
        if boneLabels is None:
            boneLabels = readBoneLabels(fixedNode, movingNode, segmentationNode, expectedBones)
        outcome = run(sitkImageFromVolumeNode(fixedNode, "fixed"), sitkImageFromVolumeNode(movingNode, "moving"),
                      settings, whole_volume=start, bone_labels=boneLabels.labels, labels_space=boneLabels.space,
                      bone_dilation_mm=dilationMm, bone_names=bones, resample=False, qc_mode=None,
                      inputs={"fixed": fixedNode.GetName(), "moving": movingNode.GetName()},
                      command="MultimodalKneeRegistrationLogic.registerPerBone", progress=progress,
                      should_cancel=shouldCancel)
        transformNodes, volumeNodes = addBoneNodes(self.scene, fixedNode, movingNode, outcome.per_bone, cloneVolumes)
        return SlicerPerBoneResult(outcome.per_bone, transformNodes, volumeNodes, boneLabels.source,
                                   time.perf_counter() - began, list(boneLabels.notes), outcome.report)

    def _validate(
        self, fixedNode, movingNode, engine, roiNode, outputTransformNode, outputVolumeNode, preparation="BlockAverage"
    ) -> None:
        from .transform_adapter import checkOutputTransformNode

        _checkInputVolume(fixedNode, "fixed")
        _checkInputVolume(movingNode, "moving")
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
        self._validatePreparation(preparation)
        checkOutputTransformNode(outputTransformNode, fixedNode)
        if outputVolumeNode is not None and any(outputVolumeNode is node for node in (fixedNode, movingNode)):
            raise InputError(
                "the output volume is one of the inputs (inputs are never overwritten)",
                "select a new volume for the output",
            )

    def _validatePreparation(self, preparation: str) -> None:
        from .crop_volume import resampleLogicAvailable

        if preparation not in PREPARATIONS:
            raise InputError(f"unknown preparation {preparation!r}", f"use one of {', '.join(PREPARATIONS)}")
        if preparation == "CropVolume" and not resampleLogicAvailable(self.cropVolumeLogic):
            raise InputError(
                "preparation 'CropVolume' needs Crop Volume and its ResampleScalarVectorDWIVolume CLI module",
                "use preparation='BlockAverage' (the default), or a Slicer with its CLI modules loaded",
            )

    def _fixedInRoi(self, fixedNode, roiNode):
        """A hidden copy of the fixed volume's voxels inside ``roiNode`` (voxel-based Crop Volume: no
        copy of cut voxels); the caller removes it."""
        from .crop_volume import cropVolume
        from .roi_adapter import boxFromRoiNode, temporaryRoi

        box = boxFromRoiNode(roiNode, fixedNode)
        with temporaryRoi(self.scene, "MKR fixed ROI", box, volumeNode=fixedNode) as localRoi:
            return cropVolume(self.scene, self.cropVolumeLogic, fixedNode, localRoi, outputName="MKR fixed in ROI")

    def _writeResampled(
        self, fixedNode, moving: sitk.Image, transform: sitk.Transform, outputVolumeNode
    ) -> None:
        """The moving image on the fixed volume's full grid, shown where the fixed volume is."""
        import SimpleITK as sitk
        from MultimodalKneeRegistrationLib.pipeline import resample_moving

        from .coordinates import imageGeometryFromIjkToRas
        from .volume_adapter import ijkToRasOfNode, updateVolumeNodeFromSitkImage

        origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRasOfNode(fixedNode))
        reference = sitk.Image([int(d) for d in fixedNode.GetImageData().GetDimensions()], sitk.sitkUInt8)
        reference.SetOrigin(origin)
        reference.SetSpacing(spacing)
        reference.SetDirection(direction)
        updateVolumeNodeFromSitkImage(outputVolumeNode, resample_moving(reference, moving, transform))
        outputVolumeNode.SetAndObserveTransformNodeID(fixedNode.GetTransformNodeID())
        if outputVolumeNode.GetDisplayNode() is None:
            outputVolumeNode.CreateDefaultDisplayNodes()

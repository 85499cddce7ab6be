"""Slicer's Crop Volume module logic, as the expert used it by hand: crop to an ROI, downsample by a
spacing multiplier.

Why: the forum thread's working recipe was "Crop Volume the micro-CT with spacing multiplier 8,
crop the MRI to the micro-CT's ROI". Doing it with Crop Volume itself keeps the result identical
to what a Slicer user would get by hand, and voxel-based cropping of a 1 GB micro-CT costs almost
no memory (no copy to SimpleITK of voxels that are thrown away). Interpolated cropping (spacing
multiplier > 1) runs the ResampleScalarVectorDWIVolume CLI module.

Interpolated cropping is checked here rather than trusted: ``vtkSlicerCropVolumeLogic::CropInterpolated``
returns 0 whatever the resampling did (``Modules/Loadable/CropVolume/Logic/vtkSlicerCropVolumeLogic.cxx``
runs the CLI with ``ApplyAndWait`` and returns 0 after it: lines 630-640 at v5.6.2 and v5.8.1,
619-629 at v5.10.0), and it removes its CLI node before returning. So the CLI node is caught as it is
added to the scene and its ``GetStatus() & ErrorsMask`` read afterwards, and the output must have
exactly the grid ``GetInterpolatedCropOutputGeometry`` promises; a failed resampling is reported as
such, never as "the ROI does not overlap". ``ApplyAndWait`` runs the CLI in the calling thread
(``vtkSlicerCLIModuleLogic::ApplyAndWait``: ``Base/QTCLI/vtkSlicerCLIModuleLogic.cxx:669-681`` at
v5.6.2 and v5.8.1, ``Base/Logic/vtkSlicerCLIModuleLogic.cxx:655-667`` at v5.10.0): the application is
blocked, and cannot be cancelled, while it resamples.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import vtk
from MultimodalKneeRegistrationLib.errors import EngineError, InputError

from .temporary_nodes import keepActivePlaceNodes, removeNodes

#: ``CropInterpolated``'s error codes (vtkSlicerCropVolumeLogic.cxx, same in 5.6.2, 5.8.1, 5.10.0).
_CROP_ERRORS = {
    -1: "an input, the ROI or the output is missing",
    -3: "the ResampleScalarVectorDWIVolume CLI module is not loaded",
    -4: "its resampling CLI node could not be created",
    -5: "the ROI is under a warping (non-linear) transform",
    -6: "the output volume is under a warping (non-linear) transform",
}


def resampleLogicAvailable(cropLogic) -> bool:
    """True when Crop Volume finds the ResampleScalarVectorDWIVolume logic where it looks for it
    (``GetModuleLogic("ResampleScalarVectorDWIVolume")`` through its application logic)."""
    if cropLogic is None or cropLogic.GetMRMLApplicationLogic() is None:
        return False
    return cropLogic.GetMRMLApplicationLogic().GetModuleLogic("ResampleScalarVectorDWIVolume") is not None


def _newOutputNode(scene, inputVolumeNode, outputName: Optional[str]):
    name = outputName or f"{inputVolumeNode.GetName()} cropped"
    outputNode = scene.AddNewNodeByClass(inputVolumeNode.GetClassName(), scene.GenerateUniqueName(name))
    outputNode.SetHideFromEditors(True)
    outputNode.SetSaveWithScene(False)
    # Crop Volume writes its grid in the output's coordinates: give the output (and the ROI, set by
    # the caller) the input's parent, so that the grid lands in the input's own coordinates.
    outputNode.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
    return outputNode


def cropVolume(
    scene,
    cropLogic,
    inputVolumeNode,
    roiNode,
    *,
    spacingMultiplier: float = 1.0,
    outputName: Optional[str] = None,
    keepParentTransform: bool = False,
    isotropic: bool = True,
):
    """A new, hidden volume node: ``inputVolumeNode`` cropped to ``roiNode`` by Crop Volume.

    ``spacingMultiplier`` 1 gives voxel-based cropping (the voxels inside both the ROI and the volume
    are copied as they are); above 1 the interpolated mode resamples (linear interpolation, see
    ``cropInterpolated``). The output's geometry is in the input's own coordinates; its parent
    transform is removed unless ``keepParentTransform`` (CLI modules must not see a parent
    transform). A failed crop raises (``InputError`` when the ROI misses the volume) and leaves no
    output.

    Example:
        >>> small = cropVolume(slicer.mrmlScene, slicer.modules.cropvolume.logic(), microCtNode,
        ...                    roiNode, spacingMultiplier=8)  # doctest: +SKIP
    """
    if spacingMultiplier < 1.0:
        raise InputError(f"spacing multiplier {spacingMultiplier:g} is below 1", "use 1 or more")
    if spacingMultiplier > 1.0:
        return cropInterpolated(scene, cropLogic, inputVolumeNode, roiNode, spacingMultiplier, isotropic=isotropic,
                                outputName=outputName, keepParentTransform=keepParentTransform)
    extent = [0, -1, 0, -1, 0, -1]
    cropLogic.GetVoxelBasedCropOutputExtent(roiNode, inputVolumeNode, extent, True)
    if any(extent[2 * axis + 1] < extent[2 * axis] for axis in range(3)):
        raise InputError(
            f"the crop region does not overlap the volume '{inputVolumeNode.GetName()}'",
            "move the ROI onto the anatomy shown by that volume",
        )
    with _croppedOutput(scene, inputVolumeNode, outputName, keepParentTransform) as outputNode:
        # Limited to the input's extent: a region reaching past the volume is not padded with
        # made-up voxels (Apply's voxel-based mode pads, which would bias the metric).
        errorCode = cropLogic.CropVoxelBased(roiNode, inputVolumeNode, outputNode, True, 0.0)
        if errorCode != 0 or outputNode.GetImageData() is None:
            raise EngineError(
                f"Crop Volume could not crop '{inputVolumeNode.GetName()}' (error code {errorCode})",
                "see the application log for Crop Volume's message",
            )
    return outputNode


@contextmanager
def _croppedOutput(scene, inputVolumeNode, outputName: Optional[str], keepParentTransform: bool) -> Iterator:
    """A new output node for the ``with`` block: removed when the block fails, and without the
    input's parent transform after it unless ``keepParentTransform``."""
    outputNode = _newOutputNode(scene, inputVolumeNode, outputName)
    try:
        yield outputNode
    except BaseException:
        removeNodes(scene, [outputNode])
        raise
    if not keepParentTransform:
        outputNode.SetAndObserveTransformNodeID(None)


def interpolatedOutputSize(cropLogic, roiNode, inputVolumeNode, spacingScale: float, isotropic: bool) -> Tuple:
    """(size, spacing) of the grid ``CropInterpolated`` will write, from Crop Volume's own function."""
    extent, spacing = [0, -1, 0, -1, 0, -1], [0.0, 0.0, 0.0]
    cropLogic.GetInterpolatedCropOutputGeometry(roiNode, inputVolumeNode, bool(isotropic), float(spacingScale),
                                                extent, spacing)
    return tuple(extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)), tuple(spacing)


@contextmanager
def _nodesAdded(scene) -> Iterator[List]:
    """Every node added to ``scene`` inside the ``with`` block (kept alive, so that a CLI node removed
    by Crop Volume can still be asked for its status)."""
    added: List = []

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(caller, event, node):
        if node is not None:
            added.append(node)

    tag = scene.AddObserver(scene.NodeAddedEvent, onNodeAdded)
    try:
        yield added
    finally:
        scene.RemoveObserver(tag)


def cropInterpolated(scene, cropLogic, inputVolumeNode, roiNode, spacingScale: float, *, isotropic: bool = True,
                     outputName: Optional[str] = None, keepParentTransform: bool = False,
                     interpolation: str = "linear"):
    """A new, hidden volume node: ``inputVolumeNode`` resampled by Crop Volume's interpolated mode.

    Crop Volume's grid: aligned with the ROI's edges and axes (its ``ObjectToNode`` matrix), spacing
    ``spacingScale`` times the input's (per axis; the smallest one with ``isotropic``), as many whole
    voxels as fit in the ROI (``int(size / spacing + 0.001)``). Raises ``InputError`` when the ROI
    holds no whole output voxel, ``EngineError`` with the CLI's own error text when the
    resampling fails (checked, since ``CropInterpolated`` returns 0 whatever happened).
    """
    size, _ = interpolatedOutputSize(cropLogic, roiNode, inputVolumeNode, spacingScale, isotropic)
    if min(size) < 1:
        raise InputError(f"the crop region is smaller than one output voxel of '{inputVolumeNode.GetName()}' "
                         f"({size[0]}x{size[1]}x{size[2]})", "make the ROI larger or the spacing multiplier smaller")
    modes = {"nearest": 1, "linear": 2, "windowedSinc": 3, "bspline": 4}  # vtkMRMLCropVolumeParametersNode.h:32-35
    with _croppedOutput(scene, inputVolumeNode, outputName, keepParentTransform) as outputNode:
        with keepActivePlaceNodes(scene), _nodesAdded(scene) as added:  # its origin point becomes active
            errorCode = cropLogic.CropInterpolated(roiNode, inputVolumeNode, outputNode, bool(isotropic),
                                                   float(spacingScale), modes[interpolation], 0.0)
            # Crop Volume removes its CLI node and origin point, but not the display node the Markups
            # logic gave that point: remove what it left, keeping the output and its own helpers.
            keep = {outputNode.GetID(), outputNode.GetDisplayNodeID(), outputNode.GetStorageNodeID()}
            removeNodes(scene, [node for node in added if node.GetID() not in keep and not node.IsA(
                "vtkMRMLSubjectHierarchyNode")])
        cliNodes = [node for node in added if node.IsA("vtkMRMLCommandLineModuleNode")]
        _checkInterpolatedCrop(inputVolumeNode, outputNode, errorCode, cliNodes, size)
    return outputNode


def _checkInterpolatedCrop(inputVolumeNode, outputNode, errorCode: int, cliNodes, size) -> None:
    name = inputVolumeNode.GetName()
    if errorCode != 0:
        raise EngineError(
            f"Crop Volume could not resample '{name}': {_CROP_ERRORS.get(errorCode, 'unknown error')} "
            f"(error code {errorCode})", "see the application log for Crop Volume's message")
    for node in cliNodes:
        if node.GetStatus() & node.ErrorsMask:
            from MultimodalKneeRegistrationLib.engines.external_process import last_words

            raise EngineError(
                f"Crop Volume's resampling of '{name}' failed ({node.GetStatusString()}): "
                f"{last_words(node.GetErrorText() or '')}",
                "the full message is in the application's error log; use the default preparation (block averaging)")
    imageData = outputNode.GetImageData()
    written = tuple(imageData.GetDimensions()) if imageData is not None else None
    if written != tuple(size):
        raise EngineError(
            f"Crop Volume's resampling of '{name}' wrote {'no image' if written is None else written} "
            f"instead of a {size[0]}x{size[1]}x{size[2]} grid",
            "see the application log for ResampleScalarVectorDWIVolume's message; use the default preparation")

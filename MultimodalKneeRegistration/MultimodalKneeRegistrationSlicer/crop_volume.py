"""Slicer's Crop Volume module logic, as the expert used it by hand: crop to an ROI, downsample by a
spacing multiplier.

Why: the forum thread's working recipe was "Crop Volume the micro-CT with spacing multiplier 8,
crop the MRI to the micro-CT's ROI". Doing it with Crop Volume itself keeps the result identical
to what a Slicer user would get by hand, and voxel-based cropping of a 1 GB micro-CT costs almost
no memory (no copy to SimpleITK of voxels that are thrown away). Interpolated cropping (spacing
multiplier > 1) needs the ResampleScalarVectorDWIVolume CLI module; where it is missing (the
slicer-core wheel) the caller falls back to the core.
"""

from __future__ import annotations

from typing import Optional

from MultimodalKneeRegistrationLib.errors import InputError, RegistrationFailedError

from .temporary_nodes import removeNodes


def interpolatedCropAvailable() -> bool:
    """True inside a Slicer application whose CLI modules are loaded (Crop Volume can resample)."""
    try:
        import slicer
    except ImportError:
        return False
    modules = getattr(slicer, "modules", None)
    return modules is not None and hasattr(modules, "resamplescalarvectordwivolume")


def cropVolume(
    scene,
    cropLogic,
    inputVolumeNode,
    roiNode,
    *,
    spacingMultiplier: float = 1.0,
    outputName: Optional[str] = None,
    keepParentTransform: bool = False,
):
    """A new, hidden volume node: ``inputVolumeNode`` cropped to ``roiNode`` by Crop Volume.

    ``spacingMultiplier`` 1 gives voxel-based cropping (the voxels inside both the ROI and the volume
    are copied as they are); above
    1 the interpolated mode resamples to isotropic voxels of ``spacingMultiplier`` times the input's
    smallest spacing (linear interpolation): the plan's working spacing. The output's geometry is in
    the input's own coordinates; its parent transform is removed unless ``keepParentTransform`` (CLI
    modules must not see a parent transform). The temporary parameter node is removed even on
    failure; a failed crop raises (``InputError`` when the ROI misses the volume) and leaves no output.

    Example:
        >>> small = cropVolume(slicer.mrmlScene, slicer.modules.cropvolume.logic(), microCtNode,
        ...                    roiNode, spacingMultiplier=8)  # doctest: +SKIP
    """
    if spacingMultiplier < 1.0:
        raise InputError(f"spacing multiplier {spacingMultiplier:g} is below 1", "use 1 or more")
    interpolate = spacingMultiplier > 1.0
    name = outputName or f"{inputVolumeNode.GetName()} cropped"
    outputNode = scene.AddNewNodeByClass(inputVolumeNode.GetClassName(), scene.GenerateUniqueName(name))
    outputNode.SetHideFromEditors(True)
    outputNode.SetSaveWithScene(False)
    # Interpolated cropping writes its grid in the output's coordinates: give the output (and the ROI,
    # set by the caller) the input's parent, so that the grid lands in the input's own coordinates.
    outputNode.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
    parameters = None
    succeeded = False
    try:
        if interpolate:
            parameters = scene.AddNewNodeByClass("vtkMRMLCropVolumeParametersNode")
            parameters.SetInputVolumeNodeID(inputVolumeNode.GetID())
            parameters.SetROINodeID(roiNode.GetID())
            parameters.SetOutputVolumeNodeID(outputNode.GetID())
            parameters.SetVoxelBased(False)
            parameters.SetSpacingScalingConst(float(spacingMultiplier))
            parameters.SetIsotropicResampling(True)
            parameters.SetInterpolationMode(parameters.InterpolationLinear)
            errorCode = cropLogic.Apply(parameters)
        else:
            extent = [0, -1, 0, -1, 0, -1]
            cropLogic.GetVoxelBasedCropOutputExtent(roiNode, inputVolumeNode, extent, True)
            if any(extent[2 * axis + 1] < extent[2 * axis] for axis in range(3)):
                raise InputError(
                    f"the crop region does not overlap the volume '{inputVolumeNode.GetName()}'",
                    "move the ROI onto the anatomy shown by that volume",
                )
            # Limited to the input's extent: a region reaching past the volume is not padded with
            # made-up voxels (Apply's voxel-based mode pads, which would bias the metric).
            errorCode = cropLogic.CropVoxelBased(roiNode, inputVolumeNode, outputNode, True, 0.0)
        imageData = outputNode.GetImageData()
        if errorCode == 0 and (imageData is None or min(imageData.GetDimensions()) < 1):
            raise InputError(
                f"the crop region does not overlap the volume '{inputVolumeNode.GetName()}'",
                "move the ROI onto the anatomy shown by that volume",
            )
        if errorCode != 0 or imageData is None:
            raise RegistrationFailedError(
                f"Crop Volume could not crop '{inputVolumeNode.GetName()}' (error code {errorCode})",
                "check that the ROI overlaps the volume; see the application log for Crop Volume's message",
            )
        if not keepParentTransform:
            outputNode.SetAndObserveTransformNodeID(None)
        succeeded = True
        return outputNode
    finally:
        removeNodes(scene, [parameters] + ([] if succeeded else [outputNode]))

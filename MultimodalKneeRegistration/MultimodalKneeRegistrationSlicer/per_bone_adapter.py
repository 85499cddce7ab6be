"""Per-bone registration in the scene: segmentation nodes -> core bone labels, results -> transform nodes.

Why: when the knee was scanned at different flexion angles, one rigid transform cannot align femur
and tibia at once. The core's one ``run``, given the whole-volume result (``whole_volume``), registers
each bone on its own; this module gives it the bones from a segmentation node (or finds them in the CT)
and the result to start from (``wholeVolumeStart``), and writes one linear transform node per bone,
each with a copy of the moving volume under it, so that every bone can be checked in the slice views.

Which volume a segmentation belongs to (``segmentationSpace``): a segmentation is used where it is
shown, i.e. in world coordinates through its parent transforms, like everything else in Slicer. It
is resampled onto the *moving* volume's grid when it moves with the moving volume (same parent
transform as the moving volume and not the fixed one's), so that it is never pushed through an
imprecise transform; when all three share one parent (typically none, before any registration) the
volume it was drawn on decides (its reference geometry, which the Segment Editor takes from the
source volume); in every other case it is resampled onto the *fixed* volume's grid. Read the labels
before the whole-volume registration puts the moving volume under its result (``readBoneLabels``
then ``register`` then ``registerPerBone``): the panel and the copied Python code do so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import SimpleITK as sitk
import vtk
from MultimodalKneeRegistrationLib.bones.masks import BoneLabels, bone_labels_from_image, looks_like_ct, segment_bones
from MultimodalKneeRegistrationLib.bones.per_bone import PerBoneResult
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.results import RegistrationResult
from MultimodalKneeRegistrationLib.steps.preprocessing import shrink_factors_for_spacing
from vtk.util import numpy_support

from .coordinates import imageGeometryFromIjkToRas
from .temporary_nodes import removeNodes
from .transform_adapter import matrixBetweenNodes, setTransformNodeFromSitk, startTransform
from .volume_adapter import ijkToRasOfNode, sitkImageFromVolumeNode, vtkMatrixFromArray

#: Bone masks are sampled on the volume's grid coarsened to about this spacing (like ``segment_bones``):
#: the core grows and compares distance maps on it, which a full 0.25 mm micro-CT grid would make slow.
LABEL_SPACING_MM = 1.0


@dataclass
class SceneBoneLabels:
    """Bone labels read from the scene, the image they belong to (``space``) and where they came from."""

    labels: BoneLabels
    space: str
    source: str
    notes: List[str] = field(default_factory=list)


@dataclass
class SlicerPerBoneResult:
    """What ``registerPerBone`` wrote: one transform node (and one moving-volume copy) per bone.

    ``perBone`` is the core's ``PerBoneResult`` (``.bones``, ``.relative_rotation_deg(a, b)``);
    ``transformNodes`` and ``volumeNodes`` map bone names to the nodes created.
    """

    perBone: PerBoneResult
    transformNodes: Dict[str, Any]
    volumeNodes: Dict[str, Any]
    labelsSource: str
    seconds: float = 0.0
    notes: List[str] = field(default_factory=list)
    #: The core's report (``report.json``'s content) of the run that registered the bones.
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """Per bone: rotation and shift from the whole-volume result; per pair: the relative rotation."""
        names = ", ".join(f"'{n.GetName()}'" for n in self.transformNodes.values())
        lines = [
            f"Per-bone registration of {len(self.perBone.bones)} bone(s), masks from {self.labelsSource}. "
            f"Time: {self.seconds:.1f} s.",
            self.perBone.summary(),
            f"Transforms: {names}.",
        ]
        if self.volumeNodes:
            volumes = ", ".join(f"'{n.GetName()}'" for n in self.volumeNodes.values())
            lines.append(f"Moving volume copies, one under each bone's transform: {volumes}.")
        return "\n".join(lines + list(self.notes))


def _parent(node):
    return node.GetParentTransformNode()


def segmentationSpace(segmentationNode, fixedNode, movingNode) -> Tuple[str, str]:
    """("fixed" or "moving", why): the volume whose grid the segmentation is read on (see the module doc)."""
    segmentationParent = _parent(segmentationNode)
    withMoving = segmentationParent is _parent(movingNode)
    withFixed = segmentationParent is _parent(fixedNode)
    if withMoving and not withFixed:
        return "moving", "it is under the same transform as the moving volume"
    if withMoving and withFixed:
        reference = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
        if reference is movingNode:
            return "moving", "it was drawn on the moving volume (its reference geometry)"
    return "fixed", "where it is shown"


def _coarsenedIjkToRas(volumeNode, spacingMm: float) -> Tuple[np.ndarray, List[int]]:
    """IJKToRAS and size of the volume's grid with voxels merged to about ``spacingMm`` (same field of view)."""
    ijkToRas = ijkToRasOfNode(volumeNode)
    spacing = np.linalg.norm(ijkToRas[:3, :3], axis=0)
    factors = np.array(shrink_factors_for_spacing(spacing, spacingMm))
    size = np.array(volumeNode.GetImageData().GetDimensions())
    coarsen = np.eye(4)
    coarsen[:3, :3] = np.diag(factors)
    coarsen[:3, 3] = (factors - 1) / 2.0  # a merged voxel's centre is the centre of its block
    return ijkToRas @ coarsen, [int(n) for n in np.ceil(size / factors)]


def _segmentIds(segmentation) -> List[str]:
    ids = vtk.vtkStringArray()
    segmentation.GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def _mergedLabelArray(segmentationNode, ids: List[str], geometry, size) -> np.ndarray:
    """Segment ``ids[i]`` as label ``i + 1`` on ``geometry`` (a ``vtkOrientedImageData``), as a
    (z, y, x) array, by the segmentation's own merge (the later segment wins where they overlap)."""
    import slicer

    segmentIds, labelValues = vtk.vtkStringArray(), vtk.vtkIntArray()
    for value, segmentId in enumerate(ids, start=1):
        segmentIds.InsertNextValue(segmentId)
        labelValues.InsertNextValue(value)
    merged = slicer.vtkOrientedImageData()
    if not segmentationNode.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, geometry, segmentIds, labelValues
    ):
        raise InputError(f"the segments of '{segmentationNode.GetName()}' could not be merged into a label map",
                         "check the segmentation in the Segmentations module")
    if list(merged.GetExtent()) != list(geometry.GetExtent()):
        raise RuntimeError(f"merged labelmap extent {merged.GetExtent()} is not the requested one")
    return numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(size[::-1])


def boneLabelsFromSegmentationNode(segmentationNode, volumeNode, role: str) -> Tuple[BoneLabels, List[str]]:
    """The segments as a label map on ``volumeNode``'s (coarsened) grid, in that volume's own coordinates.

    Every segment is one bone named after the segment; where segments overlap, the later one wins.
    The segmentation is taken where it is shown: the linear transform between the volume's and the
    segmentation's parent transforms is applied (Slicer's own labelmap export does the same). Nothing
    is added to the scene and the segmentation is not modified. Raises ``InputError`` for a
    segmentation without segments or without any voxel over the volume.
    """
    import slicer

    name = segmentationNode.GetName()
    segmentation = segmentationNode.GetSegmentation()
    ids = _segmentIds(segmentation)
    if not ids:
        raise InputError(f"the segmentation '{name}' has no segments",
                         "add one segment per bone (Segment Editor), or clear the segmentation to find "
                         "the bones in the CT automatically")
    labelmapName = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if not segmentation.ContainsRepresentation(labelmapName):
        raise InputError(f"the segmentation '{name}' has no binary labelmap representation",
                         "create it in the Segmentations module (Representations: Binary labelmap)")
    segmentNames = {i + 1: segmentation.GetSegment(segmentId).GetName() for i, segmentId in enumerate(ids)}
    # The volume's grid, moved into the segmentation's coordinates: voxel (i, j, k) of the merged
    # labelmap is then voxel (i, j, k) of the volume's coarsened grid.
    ijkToRas, size = _coarsenedIjkToRas(volumeNode, LABEL_SPACING_MM)
    toSegmentation = matrixBetweenNodes(
        _parent(volumeNode), _parent(segmentationNode), f"the transform between '{name}' and the {role} volume"
    )
    geometry = slicer.vtkOrientedImageData()
    geometry.SetExtent(0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1)
    geometry.SetGeometryFromImageToWorldMatrix(vtkMatrixFromArray(toSegmentation @ ijkToRas))
    array = _mergedLabelArray(segmentationNode, ids, geometry, size)
    present = set(np.unique(array).tolist()) - {0}
    if not present:
        raise InputError(f"the segmentation '{name}' has no voxel over the {role} volume '{volumeNode.GetName()}'",
                         f"segment the bones on the {role} volume, or check that the segmentation lies over it")
    image = sitk.GetImageFromArray(array.astype(np.uint16))
    origin, spacing, direction = imageGeometryFromIjkToRas(ijkToRas)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    labels = bone_labels_from_image(image, {v: segmentNames[v] for v in present}, name)
    duplicates = sorted({n for n in labels.names.values() if list(labels.names.values()).count(n) > 1})
    if duplicates:
        raise InputError(f"segments of '{name}' share the bone name(s) {', '.join(duplicates)}",
                         "give every bone's segment its own name")
    notes = [f"Segment '{segmentNames[v]}' has no voxel over the {role} volume: skipped."
             for v in sorted(segmentNames) if v not in present]
    return labels, notes


def readBoneLabels(fixedNode, movingNode, segmentationNode=None, expectedBones: Optional[int] = None
                   ) -> SceneBoneLabels:
    """The bones to register: the segmentation's segments, or (without one) the bones found in the CT.

    Automatic masks need the fixed or the moving volume to be a CT in Hounsfield units (the fixed one
    is tried first); ``expectedBones`` asks ``segment_bones`` to split touching bones. Raises
    ``InputError`` with what to do when there is no usable bone.
    """
    if segmentationNode is None:
        for role, node in (("fixed", fixedNode), ("moving", movingNode)):
            image = sitkImageFromVolumeNode(node, role)
            if looks_like_ct(image):
                labels = segment_bones(image, expectedBones)
                return SceneBoneLabels(labels, role, f"the {role} CT '{node.GetName()}' (found automatically)")
        raise InputError(
            "per-bone registration without a bone segmentation needs a CT (in Hounsfield units) to find the "
            "bones in, and neither volume looks like one",
            "select a segmentation of the bones (one segment per bone) under Per-bone registration",
        )
    if not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise InputError(f"'{segmentationNode.GetName()}' is not a segmentation",
                         "select a segmentation node (one segment per bone) or none")
    space, why = segmentationSpace(segmentationNode, fixedNode, movingNode)
    volumeNode = fixedNode if space == "fixed" else movingNode
    labels, notes = boneLabelsFromSegmentationNode(segmentationNode, volumeNode, space)
    source = (f"the segmentation '{segmentationNode.GetName()}', read on the {space} volume "
              f"'{volumeNode.GetName()}' ({why})")
    return SceneBoneLabels(labels, space, source, notes)


def wholeVolumeStart(fixedNode, movingNode, whole=None) -> Union[RegistrationResult, sitk.Transform]:
    """What each bone starts from, for ``run``'s ``whole_volume``: a result when there is one, else a transform.

    ``whole``: ``register``'s result or the core's (its checks then go into the run's report), a
    SimpleITK transform, a linear transform node read as Slicer users make one (it moves the moving
    volume onto the fixed one as its parent), or ``None``: the transform the moving volume is under
    now (after ``register``, its result). Transforms map fixed to moving LPS points.
    """
    whole = getattr(whole, "result", whole)
    if isinstance(whole, (RegistrationResult, sitk.Transform)):
        return whole
    if whole is not None and not (hasattr(whole, "IsA") and whole.IsA("vtkMRMLTransformNode")):
        raise InputError("the whole-volume result is not a registration result, transform or transform node",
                         "pass register()'s result, its transform node, or None")
    transform, _ = startTransform(fixedNode, movingNode, whole)
    return transform if transform is not None else sitk.Euler3DTransform()


def addBoneNodes(scene, fixedNode, movingNode, perBone: PerBoneResult, cloneVolumes: bool = True
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """One linear transform node per bone ("<moving> <bone> transform") and a moving-volume copy under it.

    Each node holds the bone's result like ``applyResultTransform`` writes the whole-volume one
    (RAS "transform from parent", under the fixed volume's parent transform), so a volume placed
    under it lands that bone on the fixed volume. The moving volume itself is left where it is.
    If anything fails, the nodes made so far are removed.
    """
    import slicer

    transformNodes: Dict[str, Any] = {}
    volumeNodes: Dict[str, Any] = {}
    moving = movingNode.GetName()
    try:
        for bone in perBone.bones:
            node = scene.AddNewNodeByClass(
                "vtkMRMLLinearTransformNode", scene.GenerateUniqueName(f"{moving} {bone.name} transform")
            )
            transformNodes[bone.name] = node
            setTransformNodeFromSitk(node, bone.transform)
            node.SetAndObserveTransformNodeID(fixedNode.GetTransformNodeID())
            if cloneVolumes:
                copy = slicer.vtkSlicerVolumesLogic.CloneVolume(scene, movingNode, f"{moving} ({bone.name})")
                volumeNodes[bone.name] = copy
                copy.SetAndObserveTransformNodeID(node.GetID())
                if copy.GetDisplayNode() is None:
                    copy.CreateDefaultDisplayNodes()
    except Exception:
        removeNodes(scene, list(volumeNodes.values()) + list(transformNodes.values()))
        raise
    return transformNodes, volumeNodes


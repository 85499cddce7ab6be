"""Markups ROI nodes <-> the core's ``Box`` (axis-aligned, LPS, in a volume's own coordinates).

Why: users draw the region to register as a markups ROI in world coordinates, possibly rotated and
under a transform; the core crops with an axis-aligned LPS box in the image's own coordinates.
The planner's automatic crop region goes the other way, shown as an ROI so the user sees what was
kept.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
import vtk
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.geometry import Box, apply_matrix

from .coordinates import boxFromRasPoints, rasCenterAndSizeFromBox
from .transform_adapter import matrixBetweenNodes
from .volume_adapter import _arrayFromMatrix


def roiCornersWorld(roiNode) -> np.ndarray:
    """The 8 corners (RAS, world) of a markups ROI, rotation and parent transforms included."""
    size = np.array(roiNode.GetSize(), dtype=float)
    if np.any(size <= 0):
        raise InputError(
            f"the ROI '{roiNode.GetName()}' is empty (size {size.round(2).tolist()} mm)",
            "place the ROI around the anatomy to register",
        )
    half = size / 2.0
    corners = np.array([[sx, sy, sz] for sx, sy, sz in itertools.product(*[(-h, h) for h in half])])
    return apply_matrix(_arrayFromMatrix(roiNode.GetObjectToWorldMatrix()), corners)


def boxFromRoiNode(roiNode, volumeNode=None) -> Box:
    """Axis-aligned LPS box around the ROI, in the coordinates of ``volumeNode``'s voxels (or world).

    Example:
        >>> box = boxFromRoiNode(slicer.util.getNode("R"), ctNode)  # doctest: +SKIP
    """
    corners = roiCornersWorld(roiNode)
    if volumeNode is not None and volumeNode.GetParentTransformNode() is not None:
        toLocal = matrixBetweenNodes(
            None, volumeNode.GetParentTransformNode(), f"the transform of '{volumeNode.GetName()}'"
        )
        corners = apply_matrix(toLocal, corners)
    return boxFromRasPoints(corners)


def updateRoiNodeFromBox(roiNode, box: Box, volumeNode=None) -> None:
    """Make ``roiNode`` the axis-aligned ``box`` (LPS, in ``volumeNode``'s coordinates).

    The ROI is put under the volume's parent transform, so it stays on the volume however that
    volume is moved.
    """
    center, size = rasCenterAndSizeFromBox(box)
    wasModifying = roiNode.StartModify()
    parentId: Optional[str] = volumeNode.GetTransformNodeID() if volumeNode is not None else None
    roiNode.SetAndObserveTransformNodeID(parentId)
    roiNode.SetAndObserveObjectToNodeMatrix(vtk.vtkMatrix4x4())
    roiNode.SetCenter(*[float(v) for v in center])
    roiNode.SetSize(*[float(v) for v in size])
    roiNode.EndModify(wasModifying)


def addRoiNodeFromBox(scene, box: Box, name: str, volumeNode=None, hidden: bool = True):
    """A new markups ROI node for ``box``; ``hidden`` ones are temporary (not saved, not listed)."""
    roiNode = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName(name))
    if hidden:
        roiNode.SetHideFromEditors(True)
        roiNode.SetSaveWithScene(False)
    updateRoiNodeFromBox(roiNode, box, volumeNode)
    return roiNode

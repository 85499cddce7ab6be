"""Markups ROI nodes <-> the core's ``Box`` (axis-aligned, LPS, in a volume's own coordinates).

Why: users draw the region to register as a markups ROI in world coordinates, possibly rotated and
under a transform; the core crops with an axis-aligned LPS box in the image's own coordinates.
The planner's automatic crop region goes the other way, shown as an ROI so the user sees what was
kept.

Temporary ROIs (``temporaryRoi``) leave no trace. The Markups logic reacts to every markups node added
to the scene: it gives it a visible display node and makes it the active place node, the one the
user's Markups toolbar places points into (``vtkSlicerMarkupsLogic::OnMRMLSceneNodeAdded``,
``Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.cxx:494,500`` at v5.6.2, ``:483,489`` at v5.8.1,
``:475,480`` at v5.10.0; ``SetActiveList`` sets the selection node's ``ActivePlaceNodeClassName`` and
``ActivePlaceNodeID``). So the display node is hidden as soon as the ROI exists, and the selection
nodes' active place node (class and ID) is put back after the ROI is removed
(``temporary_nodes.keepActivePlaceNodes``).
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import vtk
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.geometry import Box, apply_matrix

from .coordinates import boxFromRasPoints, rasCenterAndSizeFromBox
from .temporary_nodes import keepActivePlaceNodes, removeNodes
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
    """A new markups ROI node for ``box``; ``hidden`` ones are temporary (not saved, not listed, not
    shown). Prefer ``temporaryRoi``, which also removes it and gives the user's active place node back."""
    roiNode = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName(name))
    if hidden:
        _hide(roiNode)
    updateRoiNodeFromBox(roiNode, box, volumeNode)
    return roiNode


def _hide(roiNode) -> None:
    roiNode.SetHideFromEditors(True)
    roiNode.SetSaveWithScene(False)
    for index in range(roiNode.GetNumberOfDisplayNodes()):
        display = roiNode.GetNthDisplayNode(index)
        if display is not None:
            display.SetVisibility(False)


@contextmanager
def temporaryRoi(scene, name: str, box: Optional[Box] = None, volumeNode=None) -> Iterator:
    """A hidden markups ROI for the duration of the ``with`` block; afterwards the scene is as it was.

    The ROI (``box`` in ``volumeNode``'s coordinates, if given) is not saved, listed or shown; on exit
    it is removed with its display node and each selection node's active place node (class and ID)
    is restored, so the user's Markups toolbar still places into the list it did before.

    Example:
        >>> with temporaryRoi(scene, "MKR crop", box, volumeNode=ct) as roi:  # doctest: +SKIP
        ...     cropped = cropVolume(scene, cropLogic, ct, roi)
    """
    with keepActivePlaceNodes(scene):
        roiNode = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", scene.GenerateUniqueName(name))
        try:
            _hide(roiNode)
            if box is not None:
                updateRoiNodeFromBox(roiNode, box, volumeNode)
            yield roiNode
        finally:
            removeNodes(scene, [roiNode])

"""Linear transform nodes <-> the core's fixed -> moving LPS transforms, hierarchy included.

Why: the core's transform maps fixed-image points to moving-image points, each in its image's own
(local) coordinates. In Slicer the moving volume is aligned by a parent transform whose
"transform to parent" maps moving points to where they belong: the inverse. And either volume may
already sit under transforms, like the forum user's hand-made "centralize" transform. This module
turns node hierarchies into the core's start transform and writes results back so that the moving
volume lands on the fixed one wherever that one is shown.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk
import vtk
from MultimodalKneeRegistrationLib.errors import InputError

from .coordinates import rasMatrixFromTransform, transformFromRasMatrix
from .volume_adapter import _arrayFromMatrix, vtkMatrixFromArray


def _transformNodeClass():
    import slicer

    return slicer.vtkMRMLTransformNode


def setTransformNodeFromSitk(transformNode, transform: sitk.Transform) -> None:
    """Store a linear fixed -> moving LPS transform in a linear transform node.

    The node's "transform from parent" becomes the RAS form of ``transform``, so a volume placed
    under the node is moved onto the fixed image, and a CLI module that receives the node (BRAINSFit's
    ``initialTransform``) reads back exactly ``transform`` in ITK's convention.
    """
    transformNode.SetMatrixTransformFromParent(vtkMatrixFromArray(rasMatrixFromTransform(transform)))


def sitkTransformFromTransformNode(transformNode, center=(0.0, 0.0, 0.0)) -> sitk.Transform:
    """The fixed -> moving LPS transform stored in a linear transform node (inverse of the setter)."""
    if not transformNode.IsLinear():
        raise InputError(
            f"transform '{transformNode.GetName()}' is not linear",
            "use a rigid or affine transform, or harden the warping transform first",
        )
    matrix = vtk.vtkMatrix4x4()
    transformNode.GetMatrixTransformFromParent(matrix)
    return transformFromRasMatrix(_arrayFromMatrix(matrix), center)


def matrixBetweenNodes(sourceTransformNode, targetTransformNode, what: str) -> np.ndarray:
    """4x4 RAS matrix from the coordinates of ``sourceTransformNode``'s children to ``targetTransformNode``'s.

    ``None`` stands for world coordinates. Raises ``InputError`` when the path is not linear.
    """
    nodeClass = _transformNodeClass()
    general = vtk.vtkGeneralTransform()
    nodeClass.GetTransformBetweenNodes(sourceTransformNode, targetTransformNode, general)
    if not nodeClass.IsGeneralTransformLinear(general):
        raise InputError(
            f"{what} is a warping (non-linear) transform",
            "harden it on the volume first, or remove it and give a linear initial transform",
        )
    matrix = vtk.vtkMatrix4x4()
    nodeClass.GetMatrixTransformBetweenNodes(sourceTransformNode, targetTransformNode, matrix)
    return _arrayFromMatrix(matrix)


def startTransform(fixedNode, movingNode, initialTransformNode=None) -> Tuple[Optional[sitk.Transform], str]:
    """The fixed -> moving LPS start transform the scene implies, and a sentence saying where it came from.

    - ``initialTransformNode`` given: it is read as Slicer users make one, a transform that moves the
      moving volume onto the fixed one when placed as the moving volume's parent;
    - otherwise the transforms the two volumes already sit under (the moving volume's hand-made
      "centralize" transform is a start, not something to ignore);
    - otherwise ``None`` (the images' own headers are the start).
    """
    fixedParent = fixedNode.GetParentTransformNode()
    if initialTransformNode is not None:
        target, source = initialTransformNode, f"the initial transform '{initialTransformNode.GetName()}'"
    else:
        target = movingNode.GetParentTransformNode()
        source = (
            f"the transform '{target.GetName()}' the moving volume is under"
            if target is not None
            else "the image headers (no transform)"
        )
    if target is None and fixedParent is None:
        return None, f"Start position: {source}."
    matrix = matrixBetweenNodes(fixedParent, target, source)
    return transformFromRasMatrix(matrix), f"Start position: {source}."


def checkOutputTransformNode(outputTransformNode, fixedNode) -> None:
    """Raise ``InputError`` when writing into ``outputTransformNode`` would create a transform loop."""
    if outputTransformNode is None:
        return
    if not outputTransformNode.IsA("vtkMRMLLinearTransformNode"):
        raise InputError(
            f"the output transform '{outputTransformNode.GetName()}' is not a linear transform",
            "select a linear transform or let the module create one",
        )
    node = fixedNode.GetParentTransformNode()
    while node is not None:
        if node is outputTransformNode:
            raise InputError(
                f"the output transform '{outputTransformNode.GetName()}' moves the fixed volume",
                "choose another output transform (or create a new one): "
                "the fixed volume must stay where it is",
            )
        node = node.GetParentTransformNode()


def applyResultTransform(transform: sitk.Transform, fixedNode, movingNode, outputTransformNode) -> None:
    """Write ``transform`` (fixed -> moving, local LPS) into ``outputTransformNode``; align the moving volume.

    The output node is placed under the fixed volume's parent transform (if any) and becomes the
    moving volume's parent: the moving volume then overlays the fixed one. Voxels are untouched
    (nothing is hardened).
    """
    checkOutputTransformNode(outputTransformNode, fixedNode)
    wasModifying = outputTransformNode.StartModify()
    setTransformNodeFromSitk(outputTransformNode, transform)
    outputTransformNode.SetAndObserveTransformNodeID(fixedNode.GetTransformNodeID())
    outputTransformNode.EndModify(wasModifying)
    movingNode.SetAndObserveTransformNodeID(outputTransformNode.GetID())

"""Removing temporary nodes completely: the node, and the display and storage nodes that came with it.

Why: Slicer's module logics attach display nodes on their own (the Markups logic does so for every
ROI added to the scene), and ``scene.RemoveNode`` leaves them behind. A registration run must leave
the scene exactly as it found it, apart from its declared outputs. The Markups logic also makes every
markups node added to the scene the active place node, the list the user's Markups toolbar places
points into (``vtkSlicerMarkupsLogic::OnMRMLSceneNodeAdded`` calls ``SetActiveList``:
``Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.cxx:500`` at v5.6.2, ``:489`` at v5.8.1, ``:480``
at v5.10.0); ``keepActivePlaceNodes`` puts the user's choice back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator


def removeNodes(scene, nodes: Iterable) -> None:
    """Remove each of ``nodes`` with its display and storage nodes (``None``/removed ones are skipped)."""
    for node in nodes:
        if node is None or not scene.IsNodePresent(node):
            continue
        attached = []
        for getCount, getNth in (
            ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
            ("GetNumberOfStorageNodes", "GetNthStorageNode"),
        ):
            if hasattr(node, getCount):
                attached += [getattr(node, getNth)(i) for i in range(getattr(node, getCount)())]
        scene.RemoveNode(node)
        for other in attached:
            if other is not None and scene.IsNodePresent(other):
                scene.RemoveNode(other)


@contextmanager
def keepActivePlaceNodes(scene) -> Iterator[None]:
    """Each selection node's active place node (class name and ID) is as it was after the ``with`` block."""
    nodes = scene.GetNodesByClass("vtkMRMLSelectionNode")
    saved = [(selection, selection.GetActivePlaceNodeClassName(), selection.GetActivePlaceNodeID())
             for selection in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))]
    try:
        yield
    finally:
        for selection, className, nodeId in saved:
            if selection.GetActivePlaceNodeClassName() != className:
                selection.SetReferenceActivePlaceNodeClassName(className)
            if selection.GetActivePlaceNodeID() != nodeId:
                selection.SetReferenceActivePlaceNodeID(nodeId)

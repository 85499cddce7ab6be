"""Removing temporary nodes completely: the node, and the display and storage nodes that came with it.

Why: Slicer's module logics attach display nodes on their own (the Markups logic does so for every
ROI added to the scene), and ``scene.RemoveNode`` leaves them behind. A registration run must leave
the scene exactly as it found it, apart from its declared outputs.
"""

from __future__ import annotations

from typing import Iterable


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

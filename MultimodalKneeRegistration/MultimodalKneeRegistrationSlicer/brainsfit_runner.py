"""BRAINSFit inside Slicer: the core's BRAINSFit engine run through Slicer's CLI module.

Why: in Slicer, BRAINSFit is the General Registration (BRAINS) module; running it through
``slicer.cli.run`` (as the module's panel does) keeps its progress and errors in the application.
The core's ``BrainsFitEngine`` prepares the working images, our start and BRAINSFit's parameters;
this runner puts those images and transforms into hidden temporary nodes, runs the CLI through the
one checked runner (``cli_runner.runCliModule``), reads the result back and removes every node.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import SimpleITK as sitk
from MultimodalKneeRegistrationLib.geometry import image_center
from MultimodalKneeRegistrationLib.progress import Progress

from .cli_runner import runCliModule
from .temporary_nodes import removeNodes
from .transform_adapter import setTransformNodeFromSitk, sitkTransformFromTransformNode
from .volume_adapter import addVolumeNodeFromSitkImage


class SlicerBrainsFitRunner:
    """``BrainsFitRunner`` for the core's ``BrainsFitEngine``: Slicer's CLI module on temporary nodes.

    ``runFunction`` defaults to ``slicer.cli.run``; outside the application a test passes one that
    drives Slicer's own ``vtkSlicerCLIModuleLogic`` (the slicer-core wheel has no ``slicer.cli``).
    """

    def __init__(self, scene, brainsFitModule, runFunction: Optional[Callable[..., Any]] = None,
                 processEvents: Optional[Callable[[], None]] = None) -> None:
        self.scene = scene
        self.brainsFitModule = brainsFitModule
        self.runFunction = runFunction
        self.processEvents = processEvents

    def run(self, fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, parameters: dict,
            progress: Progress) -> Tuple[sitk.Transform, str]:
        temporary = []
        try:
            nodes = {
                "fixedVolume": addVolumeNodeFromSitkImage(self.scene, fixed, "MKR BRAINSFit fixed", hidden=True),
                "movingVolume": addVolumeNodeFromSitkImage(self.scene, moving, "MKR BRAINSFit moving", hidden=True),
                "initialTransform": self._transformNode("MKR BRAINSFit start"),
                "linearTransform": self._transformNode("MKR BRAINSFit result"),
            }
            temporary.extend(nodes.values())
            setTransformNodeFromSitk(nodes["initialTransform"], initial)
            output = runCliModule(
                self.brainsFitModule,
                {**parameters, **{name: node.GetID() for name, node in nodes.items()}},
                scene=self.scene,
                title="BRAINSFit",
                progress=lambda fraction, message: progress.report(fraction, message),
                shouldCancel=lambda: progress.cancelled,
                runFunction=self.runFunction,
                processEvents=self.processEvents,
            )
            return sitkTransformFromTransformNode(nodes["linearTransform"], center=image_center(fixed)), output
        finally:
            removeNodes(self.scene, temporary)

    def _transformNode(self, name: str):
        node = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", self.scene.GenerateUniqueName(name))
        node.SetHideFromEditors(True)
        node.SetSaveWithScene(False)
        return node

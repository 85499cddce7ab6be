"""Fixtures for the MRML-level tests: a real vtkMRMLScene from the slicer-core wheel, with the module
logics the Slicer side uses (Volumes, Crop Volume, Markups, Transforms), and the porcine data.

The wheel has MRML and module logics but no Qt, no ``slicer.app`` and no CLI modules; each test file
skips itself when ``slicer`` is not that wheel (an unrelated PyPI package is also called ``slicer``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

_REPO = Path(__file__).resolve().parents[2]
_MODULE_DIR = _REPO / "MultimodalKneeRegistration"
if str(_MODULE_DIR) not in sys.path:  # Slicer puts the module folder on sys.path; do the same here
    sys.path.insert(0, str(_MODULE_DIR))


@pytest.fixture
def mrml():
    """A scene wired like Slicer's: application logic plus the module logics our code calls."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logics = {
        "Volumes": slicer.vtkSlicerVolumesLogic(),
        "CropVolume": slicer.vtkSlicerCropVolumeLogic(),
        "Markups": slicer.vtkSlicerMarkupsLogic(),
        "Transforms": slicer.vtkSlicerTransformLogic(),
    }
    for name, logic in logics.items():
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)  # registers the module's node classes (crop parameters, markups ROI)
        app.SetModuleLogic(name, logic)
    yield SimpleNamespace(
        scene=scene,
        app=app,
        volumesLogic=logics["Volumes"],
        cropLogic=logics["CropVolume"],
        markupsLogic=logics["Markups"],
        transformLogic=logics["Transforms"],
    )
    scene.Clear(1)


@pytest.fixture
def nodeIds():
    """``nodeIds(scene)``: IDs of every node in the scene (to check that temporary nodes are gone)."""
    return lambda scene: {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


@pytest.fixture
def cliScene(tmp_path):
    """A scene set up as Slicer sets it up for CLI modules, with the REAL BRAINSFit and
    ResampleScalarVectorDWIVolume registered through Slicer's CLI module logic (``slicer_core_cli``),
    and the module logics of ``mrml``. Skips, naming the path, where ../shared/tools is absent."""
    from testing_support import cliRunFunction, require_cli_binary, require_slicer_core_cli

    cli = require_slicer_core_cli()
    brainsfitPath = require_cli_binary("BRAINSFit")
    resamplePath = require_cli_binary("ResampleScalarVectorDWIVolume")
    import slicer

    scene, app = cli.make_scene(str(tmp_path / "cli-temporary"))
    logics = {"Volumes": slicer.vtkSlicerVolumesLogic(), "CropVolume": slicer.vtkSlicerCropVolumeLogic(),
              "Markups": slicer.vtkSlicerMarkupsLogic(), "Transforms": slicer.vtkSlicerTransformLogic()}
    for name, logic in logics.items():
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
    brainsfit = cli.make_cli_logic(scene, app, brainsfitPath, module_name="BRAINSFit")
    resample = cli.make_cli_logic(scene, app, resamplePath, module_name="ResampleScalarVectorDWIVolume")
    yield SimpleNamespace(scene=scene, app=app, cropLogic=logics["CropVolume"], markupsLogic=logics["Markups"],
                          brainsfitLogic=brainsfit, resampleLogic=resample, logics=logics,
                          runBrainsFit=cliRunFunction(brainsfit))
    scene.Clear(1)

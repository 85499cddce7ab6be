"""Fixtures for the MRML-level tests: a real vtkMRMLScene from the slicer-core wheel, with the module
logics the Slicer side uses (Volumes, Crop Volume, Markups, Transforms), and the porcine data.

The wheel has MRML and module logics but no Qt, no ``slicer.app`` and no CLI modules; each test file
skips itself when ``slicer`` is not that wheel (an unrelated PyPI package is also called ``slicer``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

_REPO = Path(__file__).resolve().parents[2]
_MODULE_DIR = _REPO / "MultimodalKneeRegistration"
if str(_MODULE_DIR) not in sys.path:  # Slicer puts the module folder on sys.path; do the same here
    sys.path.insert(0, str(_MODULE_DIR))


def porcine_data_folder() -> Path:
    """$MKR_SHARED_DATA (the folder or its parent), else ``shared/data/porcine_ct_mr`` beside the repo."""
    env = os.environ.get("MKR_SHARED_DATA")
    if not env:
        return (_REPO / ".." / "shared" / "data" / "porcine_ct_mr").resolve()
    base = Path(env)
    return (base / "porcine_ct_mr").resolve() if (base / "porcine_ct_mr").is_dir() else base.resolve()


@pytest.fixture(scope="session")
def porcine_dir() -> Path:
    folder = porcine_data_folder()
    if not (folder / "CT.nrrd").is_file() or not (folder / "MR_T2.nrrd").is_file():
        pytest.skip(
            f"real data not found: {folder} has no CT.nrrd/MR_T2.nrrd "
            "(set MKR_SHARED_DATA to the porcine_ct_mr folder)"
        )
    return folder


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

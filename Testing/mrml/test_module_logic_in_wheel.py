"""The module file's Logic and self-test code, run on the slicer-core wheel with a stand-in Slicer shell.

Qt, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and ``slicer.i18n`` exist only
inside the Slicer application, so small stand-ins replace them here (``module_stubs``: the GUI layer,
which cannot run here). Everything below them is real: the MRML scene, nodes, Crop Volume logic and
the registration.
This runs the module file's ``MultimodalKneeRegistrationLogic`` and its ``MultimodalKneeRegistrationTest``
methods (on a small synthetic pair instead of SampleData, which needs the network), so a mistake in
the self-test's own code shows up here rather than in someone's Slicer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

import module_stubs  # noqa: E402
from MultimodalKneeRegistrationLib.settings import PRESETS  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage  # noqa: E402

CENTER = (0.0, 5.0, 10.0)


@pytest.fixture
def module(mrml, monkeypatch):
    """The module file, imported with stand-ins for the Slicer application's GUI layer."""
    for name, stub in module_stubs.stubModules(mrml.scene).items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "mrmlScene", mrml.scene, raising=False)
    monkeypatch.setitem(sys.modules, "MultimodalKneeRegistration", None)
    return module_stubs.loadModuleFile(mrml.scene)


_LIGHT_IMPORT = """
import sys
sys.path[:0] = [{testing!r}, {module!r}]
import slicer
import module_stubs
module_stubs.loadModuleFile(slicer.vtkMRMLScene())
# io's __init__ imports nothing (it holds STREAM_ABOVE_MB for the logic); its submodules stay heavy.
heavy = sorted(name for name in sys.modules if name == "SimpleITK" or (
    name.startswith("MultimodalKneeRegistrationLib.") and name != "MultimodalKneeRegistrationLib.io"
    and name.split(".")[1] not in ("errors", "settings", "settings_validation")))
print("HEAVY:" + ",".join(heavy))
"""


@pytest.mark.mrml
def test_module_file_imports_no_simpleitk_and_no_registration_code():
    """Slicer imports every scripted module at start-up: ours must not load SimpleITK or the core's
    registration code then (a fresh interpreter, so that nothing else imported them first)."""
    here = Path(__file__).resolve().parent
    code = _LIGHT_IMPORT.format(testing=str(here), module=str(module_stubs.MODULE_FILE.parent))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("HEAVY:")]
    assert completed.returncode == 0 and lines, completed.stderr[-2000:]
    assert lines[0] == "HEAVY:", f"imported at module load: {lines[0][6:]}"


@pytest.mark.mrml
def test_logic_is_initialised_once(module, monkeypatch):
    from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic

    calls = []
    original = KneeRegistrationLogic.__init__
    monkeypatch.setattr(KneeRegistrationLogic, "__init__",
                        lambda self, *args, **kwargs: (calls.append(args), original(self, *args, **kwargs))[1])
    logic = module.MultimodalKneeRegistrationLogic()
    assert len(calls) == 1 and logic.scene is slicer.mrmlScene


@pytest.mark.mrml
def test_parameter_node_defaults_are_the_default_preset(module):
    node = module.MultimodalKneeRegistrationLogic().getParameterNode()
    from MultimodalKneeRegistrationSlicer.parameters import settingsFromParameterNode

    assert settingsFromParameterNode(node) == PRESETS["auto"]  # the images choose the preset
    assert node.engine == "SimpleITK" and node.fixedVolume is None
    with pytest.raises(ValueError):
        node.preset = "no-such-preset"


@pytest.mark.mrml
def test_self_test_parameter_node_and_python_code(module):
    module.MultimodalKneeRegistrationTest("test_ParameterNodeAndPythonCode").test_ParameterNodeAndPythonCode()


@pytest.mark.mrml
def test_register_from_parameter_node_and_the_self_test_pipeline(module, mrml):
    pair = make_registration_pair(
        "ct-mri",
        (10.0, 8.0),
        fixed_grid=GridSpec((64, 64, 56), (2.5, 2.5, 2.5), center=CENTER),
        moving_grid=GridSpec((96, 96, 24), (1.6, 1.6, 5.0), center=CENTER),
    )
    fixed = addVolumeNodeFromSitkImage(mrml.scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(mrml.scene, pair.moving, "MR")
    logic = module.MultimodalKneeRegistrationLogic()
    logic.cropVolumeLogic = mrml.cropLogic
    node = logic.getParameterNode()
    node.fixedVolume, node.movingVolume, node.preset = fixed, moving, "fast-preview"
    for name, value in module.panelValuesFromSettings(PRESETS["fast-preview"]).items():
        setattr(node, name, value)
    node.numberOfIterations = 20  # a knob the panel sets: it must reach the core
    out = logic.registerFromParameterNode(node)
    assert out.result.plan.optimizer.number_of_iterations == 20
    assert moving.GetParentTransformNode() is out.outputTransformNode
    assert out.result.metric_after < out.result.metric_before

    # The self-test's own procedure (first run, then a run from a perturbed start), on this pair.
    selfTest = module.MultimodalKneeRegistrationTest("runTest")
    original = module.MultimodalKneeRegistrationLogic

    class WheelLogic(original):
        def __init__(self):
            super().__init__()
            self.cropVolumeLogic = mrml.cropLogic

    module.MultimodalKneeRegistrationLogic = WheelLogic
    try:
        selfTest._checkPipeline(fixed, moving, "fast-preview")
    finally:
        module.MultimodalKneeRegistrationLogic = original
    assert moving.GetParentTransformNode() is not None
    assert np.isfinite(out.result.metric_after)


@pytest.mark.mrml
def test_per_bone_from_parameter_node_with_bones_found_in_the_ct(module, mrml):
    """The panel's per-bone path: bones read first (automatic, from the CT), then one transform per bone."""
    pair = make_registration_pair(
        "ct-mri",
        (6.0, 5.0),
        fixed_grid=GridSpec((55, 55, 65), (2.0, 2.0, 2.0), center=(0.0, 5.0, 0.0)),
        moving_grid=GridSpec((103, 103, 33), (1.3, 1.3, 4.0), center=(0.0, 5.0, 0.0)),
        moving_flexion_deg=15.0,
    )
    fixed = addVolumeNodeFromSitkImage(mrml.scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(mrml.scene, pair.moving, "MR")
    logic = module.MultimodalKneeRegistrationLogic()
    node = logic.getParameterNode()
    assert node.perBone is False and node.boneSegmentation is None
    node.fixedVolume, node.movingVolume, node.perBone = fixed, moving, True
    for name, value in module.panelValuesFromSettings(PRESETS["fast-preview"]).items():
        setattr(node, name, value)
    boneLabels = logic.boneLabelsFromParameterNode(node)
    assert boneLabels.space == "fixed" and "found automatically" in boneLabels.source
    out = logic.registerPerBoneFromParameterNode(node, pair.true_transform, boneLabels)
    names = sorted(out.transformNodes)
    assert {"femur", "tibia"} <= set(names)
    assert [out.transformNodes[b].GetName() for b in names] == [f"MR {b} transform" for b in names]
    assert out.perBone.relative_rotation_deg("femur", "tibia") == pytest.approx(15.0, abs=1.0)
    assert moving.GetParentTransformNode() is None  # the moving volume itself is not touched

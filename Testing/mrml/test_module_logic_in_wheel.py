"""The module file's Logic and self-test code, run on the slicer-core wheel with a stand-in Slicer shell.

Qt, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and ``slicer.i18n`` exist only
inside the Slicer application, so small stand-ins replace them here (the GUI layer, which cannot run
here). Everything below them is real: the MRML scene, nodes, Crop Volume logic and the registration.
This runs the module file's ``MultimodalKneeRegistrationLogic`` and its ``MultimodalKneeRegistrationTest``
methods (on a small synthetic pair instead of SampleData, which needs the network), so a mistake in
the self-test's own code shows up here rather than in someone's Slicer.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import typing
import unittest
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

from MultimodalKneeRegistrationLib.settings import PRESETS  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage  # noqa: E402

MODULE_FILE = (
    Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration" / "MultimodalKneeRegistration.py"
)
CENTER = (0.0, 5.0, 10.0)


class _Validator:
    def __init__(self, *args):
        self.args = args


class Choice(_Validator):
    def validate(self, value):
        if value not in self.args[0]:
            raise ValueError(f"{value!r} is not one of {self.args[0]}")


class WithinRange(_Validator):
    def validate(self, value):
        if not self.args[0] <= value <= self.args[1]:
            raise ValueError(f"{value} is outside [{self.args[0]}, {self.args[1]}]")


def parameterNodeWrapper(cls):
    """Stand-in: typed attributes with defaults, validated on assignment like the real wrapper."""
    hints = typing.get_type_hints(cls, include_extras=True)
    validators = {
        name: [v for v in getattr(hint, "__metadata__", ()) if isinstance(v, _Validator)]
        for name, hint in hints.items()
    }
    defaults = {name: getattr(cls, name, None) for name in hints}

    class Wrapped:
        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            for name, value in defaults.items():
                setattr(self, name, value)

        def __setattr__(self, name, value):
            if name not in hints:
                raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
            for validator in validators[name]:
                validator.validate(value)
            object.__setattr__(self, name, value)

    Wrapped.__name__ = cls.__name__
    return Wrapped


@pytest.fixture
def module(mrml, monkeypatch):
    """The module file, imported with stand-ins for the Slicer application's GUI layer."""
    qt = types.ModuleType("qt")
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.Choice, pnw.WithinRange, pnw.parameterNodeWrapper = Choice, WithinRange, parameterNodeWrapper
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self.parent = parent

        def getParameterNode(self):
            return mrml.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            print(message)

    slm.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
    slm.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    for name, stub in (
        ("qt", qt),
        ("slicer.i18n", i18n),
        ("slicer.parameterNodeWrapper", pnw),
        ("slicer.ScriptedLoadableModule", slm),
    ):
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "mrmlScene", mrml.scene, raising=False)
    monkeypatch.setitem(sys.modules, "SampleData", types.ModuleType("SampleData"))
    spec = importlib.util.spec_from_file_location("MultimodalKneeRegistration", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "MultimodalKneeRegistration", loaded)
    spec.loader.exec_module(loaded)
    return loaded


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

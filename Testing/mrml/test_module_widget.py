"""The panel's own logic (binding, presets, Cancel) on a real MRML scene, with fake Qt widgets.

Qt exists only inside the Slicer application, so the widgets here are fakes (the one place mocks are
allowed: the GUI) and the parameter node wrapper is ``module_stubs``' stand-in, which counts GUI
connections. What is checked is the module file's code: it binds the panel once per parameter node
(defect 1: re-entering the module must not reconnect), applies a preset's values only when the user
picks it (defect 6: a scene load modifies the node too), and its progress and cancel callbacks let a
Cancel press stop a real registration (defect 2). The parameter-to-widget mapping itself comes from
the real .ui file (``gui_binding``).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not the slicer-core wheel", allow_module_level=True)

import module_stubs  # noqa: E402
from MultimodalKneeRegistrationLib.settings import PRESETS  # noqa: E402
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, make_registration_pair  # noqa: E402
from MultimodalKneeRegistrationSlicer.event_pump import PanelProgress  # noqa: E402
from MultimodalKneeRegistrationSlicer.parameters import PRESET_KNOBS, PRESET_NAMES, panelValuesFromSettings  # noqa: E402
from MultimodalKneeRegistrationSlicer.volume_adapter import addVolumeNodeFromSitkImage  # noqa: E402

UI_FILE = module_stubs.MODULE_FILE.parent / "Resources" / "UI" / "MultimodalKneeRegistration.ui"


class FakeWidget:
    """Enough of a Qt widget for the panel's code: properties, ``connect`` and ``setValue``."""

    def __init__(self, name):
        self.name, self.enabled, self.text, self.plainText, self.toolTip, self.value = name, True, "", "", "", 0
        self.connected = []

    def connect(self, signal, slot):
        self.connected.append((signal, slot))

    def setValue(self, value):
        self.value = value

    def setMRMLScene(self, scene):
        self.scene = scene


@pytest.fixture
def panel(mrml, monkeypatch):
    """The module's widget on fake widgets named as in the .ui file, its logic on the real scene."""
    for name, stub in module_stubs.stubModules(mrml.scene).items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "mrmlScene", mrml.scene, raising=False)
    monkeypatch.setitem(sys.modules, "MultimodalKneeRegistration", None)
    module = module_stubs.loadModuleFile(mrml.scene)
    module.MultimodalKneeRegistrationParameterNode.connections.clear()
    names = [w.get("name") for w in ElementTree.parse(UI_FILE).iter("widget")]
    ui = SimpleNamespace(**{name: FakeWidget(name) for name in names})
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: FakeWidget(path), raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui, raising=False)
    widget = module.MultimodalKneeRegistrationWidget(SimpleNamespace(isEntered=True))
    widget.setup()  # the module file's own setup, on the fake widgets
    widget.logic.cropVolumeLogic = mrml.cropLogic
    return SimpleNamespace(module=module, widget=widget, connections=module.MultimodalKneeRegistrationParameterNode
                           .connections)


@pytest.mark.mrml
def test_module_file_loads_without_unused_annotation_warnings(mrml, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "MultimodalKneeRegistration", None)
    for name in module_stubs.stubModules(mrml.scene):
        monkeypatch.setitem(sys.modules, name, None)  # restored afterwards; loadModuleFile installs stubs
    monkeypatch.setattr(slicer, "mrmlScene", mrml.scene, raising=False)
    with caplog.at_level("WARNING"):
        module_stubs.loadModuleFile(mrml.scene)
    assert not [r for r in caplog.records if "Unused annotations" in r.getMessage()]


@pytest.mark.mrml
def test_panel_binds_once_per_parameter_node_with_the_ui_files_mapping(panel, mrml):
    widget, connections = panel.widget, panel.connections
    widget.initializeParameterNode()  # setup() bound it already; a module reload calls this again
    for _ in range(3):  # leaving and re-entering the module
        widget.exit()
        widget.enter()
    assert [event for event, _, _ in connections] == ["connect"]
    mapping = connections[0][2]
    assert set(mapping) == set(panel.module.MultimodalKneeRegistrationParameterNode.allParameters)
    assert mapping["preset"] is widget.ui.presetComboBox and mapping["roi"] is widget.ui.roiSelector


def _closeScene(widget, scene, removeSingletons=False):
    """What Slicer's File > Close Scene does: Clear(false) between the start and end close events."""
    widget.onSceneStartClose(None, None)
    scene.Clear(removeSingletons)
    widget.onSceneEndClose(None, None)


@pytest.mark.mrml
def test_close_scene_keeps_the_one_binding_of_the_surviving_parameter_node(panel, mrml):
    """Close Scene resets the singleton parameter node but keeps it: no new binding (each used to leave
    a stale wrapper observing the node); only a new node (Clear(1) removes singletons) is bound anew."""
    widget, connections = panel.widget, panel.connections
    node = widget._parameterNode.parameterNode
    for _ in range(4):
        _closeScene(widget, mrml.scene)
        assert widget._parameterNode.parameterNode is node and mrml.scene.IsNodePresent(node)
    assert [event for event, _, _ in connections] == ["connect"]
    _closeScene(widget, mrml.scene, removeSingletons=True)
    assert widget._parameterNode.parameterNode is not node
    assert [(event, value if event == "disconnect" else None) for event, _, value in connections] == [
        ("connect", None), ("disconnect", 1), ("connect", None)]
    assert connections[1][1].parameterNode is node and connections[2][1] is widget._parameterNode


@pytest.mark.mrml
def test_preset_values_are_applied_only_when_the_user_picks_a_preset(panel):
    widget = panel.widget
    node = widget._parameterNode
    node.numberOfIterations = 123  # the user's Advanced value, saved with the scene
    node.preset = "mri-microct-knee"  # what a scene load or the console does: no user choice
    assert node.numberOfIterations == 123 and node.roiMarginMm == panelValuesFromSettings(PRESETS["mri-ct"])[
        "roiMarginMm"]
    assert ("activated(int)", widget.onPresetActivated) in widget.ui.presetComboBox.connected
    widget.onPresetActivated(PRESET_NAMES.index("fast-preview"))  # the user's choice
    wanted = panelValuesFromSettings(PRESETS["fast-preview"])
    assert node.preset == "fast-preview"
    assert {name: getattr(node, name) for name in PRESET_KNOBS} == {name: wanted[name] for name in PRESET_KNOBS}


@pytest.mark.mrml
def test_spacing_multiplier_between_0_and_1_is_refused_by_the_parameter_node(panel):
    node = panel.widget._parameterNode
    for good in (0.0, 1.0, 8.0, 64.0):
        node.spacingMultiplier = good
    for bad in (0.5, 0.999, 65.0):
        with pytest.raises(ValueError):
            node.spacingMultiplier = bad


@contextmanager
def _noErrorDialog(errors):
    @contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:  # the real one shows a dialog
            errors.append(error)

    yield tryWithErrorDisplay


@pytest.mark.mrml
def test_cancel_pressed_while_the_search_runs_stops_the_run_and_writes_nothing(panel, mrml, monkeypatch):
    pair = make_registration_pair("ct-mri", (10.0, 8.0),
                                  fixed_grid=GridSpec((64, 64, 56), (2.5, 2.5, 2.5), center=(0.0, 5.0, 10.0)),
                                  moving_grid=GridSpec((96, 96, 24), (1.6, 1.6, 5.0), center=(0.0, 5.0, 10.0)))
    widget = panel.widget
    fixed = addVolumeNodeFromSitkImage(mrml.scene, pair.fixed, "CT")
    moving = addVolumeNodeFromSitkImage(mrml.scene, pair.moving, "MR")
    node = widget._parameterNode
    node.fixedVolume, node.movingVolume = fixed, moving
    pumped, messages, errors = [], [], []

    def processEvents():  # Qt delivering the user's click on Cancel during the search
        pumped.append(widget.ui.statusLabel.text)
        messages.append(widget.ui.statusLabel.text)
        if any("search" in text for text in messages) and len(pumped) > 3:
            widget.onCancelButton()

    monkeypatch.setattr(slicer, "app", SimpleNamespace(processEvents=processEvents), raising=False)
    with _noErrorDialog(errors) as dialog:
        monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", dialog, raising=False)
        transformsBefore = mrml.scene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode")
        widget.onApplyButton()
    assert not errors, errors
    assert widget.ui.statusLabel.text == "Cancelled: nothing was written."
    assert any("search" in text for text in messages)
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode") == transformsBefore
    assert moving.GetParentTransformNode() is None and node.outputTransform is None
    assert widget.ui.applyButton.enabled and not widget.ui.cancelButton.enabled


def test_panel_progress_processes_events_on_reports_and_throttled_cancel_checks():
    now, pumps, shown = [0.0], [], []
    panel = PanelProgress(lambda f, m: shown.append((f, m)), lambda: pumps.append(now[0]), intervalS=0.05,
                          clock=lambda: now[0])
    panel.progress(0.1, "search")
    assert shown == [(0.1, "search")] and pumps == [0.0]
    assert panel.shouldCancel() is False and pumps == [0.0]  # within 50 ms of the last pump
    now[0] = 0.06
    assert panel.shouldCancel() is False and pumps == [0.0, 0.06]
    panel.cancel()
    assert panel.shouldCancel() is True
    assert PanelProgress(lambda f, m: None, None).shouldCancel() is False  # no event loop: still works


@pytest.mark.mrml
def test_vector_volumes_are_not_picked_and_disable_apply(panel, mrml):
    """The panel picks only what its selectors list (single-component scalar volumes), and a vector
    volume set from the console disables Apply with a tooltip saying what to do."""
    image = sitk.Image([16, 16, 8], sitk.sitkFloat32) + 1.0
    vector = addVolumeNodeFromSitkImage(mrml.scene, sitk.Compose([image] * 3), "rgb",
                                        className="vtkMRMLVectorVolumeNode")
    addVolumeNodeFromSitkImage(mrml.scene, image, "labels", className="vtkMRMLLabelMapVolumeNode")
    plain = addVolumeNodeFromSitkImage(mrml.scene, sitk.Compose([image] * 2), "two components")
    ct, mr = (addVolumeNodeFromSitkImage(mrml.scene, image, name) for name in ("CT", "MR"))
    widget = panel.widget
    widget.initializeParameterNode()
    node = widget._parameterNode
    assert (node.fixedVolume, node.movingVolume) == (ct, mr)
    assert widget.ui.applyButton.enabled
    for multi in (vector, plain):
        node.movingVolume = multi
        assert not widget.ui.applyButton.enabled and "Vector to Scalar Volume" in widget.ui.applyButton.toolTip
    node.movingVolume = mr
    assert widget.ui.applyButton.enabled

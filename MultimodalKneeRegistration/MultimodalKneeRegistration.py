"""MultimodalKneeRegistration: MRI <-> CT / micro-CT registration in 3D Slicer that just works.

The Slicer shell (module, parameter node, widget, logic, self-test). The algorithms live in
``MultimodalKneeRegistrationLib`` (pure Python, no Slicer) and the MRML adapters in
``MultimodalKneeRegistrationSlicer``. Written for Slicer 5.6 - 5.10 (Python 3.9 and later).

Why one file of ~600 lines: Slicer finds a scripted module's five classes (module, parameter node,
widget, logic, test) in the file named after the module, and its self-test and the Extension Wizard
expect them there. Each class is kept thin: the widget binds the panel to the parameter node, the
logic hands the node's values to ``KneeRegistrationLogic``, and everything else lives in the packages.
"""

import logging
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
import vtk
from MultimodalKneeRegistrationLib.settings import DEFAULT_ENGINE, DEFAULT_PRESET, ENGINE_NAMES, PRESETS
from MultimodalKneeRegistrationSlicer.logic import KneeRegistrationLogic, voxelComponents
from MultimodalKneeRegistrationSlicer.parameters import (
    INITIALIZATION_CHOICES,
    MAX_SPACING_MULTIPLIER,
    PRESET_KNOBS,
    PRESET_NAMES,
    STAGE_CHOICES,
    panelValuesFromSettings,
    presetChoiceUpdates,
    pythonCodeForRun,
    settingsFromParameterNode,
    spacingMultiplierProblem,
)
from slicer import (
    vtkMRMLLinearTransformNode,
    vtkMRMLMarkupsROINode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTransformNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Validator, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Slicer imports every scripted module file at start-up: only the light parts of this module are
# imported here (``parameters``, the logic's base class and the core's ``settings``, none of which
# loads SimpleITK). SimpleITK and the registration code are imported by the functions that run them
# (Testing/mrml/test_module_logic_in_wheel.py checks it).

#: Where the problem this module solves is discussed (Slicer forum).
FORUM_URL = "https://discourse.slicer.org/search?q=micro-CT%20MRI%20registration%20BRAINSFit"
_DEFAULT_PANEL = panelValuesFromSettings(PRESETS[DEFAULT_PRESET])
_CURRENT_START = object()
_UI_FILE = Path(__file__).resolve().parent / "Resources" / "UI" / "MultimodalKneeRegistration.ui"


class SpacingMultiplierValidator(Validator):
    """0 ("auto") or 1 to 64: values between 0 and 1 are refused here, not later at Apply."""

    def validate(self, value) -> None:
        problem = spacingMultiplierProblem(float(value))
        if problem:
            raise ValueError(problem)


#
# MultimodalKneeRegistration
#


class MultimodalKneeRegistration(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement section."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Multimodal Knee Registration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["The MultimodalKneeRegistration authors"]
        self.parent.helpText = _("""
Rigid (or affine) registration of MRI with CT or micro-CT that works without hand-tuning, for knees
first. Pick the fixed and moving volumes and press Apply; the result is a linear transform placed
over the original moving volume (nothing is resampled or hardened).
<br><br>
What Apply does, in order: (1) plan from the images which one has the finer voxels and which covers
more anatomy; (2) find a starting pose with a multi-start search scored by mutual information (the
transform the moving volume is already under, for example a hand-made "centralize" transform, is the
starting point); (3) crop the large image to the small one's footprint and downsample the fine image
(what Crop Volume's spacing multiplier does by hand); (4) optimise Mattes mutual information with
enough samples, with the built-in SimpleITK engine or with BRAINSFit; (5) check the result (metric
improved, overlap, scale, rotation) and report the metric before and after.
<br><br>
It solves the problem users meet on the
<a href="{url}">Slicer forum</a>: General Registration (BRAINS) run on MRI and micro-CT with its
defaults ends "completed with errors" or 40 mm off, because the images differ ~10x in voxel size
and field of view and 0.2% sampling leaves too few samples. "Copy Python code" puts a script on the
clipboard that repeats the exact run from the Python console.
<br><br>
Per-bone registration (knees scanned at different flexion angles): after the whole-volume result,
each bone is registered again on its own (a segmentation with one segment per bone, or the bones found
automatically in the CT). One transform per bone is created, with a copy of the moving volume under
it, and the change of the angle between the bones (the flexion change) is reported.
""").replace("{url}", FORUM_URL)
        self.parent.acknowledgementText = _("""
Built on 3D Slicer, SimpleITK and BRAINSFit (Hans J. Johnson et al., University of Iowa). Test data:
Slicer's SampleData (CT-MR Brain, CBCT-MR Head) and the TCIA MRI-DIR porcine phantom (CC BY 4.0).
""")


#
# MultimodalKneeRegistrationParameterNode
#


@parameterNodeWrapper
class MultimodalKneeRegistrationParameterNode:
    """The panel's state, saved with the scene. Knobs at 0 mean "let the planner choose" (shown as auto)."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    initialTransform: vtkMRMLTransformNode
    roi: vtkMRMLMarkupsROINode
    preset: Annotated[str, Choice(PRESET_NAMES)] = DEFAULT_PRESET
    #: 0 is "auto", then whole numbers 1 ... 64: the .ui's spin box has decimals 0 and single step 1
    #: (``Decimals``/``SingleStep`` here would only repeat them and log "Unused annotations" at start-up).
    spacingMultiplier: Annotated[float, WithinRange(0.0, MAX_SPACING_MULTIPLIER), SpacingMultiplierValidator()] = (
        _DEFAULT_PANEL["spacingMultiplier"]
    )
    roiMarginMm: Annotated[float, WithinRange(0.0, 200.0)] = _DEFAULT_PANEL["roiMarginMm"]
    samplingPercentage: Annotated[float, WithinRange(0.0, 1.0)] = _DEFAULT_PANEL["samplingPercentage"]
    numberOfIterations: Annotated[int, WithinRange(1, 20000)] = _DEFAULT_PANEL["numberOfIterations"]
    transformStages: Annotated[str, Choice(list(STAGE_CHOICES))] = _DEFAULT_PANEL["transformStages"]
    initializationMode: Annotated[str, Choice(list(INITIALIZATION_CHOICES))] = _DEFAULT_PANEL[
        "initializationMode"
    ]
    engine: Annotated[str, Choice(list(ENGINE_NAMES))] = DEFAULT_ENGINE
    outputTransform: vtkMRMLLinearTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    perBone: bool = False
    #: None: the bones are found automatically in the CT (the fixed or the moving volume must be one).
    boneSegmentation: vtkMRMLSegmentationNode


#
# MultimodalKneeRegistrationWidget
#


class MultimodalKneeRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: widgets are bound to the parameter node through their SlicerParameterName property.

    The binding is made once per parameter node, with ``connectParametersToGui`` and a mapping read
    from the .ui file (``gui_binding``), and kept while the module is left and re-entered and across
    Close Scene: every connection adds a ModifiedEvent observer holding its wrapper to the node, which
    ``disconnectGui`` never removes (``Base/Python/slicer/parameterNodeWrapper/wrapper.py:212`` vs
    ``:256``, same in 5.6.2, 5.8.1 and 5.10.0), and re-creating a combo box's connector clears and
    refills the box (``guiConnectors.py``, ``QComboBoxToStringableConnector.__init__``). Close Scene
    (``scene.Clear(false)``, ``Base/QTApp/qSlicerMainWindow.cxx:1043`` at 5.6.2, ``:1087`` at 5.8.1,
    ``:982`` at 5.10.0) keeps singleton nodes and resets them (``vtkMRMLScene::RemoveAllNodes`` and
    ``ResetNodes``), so the parameter node survives and the binding stays. It is remade only when the
    node itself changes (removed with ``Clear(1)``, a reloaded module), and the old binding is then
    disconnected with the tag ``connectParametersToGui`` returned (``:213``).
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._panelProgress = None
        self._lastRunCode = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MultimodalKneeRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MultimodalKneeRegistrationLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.copyPythonButton.connect("clicked(bool)", self.onCopyPythonButton)
        # "activated" is emitted for the user's choice only, not when the parameter node (a scene
        # load, the console) changes the box: only the user's choice brings the preset's values.
        self.ui.presetComboBox.connect("activated(int)", self.onPresetActivated)
        self.ui.progressBar.setValue(0)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """The binding stays (see the class docstring); nothing to undo when the module is left."""

    def onSceneStartClose(self, caller, event) -> None:
        """The binding stays: the singleton parameter node survives Close Scene (see the class docstring)."""

    def onSceneEndClose(self, caller, event) -> None:
        """Defaults back into the reset node (a new wrapper writes them); rebinds only if the node changed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        # What the selectors show (exactly vtkMRMLScalarVolumeNode, see the .ui) with one component per voxel:
        # label maps, vector and DWI volumes are subclasses that getNodesByClass returns too.
        volumes = [v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if v.GetClassName() == "vtkMRMLScalarVolumeNode" and voxelComponents(v) == 1]
        if not self._parameterNode.fixedVolume and volumes:
            self._parameterNode.fixedVolume = volumes[0]
        if not self._parameterNode.movingVolume and len(volumes) > 1:
            self._parameterNode.movingVolume = volumes[1]

    def widgetMapping(self) -> dict:
        """{parameter: widget} from the .ui file's SlicerParameterName properties, checked both ways."""
        from MultimodalKneeRegistrationSlicer.gui_binding import parameterWidgetNames

        names = parameterWidgetNames(_UI_FILE.read_text(), MultimodalKneeRegistrationParameterNode.allParameters)
        return {parameter: getattr(self.ui, widget) for parameter, widget in names.items()}

    def setParameterNode(self, inputParameterNode: Optional["MultimodalKneeRegistrationParameterNode"]) -> None:
        """Bind the panel to ``inputParameterNode``; a no-op when it wraps the node already bound."""
        current = self._parameterNode
        if current is not None and inputParameterNode is not None and (
            current.parameterNode is inputParameterNode.parameterNode
        ):
            return
        if current is not None:
            current.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(current, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if inputParameterNode is not None:
            self._parameterNodeGuiTag = inputParameterNode.connectParametersToGui(self.widgetMapping())
            self.addObserver(inputParameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Only the Apply button follows the node; values are never written from here (a scene load
        modifies the node too, and must not overwrite the saved Advanced values)."""
        self._checkCanApply()

    def onPresetActivated(self, index: int) -> None:
        """The user picked a preset: its values replace the Advanced values (``presetChoiceUpdates``)."""
        node = self._parameterNode
        if node is None or not 0 <= index < len(PRESET_NAMES):
            return
        updates = presetChoiceUpdates(PRESET_NAMES[index], {name: getattr(node, name) for name in PRESET_KNOBS})
        wasModifying = node.StartModify()
        try:
            for name, value in updates.items():
                setattr(node, name, value)
        finally:
            node.EndModify(wasModifying)

    def _checkCanApply(self) -> None:
        node = self._parameterNode
        available = self.logic.availableEngines()
        reason = None
        if not node or not node.fixedVolume or not node.movingVolume:
            reason = _("Select the fixed and moving volumes.")
        elif node.fixedVolume == node.movingVolume:
            reason = _("The fixed and moving volumes must be different.")
        elif max(voxelComponents(node.fixedVolume), voxelComponents(node.movingVolume)) > 1:
            reason = _(
                "Vector, colour and diffusion-weighted volumes have several values per voxel: convert "
                "them to a single scalar component first (Vector to Scalar Volume module)."
            )
        elif node.engine not in available:
            reason = _("The {engine} engine is not available here.").format(engine=node.engine)
        self.ui.applyButton.enabled = reason is None and not self._running
        self.ui.applyButton.toolTip = reason or _("Register the moving volume to the fixed volume.")
        self.ui.cancelButton.enabled = self._running

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.advancedCollapsibleButton.enabled = not running
        self.ui.outputsCollapsibleButton.enabled = not running
        self.ui.perBoneCollapsibleButton.enabled = not running
        self._checkCanApply()

    def _showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.statusLabel.text = message

    def onCancelButton(self) -> None:
        if self._panelProgress is not None:
            self._panelProgress.cancel()
        self.ui.statusLabel.text = _("Cancelling...")

    def onApplyButton(self) -> None:
        from MultimodalKneeRegistrationLib.errors import CancelledError
        from MultimodalKneeRegistrationSlicer.event_pump import PanelProgress

        node = self._parameterNode
        # Progress reports and cancel checks process Qt events, so the panel repaints and Cancel works.
        self._panelProgress = PanelProgress(self._showProgress, slicer.app.processEvents)
        self._setRunning(True)
        self.ui.resultTextEdit.plainText = ""
        try:
            with slicer.util.tryWithErrorDisplay(_("Registration failed."), waitCursor=True):
                start = self._startTransform()
                # Read before the run moves the moving volume: a segmentation is taken where it is shown.
                boneLabels = self.logic.boneLabelsFromParameterNode(node) if node.perBone else None
                try:
                    result = self.logic.registerFromParameterNode(
                        node, progress=self._panelProgress.progress, shouldCancel=self._panelProgress.shouldCancel
                    )
                except CancelledError:
                    self.ui.statusLabel.text = _("Cancelled: nothing was written.")
                    self.ui.progressBar.setValue(0)
                    return
                node.outputTransform = result.outputTransformNode
                self._lastRunCode = self.pythonCode(start)
                self._showResult(result)
                if boneLabels is not None:
                    self._registerPerBone(result, boneLabels)
        finally:
            self._setRunning(False)

    def _registerPerBone(self, whole, boneLabels) -> None:
        """The per-bone step after the whole-volume one; its result text follows the whole-volume summary."""
        from MultimodalKneeRegistrationLib.errors import CancelledError

        try:
            perBone = self.logic.registerPerBoneFromParameterNode(
                self._parameterNode,
                whole,
                boneLabels,
                progress=self._panelProgress.progress,
                shouldCancel=self._panelProgress.shouldCancel,
            )
        except CancelledError:
            self.ui.statusLabel.text = _("Per-bone step cancelled: the whole-volume result was kept.")
            self.ui.progressBar.setValue(0)
            return
        self._showPerBoneResult(whole, perBone)

    def _showResult(self, result) -> None:
        node = self._parameterNode
        slicer.util.setSliceViewerLayers(
            background=node.fixedVolume, foreground=node.movingVolume, foregroundOpacity=0.5, fit=True
        )
        self.ui.resultTextEdit.plainText = result.summary()
        verdict = _("Done") if result.result.passed_sanity_checks else _("Done, but the sanity checks failed")
        self.ui.statusLabel.text = _("{verdict} in {seconds:.1f} s.").format(
            verdict=verdict, seconds=result.seconds
        )
        self.ui.progressBar.setValue(100)

    def _showPerBoneResult(self, whole, perBone) -> None:
        self.ui.resultTextEdit.plainText = whole.summary() + "\n\n" + perBone.summary()
        rotations = perBone.perBone.relative_rotations()
        flexion = "; ".join(
            _("{second} relative to {first}: {angle:.1f} deg").format(
                first=r["bones"][0], second=r["bones"][1], angle=r["rotation_deg"]
            )
            for r in rotations
        )
        self.ui.statusLabel.text = _("Done: {count} bone transform(s) in {seconds:.1f} s. {flexion}").format(
            count=len(perBone.transformNodes), seconds=whole.seconds + perBone.seconds, flexion=flexion
        )
        self.ui.progressBar.setValue(100)

    def _startTransform(self):
        """The transform a run would start from: the initial transform, else the moving volume's parent."""
        node = self._parameterNode
        if node.initialTransform is not None:
            return node.initialTransform
        return node.movingVolume.GetParentTransformNode() if node.movingVolume is not None else None

    def pythonCode(self, startTransform=_CURRENT_START) -> str:
        """The script that repeats the run the panel describes (see ``pythonCodeForRun``).

        ``startTransform``: the transform the run started from, recorded before Apply (the run puts
        the moving volume under its output transform); by default, the one a run would start from now.
        """
        node = self._parameterNode

        def name(n):
            return n.GetName() if n is not None else None

        if startTransform is _CURRENT_START:
            startTransform = self._startTransform()
        return pythonCodeForRun(
            name(node.fixedVolume),
            name(node.movingVolume),
            settingsFromParameterNode(node),
            node.engine,
            initialTransformName=name(startTransform),
            roiName=name(node.roi),
            outputTransformName=name(node.outputTransform),
            outputVolumeName=name(node.outputVolume),
            startFromHeaders=startTransform is None,
            perBone=node.perBone,
            boneSegmentationName=name(node.boneSegmentation),
        )

    def onCopyPythonButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not write the Python code.")):
            code = self._lastRunCode or self.pythonCode()
            qt.QApplication.clipboard().setText(code)
            what = _("the last run") if self._lastRunCode else _("the current settings")
            self.ui.statusLabel.text = _("Python code for {what} copied to the clipboard.").format(what=what)


#
# MultimodalKneeRegistrationLogic
#


class MultimodalKneeRegistrationLogic(ScriptedLoadableModuleLogic, KneeRegistrationLogic):
    """``register(fixedNode, movingNode, settings, ...)`` for the Python console; see KneeRegistrationLogic.

    Example (Slicer's Python console):
        >>> from MultimodalKneeRegistration import MultimodalKneeRegistrationLogic
        >>> from MultimodalKneeRegistrationLib import settings_for_preset
        >>> out = MultimodalKneeRegistrationLogic().register(
        ...     getNode("MR"), getNode("microCT"), settings_for_preset("mri-microct-knee"))
        >>> print(out.summary())
    """

    def __init__(self) -> None:
        # Initialised once: ScriptedLoadableModuleLogic.__init__ calls super().__init__()
        # (Base/Python/slicer/ScriptedLoadableModule.py:294 at v5.6.2, :298 at v5.8.1 and v5.10.0),
        # which, in this class's MRO, is KneeRegistrationLogic.__init__ with its defaults
        # (slicer.mrmlScene and the application's Crop Volume and BRAINSFit modules).
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MultimodalKneeRegistrationParameterNode(super().getParameterNode())

    def registerFromParameterNode(self, parameterNode, progress=None, shouldCancel=None):
        """Unpack the panel's parameter node and call ``register``."""
        return self.register(
            parameterNode.fixedVolume,
            parameterNode.movingVolume,
            settingsFromParameterNode(parameterNode),
            engine=parameterNode.engine,
            initialTransformNode=parameterNode.initialTransform,
            roiNode=parameterNode.roi,
            outputTransformNode=parameterNode.outputTransform,
            outputVolumeNode=parameterNode.outputVolume,
            progress=progress,
            shouldCancel=shouldCancel,
        )

    def boneLabelsFromParameterNode(self, parameterNode):
        """The bones of the panel's segmentation (or of the CT), read before the run moves the moving volume."""
        return self.readBoneLabels(
            parameterNode.fixedVolume, parameterNode.movingVolume, parameterNode.boneSegmentation
        )

    def registerPerBoneFromParameterNode(self, parameterNode, whole, boneLabels=None, progress=None,
                                         shouldCancel=None):
        """Unpack the panel's parameter node and call ``registerPerBone`` after the whole-volume ``whole``."""
        return self.registerPerBone(
            parameterNode.fixedVolume,
            parameterNode.movingVolume,
            whole,
            None if boneLabels is not None else parameterNode.boneSegmentation,
            settingsFromParameterNode(parameterNode),
            boneLabels=boneLabels,
            progress=progress,
            shouldCancel=shouldCancel,
        )


#
# MultimodalKneeRegistrationTest
#


class MultimodalKneeRegistrationTest(ScriptedLoadableModuleTest):
    """Full pipeline on Slicer's checksummed SampleData, with every engine this Slicer has.

    Run without a screen (see the README): ``--no-main-window`` still makes a Qt GUI application,
    which on Linux needs a display, so give it a virtual one (or Qt's offscreen platform):
    xvfb-run -a Slicer --no-splash --no-main-window --testing
    --additional-module-paths <repo>/MultimodalKneeRegistration
    --python-script <repo>/MultimodalKneeRegistration/Testing/Python/run_self_test.py
    (or QT_QPA_PLATFORM=offscreen Slicer ... with the same arguments).
    """

    #: A second run, started 12 deg and 15 mm away from the first result, must land within this (mean, mm).
    RERUN_TOLERANCE_MM = 2.0

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ParameterNodeAndPythonCode()
        self.setUp()
        self.test_CTMRBrain()
        self.setUp()
        self.test_CBCTMRHead()

    def _sample(self, sampleName, nodeName):
        import SampleData

        nodes = SampleData.downloadSamples(sampleName)
        matches = [n for n in nodes if n.GetName().startswith(nodeName)]
        self.assertTrue(matches, f"{sampleName} did not load {nodeName}")
        return matches[0]

    def _checkPipeline(self, fixedNode, movingNode, presetName):
        import numpy as np
        from MultimodalKneeRegistrationLib.geometry import image_center, point_distances
        from MultimodalKneeRegistrationLib.settings import settings_for_preset
        from MultimodalKneeRegistrationSlicer.coordinates import rasMatrixFromTransform
        from MultimodalKneeRegistrationSlicer.volume_adapter import sitkImageFromVolumeNode, vtkMatrixFromArray

        logic = MultimodalKneeRegistrationLogic()
        fixedImage = sitkImageFromVolumeNode(fixedNode)
        points = image_center(fixedImage) + 40.0 * np.array(
            [[0, 0, 0], [1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=float
        )
        movingVoxelsBefore = slicer.util.arrayFromVolume(movingNode).copy()
        for engine in logic.availableEngines():
            self.delayDisplay(f"{presetName}: {engine} from the image headers")
            movingNode.SetAndObserveTransformNodeID(None)
            first = logic.register(fixedNode, movingNode, settings_for_preset(presetName), engine=engine)
            r = first.result
            logging.info(f"{engine}: {first.summary()}")
            self.assertTrue(r.passed_sanity_checks, r.warnings)
            self.assertLess(r.metric_after, r.metric_before)
            self.assertIs(movingNode.GetParentTransformNode(), first.outputTransformNode)

            self.delayDisplay(
                f"{presetName}: {engine} from a start 12 deg / 15 mm away (moving volume's transform)"
            )
            # 12 deg about the fixed image's centre plus 15 mm, on top of the first result (RAS)
            angle, center = np.radians(12.0), image_center(fixedImage) * [-1.0, -1.0, 1.0]
            perturbation = np.eye(4)
            perturbation[:3, :3] = [
                [np.cos(angle), -np.sin(angle), 0],
                [np.sin(angle), np.cos(angle), 0],
                [0, 0, 1],
            ]
            perturbation[:3, 3] = center - perturbation[:3, :3] @ center + [9.0, -12.0, 0.0]
            resultToParent = np.linalg.inv(rasMatrixFromTransform(r.transform))
            start = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "perturbed start")
            start.SetMatrixTransformToParent(vtkMatrixFromArray(perturbation @ resultToParent))
            movingNode.SetAndObserveTransformNodeID(start.GetID())
            second = logic.register(fixedNode, movingNode, settings_for_preset(presetName), engine=engine)
            self.assertIn("perturbed start", second.startDescription)
            distances = point_distances(second.result.transform, r.transform, points)
            logging.info(
                f"{engine}: rerun differs by {distances.mean():.2f} mm mean, {distances.max():.2f} mm max"
            )
            self.assertLess(distances.mean(), self.RERUN_TOLERANCE_MM)
            self.assertTrue(second.result.passed_sanity_checks, second.result.warnings)
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(movingNode), movingVoxelsBefore))
        slicer.util.setSliceViewerLayers(background=fixedNode, foreground=movingNode, foregroundOpacity=0.5)

    def test_ParameterNodeAndPythonCode(self):
        """Panel values become settings; the copied script rebuilds exactly those settings."""
        self.delayDisplay("Parameter node and Python code")
        node = MultimodalKneeRegistrationLogic().getParameterNode()
        for name, value in panelValuesFromSettings(PRESETS["mri-microct-knee"]).items():
            setattr(node, name, value)
        self.assertEqual(settingsFromParameterNode(node), PRESETS["mri-microct-knee"])
        node.spacingMultiplier = 6.0
        node.numberOfIterations = 123
        settings = settingsFromParameterNode(node)
        self.assertEqual(
            (settings.choices.spacing_multiplier, settings.optimizer.number_of_iterations), (6.0, 123)
        )
        code = pythonCodeForRun("MR", "microCT", settings, DEFAULT_ENGINE)
        namespace = {}
        exec(compile(code.split("logic = ")[0], "<copied code>", "exec"), namespace)
        self.assertEqual(namespace["settings"], settings)

    def test_CTMRBrain(self):
        """CT brain (fixed) and MR T1 (moving) from Slicer's SampleData."""
        self.delayDisplay("Downloading CTMRBrain")
        fixedNode = self._sample("CTMRBrain", "CTBrain")
        movingNode = slicer.util.getFirstNodeByClassByName("vtkMRMLScalarVolumeNode", "MRBrainT1")
        self.assertIsNotNone(movingNode)
        self._checkPipeline(fixedNode, movingNode, "mri-ct")
        self.delayDisplay("CTMRBrain passed")

    def test_CBCTMRHead(self):
        """MR (fixed) and a 0.25 mm CBCT (moving): the fine image is downsampled, the large one cropped."""
        self.delayDisplay("Downloading CBCTMRHead")
        movingNode = self._sample("CBCTMRHead", "DZ-CBCT")
        fixedNode = slicer.util.getFirstNodeByClassByName("vtkMRMLScalarVolumeNode", "DZ-MR")
        self.assertIsNotNone(fixedNode)
        self._checkPipeline(fixedNode, movingNode, "mri-microct-knee")
        self.delayDisplay("CBCTMRHead passed")

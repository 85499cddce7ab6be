"""Panel knobs <-> RegistrationSettings, and the "Copy Python code" script (pure Python)."""

from __future__ import annotations

import types

import pytest
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.settings import PRESETS, settings_for_preset
from MultimodalKneeRegistrationSlicer.parameters import (
    ENGINE_NAMES,
    INITIALIZATION_CHOICES,
    PRESET_NAMES,
    STAGE_CHOICES,
    panelValuesFromSettings,
    pythonCodeForRun,
    settingsFromPanelValues,
    settingsFromParameterNode,
    settingsOverrides,
)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_survives_the_panel(preset):
    values = panelValuesFromSettings(PRESETS[preset])
    assert settingsFromParameterNode(types.SimpleNamespace(**values)) == PRESETS[preset]
    assert settingsOverrides(PRESETS[preset]) == {}


def test_zero_means_auto_and_set_knobs_override_the_preset():
    auto = settingsFromPanelValues("mri-microct-knee", spacingMultiplier=0.0, samplingPercentage=0.0)
    assert auto.flat()["spacing_multiplier"] is None and auto.flat()["sampling_percentage"] is None
    assert auto.flat()["roi_margin_mm"] == PRESETS["mri-microct-knee"].flat()["roi_margin_mm"]
    tuned = settingsFromPanelValues(
        "mri-ct",
        spacingMultiplier=8.0,
        roiMarginMm=10.0,
        samplingPercentage=0.05,
        numberOfIterations=500,
        transformStages="Rigid, then affine",
        initializationMode="Off (use the start as is)",
    )
    flat = tuned.flat()
    assert (flat["spacing_multiplier"], flat["roi_margin_mm"], flat["sampling_percentage"]) == (8.0, 10.0, 0.05)
    assert tuned.flat()["number_of_iterations"] == 500 and tuned.flat()["transform_stages"] == ("Rigid", "Affine")
    assert tuned.flat()["initialize_transform_mode"] == "Off" and tuned.preset == "mri-ct"
    assert settingsOverrides(tuned) == {
        "spacing_multiplier": 8.0,
        "roi_margin_mm": 10.0,
        "sampling_percentage": 0.05,
        "number_of_iterations": 500,
        "transform_stages": ("Rigid", "Affine"),
        "initialize_transform_mode": "Off",
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="mri-mri"), "unknown preset"),
        (dict(preset="mri-ct", spacingMultiplier=0.5), "below 1"),
        (dict(preset="mri-ct", numberOfIterations=0), "number_of_iterations"),
        (dict(preset="mri-ct", transformStages="BSpline"), "unknown transform stages"),
        (dict(preset="mri-ct", initializationMode="guess"), "unknown initialisation"),
    ],
)
def test_unusable_panel_values_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        settingsFromPanelValues(**kwargs)


def test_choices_cover_the_core_vocabulary():
    from MultimodalKneeRegistrationLib.settings import INITIALIZE_MODES, TRANSFORM_STAGES

    assert PRESET_NAMES == list(PRESETS)
    assert set(INITIALIZATION_CHOICES.values()) == set(INITIALIZE_MODES)
    assert {s for stages in STAGE_CHOICES.values() for s in stages} == set(TRANSFORM_STAGES)
    assert list(ENGINE_NAMES) == ["SimpleITK", "BRAINSFit"]


def test_copied_code_rebuilds_the_exact_settings_and_names_the_nodes():
    settings = settings_for_preset(  # as the panel makes them: the knobs set are recorded
        "mri-microct-knee",
        spacing_multiplier=6.0,
        number_of_iterations=123,
        transform_stages=("Rigid", "Affine"),
    )
    code = pythonCodeForRun(
        "MR 'knee'",
        "microCT",
        settings,
        "BRAINSFit",
        roiName="R",
        outputTransformName="microCT to MR",
        startFromHeaders=True,
    )
    compile(code, "<copied code>", "exec")
    settingsPart = code.split("logic = ")[0]
    for slicerOnly in (
        "import slicer\n",
        "from MultimodalKneeRegistration import MultimodalKneeRegistrationLogic\n",
    ):
        settingsPart = settingsPart.replace(slicerOnly, "")
    namespace: dict = {}
    exec(settingsPart, namespace)
    assert namespace["settings"] == settings
    assert "fixed = slicer.util.getFirstNodeByClassByName('vtkMRMLScalarVolumeNode', \"MR 'knee'\")" in code
    assert "roiNode=slicer.util.getFirstNodeByClassByName('vtkMRMLMarkupsROINode', 'R')" in code
    assert (
        "engine='BRAINSFit'" in code
        and "initialTransformNode=None" in code
        and "outputVolumeNode=None" in code
    )
    # The original run started from the headers: the script takes the moving volume out of the
    # transform that run put it under, before registering again.
    assert code.index("moving.SetAndObserveTransformNodeID(None)") < code.index("result = logic.register(")


def test_copied_code_starts_from_the_recorded_start_transform():
    code = pythonCodeForRun(
        "CT", "MR", PRESETS["mri-ct"], "SimpleITK", initialTransformName="centralize", startFromHeaders=True
    )
    assert (
        "initialTransformNode=slicer.util.getFirstNodeByClassByName('vtkMRMLTransformNode', 'centralize')"
        in code
    )
    assert "SetAndObserveTransformNodeID" not in code
    assert "outputTransformNode=None,  # None: create a new one" in code


def test_copied_code_uses_real_slicer_util_functions():
    slicer = pytest.importorskip("slicer")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not the slicer-core wheel")
    import slicer.util

    assert callable(slicer.util.getFirstNodeByClassByName)
    with pytest.raises(InputError, match="unknown engine"):
        pythonCodeForRun("A", "B", PRESETS["mri-ct"], "elastix")


def test_copied_code_reads_the_bones_before_the_run_and_registers_them_after():
    code = pythonCodeForRun(
        "CT", "MR", PRESETS["mri-ct"], "SimpleITK", startFromHeaders=True, perBone=True, boneSegmentationName="Bones"
    )
    compile(code, "<copied code>", "exec")
    reset = code.index("moving.SetAndObserveTransformNodeID(None)")
    read = code.index("boneLabels = logic.readBoneLabels(")
    assert reset < read < code.index("result = logic.register(") < code.index("perBone = logic.registerPerBone(")
    assert "slicer.util.getFirstNodeByClassByName('vtkMRMLSegmentationNode', 'Bones')" in code
    assert "logic.registerPerBone(fixed, moving, result, settings=settings, boneLabels=boneLabels)" in code
    assert code.rstrip().endswith("print(perBone.summary())")
    automatic = pythonCodeForRun("CT", "MR", PRESETS["mri-ct"], "SimpleITK", perBone=True)
    assert "fixed, moving, None  # None: the bones of the CT" in automatic
    assert "Bone" not in pythonCodeForRun("CT", "MR", PRESETS["mri-ct"], "SimpleITK")


def test_light_constants_are_the_cores_own():
    """The engine names and the default preset are defined once, in the light ``settings`` module,
    so the module file loads without SimpleITK (defect 8) and repeats nothing."""
    from MultimodalKneeRegistrationLib.engines import ENGINE_NAMES as CORE_ENGINES
    from MultimodalKneeRegistrationLib.settings import DEFAULT_PRESET
    from MultimodalKneeRegistrationSlicer.parameters import PRESET_KNOBS

    assert ENGINE_NAMES is CORE_ENGINES
    assert set(PRESET_KNOBS) | {"preset"} == set(panelValuesFromSettings(PRESETS[DEFAULT_PRESET]))


def test_a_preset_choice_brings_the_presets_values_and_nothing_else():
    """Defect 6: what the combo box's ``activated`` signal applies (the widget calls nothing else)."""
    from MultimodalKneeRegistrationSlicer.parameters import presetChoiceUpdates

    current = dict(panelValuesFromSettings(PRESETS["mri-ct"]), numberOfIterations=123)
    updates = presetChoiceUpdates("fast-preview", current)
    wanted = panelValuesFromSettings(PRESETS["fast-preview"])
    assert updates["preset"] == "fast-preview"
    assert {**current, **updates} == wanted
    assert all(current[name] != value for name, value in updates.items() if name != "preset")
    # Picking the preset shown again resets the Advanced values to it (a deliberate user action).
    mriCt = panelValuesFromSettings(PRESETS["mri-ct"])
    assert presetChoiceUpdates("mri-ct", current) == {"preset": "mri-ct",
                                                      "numberOfIterations": mriCt["numberOfIterations"]}
    with pytest.raises(InputError, match="unknown preset"):
        presetChoiceUpdates("mri-mri", current)


@pytest.mark.parametrize("value, ok", [(0.0, True), (1.0, True), (4.0, True), (64.0, True), (0.5, False),
                                       (0.999, False), (64.5, False), (-1.0, False)])
def test_spacing_multiplier_is_auto_or_between_1_and_64(value, ok):
    from MultimodalKneeRegistrationSlicer.parameters import spacingMultiplierProblem

    assert (spacingMultiplierProblem(value) is None) == ok
    if ok and value:
        settingsFromPanelValues("mri-ct", spacingMultiplier=value)  # the core accepts what the panel accepts


def test_panel_records_only_the_knobs_the_user_changed():
    """The panel shows every knob filled from the preset; under ``auto`` an unchanged value must not
    pin the preset the images choose (a micro-CT keeps its 40 iterations), a changed one must."""
    from MultimodalKneeRegistrationSlicer.parameters import settingsFromPanelValues

    shown = panelValuesFromSettings(PRESETS["auto"])
    assert settingsFromPanelValues(**shown).overrides == ()
    changed = settingsFromPanelValues(**{**shown, "numberOfIterations": 99})
    assert changed.overrides == ("number_of_iterations",) and changed.optimizer.number_of_iterations == 99

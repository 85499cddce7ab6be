"""The panel's knobs <-> the core's ``RegistrationSettings``, and the "Copy Python code" script.

Why: the parameter node stores plain values (0 means "let the planner choose"); the core wants a
validated frozen dataclass. One converter in each direction keeps the panel, the Python console and
the generated script in agreement. Pure Python (no Slicer import), so it is tested anywhere.

Light on purpose: the module file imports this at Slicer start-up (every scripted module is imported
then), so it needs only the core's ``settings`` and ``errors`` (plain dataclasses, no SimpleITK),
which also hold the engine names and the default preset.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.settings import (
    ENGINE_NAMES,
    PRESETS,
    RegistrationSettings,
    settings_for_preset,
    user_overrides,
)

PRESET_NAMES = list(PRESETS)
#: Panel knobs a preset sets (every parameter ``panelValuesFromSettings`` returns but the preset).
PRESET_KNOBS = (
    "spacingMultiplier",
    "roiMarginMm",
    "samplingPercentage",
    "numberOfIterations",
    "transformStages",
    "initializationMode",
)
#: The spacing multiplier's largest panel value; 0 means "auto" and 1 is the smallest other value.
MAX_SPACING_MULTIPLIER = 64.0
#: Panel choice -> transform stages (BRAINSFit's useRigid / useScaleVersor3D / useAffine).
STAGE_CHOICES = {
    "Rigid": ("Rigid",),
    "Rigid, then scale": ("Rigid", "ScaleVersor3D"),
    "Rigid, then affine": ("Rigid", "Affine"),
    "Rigid, scale, then affine": ("Rigid", "ScaleVersor3D", "Affine"),
}
#: Panel choice -> ``initialize_transform_mode``.
INITIALIZATION_CHOICES = {
    "Search (robust)": "search",
    "Image centres": "useGeometryAlign",
    "Centres of mass": "useMomentsAlign",
    "Off (use the start as is)": "Off",
}


def _choiceFor(mapping: Dict[str, Any], value: Any, what: str) -> str:
    for label, mapped in mapping.items():
        if mapped == value:
            return label
    raise InputError(f"{what} {value!r} cannot be shown in the panel", f"use one of {list(mapping.values())}")


def panelValuesFromSettings(settings: RegistrationSettings) -> Dict[str, Any]:
    """The panel's knob values showing ``settings`` (``None`` -> 0, shown as "auto").

    Example:
        >>> panelValuesFromSettings(PRESETS["mri-microct-knee"])["roiMarginMm"]
        10.0
    """
    choices, optimizer = settings.choices, settings.optimizer
    return {
        "preset": settings.preset,
        "spacingMultiplier": float(choices.spacing_multiplier or 0.0),
        "roiMarginMm": float(choices.roi_margin_mm),
        "samplingPercentage": float(choices.sampling_percentage or 0.0),
        "numberOfIterations": int(optimizer.number_of_iterations),
        "transformStages": _choiceFor(STAGE_CHOICES, tuple(optimizer.transform_stages), "transform stages"),
        "initializationMode": _choiceFor(INITIALIZATION_CHOICES, choices.initialize_transform_mode, "initialisation"),
    }


def presetChoiceUpdates(preset: str, current: Mapping[str, Any]) -> Dict[str, Any]:
    """The parameter values to write when the user picks ``preset`` in the combo box.

    Why a function of its own: the preset's values must be applied only on the user's choice (the
    combo box's ``activated`` signal), never because the parameter node changed: a scene load, an
    undo or the Python console also change it, and must not overwrite the saved Advanced values.
    The widget calls this from that signal only; it returns ``preset`` plus every knob whose value
    in ``current`` (the node's values now) differs from the preset's, so picking the preset shown
    again resets the Advanced values to it and changes nothing else.

    Example:
        >>> presetChoiceUpdates("fast-preview", panelValuesFromSettings(PRESETS["fast-preview"]))
        {'preset': 'fast-preview'}
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}", f"use one of {PRESET_NAMES}")
    values = panelValuesFromSettings(PRESETS[preset])
    updates = {"preset": preset}
    updates.update({name: values[name] for name in PRESET_KNOBS if current.get(name) != values[name]})
    return updates


def spacingMultiplierProblem(value: float) -> Optional[str]:
    """Why ``value`` cannot be the panel's spacing multiplier, or None: 0 ("auto") or 1 to 64.

    Values between 0 and 1 would make the fine image finer than it is; ``settings.validate`` refuses
    them, so the panel refuses them first (the spin box shows whole numbers only, see the .ui file).
    """
    if value == 0.0 or 1.0 <= value <= MAX_SPACING_MULTIPLIER:
        return None
    return f"the spacing multiplier must be 0 (auto) or between 1 and {MAX_SPACING_MULTIPLIER:g}, not {value:g}"


def settingsFromPanelValues(
    preset: str,
    spacingMultiplier: float = 0.0,
    roiMarginMm: Optional[float] = None,
    samplingPercentage: float = 0.0,
    numberOfIterations: Optional[int] = None,
    transformStages: Optional[str] = None,
    initializationMode: Optional[str] = None,
) -> RegistrationSettings:
    """Validated settings from panel values: the preset, overridden by every knob that differs from it.

    Raises ``InputError`` (with what to do) for values the core cannot use.

    Example:
        >>> settingsFromPanelValues("mri-ct", spacingMultiplier=4, numberOfIterations=300).spacing_multiplier
        4.0
    """
    if transformStages is not None and transformStages not in STAGE_CHOICES:
        raise InputError(f"unknown transform stages {transformStages!r}", f"use one of {list(STAGE_CHOICES)}")
    if initializationMode is not None and initializationMode not in INITIALIZATION_CHOICES:
        raise InputError(
            f"unknown initialisation {initializationMode!r}", f"use one of {list(INITIALIZATION_CHOICES)}"
        )
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}", f"use one of {PRESET_NAMES}")
    knobs = {
        "spacing_multiplier": float(spacingMultiplier) if spacingMultiplier and spacingMultiplier > 0 else None,
        "roi_margin_mm": None if roiMarginMm is None else float(roiMarginMm),
        "sampling_percentage": float(samplingPercentage) if samplingPercentage and samplingPercentage > 0 else None,
        "number_of_iterations": None if numberOfIterations is None else int(numberOfIterations),
        "transform_stages": None if transformStages is None else STAGE_CHOICES[transformStages],
        "initialize_transform_mode": None if initializationMode is None else INITIALIZATION_CHOICES[initializationMode],
    }
    # The panel shows every knob, filled from the preset: only a value the user changed is an override
    # (under "auto", the preset the images choose keeps its own values for the others).
    base = PRESETS[preset].flat()
    return settings_for_preset(preset, **{k: v for k, v in knobs.items() if v is not None and v != base[k]})


def settingsFromParameterNode(parameterNode) -> RegistrationSettings:
    """``settingsFromPanelValues`` with the knobs of the module's parameter node (any object having them)."""
    return settingsFromPanelValues(
        parameterNode.preset,
        spacingMultiplier=parameterNode.spacingMultiplier,
        roiMarginMm=parameterNode.roiMarginMm,
        samplingPercentage=parameterNode.samplingPercentage,
        numberOfIterations=parameterNode.numberOfIterations,
        transformStages=parameterNode.transformStages,
        initializationMode=parameterNode.initializationMode,
    )


def settingsOverrides(settings: RegistrationSettings) -> Dict[str, Any]:
    """The knobs the user set on ``settings`` (``settings_for_preset(preset, **these)`` rebuilds it)."""
    return user_overrides(settings)


def _nodeExpression(name: Optional[str], className: str) -> str:
    if not name:
        return "None"
    return f"slicer.util.getFirstNodeByClassByName({className!r}, {name!r})"


def _perBoneCode(boneSegmentationName: Optional[str]) -> Tuple[str, str]:
    """The script's lines that read the bones (before the registration) and register each (after)."""
    readBones = (
        "# The bones are read before the registration puts the moving volume under its result.\n"
        "boneLabels = logic.readBoneLabels(\n"
        f"    fixed, moving, {_nodeExpression(boneSegmentationName, 'vtkMRMLSegmentationNode')}"
        "  # None: the bones of the CT\n"
        ")\n"
    )
    perBoneRun = (
        "perBone = logic.registerPerBone(fixed, moving, result, settings=settings, boneLabels=boneLabels)\n"
        "print(perBone.summary())\n"
    )
    return readBones, perBoneRun


def pythonCodeForRun(
    fixedName: str,
    movingName: str,
    settings: RegistrationSettings,
    engine: str,
    *,
    initialTransformName: Optional[str] = None,
    roiName: Optional[str] = None,
    outputTransformName: Optional[str] = None,
    outputVolumeName: Optional[str] = None,
    startFromHeaders: bool = False,
    perBone: bool = False,
    boneSegmentationName: Optional[str] = None,
) -> str:
    """A script that repeats this run from Slicer's Python console (what the forum user asked for).

    Nodes are found by class and name; settings are the preset plus every override (the exact run,
    and which knobs were changed). ``initialTransformName``: the transform the run started from (the
    panel's, or the one the moving volume was under); ``startFromHeaders`` makes the script take the
    moving volume out of the transform an earlier run put it under. ``perBone`` adds the per-bone
    step (bones from ``boneSegmentationName`` or the CT, read before the registration moves them).

    Example:
        >>> print(pythonCodeForRun("CT", "MR", PRESETS["mri-ct"], "SimpleITK"))  # doctest: +SKIP
    """
    if engine not in ENGINE_NAMES:
        raise InputError(f"unknown engine {engine!r}", f"use one of {ENGINE_NAMES}")
    overrides = "".join(f",\n    {key}={value!r}" for key, value in settingsOverrides(settings).items())
    reset = (
        "moving.SetAndObserveTransformNodeID(None)  # the original run started from the image headers\n"
        if startFromHeaders and not initialTransformName
        else ""
    )
    readBones, perBoneRun = _perBoneCode(boneSegmentationName) if perBone else ("", "")
    return (
        "# MultimodalKneeRegistration: paste into Slicer's Python console to repeat this registration.\n"
        "import slicer\n"
        "from MultimodalKneeRegistration import MultimodalKneeRegistrationLogic\n"
        "from MultimodalKneeRegistrationLib import settings_for_preset\n"
        "\n"
        f"settings = settings_for_preset(\n    {settings.preset!r}{overrides},\n)\n"
        "logic = MultimodalKneeRegistrationLogic()\n"
        f"fixed = {_nodeExpression(fixedName, 'vtkMRMLScalarVolumeNode')}\n"
        f"moving = {_nodeExpression(movingName, 'vtkMRMLScalarVolumeNode')}\n"
        f"{reset}"
        f"{readBones}"
        "result = logic.register(\n"
        "    fixed,\n"
        "    moving,\n"
        "    settings,\n"
        f"    engine={engine!r},\n"
        f"    initialTransformNode={_nodeExpression(initialTransformName, 'vtkMRMLTransformNode')},\n"
        f"    roiNode={_nodeExpression(roiName, 'vtkMRMLMarkupsROINode')},\n"
        f"    outputTransformNode={_nodeExpression(outputTransformName, 'vtkMRMLLinearTransformNode')},"
        "  # None: create a new one\n"
        f"    outputVolumeNode={_nodeExpression(outputVolumeName, 'vtkMRMLScalarVolumeNode')},\n"
        ")\n"
        "print(result.summary())\n"
        f"{perBoneRun}"
    )

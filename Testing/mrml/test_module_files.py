"""The Slicer module's files agree with each other (no Slicer application needed).

Qt, ctk and the parameterNodeWrapper exist only inside Slicer, so the module file is checked
statically: it compiles with Python 3.9's grammar (Slicer 5.6 ships 3.9), every widget bound in the
.ui through ``SlicerParameterName`` is a parameter of the ``@parameterNodeWrapper`` class (with a
widget type that can show it), and CMakeLists.txt packages every file the module needs.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "MultimodalKneeRegistration"
MODULE_FILE = MODULE / "MultimodalKneeRegistration.py"
UI_FILE = MODULE / "Resources" / "UI" / "MultimodalKneeRegistration.ui"
SLICER_SIDE = sorted((MODULE / "MultimodalKneeRegistrationSlicer").glob("*.py"))
#: Annotation type -> widget classes the parameterNodeWrapper can bind to it. Slicer's connectors
#: (slicer/parameterNodeWrapper/guiConnectors.py) compare ``type(widget)`` exactly, so a subclass such
#: as ctkCheckBox, ctkComboBox or ctkDoubleSpinBox finds no connector and connectGui raises.
BINDABLE = {
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "int": {"QSpinBox", "QSlider"},
    "str": {"QComboBox", "QLineEdit"},
    "bool": {"QCheckBox", "QPushButton"},
}


def _parameterNodeFields() -> dict:
    """{name: (base type name, validators source)} of the @parameterNodeWrapper class."""
    tree = ast.parse(MODULE_FILE.read_text())
    classes = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list)
    ]
    assert len(classes) == 1
    fields = {}
    for statement in classes[0].body:
        if isinstance(statement, ast.AnnAssign):
            annotation = statement.annotation
            if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
                base = annotation.slice.elts[0].id
                extras = ast.unparse(annotation.slice)
            else:
                base, extras = annotation.id, ""
            fields[statement.target.id] = (base, extras)
    return fields


def _uiWidgets() -> dict:
    """{widget name: (class, {property: value})} of the .ui file."""
    widgets = {}
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        properties = {}
        for prop in widget.findall("property"):
            value = prop.find("string")
            strings = prop.find("stringlist")
            if value is not None:
                properties[prop.get("name")] = value.text or ""
            elif strings is not None:
                properties[prop.get("name")] = [s.text for s in strings.findall("string")]
        widgets[widget.get("name")] = (widget.get("class"), properties)
    return widgets


@pytest.mark.parametrize(
    "path",
    [
        MODULE_FILE,
        *SLICER_SIDE,
        MODULE / "Testing" / "Python" / "run_self_test.py",
        MODULE / "MultimodalKneeRegistrationLib" / "engines" / "brainsfit_parameters.py",
    ],
    ids=lambda p: p.name,
)
def test_compiles_with_python_39_grammar(path):
    source = path.read_text()
    ast.parse(source, filename=str(path), feature_version=(3, 9))
    compile(source, str(path), "exec")
    assert not re.search(r"^\s*match .*:\s*$", source, re.MULTILINE)


def test_every_bound_widget_is_a_parameter_with_a_matching_type():
    fields, widgets = _parameterNodeFields(), _uiWidgets()
    bound = {
        props["SlicerParameterName"]: (name, cls, props)
        for name, (cls, props) in widgets.items()
        if "SlicerParameterName" in props
    }
    assert set(bound) == set(fields), "every widget binds a parameter and every parameter has a widget"
    for parameter, (name, cls, props) in bound.items():
        base, extras = fields[parameter]
        if base.startswith("vtkMRML"):
            assert cls == "qMRMLNodeComboBox", name
            assert props["nodeTypes"] == [base], name
        else:
            assert cls in BINDABLE[base], (name, cls, base)
            if cls in {"QComboBox", "ctkComboBox"}:
                assert "Choice(" in extras, f"{parameter}: a combo box needs a Choice validator"


def test_node_selectors_receive_the_scene_and_the_module_uses_existing_widgets():
    widgets = _uiWidgets()
    root = ElementTree.parse(UI_FILE).getroot()
    receivers = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
    }
    selectors = {name for name, (cls, _) in widgets.items() if cls == "qMRMLNodeComboBox"}
    assert selectors and selectors == receivers
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used and used <= set(widgets), used - set(widgets)


def test_per_bone_checkbox_enables_the_bone_segmentation_selector():
    """The segmentation only matters for per-bone runs: its selector follows the checkbox, starting disabled."""
    root = ElementTree.parse(UI_FILE).getroot()
    enables = {
        (c.findtext("sender"), c.findtext("receiver"))
        for c in root.iter("connection")
        if (c.findtext("signal"), c.findtext("slot")) == ("toggled(bool)", "setEnabled(bool)")
    }
    followers = ("boneSegmentationSelector", "boneSegmentationSelectorLabel")
    assert {("perBoneCheckBox", name) for name in followers} <= enables
    for widget in root.iter("widget"):
        if widget.get("name") in followers:
            enabled = [p for p in widget.findall("property") if p.get("name") == "enabled"]
            assert enabled and enabled[0].findtext("bool") == "false", widget.get("name")
    fields, widgets = _parameterNodeFields(), _uiWidgets()
    assert fields["perBone"] == ("bool", "") and fields["boneSegmentation"] == ("vtkMRMLSegmentationNode", "")
    assert widgets["boneSegmentationSelector"][1]["noneDisplay"] == "None: automatic from the CT"


def test_module_description_and_classes():
    tree = ast.parse(MODULE_FILE.read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {
        "MultimodalKneeRegistration",
        "MultimodalKneeRegistrationParameterNode",
        "MultimodalKneeRegistrationWidget",
        "MultimodalKneeRegistrationLogic",
        "MultimodalKneeRegistrationTest",
    } <= names
    source = MODULE_FILE.read_text()
    assert 'translate("qSlicerAbstractCoreModule", "Registration")' in source
    assert "helpText" in source and "acknowledgementText" in source and "discourse.slicer.org" in source
    for sample in ('"CTMRBrain"', '"CBCTMRHead"'):
        assert sample in source


def _cmakeList(text: str, variable: str) -> list:
    block = re.search(rf"set\({variable}\n(.*?)\n\s*\)", text, re.DOTALL).group(1)
    return [
        line.strip().replace("${MODULE_NAME}", "MultimodalKneeRegistration")
        for line in block.splitlines()
        if line.strip()
    ]


def test_cmake_packages_every_python_file_and_resource():
    text = (MODULE / "CMakeLists.txt").read_text()
    scripts = _cmakeList(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmakeList(text, "MODULE_PYTHON_RESOURCES")
    onDisk = {
        str(p.relative_to(MODULE))
        for folder in ("MultimodalKneeRegistrationLib", "MultimodalKneeRegistrationSlicer")
        for p in (MODULE / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert set(scripts) == onDisk | {"MultimodalKneeRegistration.py"}
    assert all((MODULE / r).is_file() for r in resources) and len(resources) == 2
    assert (
        "slicerMacroBuildScriptedModule(" in text
        and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    )


def test_extension_cmake_and_icons():
    """The top-level CMakeLists.txt has the 5.8/5.10 extension template's statements, in its order
    (Utilities/Templates/Extensions/Default/CMakeLists.txt), plus EXTENSION_CATEGORY."""
    text = "\n".join(line for line in (REPO / "CMakeLists.txt").read_text().splitlines()
                     if not line.lstrip().startswith("#") or line.startswith("## NEXT_MODULE"))
    template = (
        "cmake_minimum_required(VERSION 3.16.3...3.22.6 FATAL_ERROR)",
        "project(MultimodalKneeRegistration)",
        "set(EXTENSION_HOMEPAGE ",
        "set(EXTENSION_CONTRIBUTORS ",
        "set(EXTENSION_DESCRIPTION ",
        "set(EXTENSION_ICONURL ",
        "set(EXTENSION_SCREENSHOTURLS ",
        'set(EXTENSION_DEPENDS "NA")',
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(MultimodalKneeRegistration)",
        "## NEXT_MODULE",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    )
    positions = [text.find(statement) for statement in template]
    assert all(p >= 0 for p in positions), [s for s, p in zip(template, positions) if p < 0]
    assert positions == sorted(positions), "in the template's order"
    assert 'set(EXTENSION_CATEGORY "Registration")' in text
    for icon in (
        REPO / "Resources" / "MultimodalKneeRegistration.png",
        MODULE / "Resources" / "Icons" / "MultimodalKneeRegistration.png",
    ):
        image = sitk.ReadImage(str(icon))
        assert image.GetSize() == (128, 128) and image.GetNumberOfComponentsPerPixel() == 4
    license = (REPO / "LICENSE").read_text()
    assert "Apache License" in license and "Version 2.0, January 2004" in license
    assert "Copyright 2026 The MultimodalKneeRegistration authors" in license


def test_parameter_to_widget_mapping_comes_from_the_ui_file_and_is_checked_both_ways():
    """Defect 1: the panel binds with ``connectParametersToGui(mapping)``; the mapping is read from the
    .ui file and every parameter must have exactly one widget, every bound widget a parameter."""
    from MultimodalKneeRegistrationSlicer.gui_binding import parameterWidgetNames

    fields, text = _parameterNodeFields(), UI_FILE.read_text()
    mapping = parameterWidgetNames(text, list(fields))
    assert set(mapping) == set(fields)
    assert mapping["preset"] == "presetComboBox" and mapping["spacingMultiplier"] == "spacingMultiplierSpinBox"
    renamed = text.replace("<string>roiMarginMm</string>", "<string>roiMargin</string>")
    with pytest.raises(ValueError, match=r"parameters without a widget: \['roiMarginMm'\].*"
                                         r"widgets bound to no parameter: \{'roiMargin'"):
        parameterWidgetNames(renamed, list(fields))
    doubled = text.replace("<string>numberOfIterations</string>", "<string>engine</string>")
    with pytest.raises(ValueError, match="bound to more than one widget: {'engine'"):
        parameterWidgetNames(doubled, list(fields))
    source = MODULE_FILE.read_text()
    assert "connectParametersToGui(self.widgetMapping())" in source and ".connectGui(" not in source


def test_spacing_multiplier_range_is_auto_or_whole_numbers_from_1():
    """Defect 8: the spin box shows whole numbers from 0 ("auto") to 64; the parameter refuses 0 < v < 1."""
    from MultimodalKneeRegistrationSlicer.parameters import MAX_SPACING_MULTIPLIER

    box = next(w for w in ElementTree.parse(UI_FILE).iter("widget") if w.get("name") == "spacingMultiplierSpinBox")
    props = {p.get("name"): p for p in box.findall("property")}
    assert props["decimals"].findtext("number") == "0" and float(props["minimum"].findtext("double")) == 0.0
    assert float(props["maximum"].findtext("double")) == MAX_SPACING_MULTIPLIER
    assert float(props["singleStep"].findtext("double")) == 1.0
    assert props["specialValueText"].findtext("string") == "auto"
    base, extras = _parameterNodeFields()["spacingMultiplier"]
    assert base == "float" and "WithinRange(0.0, MAX_SPACING_MULTIPLIER)" in extras
    assert "SpacingMultiplierValidator()" in extras


def test_every_parameter_annotation_is_used_by_the_wrapper():
    """The wrapper logs "Unused annotations" for anything in ``Annotated[...]`` that is not a validator,
    a serializer or a default (``_processClass``, parameterNodeWrapper/wrapper.py:320 at v5.6.2 and
    v5.8.1, :324 at v5.10.0): ``Decimals``/``SingleStep`` reach only the GUI connector, and the .ui sets
    decimals and steps itself."""
    tree = ast.parse(MODULE_FILE.read_text())
    validators = {"Choice", "WithinRange", "Minimum", "Maximum"} | {
        node.name for node in tree.body
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Validator" for b in node.bases)
    }
    for name, (_base, extras) in _parameterNodeFields().items():
        if extras:
            metadata = ast.parse(extras, mode="eval").body.elts[1:]
            assert {m.func.id for m in metadata} <= validators, name


def test_every_file_the_cmake_lists_name_exists_and_no_url_is_made_up():
    """Defect 8: file names in the CMake files (comments included) exist; extension URLs are either
    empty (to fill in before submission, as the comment says) or real https URLs."""
    for cmake, root in ((MODULE / "CMakeLists.txt", MODULE), (REPO / "CMakeLists.txt", REPO)):
        text = cmake.read_text().replace("${MODULE_NAME}", "MultimodalKneeRegistration")
        for name in re.findall(r"[\w./-]+\.(?:py|ui|png)\b", text):
            assert (root / name).is_file() or (REPO / name).is_file(), f"{cmake.name} names {name}"
    text = (REPO / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        value = re.search(rf'set\({variable} "([^"]*)"\)', text).group(1)
        assert value == "" or value.startswith("https://"), variable
        assert "SlicerMultimodalKneeRegistration" not in value, "no repository of that name exists"
    assert "Fill them in before submitting" in text


def test_volume_selectors_list_exactly_scalar_volume_nodes():
    """Label maps, vector, DWI and tensor volume nodes derive from vtkMRMLScalarVolumeNode; with
    ``showChildNodeTypes`` false the selectors list none of them (qMRMLSortFilterProxyModel.cxx:279 at
    v5.6.2 and v5.8.1, :273 at v5.10.0). ``hideChildNodeTypes`` is read only when child types are shown
    (:284 / :278), so it is not set."""
    root = ElementTree.parse(UI_FILE).getroot()
    fields = _parameterNodeFields()
    volumes = [name for name, (base, _) in fields.items() if base == "vtkMRMLScalarVolumeNode"]
    assert sorted(volumes) == ["fixedVolume", "movingVolume", "outputVolume"]
    for widget in root.iter("widget"):
        props = {p.get("name"): p for p in widget.findall("property")}
        if "SlicerParameterName" in props and props["SlicerParameterName"].findtext("string") in volumes:
            assert [s.text for s in props["nodeTypes"].iter("string")] == ["vtkMRMLScalarVolumeNode"]
            assert props["showChildNodeTypes"].findtext("bool") == "false", widget.get("name")
            assert "hideChildNodeTypes" not in props


def test_preset_tooltip_names_every_preset_auto_first():
    from MultimodalKneeRegistrationLib.settings import DEFAULT_PRESET, PRESETS

    tooltip = _uiWidgets()["presetComboBox"][1]["toolTip"]
    assert tooltip.startswith(f"{DEFAULT_PRESET} (the default): decided from the images")
    positions = [tooltip.find(f"{name}:") if name != DEFAULT_PRESET else 0 for name in PRESETS]
    assert all(p >= 0 for p in positions), positions

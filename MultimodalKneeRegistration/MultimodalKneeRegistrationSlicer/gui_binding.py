"""Which widget of the panel's .ui file shows which parameter of the parameter node (pure Python).

Why: the panel binds its widgets with ``connectParametersToGui(mapping)`` (parameter name -> widget),
not ``connectGui(ui)``. In Slicer 5.6.2 and 5.8.1 ``connectGui`` drops the tag it needs to be
disconnected (``Base/Python/slicer/parameterNodeWrapper/wrapper.py:253`` calls
``_connectParametersToGui`` without returning its result; 5.10.0 returns it), so ``disconnectGui``
did nothing and stale combo-box connectors wrote their first choice into the node whenever the
panel was connected again. ``connectParametersToGui`` returns its tag in all three versions
(``wrapper.py:213``). The mapping is read here from the .ui file's ``SlicerParameterName``
properties, the same properties ``connectGui`` looks for, and checked both ways: every parameter
has exactly one widget and every bound widget names a parameter, so a renamed widget or parameter
fails at once with its name rather than leaving a knob silently unbound.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Dict, Iterable

#: The Qt dynamic property Slicer's parameterNodeWrapper reads (``SlicerParameterNamePropertyName``).
PARAMETER_PROPERTY = "SlicerParameterName"


def boundWidgets(uiText: str) -> Dict[str, list]:
    """{parameter name: [widget object names]} for every widget of the .ui XML ``uiText`` that has a
    ``SlicerParameterName`` property."""
    bound: Dict[str, list] = {}
    for widget in ElementTree.fromstring(uiText).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == PARAMETER_PROPERTY:
                bound.setdefault((prop.findtext("string") or "").strip(), []).append(widget.get("name"))
    return bound


def parameterWidgetNames(uiText: str, parameterNames: Iterable[str]) -> Dict[str, str]:
    """{parameter name: widget object name} for ``connectParametersToGui``; raises when they disagree.

    ``parameterNames``: the parameter node wrapper's parameters (``MyParameterNode.allParameters``).
    Raises ``ValueError`` naming every parameter without a widget, every widget bound to no parameter
    and every parameter bound to more than one widget.

    Example:
        >>> parameterWidgetNames(Path(uiPath).read_text(), MyParameterNode.allParameters)  # doctest: +SKIP
        {'fixedVolume': 'fixedVolumeSelector', ...}
    """
    wanted = list(parameterNames)
    bound = boundWidgets(uiText)
    problems = []
    missing = [name for name in wanted if name not in bound]
    if missing:
        problems.append(f"parameters without a widget: {missing}")
    unknown = {name: widgets for name, widgets in bound.items() if name not in wanted}
    if unknown:
        problems.append(f"widgets bound to no parameter: {unknown}")
    doubled = {name: widgets for name, widgets in bound.items() if len(widgets) > 1}
    if doubled:
        problems.append(f"parameters bound to more than one widget: {doubled}")
    if problems:
        raise ValueError("the .ui file and the parameter node disagree: " + "; ".join(problems))
    return {name: bound[name][0] for name in wanted}

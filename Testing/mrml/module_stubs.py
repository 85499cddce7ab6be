"""Stand-ins for the Slicer application's GUI layer, to import the module file on the slicer-core wheel.

Qt, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and ``slicer.i18n`` exist only
inside the Slicer application. These small stand-ins replace them (mocks for the GUI layer only);
everything below them is real: MRML scene, nodes, module logics. The stand-in parameter node wrapper
validates on assignment like the real one, forwards observers to a real vtkMRMLScriptedModuleNode
and counts GUI connections, and the stand-in ``ScriptedLoadableModuleLogic.__init__`` calls
``super().__init__()`` as the real one does (``Base/Python/slicer/ScriptedLoadableModule.py:294``
at v5.6.2, ``:298`` at v5.8.1 and v5.10.0).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
import typing
import unittest
from pathlib import Path

_VALUES: dict = {}
MODULE_FILE = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration" / "MultimodalKneeRegistration.py"


class Validator:
    """The real wrapper's validator base class (``validators.Validator``)."""

    def validate(self, value) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _Range(Validator):
    def __init__(self, *args):
        self.args = args


class Choice(_Range):
    def validate(self, value):
        if value not in self.args[0]:
            raise ValueError(f"{value!r} is not one of {self.args[0]}")


class WithinRange(_Range):
    def validate(self, value):
        if not self.args[0] <= value <= self.args[1]:
            raise ValueError(f"{value} is outside [{self.args[0]}, {self.args[1]}]")


def parameterNodeWrapper(cls):
    """Stand-in: typed attributes with defaults, validated on assignment, GUI connections counted."""
    hints = typing.get_type_hints(cls, include_extras=True)
    validators = {name: [v for v in getattr(hint, "__metadata__", ()) if isinstance(v, Validator)]
                  for name, hint in hints.items()}
    for hint in hints.values():  # as the real one (wrapper.py:320 at v5.8.1): non-validators are unused
        unused = [v for v in getattr(hint, "__metadata__", ()) if not isinstance(v, Validator)]
        if unused:
            logging.warning(f"Unused annotations: {unused}")
    defaults = {name: getattr(cls, name, None) for name in hints}

    class Wrapped:
        allParameters = dict(hints)
        connections: list = []  # (event, wrapper, tag or mapping) across all wrappers

        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            # One value store per MRML node (the real wrapper keeps values in the node's parameters).
            stored = _VALUES.setdefault(parameterNode.__this__, dict(defaults))
            object.__setattr__(self, "_values", stored)

        def __getattr__(self, name):
            values = object.__getattribute__(self, "_values")
            if name in values:
                return values[name]
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name not in hints:
                raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
            for validator in validators[name]:
                validator.validate(value)
            if self._values.get(name) != value:
                self._values[name] = value
                self.parameterNode.Modified()

        def connectParametersToGui(self, mapping):
            Wrapped.connections.append(("connect", self, dict(mapping)))
            return len(Wrapped.connections)

        def disconnectGui(self, tag):
            Wrapped.connections.append(("disconnect", self, tag))

        def StartModify(self):
            return self.parameterNode.StartModify()

        def EndModify(self, wasModifying):
            return self.parameterNode.EndModify(wasModifying)

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

    Wrapped.__name__ = cls.__name__
    return Wrapped


def stubModules(scene) -> dict:
    """{module name: stand-in module} for ``sys.modules`` (and ``slicer.mrmlScene`` = ``scene``)."""
    qt = types.ModuleType("qt")
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    for name in ("Choice", "WithinRange", "Validator", "parameterNodeWrapper"):
        setattr(pnw, name, globals()[name])
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()  # as the real one: continues along the subclass's MRO
            self.parent = parent

        def getParameterNode(self):
            node = scene.GetSingletonNode("MultimodalKneeRegistration", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
                node.UnRegister(None)
                node.SetSingletonTag("MultimodalKneeRegistration")
                node = scene.AddNode(node)
            return node

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent
            self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

        def setup(self):
            pass

        def resourcePath(self, relativePath):
            return str(MODULE_FILE.parent / "Resources" / relativePath)

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            print(message)

    slm.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
    slm.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return {"qt": qt, "slicer.i18n": i18n, "slicer.parameterNodeWrapper": pnw,
            "slicer.ScriptedLoadableModule": slm, "SampleData": types.ModuleType("SampleData")}


def loadModuleFile(scene):
    """Import the module file with the stand-ins installed (the caller restores ``sys.modules``)."""
    import slicer

    sys.modules.update(stubModules(scene))
    slicer.mrmlScene = scene
    spec = importlib.util.spec_from_file_location("MultimodalKneeRegistration", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["MultimodalKneeRegistration"] = loaded
    spec.loader.exec_module(loaded)
    return loaded

"""Rewrite MODULE_PYTHON_SCRIPTS in MultimodalKneeRegistration/CMakeLists.txt from the files on disk.

Why: the Slicer build copies exactly the listed files into the extension package; a module file
missing from the list works from a source checkout and fails in an installed extension. Run it
after adding or moving a module (Testing/mrml/test_module_files.py fails until the list agrees).
"""

import re
from pathlib import Path

MODULE = Path(__file__).resolve().parent.parent / "MultimodalKneeRegistration"


def listed_files() -> list:
    files = ["${MODULE_NAME}.py"]
    for package in ("MultimodalKneeRegistrationLib", "MultimodalKneeRegistrationSlicer"):
        for path in sorted((MODULE / package).rglob("*.py")):
            relative = path.relative_to(MODULE).as_posix()
            files.append(relative.replace("MultimodalKneeRegistration", "${MODULE_NAME}", 1))
    return files


def main() -> None:
    cmake = MODULE / "CMakeLists.txt"
    text = cmake.read_text()
    body = "\n".join(f"  {name}" for name in listed_files())
    updated = re.sub(r"(set\(MODULE_PYTHON_SCRIPTS\n).*?(\n  \))", lambda m: m.group(1) + body + m.group(2),
                     text, flags=re.S)
    cmake.write_text(updated)


if __name__ == "__main__":
    main()

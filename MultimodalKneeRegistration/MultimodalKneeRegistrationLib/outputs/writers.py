"""Writing a run's outputs as one set: all of them, or nothing.

Why: a full disk used to leave ``transform.tfm`` without ``report.json``, and ``kill -9`` an empty
folder. The set is written into a hidden temporary folder beside the target and moved into place at
the end: into a new folder by one rename; into an existing one file by file, ``report.json`` last,
only after every file was written. A failure before that leaves the target as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import SimpleITK as sitk

from ..errors import OutputError
from ..io.atomic import PathLike, write_json_atomic
from ..io.itk_messages import QuietItk, short_cause

#: Files a run may write; with ``overwrite`` the ones a new run does not write are removed too, so
#: a refused rerun never leaves an earlier ``transform.tfm`` beside its report.
OUTPUT_NAMES = {"transform": "transform.tfm", "registered_moving": "registered_moving.nrrd", "qc": "qc.png",
                "report": "report.json"}
BONE_TRANSFORM_PATTERN = "transform_{}.tfm"


def planned_files(outcome, output_dir: PathLike, extra: Optional[Dict[str, Callable]] = None) -> Dict[str, Path]:
    """The files ``write_outputs`` will write for ``outcome`` (kind -> final path)."""
    folder = Path(output_dir).expanduser()
    files = {name: folder / name for name in (extra or {})}
    if outcome.transform is not None:
        files["transform"] = folder / OUTPUT_NAMES["transform"]
    if outcome.resampled is not None:
        files["registered_moving"] = folder / OUTPUT_NAMES["registered_moving"]
    if outcome.qc is not None:
        files["qc"] = folder / OUTPUT_NAMES["qc"]
    for bone in getattr(outcome.per_bone, "bones", []):
        files[f"transform_{bone.name}"] = folder / BONE_TRANSFORM_PATTERN.format(bone.name)
    files["report"] = folder / OUTPUT_NAMES["report"]
    return files


def check_output_folder(output_dir: PathLike, overwrite: bool, names: List[str] = ()) -> Path:
    """Refuse, before any work, a folder that cannot receive the set (or already holds one)."""
    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the output folder '{folder}' is a file", "give a folder path with --output-dir")
    existing = [n for n in [*OUTPUT_NAMES.values(), *names] if (folder / n).exists()] if folder.is_dir() else []
    if existing and not overwrite:
        what = f"the output {existing[0]} already exists" if len(existing) == 1 else \
            f"the outputs {', '.join(existing)} already exist"
        raise OutputError(f"{what} in '{folder}' (from an earlier run)",
                          "pass --overwrite to replace that run's outputs, or choose another --output-dir")
    parent = folder if folder.is_dir() else _existing_ancestor(folder)
    if not parent.is_dir():
        raise OutputError(f"cannot write into folder '{folder}': '{parent}' is a file",
                          "choose another --output-dir")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into folder '{parent}' (permission denied)",
                          "choose a folder you can write to, or fix its permissions")
    return folder


def write_outputs(outcome, output_dir: PathLike, overwrite: bool = False,
                  extra: Optional[Dict[str, Callable[[Path], None]]] = None) -> Dict[str, Path]:
    """Write ``outcome``'s transform, images, per-bone transforms and report as one set; return them.

    ``extra`` maps more relative file names (``inputs/fixed.nrrd``) to functions writing them: they
    join the set (the demo's inputs).
    """
    folder = check_output_folder(output_dir, overwrite)
    files = planned_files(outcome, folder, extra)
    outcome.report["outputs"] = {kind: str(path.resolve()) for kind, path in files.items()}
    staging_parent = folder if folder.is_dir() else _existing_ancestor(folder)
    staging = Path(tempfile.mkdtemp(dir=staging_parent, prefix=f".{folder.name}.partial-"))
    try:
        _write_all(outcome, files, staging, extra or {})
        _move_into_place(staging, folder, files, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _write_all(outcome, files: Dict[str, Path], staging: Path, extra: Dict[str, Callable]) -> None:
    writers = {**extra,
        "transform": lambda path: sitk.WriteTransform(outcome.transform, str(path)),
        "registered_moving": lambda path: sitk.WriteImage(outcome.resampled, str(path), True),
        "qc": lambda path: sitk.WriteImage(sitk.GetImageFromArray(outcome.qc, isVector=True), str(path)),
    }
    bones = {f"transform_{b.name}": b.transform for b in getattr(outcome.per_bone, "bones", [])}
    for kind, final in files.items():
        target = staging / (kind if kind in extra else final.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with QuietItk():
                if kind == "report":
                    write_json_atomic(outcome.report, target)
                elif kind in bones:
                    sitk.WriteTransform(bones[kind], str(target))
                else:
                    writers[kind](target)
        except (RuntimeError, OSError) as error:
            cause = short_cause(error) if isinstance(error, RuntimeError) else (error.strerror or str(error))
            raise OutputError(f"cannot write {final.name} ({cause}); nothing was written",
                              "check the free disk space and the folder's permissions") from None


def _move_into_place(staging: Path, folder: Path, files: Dict[str, Path], overwrite: bool) -> None:
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)  # one rename: the whole set appears at once
        return
    if overwrite:
        written = {path.name for path in files.values()}
        for stale in [*OUTPUT_NAMES.values(), *[p.name for p in folder.glob("transform_*.tfm")]]:
            if stale not in written and (folder / stale).is_file():
                (folder / stale).unlink()
    ordered = sorted(files.values(), key=lambda path: path.name == OUTPUT_NAMES["report"])
    for path in ordered:
        relative = path.relative_to(folder)
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / relative, folder / relative)


def _existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path.cwd()

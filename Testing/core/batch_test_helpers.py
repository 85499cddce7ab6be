"""Small phantom pairs on disk, manifests and the ``batch`` command, shared by the batch tests
(a uniquely named module, like ``core_test_helpers``)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import SimpleITK as sitk
from MultimodalKneeRegistrationLib.synthetic.pairs import GridSpec, PhantomPair, make_registration_pair

PACKAGE_PARENT = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration"
CENTER = (0.0, 5.0, 10.0)
#: (degrees, mm) true offsets of the test pairs: fast-preview recovers them to < 1 mm on these grids.
OFFSETS = ((10.0, 8.0), (5.0, 6.0), (8.0, 4.0))


def small_pair(index: int) -> PhantomPair:
    """A CT (3 mm) / MRI (2 x 2 x 6 mm) phantom pair: renders in 0.1 s, registers in ~2 s (fast-preview)."""
    return make_registration_pair("ct-mri", OFFSETS[index % len(OFFSETS)], seed=index,
                                  fixed_grid=GridSpec((50, 50, 45), (3.0, 3.0, 3.0), center=CENTER),
                                  moving_grid=GridSpec((80, 80, 20), (2.0, 2.0, 6.0), center=CENTER))


def write_pair(folder: Path, index: int, fixed_name: str = "", moving_name: str = "") -> Dict[str, Path]:
    """Write pair ``index`` as NRRD files into ``folder``; returns {"fixed": path, "moving": path}."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = small_pair(index)
    paths = {"fixed": folder / (fixed_name or f"ct_{index}.nrrd"),
             "moving": folder / (moving_name or f"mr_{index}.nrrd")}
    sitk.WriteImage(pair.fixed, str(paths["fixed"]))
    sitk.WriteImage(pair.moving, str(paths["moving"]))
    return paths


def write_manifest(path: Path, rows: Sequence[Dict[str, object]], delimiter: str = ",") -> Path:
    """A manifest CSV with the union of the rows' keys as columns (in first-seen order)."""
    columns: List[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        writer.writerows([[str(row.get(c, "")) for c in columns] for row in rows])
    return path


def batch_command(*args) -> List[str]:
    return [sys.executable, "-m", "MultimodalKneeRegistrationLib", "batch", *map(str, args)]


def batch_environment() -> Dict[str, str]:
    """The environment of a batch subprocess: the package importable even when not installed."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))


def run_batch_cli(*args, timeout: float = 300, **environment: str) -> subprocess.CompletedProcess:
    """``knee-register batch ARGS`` in a subprocess (``environment`` added), output captured as text."""
    return subprocess.run(batch_command(*args), capture_output=True, encoding="utf-8", timeout=timeout,
                          env=dict(batch_environment(), **environment))  # paths may hold accents


def read_summary(output_dir: Path) -> Dict[str, Dict[str, str]]:
    """``summary.csv`` rows by pair id."""
    with open(output_dir / "summary.csv", newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}

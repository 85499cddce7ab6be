"""The 8 GB micro-CT stand-in that ``cold_read.py`` reads: a 40 mm cube of the porcine CT at 0.2 mm around
its bone, every voxel repeated 8x8x8 (1600^3 int16 at 0.025 mm, raw NRRD, written slab by slab).

Why this shape: block averages at 8 give the 0.2 mm cube back, so the registration's answer is the
porcine reference (the file lies in the CT's physical frame), and writing it costs one pass at disk
speed. ``cube02.nrrd`` beside it is the 0.2 mm cube itself, for measuring the error.

    python Testing/benchmarks/make_big_microct.py /work/big --data ../shared/data/porcine_ct_mr
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPEAT = 8
SIDE, SPACING_MM = 200, 0.2


def small_cube(ct: sitk.Image) -> sitk.Image:
    """A SIDE-voxel cube at SPACING_MM, axis-aligned, centred on the CT's bone (above 600 HU)."""
    bone = np.argwhere(sitk.GetArrayViewFromImage(ct)[::4, ::4, ::4] > 600)[:, ::-1] * 4
    center = np.array(ct.TransformContinuousIndexToPhysicalPoint(bone.mean(axis=0).tolist()))
    corner = center - SIDE * SPACING_MM / 2.0
    return sitk.Resample(ct, [SIDE] * 3, sitk.Transform(), sitk.sitkLinear, corner.tolist(), [SPACING_MM] * 3,
                         [1, 0, 0, 0, 1, 0, 0, 0, 1], -1000.0, sitk.sitkInt16)


def write_repeated(cube: sitk.Image, path: Path) -> None:
    """``cube`` with every voxel repeated REPEAT times per axis, as raw little-endian NRRD."""
    fine = SPACING_MM / REPEAT
    origin = np.array(cube.GetOrigin()) - SPACING_MM / 2.0 + fine / 2.0  # the same voxel corners
    size = SIDE * REPEAT
    x, y, z = (float(v) for v in origin)
    header = (f"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: {size} {size} {size}\n"
              f"space directions: ({fine},0,0) (0,{fine},0) (0,0,{fine})\nkinds: domain domain domain\n"
              f"endian: little\nencoding: raw\nspace origin: ({x!r},{y!r},{z!r})\n\n")
    array = sitk.GetArrayFromImage(cube)
    with open(path, "wb") as handle:
        handle.write(header.encode())
        for plane in array:
            block = np.repeat(np.repeat(plane, REPEAT, axis=0), REPEAT, axis=1).astype("<i2").tobytes()
            for _ in range(REPEAT):
                handle.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/porcine_ct_mr")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    cube = small_cube(sitk.ReadImage(str(args.data / "CT.nrrd")))
    sitk.WriteImage(cube, str(args.folder / "cube02.nrrd"))
    write_repeated(cube, args.folder / "big.nrrd")


if __name__ == "__main__":
    main()

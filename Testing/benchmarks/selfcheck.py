"""Checks run before any benchmark number is trusted: case algebra and every tool's conversion.

Why: a sign or order mistake in composing a known offset, or in reading ANTs' .mat / elastix's
EulerTransform parameters, would make a correct tool look 20 mm wrong (or a wrong one right).
1. ``check_composition``: an MR moved by P really satisfies MR'(P(ref(x))) == MR(ref(x)), and the
   capture-grid construction (MR moved by P @ inv(ref)) really has the answer P.
2. ``synthetic_pair`` + ``check_tools``: every tool registers a synthetic two-contrast pair whose
   moving image was resampled through a known rotation + shift; the answer must come back within
   ``TOLERANCE_MM``, while the identity (no conversion at all) and the inverse (wrong direction)
   would both be ~10-20 mm off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import SimpleITK as sitk
from rigid import apply, compose, distances, matrix_to_transform, moved_image, pose, rotation_matrix

TOLERANCE_MM = 1.0
#: The synthetic pair's known fixed -> moving answer: 6 deg about an oblique axis, then (7, -5, 4) mm.
KNOWN_ROTATION = ((1.0, 0.4, -0.3), 6.0)
KNOWN_SHIFT = (7.0, -5.0, 4.0)


def check_composition(pair, rng: np.random.Generator, count: int = 300) -> Dict[str, float]:
    """Largest intensity mismatch (relative to the MR's range) over random specimen points."""
    mr = sitk.Cast(pair.mr, sitk.sitkFloat32)
    points = pair.specimen_points[rng.choice(len(pair.specimen_points), count, replace=False)]
    inside = _inside(mr, apply(pair.reference, points))
    points = points[inside]
    center = apply(pair.reference, pair.specimen_center[None])[0]
    p = pose(rotation_matrix((0.3, -1.0, 0.5), 37.0), (12.0, -30.0, 21.0), center)
    moved = moved_image(mr, p)
    original = _values(mr, apply(pair.reference, points))
    via_truth = _values(moved, apply(compose(p, pair.reference), points))
    wrong_order = _values(moved, apply(compose(pair.reference, p), points))
    grid = moved_image(mr, compose(p, np.linalg.inv(pair.reference)))
    via_grid = _values(grid, apply(p, points))
    span = float(np.ptp(original)) or 1.0
    result = {
        "points": int(len(points)),
        "moved_mismatch": float(np.abs(via_truth - original).max() / span),
        "grid_mismatch": float(np.abs(via_grid - original).max() / span),
        # the wrong order sends points elsewhere (often outside the MR: those count as a full mismatch)
        "wrong_order_mismatch": float(np.nan_to_num(np.abs(wrong_order - original), nan=span).mean() / span),
    }
    if result["moved_mismatch"] > 1e-4 or result["grid_mismatch"] > 1e-4:
        raise AssertionError(f"case composition is wrong: {result}")
    if result["wrong_order_mismatch"] < 0.02:
        raise AssertionError(f"the composition check cannot tell the order apart: {result}")
    return result


def _inside(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    size = np.array(image.GetSize())
    index = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in points])
    return np.all((index > 1) & (index < size - 2), axis=1)


def _values(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Linear interpolation at ``points``; NaN where a point falls outside the image."""
    inside = _inside(image, points)
    values = np.full(len(points), np.nan)
    values[inside] = [image.EvaluateAtPhysicalPoint(p.tolist(), sitk.sitkLinear) for p in points[inside]]
    return values


def known_matrix() -> np.ndarray:
    axis, angle = KNOWN_ROTATION
    return pose(rotation_matrix(axis, angle), KNOWN_SHIFT, (0.0, 0.0, 0.0))


def synthetic_pair(work_dir: Path, size: int = 72, spacing: float = 1.5) -> Tuple[Path, Path, np.ndarray, np.ndarray]:
    """A "CT" with a body, an oblique bone and three blobs; an "MR" of it with other contrast, resampled
    through the known answer onto a shifted axis-aligned grid. Returns files, answer and test points."""
    grid = (np.indices((size,) * 3).transpose(1, 2, 3, 0)[..., ::-1] - size / 2.0) * spacing  # (z,y,x,3) xyz mm
    body = ((grid / np.array([40.0, 32.0, 45.0])) ** 2).sum(-1) <= 1.0
    ct = np.where(body, 40.0, -1000.0)
    axis = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
    offset = grid - np.array([8.0, -6.0, 0.0])
    radial = np.linalg.norm(offset - (offset @ axis)[..., None] * axis, axis=-1)
    ct[(radial < 7.0) & (np.abs(offset @ axis) < 35.0)] = 900.0
    for center, radius, value in (((-20, 10, 15), 8, 250.0), ((18, 14, -20), 6, -150.0), ((-5, -20, -25), 10, 120.0)):
        ct[np.linalg.norm(grid - np.array(center), axis=-1) < radius] = value
    fixed = sitk.GetImageFromArray(ct.astype(np.int16))
    fixed.SetSpacing([spacing] * 3)
    fixed.SetOrigin([-size / 2.0 * spacing] * 3)
    mr_values = np.select([ct > 500, ct > 200, ct > 100, ct > 0, ct > -500], [30, 600, 900, 400, 150], 5.0)
    mr_source = sitk.GetImageFromArray(mr_values.astype(np.float32))
    mr_source.CopyInformation(fixed)
    truth = known_matrix()
    reference_grid = sitk.Image([size, size, size], sitk.sitkFloat32)
    reference_grid.SetSpacing([spacing] * 3)
    reference_grid.SetOrigin((np.array(fixed.GetOrigin()) + np.array(KNOWN_SHIFT) * 0.5).tolist())
    inverse = np.linalg.inv(truth)  # moving(y) = source(inv(truth)(y))
    resampler = sitk.AffineTransform(3)
    resampler.SetMatrix(inverse[:3, :3].ravel().tolist())
    resampler.SetTranslation(inverse[:3, 3].tolist())
    moving = sitk.Resample(mr_source, reference_grid, resampler, sitk.sitkLinear, 0.0, sitk.sitkUInt16)
    fixed_file, moving_file = work_dir / "synthetic_ct.nrrd", work_dir / "synthetic_mr.nrrd"
    sitk.WriteImage(fixed, str(fixed_file))
    sitk.WriteImage(moving, str(moving_file))
    index = np.argwhere(ct[::4, ::4, ::4] > -500)[:, ::-1] * 4
    points = index * spacing + np.array(fixed.GetOrigin())
    return fixed_file, moving_file, truth, points


def check_tools(results: List[Dict[str, Any]], truth: np.ndarray, points: np.ndarray) -> List[Dict[str, Any]]:
    """Per tool: error to the answer, and what the identity / the inverse would have scored."""
    identity_error = float(distances(np.eye(4), truth, points).mean())
    inverse_error = float(distances(np.linalg.inv(truth), truth, points).mean())
    rows = []
    for result in results:
        row = {
            "tool": result["label"],
            "status": result["status"],
            "identity_mm": identity_error,
            "inverse_mm": inverse_error,
        }
        if "matrix" in result:
            row["mean_mm"] = float(distances(np.array(result["matrix"]), truth, points).mean())
            row["passed"] = row["mean_mm"] <= TOLERANCE_MM
        else:
            row["passed"] = False
            row["error"] = result.get("error", "")
        rows.append(row)
    return rows


def reference_figure(pair, shared: np.ndarray, path: Path) -> Dict[str, float]:
    """CT beside the MR resampled through the data set's reference and through the one in use.

    Also returns the Mattes MI (every voxel of the CT 4x) at both: the evidence for the choice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = sitk.Cast(sitk.BinShrink(pair.ct, [2, 2, 2]), sitk.sitkFloat32)
    mr = sitk.Cast(pair.mr, sitk.sitkFloat32)
    center = ct.TransformPhysicalPointToIndex(pair.bone_center.tolist())
    rows = [
        ("CT", None),
        ("MR through the data set's reference", shared),
        ("MR through the reference in use", pair.reference),
    ]
    fig, axes = plt.subplots(3, 3, figsize=(10, 10))
    for row, (label, matrix) in enumerate(rows):
        image = ct if matrix is None else sitk.Resample(mr, ct, matrix_to_transform(matrix), sitk.sitkLinear, 0.0)
        array = sitk.GetArrayViewFromImage(image)
        window = dict(vmin=-300, vmax=1200) if matrix is None else {}
        for column, view in enumerate((array[center[2]], array[:, center[1]], array[:, :, center[0]])):
            axes[row, column].imshow(view, cmap="gray", origin="lower", **window)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=9)
    fig.suptitle("Which reference aligns the bone? (axial, coronal, sagittal through the bone)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    coarse = sitk.Cast(sitk.BinShrink(pair.ct, [4, 4, 4]), sitk.sitkFloat32)

    def mutual_information(matrix: np.ndarray) -> float:
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(50)
        method.SetMetricSamplingStrategy(method.NONE)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetInitialTransform(matrix_to_transform(matrix))
        return float(method.MetricEvaluate(coarse, mr))

    return {
        "mi_shared": mutual_information(shared),
        "mi_in_use": mutual_information(pair.reference),
        "mean_distance_mm": float(distances(shared, pair.reference, pair.specimen_points).mean()),
    }

"""A quality-control picture: three orthogonal planes through the overlap, one glance to trust a result.

Why: a registration's numbers can look fine while the bone is 38 mm off; a person sees that at
once on a picture. Each panel shows the fixed image in gray with the registered moving image's
edges in colour (or a checkerboard of the two), resampled to square display pixels so thick-slice
grids are not squashed. Only SimpleITK and numpy are used (no plotting library in the core).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..geometry import (
    Box,
    apply_matrix,
    box_corners,
    corner_points,
    index_to_physical_matrix,
    physical_box,
    transform_to_matrix,
)
from ..io.atomic import PathLike, write_image_atomic

EDGE_COLOUR = np.array([255, 190, 0], dtype=np.float32)   # amber: visible on gray, black and white
MOVING_TINT = np.array([1.0, 0.82, 0.62], dtype=np.float32)  # warm gray for checkerboard squares
BACKGROUND = 24

# (name, column axis, row axis, normal) in LPS; rows run down the picture. Axial and coronal are in
# radiological convention (patient's right on the left), sagittal has anterior on the left.
PLANES = (
    ("AXIAL", (1, 0, 0), (0, 1, 0), (0, 0, 1), ("R", "L", "A", "P")),
    ("CORONAL", (1, 0, 0), (0, 0, -1), (0, 1, 0), ("R", "L", "S", "I")),
    ("SAGITTAL", (0, 1, 0), (0, 0, -1), (1, 0, 0), ("A", "P", "S", "I")),
)

# 5x7 bitmap font: 7 rows of 5 bits per glyph, as hex pairs.
_FONT = {
    "A": "0e11111f111111", "B": "1e11111e11111e", "C": "0e11101010110e", "D": "1c12111111121c",
    "E": "1f10101e10101f", "F": "1f10101e101010", "G": "0e11101711110f", "H": "1111111f111111",
    "I": "0e04040404040e", "J": "0702020202120c", "K": "11121418141211", "L": "1010101010101f",
    "M": "111b1515111111", "N": "11111915131111", "O": "0e11111111110e", "P": "1e11111e101010",
    "Q": "0e11111115120d", "R": "1e11111e141211", "S": "0f10100e01011e", "T": "1f040404040404",
    "U": "1111111111110e", "V": "11111111110a04", "W": "1111111515150a", "X": "11110a040a1111",
    "Y": "1111110a040404", "Z": "1f01020408101f", "0": "0e11131519110e", "1": "040c040404040e",
    "2": "0e11010204081f", "3": "1f02040201110e", "4": "02060a121f0202", "5": "1f101e0101110e",
    "6": "0608101e11110e", "7": "1f010204080808", "8": "0e11110e11110e", "9": "0e11110f01020c",
    ":": "000c0c000c0c00", ".": "00000000000c0c", "-": "0000001f000000", "/": "00010204081000",
    "%": "18190204081303", "(": "02040808080402", ")": "08040202020408", "=": "00001f001f0000",
    " ": "00000000000000", "+": "0004041f040400", ",": "00000000000c08", ">": "10080402040810",
    "<": "02040810080402", "_": "0000000000001f",
}


def _draw_text(canvas: np.ndarray, text: str, x: int, y: int, colour: Sequence[int], scale: int = 2) -> int:
    """Draw ``text`` with its top-left corner at (x, y), a dark outline for contrast; return its end x."""
    for dx, dy, col in ((1, 1, (0, 0, 0)), (0, 0, colour)):
        cursor = x + dx * scale
        for char in text.upper():
            rows = bytes.fromhex(_FONT.get(char, _FONT[" "]))
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (16 >> c):
                        top, left = y + dy * scale + r * scale, cursor + c * scale
                        canvas[max(top, 0):max(top + scale, 0), max(left, 0):max(left + scale, 0)] = col
            cursor += 6 * scale
    return x + 6 * scale * len(text)


def _moving_box_in_fixed(registered_moving: sitk.Image, transform: Optional[sitk.Transform]) -> Box:
    """Axis-aligned box, in fixed space, of what the moving image covers."""
    if transform is None:
        return _support_box(registered_moving)
    return Box.around(apply_matrix(np.linalg.inv(transform_to_matrix(transform)), corner_points(registered_moving)))


def _support_box(image: sitk.Image) -> Box:
    """Box of the voxels above the background (a resampled image's outside is its lowest value)."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((array.size / 2_000_000) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    finite = np.isfinite(sample)
    if not finite.any():
        return physical_box(image)
    inside = finite & (sample > np.min(sample[finite]))
    if not inside.any():
        return physical_box(image)
    k, j, i = (np.nonzero(inside.any(axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1)))
    lo = np.array([i[0], j[0], k[0]]) * step - step / 2.0
    hi = np.array([i[-1], j[-1], k[-1]]) * step + step / 2.0
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in box_corners(lo, hi)])
    return Box.around(points)


def _sample_plane(image: sitk.Image, centre: np.ndarray, u, v, n, width: int, height: int, pixel: float,
                  transform: Optional[sitk.Transform]) -> np.ndarray:
    """Linear samples of ``image`` on a width x height plane of square ``pixel`` mm (NaN outside)."""
    u, v, n = (np.asarray(a, dtype=float) for a in (u, v, n))
    reference = sitk.Image([width, height, 1], sitk.sitkUInt8)
    reference.SetSpacing([pixel] * 3)
    reference.SetDirection(np.column_stack([u, v, n]).ravel().tolist())
    reference.SetOrigin((centre - u * pixel * (width - 1) / 2.0 - v * pixel * (height - 1) / 2.0).tolist())
    plane = sitk.Resample(image, reference, transform or sitk.Transform(3, sitk.sitkIdentity),
                          sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(plane)[0]


def _window(planes: List[np.ndarray], low: float = 0.5, high: float = 99.5) -> List[np.ndarray]:
    """Scale to [0, 1] by percentiles of all panels together (NaN stays NaN)."""
    values = np.concatenate([p[np.isfinite(p)] for p in planes] + [np.zeros(0, np.float32)])
    if values.size == 0:
        return [np.full_like(p, np.nan) for p in planes]
    lo, hi = np.percentile(values, [low, high])
    hi = hi if hi > lo else lo + 1.0
    return [np.clip((p - lo) / (hi - lo), 0.0, 1.0) for p in planes]


def _edge_strength(plane: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gradient magnitude of a windowed plane, zero near the border of its valid region."""
    valid = np.isfinite(plane)
    if valid.sum() < 16:
        return np.zeros(plane.shape, np.float32)
    filled = sitk.GetImageFromArray(np.where(valid, plane, 0.0).astype(np.float32))
    gradient = sitk.GetArrayFromImage(sitk.GradientMagnitudeRecursiveGaussian(filled, sigma_px))
    margin = int(np.ceil(2 * sigma_px)) + 1
    inner = sitk.BinaryErode(sitk.GetImageFromArray(valid.astype(np.uint8)), [margin, margin])
    gradient[sitk.GetArrayFromImage(inner) == 0] = 0.0
    return gradient * sigma_px  # scale-normalised: the same edge scores alike at any zoom


def _edge_alpha(strengths: List[np.ndarray]) -> List[np.ndarray]:
    """Opacity of the edge colour: thresholds pooled over all panels, so a panel without structure
    shows little rather than amplified noise."""
    pooled = np.concatenate([g[g > 0] for g in strengths] + [np.zeros(1, np.float32)])
    lo, hi = np.percentile(pooled, [90.0, 98.5])
    hi = max(hi, lo + 1e-6)
    return [np.clip((g - lo) / (hi - lo), 0.0, 1.0).astype(np.float32) for g in strengths]


def _compose(fixed: np.ndarray, moving: np.ndarray, mode: str, checker_px: int,
             alpha: Optional[np.ndarray]) -> np.ndarray:
    gray = np.nan_to_num(fixed, nan=0.0)[..., None] * np.ones(3, np.float32) * 255.0
    if mode == "edges":
        rgb = gray * (1.0 - alpha[..., None]) + EDGE_COLOUR * alpha[..., None]
    else:
        rows, cols = np.indices(fixed.shape)
        odd = ((rows // checker_px + cols // checker_px) % 2 == 1) & np.isfinite(moving)
        moving_rgb = np.nan_to_num(moving, nan=0.0)[..., None] * MOVING_TINT * 255.0
        rgb = np.where(odd[..., None], moving_rgb, gray)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render_qc(fixed: sitk.Image, registered_moving: sitk.Image, mode: str = "edges", *,
              transform: Optional[sitk.Transform] = None, labels: bool = True, panel_pixels: int = 360,
              caption: Sequence[str] = (), closeup: bool = True) -> np.ndarray:
    """The QC picture as an (rows, columns, 3) uint8 array; see ``write_qc_png``.

    Row 1: axial, coronal and sagittal planes through the overlap, the fixed image in gray with the
    moving image's edges (or a checkerboard). With ``closeup``, two more rows zoom on the bright
    structures (bone) of the finer image: fixed gray with moving edges, then moving gray with fixed
    edges, so a bone match hidden by speckled MRI edges at full view shows. ``caption`` lines (the
    verdict first) are printed under the panels.
    """
    if mode not in ("edges", "checkerboard"):
        raise ValueError(f"unknown QC mode {mode!r}: use 'edges' or 'checkerboard'")
    overlap = physical_box(fixed).intersect(_moving_box_in_fixed(registered_moving, transform))
    if np.any(overlap.size <= 0):
        overlap = physical_box(fixed)
    views = _Views(fixed, registered_moving, transform)
    rows = [("", views.row(overlap, panel_pixels, mode, moving_on_top=True))]
    box = _closeup_box(fixed, registered_moving, transform, overlap) if closeup else None
    if box is not None:
        rows.append(("CLOSE-UP: FIXED GRAY, MOVING EDGES", views.row(box, panel_pixels, "edges", True)))
        rows.append(("CLOSE-UP: MOVING GRAY, FIXED EDGES", views.row(box, panel_pixels, "edges", False)))
    return _layout(rows, mode, labels, list(caption))


class _Views:
    """Planes of both images (the moving one through ``transform``) on square display pixels."""

    def __init__(self, fixed, moving, transform) -> None:
        self.fixed, self.moving, self.transform = fixed, moving, transform

    def row(self, box: Box, panel_pixels: int, mode: str, moving_on_top: bool) -> List[np.ndarray]:
        pixel = max(float(box.size.max()) / panel_pixels, min(self.fixed.GetSpacing()) / 4.0)
        fixed_planes, moving_planes, shapes = [], [], []
        for _, u, v, n, _ in PLANES:
            width = max(int(round(abs(np.dot(box.size, u)) / pixel)), 8)
            height = max(int(round(abs(np.dot(box.size, v)) / pixel)), 8)
            grid = (box.center, u, v, n, width, height, pixel)
            fixed_planes.append(_sample_plane(self.fixed, *grid, None))
            moving_planes.append(_sample_plane(self.moving, *grid, self.transform))
            shapes.append((height, width))
        base, top, top_image = (fixed_planes, moving_planes, self.moving) if moving_on_top else \
            (moving_planes, fixed_planes, self.fixed)
        checker_px = max(int(round(max(max(s) for s in shapes) / 8)), 4)
        top = _window(top)
        alphas = [None] * len(PLANES)
        if mode == "edges":  # smooth over about half a voxel: no staircase edges from thick slices
            sigma_px = float(np.clip(0.5 * np.prod(top_image.GetSpacing()) ** (1 / 3) / pixel, 1.0, 6.0))
            alphas = _edge_alpha([_edge_strength(m, sigma_px) for m in top])
        return [_compose(f, m, mode, checker_px, a) for f, m, a in zip(_window(base), top, alphas)]


def _closeup_box(fixed, moving, transform, overlap: Box) -> Optional[Box]:
    """A box (fixed space) around the brightest structures of the finer image inside the overlap.

    The brightest 2% of a CT or micro-CT is bone: the structure both modalities show sharply. The box
    is 40% of the overlap's size (at least 30 mm, at most the overlap), centred on those voxels.
    """
    fine_is_fixed = np.prod(fixed.GetSpacing()) <= np.prod(moving.GetSpacing())
    image = fixed if fine_is_fixed else moving
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(np.ceil((array.size / 1_000_000) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float32)
    bright = np.argwhere(sample >= np.percentile(sample, 98.0))[:, ::-1] * step
    if bright.shape[0] < 10:
        return None
    points = apply_matrix(index_to_physical_matrix(image), bright.astype(float))
    if not fine_is_fixed and transform is not None:
        points = apply_matrix(np.linalg.inv(transform_to_matrix(transform)), points)
    inside = np.all((points >= overlap.lower) & (points <= overlap.upper), axis=1)
    if inside.sum() < 10:
        return None
    size = np.clip(0.4 * overlap.size, 30.0, overlap.size)
    centre = np.clip(np.median(points[inside], axis=0), overlap.lower + size / 2, overlap.upper - size / 2)
    return Box(centre - size / 2, centre + size / 2)


def _layout(rows, mode: str, labels: bool, caption: List[str]) -> np.ndarray:
    gap, footer = 6, (24 if labels else 0)
    headers = [(48 if title else 26) if labels else 0 for title, _ in rows]
    heights = [max(p.shape[0] for p in panels) + header + gap for (_, panels), header in zip(rows, headers)]
    width = max(sum(p.shape[1] for p in panels) + gap * (len(panels) + 1) for _, panels in rows)
    height = sum(heights) + footer + gap + (22 * len(caption) + 8 if labels else 0)
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    y = 0
    for (title, panels), row_height, header in zip(rows, heights, headers):
        _draw_row(canvas, panels, y, header, gap, labels, title)
        y += row_height
    if labels:
        end = _draw_text(canvas, "FIXED: GRAY   ", gap, y + 4, (230, 230, 230))
        legend = "MOVING: EDGES" if mode == "edges" else "MOVING: TINTED SQUARES"
        colour = tuple(int(c) for c in (EDGE_COLOUR if mode == "edges" else MOVING_TINT * 230))
        _draw_text(canvas, legend, end, y + 4, colour)
        _draw_caption(canvas, caption, y + footer + gap, gap)
    return canvas


def _draw_row(canvas, panels, top_y: int, header: int, gap: int, labels: bool, title: str) -> None:
    x = gap
    if labels and title:
        _draw_text(canvas, title, gap, top_y + 6, (255, 214, 120))
    for panel, (name, *_, letters) in zip(panels, PLANES):
        top = top_y + header + gap
        canvas[top:top + panel.shape[0], x:x + panel.shape[1]] = panel
        if labels:
            _draw_text(canvas, name, x, top_y + header - 20, (230, 230, 230))
            white = (200, 220, 255)
            middle_y, middle_x = top + panel.shape[0] // 2 - 7, x + panel.shape[1] // 2 - 5
            _draw_text(canvas, letters[0], x + 3, middle_y, white)
            _draw_text(canvas, letters[1], x + panel.shape[1] - 13, middle_y, white)
            _draw_text(canvas, letters[2], middle_x, top + 3, white)
            _draw_text(canvas, letters[3], middle_x, top + panel.shape[0] - 17, white)
        x += panel.shape[1] + gap


def _draw_caption(canvas: np.ndarray, caption: List[str], y: int, x: int) -> None:
    """The verdict (green when passed, red when refused) and the key numbers, cut to the width."""
    fits = max(1, (canvas.shape[1] - 2 * x) // 12)
    for number, line in enumerate(caption):
        colour = (230, 230, 230)
        if number == 0:
            colour = (120, 230, 120) if line.upper().startswith("PASS") else (255, 110, 100)
        _draw_text(canvas, line[:fits], x, y + 22 * number, colour)


def write_qc_png(fixed: sitk.Image, registered_moving: sitk.Image, path: PathLike, mode: str = "edges", *,
                 transform: Optional[sitk.Transform] = None, labels: bool = True, overwrite: bool = False,
                 panel_pixels: int = 360, caption: Sequence[str] = ()) -> Path:
    """Write the QC picture (RGB PNG): the three planes through the overlap, close-ups, the caption.

    ``registered_moving`` is the moving image already resampled into fixed space, or, when
    ``transform`` (fixed -> moving) is given, the original moving image, sampled through it (faster
    and sharper than resampling the whole volume first).

    Example:
        >>> write_qc_png(ct, mr, "out/qc.png", transform=result.transform, caption=["PASSED"])
        >>> write_qc_png(ct, resample_moving(ct, mr, result.transform), "out/qc.png", mode="checkerboard")
    """
    picture = render_qc(fixed, registered_moving, mode, transform=transform, labels=labels,
                        panel_pixels=panel_pixels, caption=caption)
    return write_image_atomic(sitk.GetImageFromArray(picture, isVector=True), path, overwrite=overwrite)


def read_png_rgb(path: PathLike) -> np.ndarray:
    """The PNG at ``path`` as a (rows, columns, 3) uint8 array (handy in tests and notebooks)."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    return array[..., :3] if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)


__all__: Tuple[str, ...] = ("render_qc", "write_qc_png", "read_png_rgb")

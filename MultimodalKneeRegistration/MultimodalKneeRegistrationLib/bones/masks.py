"""Bone label maps for per-bone registration: automatic from a CT, or loaded from a segmentation file.

Why: when the knee was scanned at different flexion angles, each bone needs its own rigid transform,
and each of those registrations must look only at its bone. A user segmentation is the reliable
source; the automatic one (threshold, connected components, splitting touching bones at their
thinnest neck, i.e. the joint space) saves the work when the bones are clearly apart, and says
so plainly when it cannot separate them.

A ``BoneLabels`` holds a label image (0 background, one value per bone) and the bone names. Its
grid may be coarser than the image it belongs to: masks are used in physical space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import box_corners, index_to_physical_matrix

#: Default HU threshold for bone (cancellous bone is ~200-400 HU, cortex > 1000 HU).
BONE_THRESHOLD_HU = 200.0
#: Components smaller than this (mL) are noise, calcifications or bone fragments, not bones.
MIN_BONE_VOLUME_ML = 1.5
#: Deepest erosion (mm) tried to split touching bones: joint spaces are thinner than bones.
MAX_SPLIT_EROSION_MM = 6.0


@dataclass
class BoneLabels:
    """A label image (uint8/uint16, 0 = background) and ``names`` {label value: bone name}.

    Example:
        >>> labels = segment_bones(ct, expected_bones=3)  # doctest: +SKIP
        >>> labels.names  # doctest: +SKIP
        {1: 'femur', 2: 'tibia', 3: 'patella'}
    """

    image: sitk.Image
    names: Dict[int, str]

    def mask(self, value: int) -> sitk.Image:
        """Binary uint8 mask of one bone, on the label grid."""
        return sitk.Cast(sitk.Equal(self.image, int(value)), sitk.sitkUInt8)


def looks_like_ct(image: sitk.Image) -> bool:
    """True for images in Hounsfield units (air near -1000, bone above a few hundred)."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(round((array.size / 1_000_000) ** (1 / 3))))
    lo, hi = np.percentile(array[::step, ::step, ::step], [1.0, 99.9])
    return bool(lo < -500.0 and hi > 300.0)


def segment_bones(ct: sitk.Image, expected_bones: Optional[int] = None, *,
                  threshold: float = BONE_THRESHOLD_HU, working_spacing_mm: float = 1.0,
                  min_volume_ml: float = MIN_BONE_VOLUME_ML) -> BoneLabels:
    """Label the bones of a CT: threshold, fill, connected components, split touching bones.

    ``expected_bones`` (e.g. 3 for femur, tibia, patella) asks for at least that many bones: when
    fewer components are found, the bone mask is eroded step by step (up to 6 mm) until it falls
    apart, and the parts grow back by a watershed on the distance map, so the cut runs through the
    joint space. When that fails an ``InputError`` asks for a segmentation. When more are found,
    the largest ``expected_bones`` are kept. Labels are 1..N on a copy of the CT's grid coarsened
    to about ``working_spacing_mm``; knee bones are named by position (femur: the most superior
    large bone, tibia: the other large one, patella: anterior to the femur), others ``bone_<n>``.

    Example:
        >>> labels = segment_bones(sitk.ReadImage("CT.nrrd"), expected_bones=3)  # doctest: +SKIP
    """
    if ct.GetDimension() != 3 or ct.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("automatic bone segmentation needs a 3D grey-level CT", "give a segmentation instead")
    shrink = [max(1, int(np.floor(working_spacing_mm / s + 0.5))) for s in ct.GetSpacing()]
    image = sitk.BinShrink(ct, shrink) if any(f > 1 for f in shrink) else ct
    bone = sitk.BinaryFillhole(sitk.Cast(sitk.GreaterEqual(image, float(threshold)), sitk.sitkUInt8))
    min_voxels = min_volume_ml * 1000.0 / float(np.prod(image.GetSpacing()))
    components = _large_components(bone, min_voxels)
    count = _count(components)
    if count == 0:
        raise InputError(
            f"no bone was found in the CT (no region above {threshold:g} HU of at least {min_volume_ml:g} mL)",
            "check that the image is a CT in Hounsfield units, pass another bone threshold, or give a "
            "segmentation of the bones",
        )
    if expected_bones is not None and count < expected_bones:
        components = _split_touching(bone, expected_bones, min_voxels)
        if components is None:
            raise InputError(
                f"the CT shows {count} bone region(s) where {expected_bones} bones were expected: the bones "
                "touch and could not be separated at the joint space",
                "give a segmentation of the bones (a Slicer segmentation or a label map file with one label "
                "per bone), or ask for fewer bones",
            )
    labels = _relabel_by_size(components, expected_bones)
    return BoneLabels(labels, _knee_names(labels))


def _large_components(mask: sitk.Image, min_voxels: float) -> sitk.Image:
    components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), int(np.ceil(min_voxels)))
    return components


def _count(components: sitk.Image) -> int:
    return int(np.max(sitk.GetArrayViewFromImage(components))) if components.GetNumberOfPixels() else 0


def _split_touching(bone: sitk.Image, wanted: int, min_voxels: float) -> Optional[sitk.Image]:
    """Erode until ``wanted`` large parts appear, then give every bone voxel to its nearest part."""
    spacing = np.array(bone.GetSpacing())
    distance = sitk.SignedMaurerDistanceMap(bone, insideIsPositive=True, squaredDistance=False,
                                            useImageSpacing=True)
    for depth in np.arange(spacing.min(), MAX_SPLIT_EROSION_MM + 1e-6, spacing.min()):
        core = sitk.Cast(sitk.GreaterEqual(distance, float(depth)), sitk.sitkUInt8)
        # Parts shrink with the erosion: require the eroded core to be a fair share of a bone.
        seeds = _large_components(core, min_voxels / 8.0)
        if _count(seeds) >= wanted:
            grown = sitk.MorphologicalWatershedFromMarkers(
                sitk.InvertIntensity(sitk.Cast(distance, sitk.sitkFloat32), 0.0), seeds,
                markWatershedLine=False, fullyConnected=True)
            return sitk.Mask(grown, bone)
    return None


def _relabel_by_size(components: sitk.Image, keep: Optional[int]) -> sitk.Image:
    """Labels 1..N by decreasing size, at most ``keep`` of them (uint8)."""
    relabelled = sitk.RelabelComponent(components, 0, True)
    if keep is not None:
        relabelled = sitk.Threshold(relabelled, 0, float(keep), 0)
    return sitk.Cast(relabelled, sitk.sitkUInt8)


def _centroids(labels: sitk.Image) -> Dict[int, np.ndarray]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    return {int(v): np.array(stats.GetCentroid(v)) for v in stats.GetLabels()}


def _knee_names(labels: sitk.Image) -> Dict[int, str]:
    """Names by position in LPS (superior +z, anterior -y); label 1 is the largest component."""
    centroids = _centroids(labels)
    names = {v: f"bone_{v}" for v in centroids}
    large = [v for v in sorted(centroids)[:2]]
    if len(large) == 2:
        femur, tibia = sorted(large, key=lambda v: -centroids[v][2])
        names[femur], names[tibia] = "femur", "tibia"
        for v in sorted(centroids)[2:]:
            offset = centroids[v] - centroids[femur]
            if "patella" not in names.values() and offset[1] < -10.0 and centroids[v][2] > centroids[tibia][2]:
                names[v] = "patella"
            elif "fibula" not in names.values() and centroids[v][2] < centroids[femur][2]:
                names[v] = "fibula"
    elif len(large) == 1:
        names[large[0]] = "bone"
    return names


def _segment_names_from_metadata(image: sitk.Image) -> Dict[int, Dict[str, object]]:
    """Slicer ``.seg.nrrd`` header: {segment index: {name, label, layer}}."""
    segments: Dict[int, Dict[str, object]] = {}
    for key in image.GetMetaDataKeys():
        parts = key.split("_", 1)
        if len(parts) != 2 or not parts[0].startswith("Segment") or not parts[0][7:].isdigit():
            continue
        entry = segments.setdefault(int(parts[0][7:]), {})
        entry[parts[1]] = image.GetMetaData(key)
    return {i: {"name": e.get("Name", f"segment_{i}"), "label": int(e.get("LabelValue", i + 1)),
                "layer": int(e.get("Layer", 0))} for i, e in segments.items()}


def load_bone_labels(path: Union[str, Path], names: Optional[Dict[int, str]] = None) -> BoneLabels:
    """Read a bone label map: a Slicer segmentation file (``.seg.nrrd``, names from its header) or any
    label image (``.nrrd``, ``.nii.gz``; names ``label_<value>`` unless ``names`` is given).

    Example:
        >>> labels = load_bone_labels("knee.seg.nrrd")  # doctest: +SKIP
        >>> labels.names  # doctest: +SKIP
        {1: 'femur', 2: 'tibia'}
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"segmentation file '{path}' does not exist", "check the path")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"segmentation file '{path}' could not be read as an image",
                         "save the segmentation as .seg.nrrd or as a label map (.nrrd, .nii.gz)") from None
    return bone_labels_from_image(image, names, str(path))


def bone_labels_from_image(image: sitk.Image, names: Optional[Dict[int, str]] = None,
                           source: str = "segmentation") -> BoneLabels:
    """``BoneLabels`` from a label image (multi-layer Slicer segmentations are merged into one layer)."""
    segments = _segment_names_from_metadata(image)
    if image.GetDimension() == 4 or image.GetNumberOfComponentsPerPixel() > 1:
        image = _merge_layers(image, segments, source)
    if image.GetDimension() != 3:
        raise InputError(f"'{source}' is not a 3D label map", "give a 3D segmentation of the bones")
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(image)
        if not np.allclose(array, np.round(array)):
            raise InputError(f"'{source}' holds fractional values, not labels", "give a label map")
    labels = sitk.Cast(image, sitk.sitkUInt16)
    present = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0)
    if not present:
        raise InputError(f"'{source}' is empty (no labelled voxel)", "segment at least one bone")
    by_label = {int(s["label"]): str(s["name"]) for s in segments.values()} if segments else {}
    chosen = {v: (names or {}).get(v) or by_label.get(v) or f"label_{v}" for v in present}
    return BoneLabels(labels, {v: _safe_name(n) for v, n in chosen.items()})


def _merge_layers(image: sitk.Image, segments, source: str) -> sitk.Image:
    """Overlapping Slicer segments are stored in layers; give each segment its own label value."""
    layers = [sitk.VectorIndexSelectionCast(image, k) for k in range(image.GetNumberOfComponentsPerPixel())]
    if not segments or not layers:
        raise InputError(f"'{source}' has several layers but no segment names", "save it as a label map")
    merged = sitk.Image(layers[0].GetSize(), sitk.sitkUInt16)
    merged.CopyInformation(layers[0])
    for index, seg in sorted(segments.items()):
        inside = sitk.Equal(layers[int(seg["layer"])], int(seg["label"]))
        merged = sitk.Mask(merged, sitk.Not(inside)) + sitk.Cast(inside, sitk.sitkUInt16) * (index + 1)
        seg["label"] = index + 1
    return merged


def _safe_name(name: str) -> str:
    """A name usable in file names (transform_<name>.tfm)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip().lower())
    return cleaned.strip("_") or "bone"


def bone_regions(labels: BoneLabels, margin_mm: float) -> Dict[int, sitk.Image]:
    """Each bone's mask grown by ``margin_mm``, but never past the midline to a neighbouring bone.

    Why: at the joint the cartilage gap is a few millimetres, so a plain dilation of the tibia takes
    in the femoral condyles, whose edges then pull the tibia back towards the femur's pose. Each
    voxel within the margin goes to its nearest bone only (uint8 masks, padded by the margin).
    """
    pad = [max(1, int(np.ceil(margin_mm / s))) for s in labels.image.GetSpacing()]
    padded = sitk.ConstantPad(labels.image, pad, pad, 0)
    distances = {v: sitk.SignedMaurerDistanceMap(sitk.Cast(sitk.Equal(padded, int(v)), sitk.sitkUInt8),
                                                 insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
                 for v in labels.names}
    regions = {}
    for value, distance in distances.items():
        region = sitk.LessEqual(distance, float(margin_mm))
        for other, other_distance in distances.items():
            if other != value:
                region = sitk.And(region, sitk.LessEqual(distance, other_distance))
        regions[value] = sitk.Cast(region, sitk.sitkUInt8)
    return regions


def mask_bounding_points(mask: sitk.Image) -> np.ndarray:
    """The 8 corners (LPS, voxel edges) of the mask's bounding box, shape (8, 3)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        raise InputError("a bone mask is empty", "check the segmentation")
    box = stats.GetBoundingBox(1)
    lo = np.array(box[:3], dtype=float) - 0.5
    hi = lo + np.array(box[3:], dtype=float)
    matrix = index_to_physical_matrix(mask)
    return box_corners(lo, hi) @ matrix[:3, :3].T + matrix[:3, 3]


def bone_values(labels: BoneLabels, only: Optional[Sequence[str]] = None) -> List[int]:
    """Label values to register (all, or those whose names are in ``only``)."""
    if only is None:
        return sorted(labels.names)
    missing = [n for n in only if n not in labels.names.values()]
    if missing:
        raise InputError(f"no bone named {', '.join(missing)} in the segmentation",
                         f"use one of {', '.join(labels.names.values())}")
    return sorted(v for v, n in labels.names.items() if n in only)

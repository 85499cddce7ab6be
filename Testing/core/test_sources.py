"""Inputs read in slabs (``io.sources``) register exactly like the same inputs read whole.

Why: a micro-CT too large for memory is streamed (``FileSource``) or, in Slicer, averaged where it
lies (``ArraySource``); the working images are bit-identical to the in-memory path, so the transform
must be too. A real CLI run on small phantom files with ``--stream-above-mb 0`` checks it end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.io.sources import ArraySource, FileSource, preview_factors
from MultimodalKneeRegistrationLib.steps.preprocessing import downsample
from MultimodalKneeRegistrationLib.synthetic.pairs import make_registration_pair

PACKAGE_PARENT = Path(__file__).resolve().parents[2] / "MultimodalKneeRegistration"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    pair = make_registration_pair("microct-mri", (10.0, 8.0))
    sitk.WriteImage(pair.fixed, str(folder / "fixed.nrrd"))
    sitk.WriteImage(pair.moving, str(folder / "moving.nrrd"), True)
    return folder, pair


def _register(fixed, moving, out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", str(fixed), str(moving),
                           "--output-dir", str(out), "--preset", "fast-preview", "--quiet", *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return (out / "transform.tfm").read_bytes(), json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_streamed_inputs_register_bit_identically(files, tmp_path):
    folder, _ = files
    whole, _ = _register(folder / "fixed.nrrd", folder / "moving.nrrd", tmp_path / "whole")
    streamed, report = _register(folder / "fixed.nrrd", folder / "moving.nrrd", tmp_path / "streamed",
                                 "--stream-above-mb", "0")
    assert streamed == whole
    assert sum("is never held whole" in sentence for sentence in report["plan"]["explanation"]) == 2
    assert report["resources"]["read_passes"] == 2  # each input read once, resampling included
    resampled = sitk.ReadImage(str(tmp_path / "streamed" / "registered_moving.nrrd"))
    assert resampled.GetSize() == sitk.ReadImage(str(folder / "fixed.nrrd")).GetSize()


def test_file_source_reads_geometry_first_and_averages_once_per_factor(files):
    folder, pair = files
    source = FileSource(folder / "moving.nrrd", name="moving image")
    assert source.GetSize() == pair.moving.GetSize() and source.GetSpacing() == pair.moving.GetSpacing()
    assert source.GetDirection() == pair.moving.GetDirection() and source.GetPixelID() == pair.moving.GetPixelID()
    first = source.block_averaged((2, 2, 1))
    assert source.block_averaged((2, 2, 1)) is first  # cached: the file is read once per factors
    expected = downsample(pair.moving, (2, 2, 1))
    assert np.array_equal(sitk.GetArrayViewFromImage(first), sitk.GetArrayViewFromImage(expected))
    assert first.GetOrigin() == expected.GetOrigin() and first.GetSpacing() == expected.GetSpacing()
    assert source.preview(1_000_000).GetNumberOfPixels() <= 1_000_000
    assert "never held whole" in source.note


@pytest.mark.parametrize("factors", [(1, 1, 1), (3, 3, 3), (4, 2, 5)])
def test_array_source_averages_in_place_exactly_as_downsample(files, factors):
    _, pair = files
    array = sitk.GetArrayViewFromImage(pair.fixed)
    source = ArraySource(array, pair.fixed.GetSpacing(), pair.fixed.GetOrigin(), pair.fixed.GetDirection())
    assert source.array is array  # held by reference: no copy of the voxels
    ours, expected = source.block_averaged(factors), downsample(pair.fixed, factors)
    assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(expected))
    assert ours.GetOrigin() == expected.GetOrigin() and ours.GetDirection() == expected.GetDirection()


def test_preview_factors_fit_the_budget():
    factors = preview_factors((1600, 1600, 1600), 8_000_000)
    assert np.prod([1600 // f for f in factors]) <= 8_000_000 < np.prod([1600 // (factors[0] - 1)] * 3)
    assert preview_factors((10, 10, 10), 8_000_000) == (1, 1, 1)

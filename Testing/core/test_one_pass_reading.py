"""A run reads each streamed input once, says so while it reads, and stops there when cancelled.

Why: each block average a run asked a ``FileSource`` for (the preview, the working image, the copy
to resample) was a full pass over a multi-GB micro-CT, without progress or Cancel. Real files on
disk, a slab of a few slices so the slab loop runs many times; no mocks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.errors import CancelledError
from MultimodalKneeRegistrationLib.io.sources import ArraySource, FileSource
from MultimodalKneeRegistrationLib.progress import Progress
from MultimodalKneeRegistrationLib.run import run
from MultimodalKneeRegistrationLib.settings import settings_for_preset
from MultimodalKneeRegistrationLib.steps.plan_resolution import plan_for, settings_from_geometry
from MultimodalKneeRegistrationLib.steps.planning import plan_registration
from MultimodalKneeRegistrationLib.steps.preprocessing import downsample
from MultimodalKneeRegistrationLib.steps.reading import read_inputs
from MultimodalKneeRegistrationLib.synthetic.pairs import make_registration_pair

TINY_SLAB_MB = 0.05  # a few slices of the test volumes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_pass")
    pair = make_registration_pair("microct-mri", (10.0, 8.0))
    sitk.WriteImage(pair.fixed, str(folder / "fixed.nrrd"))
    sitk.WriteImage(pair.moving, str(folder / "moving.nrrd"))
    return folder, pair


def _sources(folder: Path):
    return (FileSource(folder / "fixed.nrrd", name="fixed image", slab_mb=TINY_SLAB_MB),
            FileSource(folder / "moving.nrrd", name="moving image", slab_mb=TINY_SLAB_MB))


@pytest.mark.slow
def test_a_run_reads_each_streamed_input_once_and_registers_as_the_whole_images(files):
    folder, _ = files
    fixed, moving = _sources(folder)
    settings = settings_for_preset("fast-preview")
    streamed = run(fixed, moving, settings, resample=True, qc_mode="edges")
    assert [len(fixed.reads), len(moving.reads)] == [1, 1]  # preview, working grid, resampling: one pass
    assert all(0 < s.reads[0].bytes <= s.header.nbytes for s in (fixed, moving))
    assert streamed.report["resources"]["read_passes"] == 2
    whole = run(sitk.ReadImage(str(folder / "fixed.nrrd")), sitk.ReadImage(str(folder / "moving.nrrd")), settings,
                resample=True, qc_mode="edges")
    assert streamed.result.transform.GetParameters() == whole.result.transform.GetParameters()
    assert streamed.result.metric_after == whole.result.metric_after
    assert np.array_equal(sitk.GetArrayViewFromImage(streamed.resampled), sitk.GetArrayViewFromImage(whole.resampled))
    assert np.array_equal(streamed.qc, whole.qc)


def test_auto_knows_its_working_grid_before_reading_a_voxel(files):
    """``auto`` chooses from geometry, so the one pass already holds the working image it plans."""
    folder, pair = files
    fixed, moving = _sources(folder)
    auto = settings_for_preset("auto")
    read_inputs(fixed, moving, auto)
    resolved, _ = plan_for(fixed, moving, auto)  # reads the previews: from the cache
    assert resolved == settings_from_geometry(fixed, moving, auto) != auto
    plan = plan_registration(fixed, moving, resolved)
    assert fixed.missing([plan.fixed_shrink]) == [] and moving.missing([plan.moving_shrink]) == []
    assert [len(fixed.reads), len(moving.reads)] == [1, 1]
    assert plan_for(pair.fixed, pair.moving, auto)[0] == resolved


@pytest.mark.slow
def test_progress_says_what_is_read_while_it_is_read(files):
    folder, _ = files
    seen = []
    fixed, moving = _sources(folder)
    run(fixed, moving, settings_for_preset("fast-preview"), resample=False, qc_mode=None,
        progress=Progress(lambda fraction, message: seen.append((fraction, message)), min_interval_s=0))
    reading = [(f, m) for f, m in seen if m.startswith("reading the moving image (")]
    assert len(reading) > 5 and "100 %" in reading[-1][1]
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))  # monotone over the whole run
    assert seen.index(reading[-1]) < min(k for k, (_, m) in enumerate(seen) if m.startswith("planning"))


def test_cancel_during_the_read_stops_it_and_leaves_nothing_behind(files):
    folder, _ = files
    fixed, moving = _sources(folder)
    asked = {"reads": 0}

    def callback(fraction: float, message: str) -> None:
        asked["reads"] += message.startswith("reading the moving image (")

    threads = threading.active_count()
    with pytest.raises(CancelledError, match="reading the moving image cancelled"):
        run(fixed, moving, settings_for_preset("fast-preview"), resample=False, qc_mode=None,
            progress=Progress(callback, lambda: asked["reads"] >= 3, min_interval_s=0))
    assert len(fixed.reads) == 1 and moving.reads == []
    assert moving.missing([(1, 1, 1)]) == [(1, 1, 1)]  # no partial average kept
    assert threading.active_count() == threads  # the read-ahead thread has ended
    opened = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
              if os.path.exists(f"/proc/self/fd/{fd}")]
    assert str(folder / "moving.nrrd") not in opened  # and closed the file


def test_array_source_averages_several_factors_in_one_pass(files):
    _, pair = files
    array = sitk.GetArrayViewFromImage(pair.moving)
    source = ArraySource(array, pair.moving.GetSpacing(), pair.moving.GetOrigin(), pair.moving.GetDirection())
    factors = [(2, 2, 2), (3, 4, 5), (1, 1, 1)]
    for ours, f in zip(source.block_averages(factors), factors):
        assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(downsample(pair.moving, f)))
    assert len(source.reads) == 1 and source.block_averaged((3, 4, 5)) is source.block_averages(factors)[1]
    assert len(source.reads) == 1

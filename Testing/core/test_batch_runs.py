"""Whole batches on real phantom pairs: local processes and a real Dask LocalCluster give the same
bytes, a bad pair fails alone with its message, and a hostile id with an accented, spaced path is
registered correctly and shown as text in the page (checked in headless Chromium when installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from batch_test_helpers import read_summary, run_batch_cli, small_pair, write_manifest, write_pair
from MultimodalKneeRegistrationLib.batch.manifest import safe_folder_name
from MultimodalKneeRegistrationLib.batch.outcome import PairOutcome
from MultimodalKneeRegistrationLib.geometry import point_distances

HOSTILE_ID = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three phantom pairs and one pair whose moving file is not an image."""
    folder = tmp_path_factory.mktemp("cohort")
    rows = [{"id": f"p{i}", **write_pair(folder, i), "preset": "fast-preview"} for i in range(3)]
    (folder / "broken.nrrd").write_bytes(b"NRRD0004\nthis is not an image\n")
    rows.append({"id": "broken", "fixed": rows[0]["fixed"], "moving": "broken.nrrd", "preset": "fast-preview"})
    return write_manifest(folder / "cohort.csv", rows)


def _assert_recovers_truth(transform_path, index):
    pair = small_pair(index)
    errors = point_distances(sitk.ReadTransform(str(transform_path)), pair.true_transform, pair.target_points(6.0))
    assert errors.mean() < 1.5 and errors.max() < 3.0, (index, errors.mean(), errors.max())


def _assert_bad_pair_alone(out, done):
    assert done.returncode == 5, done.stderr
    assert "3 ok, 0 skipped, 0 refused, 1 failed-input, 0 failed-other" in done.stderr
    summary = read_summary(out)
    assert [summary[k]["status"] for k in ("p0", "p1", "p2", "broken")] == ["ok", "ok", "ok", "failed-input"]
    assert "cannot read moving image" in summary["broken"]["error_or_warning"]
    assert all(float(summary[k]["peak_rss_mb"]) > 50 for k in ("p0", "p1", "p2"))
    assert not (out / "broken" / "transform.tfm").exists()


@pytest.mark.slow
def test_dask_workers_give_the_same_transforms_as_local_processes(cohort, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    local = run_batch_cli(cohort, "--output-dir", tmp_path / "local", "--jobs", "2")
    _assert_bad_pair_alone(tmp_path / "local", local)
    for index in range(3):
        _assert_recovers_truth(tmp_path / "local" / f"p{index}" / "transform.tfm", index)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert len(cluster.workers) == 2
        on_cluster = run_batch_cli(cohort, "--output-dir", tmp_path / "cluster", "--dask-scheduler",
                                   cluster.scheduler_address)
    assert "(2 workers now)" in on_cluster.stderr, on_cluster.stderr
    _assert_bad_pair_alone(tmp_path / "cluster", on_cluster)
    own_cluster = run_batch_cli(cohort, "--output-dir", tmp_path / "dask_local", "--dask-local", "2")
    _assert_bad_pair_alone(tmp_path / "dask_local", own_cluster)
    for index in range(3):
        expected = (tmp_path / "local" / f"p{index}" / "transform.tfm").read_bytes()
        assert (tmp_path / "cluster" / f"p{index}" / "transform.tfm").read_bytes() == expected
        assert (tmp_path / "dask_local" / f"p{index}" / "transform.tfm").read_bytes() == expected


def test_an_unreachable_scheduler_is_one_clear_error(cohort, tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    done = run_batch_cli(cohort, "--output-dir", tmp_path / "out", "--dask-scheduler", "tcp://127.0.0.1:9",
                         timeout=120, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")  # Dask's own setting
    assert done.returncode == 2, done.stderr
    assert "error: cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'" in done.stderr


def test_every_manifest_string_is_escaped_in_the_page(tmp_path):
    from MultimodalKneeRegistrationLib.batch.html_page import render_page

    hostile = [PairOutcome(HOSTILE_ID, safe_folder_name(HOSTILE_ID), "failed-input",
                           "cannot read '<script>alert(1)</script>' & more"),
               PairOutcome('"quoted" & <b>bold</b>', "b", "ok", seconds=2.0, has_qc=True)]
    page = render_page(hostile, manifest_name="<svg onload=alert(1)>.csv")
    assert "<script>alert" not in page and "<svg" not in page and "<b>bold" not in page
    assert "&lt;img src=x onerror=" in page and "&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27; &amp; more" in page
    assert "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert len(re.findall(r"<img ", page)) == 1 and len(re.findall(r"<script>", page)) == 1


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_hostile_id_and_accented_spaced_paths_register_and_show_as_text(tmp_path):
    folder = tmp_path / "Kniegelenk Müller" / "séance 1"
    paths = write_pair(folder, 0, "CT scan é.nrrd", "MR scan ü.nrrd")
    manifest = write_manifest(tmp_path / "Kniegelenk Müller" / "kohorte ä.csv", [
        {"id": HOSTILE_ID, "fixed": "séance 1/CT scan é.nrrd", "moving": paths["moving"], "preset": "fast-preview"}])
    out = tmp_path / "résultats x"
    done = run_batch_cli(manifest, "--output-dir", out, "--jobs", "1")
    assert done.returncode == 0, done.stderr
    pair_folder = out / safe_folder_name(HOSTILE_ID)
    _assert_recovers_truth(pair_folder / "transform.tfm", 0)
    assert read_summary(out)[HOSTILE_ID]["output_folder"] == pair_folder.name
    page = (out / "index.html").read_text(encoding="utf-8")
    assert HOSTILE_ID not in page and "&lt;img src=x onerror=&quot;document.body" in page
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was checked as text only")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (out / "index.html").as_uri()], capture_output=True, encoding="utf-8", timeout=120).stdout
    assert "data-pwned" not in re.search(r"<body[^>]*>", dom).group(0), "the hostile id ran as HTML"
    assert len(re.findall(r"<img ", dom)) == 1, "only the QC thumbnail is an image"
    assert 'tabindex="0"' in dom, "the sorting script did not run (Content-Security-Policy hash?)"
    assert np.isfinite(float(read_summary(out)[HOSTILE_ID]["metric_after"]))

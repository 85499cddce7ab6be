"""Resume: checksums that a same-size edit cannot fool, and a batch killed after its first pair that
reruns only the rest (the batch runs as a real subprocess and is killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import SimpleITK as sitk
from batch_test_helpers import batch_command, batch_environment, read_summary, run_batch_cli, write_manifest, write_pair
from MultimodalKneeRegistrationLib.batch.checksums import input_digest
from MultimodalKneeRegistrationLib.batch.manifest import read_manifest
from MultimodalKneeRegistrationLib.batch.resume import decide


def _flip_last_byte_keeping_size_and_time(path):
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_same_size_edit_with_its_time_restored_changes_the_digest(tmp_path):
    image = tmp_path / "mr.nrrd"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16) + 5, str(image))
    before = input_digest(image)
    _flip_last_byte_keeping_size_and_time(image)
    after = input_digest(image)
    assert before["size"] == after["size"] and before["sha256"] != after["sha256"]


def test_a_detached_header_is_hashed_with_its_data_file(tmp_path):
    header = tmp_path / "ct.nhdr"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16) + 5, str(header))
    data_files = [p for p in tmp_path.iterdir() if p != header]
    assert len(data_files) == 1, data_files
    before = input_digest(header)
    _flip_last_byte_keeping_size_and_time(data_files[0])
    assert input_digest(header)["sha256"] != before["sha256"]


def test_a_dicom_folder_is_hashed_by_its_file_names_and_contents(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for index in range(3):
        (folder / f"IM{index}.dcm").write_bytes(bytes([index]) * 1000)
    (folder / "sub").mkdir()
    before = input_digest(folder)
    assert before["kind"] == "folder" and before["size"] == 3000
    (folder / "sub" / "ignored.dcm").write_bytes(b"x")  # sub-folders are not part of the series
    assert input_digest(folder)["sha256"] == before["sha256"]
    os.rename(folder / "IM2.dcm", folder / "IM9.dcm")
    assert input_digest(folder)["sha256"] != before["sha256"]


def test_a_folder_the_batch_did_not_write_is_left_alone_unless_overwrite(tmp_path):
    (tmp_path / "ct.nrrd").write_bytes(b"a")
    (tmp_path / "mr.nrrd").write_bytes(b"b")
    (job,) = read_manifest(write_manifest(tmp_path / "m.csv", [{"id": "k", "fixed": "ct.nrrd", "moving": "mr.nrrd"}]))
    mine = tmp_path / "out" / "k"
    mine.mkdir(parents=True)
    digests = {name: input_digest(path) for name, path in job.inputs}
    refused = decide(job, mine, digests, overwrite_failed=True, overwrite=False)
    assert refused.action == "conflict" and "not written by a batch run" in refused.reason
    assert decide(job, mine, digests, overwrite_failed=False, overwrite=True).action == "run"


def _wait_for(path, process, timeout_s=180.0):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, "the batch ended before its first pair finished"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout_s} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_batch_resumes_with_only_the_pairs_not_done(tmp_path):
    rows = [{"id": f"p{i}", **write_pair(tmp_path / "data", i), "preset": "fast-preview"} for i in range(3)]
    manifest = write_manifest(tmp_path / "data" / "cohort.csv", rows)
    out = tmp_path / "out"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(batch_command(manifest, "--output-dir", out, "--jobs", "1"), stdout=log,
                                 stderr=subprocess.STDOUT, env=batch_environment(), start_new_session=True)
        try:
            _wait_for(out / "p0", first)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert not (out / "p1").exists() and not (out / "p2").exists()
    assert any(".partial-" in p.name for p in out.iterdir()), "the pair being run when killed left its partial"
    done_first = {name: (out / "p0" / name).stat().st_mtime_ns for name in ("transform.tfm", "report.json")}

    rerun = run_batch_cli(manifest, "--output-dir", out, "--jobs", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert "2 ok, 1 skipped, 0 refused, 0 failed-input, 0 failed-other" in rerun.stderr
    assert {k: r["status"] for k, r in read_summary(out).items()} == {"p0": "skipped", "p1": "ok", "p2": "ok"}
    assert {name: (out / "p0" / name).stat().st_mtime_ns for name in done_first} == done_first
    assert not [p for p in out.iterdir() if ".partial-" in p.name]

    _flip_last_byte_keeping_size_and_time(rows[2]["moving"])  # same size, same time: still seen
    changed = run_batch_cli(manifest, "--output-dir", out, "--jobs", "1")
    assert changed.returncode == 5, changed.stderr
    summary = read_summary(out)
    assert [summary[k]["status"] for k in ("p0", "p1", "p2")] == ["skipped", "skipped", "failed-other"]
    assert "holds a result of other inputs or options" in summary["p2"]["error_or_warning"]
    replaced = run_batch_cli(manifest, "--output-dir", out, "--jobs", "1", "--overwrite")
    assert replaced.returncode == 0 and "1 ok, 2 skipped" in replaced.stderr, replaced.stderr


def _processes_mentioning(text):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to look for left-over processes")
def test_sigterm_stops_the_children_keeps_finished_pairs_and_writes_the_summary(tmp_path):
    rows = [{"id": f"p{i}", **write_pair(tmp_path / "data", i), "preset": "fast-preview"} for i in range(3)]
    manifest = write_manifest(tmp_path / "data" / "cohort.csv", rows)
    out = tmp_path / "out"
    batch = subprocess.Popen(batch_command(manifest, "--output-dir", out, "--jobs", "1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, encoding="utf-8", env=batch_environment(), start_new_session=True)
    try:
        _wait_for(out / "p0", batch)
        time.sleep(0.5)  # the next pair's process has started
        os.kill(batch.pid, signal.SIGTERM)  # the batch only, as a cluster's job end or `kill` would
        _, stderr = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
    assert batch.returncode == 130, stderr
    assert "interrupted; finished pairs are kept" in stderr
    summary = read_summary(out)
    assert summary["p0"]["status"] == "ok" and summary["p2"]["status"] == "interrupted"
    assert summary["p1"]["status"] in ("ok", "interrupted")
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    assert _processes_mentioning(str(out)) == [], "a registration process outlived the batch"

"""The batch manifest: every problem in ONE message before any work, columns from the real parser,
relative paths from the manifest's folder, safe and distinct output folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_test_helpers import run_batch_cli, write_manifest
from MultimodalKneeRegistrationLib.batch.columns import option_arguments, register_columns
from MultimodalKneeRegistrationLib.batch.manifest import SETTINGS_NAME, read_manifest, safe_folder_name
from MultimodalKneeRegistrationLib.cli import build_parser, settings_from_args
from MultimodalKneeRegistrationLib.cli_options import settings_from_file
from MultimodalKneeRegistrationLib.errors import InputError


@pytest.fixture
def images(tmp_path):
    """Two existing files (contents never read: a manifest check opens no image)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("ct.nrrd", "mr.nrrd", "init.tfm"):
        (folder / name).write_bytes(b"placeholder")
    return folder


def test_allowed_columns_are_the_register_options_minus_what_the_batch_owns():
    columns = register_columns()
    for name in ("initial_transform", "segmentation", "per_bone", "preset", "init_mode", "sampling_percentage",
                 "threads", "no_resampled", "fixed_series_uid"):
        assert name in columns, name
    for owned in ("output_dir", "overwrite", "quiet", "debug", "help"):
        assert owned not in columns
    assert columns["init_mode"].flag == "--init-mode" and columns["init_mode"].takes_value
    assert not columns["per_bone"].takes_value


def test_options_become_flags_with_values_kept_whole():
    columns = register_columns()
    arguments = option_arguments((("seed", "-3"), ("per_bone", "true"), ("preset", "fast-preview")), columns)
    assert arguments == ["--seed=-3", "--per-bone", "--preset=fast-preview"]


def test_relative_paths_resolve_against_the_manifest_folder_not_the_working_folder(images, tmp_path, monkeypatch):
    manifest = write_manifest(images / "m.csv", [{"id": "k1", "fixed": "ct.nrrd", "moving": "./mr.nrrd",
                                                  "initial_transform": "init.tfm", "Per-Bone": "yes",
                                                  "init_mode": "Off"}])
    monkeypatch.chdir(tmp_path)
    (job,) = read_manifest(manifest)
    inputs = dict(job.inputs)
    assert inputs == {"fixed": str(images / "ct.nrrd"), "moving": str(images / "mr.nrrd"),
                      "initial_transform": str(images / "init.tfm")}
    assert job.register_argv("OUT")[:5] == ["register", inputs["fixed"], inputs["moving"], "--output-dir=OUT",
                                            f"--settings-from={Path('OUT') / SETTINGS_NAME}"]
    assert set(job.arguments) == {f"--initial-transform={images / 'init.tfm'}", "--per-bone"}
    # Settings columns become the pair's settings (handed over as a file), the rest stay flags.
    assert job.settings.choices.initialize_transform_mode == "Off"
    assert job.settings.overrides == ("initialize_transform_mode",)
    assert dict(job.cells) == {"per_bone": "true", "init_mode": "Off"}
    # The resume key is the cells as written, as before the settings were handed over as a file: the
    # records of pairs finished before then still match, so they are skipped, not run again.
    assert job.options_key() == {"per_bone": "true", "init_mode": "Off", "initial_transform": "(file, see checksums)"}


def test_the_pair_gets_the_settings_the_command_line_would_give(images, tmp_path):
    """One mapping from options to settings: a row's settings equal ``register``'s for the same flags, and
    the file the pair reads with --settings-from gives them back."""
    manifest = write_manifest(images / "m.csv", [{"id": "k1", "fixed": "ct.nrrd", "moving": "mr.nrrd",
                                                  "preset": "fast-preview", "seed": "-3", "threads": "2",
                                                  "stages": "Rigid,Affine", "no_fail_on_sanity": "x"}])
    (job,) = read_manifest(manifest)
    flags = ["--preset=fast-preview", "--seed=-3", "--threads=2", "--stages=Rigid,Affine", "--no-fail-on-sanity"]
    args = build_parser().parse_args(["register", "f", "m", "--output-dir=o", *flags])
    assert job.settings == settings_from_args(args)
    assert job.arguments == ()
    path = job.write_settings(tmp_path)
    assert settings_from_file(path) == job.settings
    assert job.settings.execution.deterministic is False and not job.settings.checks.fail_on_sanity_check


def test_semicolon_manifest_with_a_byte_order_mark_is_read(images):
    manifest = images / "excel.csv"
    manifest.write_text("\ufeffid;fixed;moving;preset\nk1;ct.nrrd;mr.nrrd;fast-preview\n", encoding="utf-8")
    (job,) = read_manifest(manifest)
    assert job.pair_id == "k1" and job.arguments == () and job.settings.preset == "fast-preview"


def test_every_manifest_problem_is_reported_at_once(images):
    manifest = write_manifest(images / "m.csv", [
        {"id": "a", "fixed": "ct.nrrd", "moving": "mr.nrrd"},
        {"id": "a", "fixed": "ct.nrrd", "moving": "mr.nrrd"},                    # duplicate id
        {"id": "b", "fixed": "missing.nrrd", "moving": "mr.nrrd"},               # missing file
        {"id": "knee 1", "fixed": "ct.nrrd", "moving": "mr.nrrd"},
        {"id": "knee_1", "fixed": "ct.nrrd", "moving": "mr.nrrd"},               # same folder as 'knee 1'
        {"id": "c", "fixed": "ct.nrrd", "moving": "mr.nrrd", "init_mode": "sideways"},
        {"id": "d", "fixed": "ct.nrrd", "moving": "mr.nrrd", "sampling_percentage": "2"},
        {"id": "e", "fixed": "ct.nrrd", "moving": "mr.nrrd", "per_bone": "maybe"},
    ])
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    message = caught.value.message
    for expected in ("row 3: id 'a' is already used on row 2", "row 4: fixed", "missing.nrrd' does not exist",
                     "row 6: id 'knee_1' would write the same folder 'knee_1' as id 'knee 1' on row 5",
                     "row 7: argument --init-mode: invalid choice: 'sideways'", "row 8: sampling_percentage",
                     "row 9: per_bone is 'maybe'; write yes or no", "nothing was registered"):
        assert expected in message, (expected, message)


def test_unknown_and_missing_columns_name_the_allowed_ones(images):
    manifest = write_manifest(images / "m.csv", [{"id": "a", "fixed": "ct.nrrd", "mov": "mr.nrrd",
                                                  "output_dir": "x"}])
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    message = caught.value.message
    assert "the header has no 'moving' column" in message
    assert "unknown columns 'mov', 'output_dir' (allowed: id, fixed, moving, " in message
    assert "sampling_percentage" in message and "per_bone" in message


def test_the_command_refuses_a_bad_manifest_before_any_work(images, tmp_path):
    manifest = write_manifest(images / "m.csv", [{"id": "a", "fixed": "ct.nrrd", "moving": "gone.nrrd"},
                                                 {"id": "a", "fixed": "ct.nrrd", "moving": "mr.nrrd"}])
    out = tmp_path / "out"
    done = run_batch_cli(manifest, "--output-dir", out, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: manifest "), done.stderr
    assert "gone.nrrd' does not exist" in errors[0] and "id 'a' is already used on row 2" in errors[0]
    assert not out.exists()


@pytest.mark.parametrize("pair_id, folder", [
    ("knee01", "knee01"), ("knee 07/left", "knee_07_left"), ("../../etc", "_.._etc"), ("..", "pair"),
    ("<img src=x onerror=alert(1)>", "_img_src_x_onerror_alert_1__"), ("Kniegelenk_Müller", "Kniegelenk_Müller"),
    ("index.html", "index.html_"), ("CON", "CON_"),
])
def test_ids_map_to_safe_folder_names(pair_id, folder):
    assert safe_folder_name(pair_id) == folder


def test_ids_differing_only_in_case_are_refused_as_the_same_folder(images):
    manifest = write_manifest(images / "m.csv", [{"id": "Knee1", "fixed": "ct.nrrd", "moving": "mr.nrrd"},
                                                 {"id": "knee1", "fixed": "ct.nrrd", "moving": "mr.nrrd"}])
    with pytest.raises(InputError, match="would write the same folder"):
        read_manifest(manifest)

"""The benchmark's sections: self-check, cases, capture grid and scaling (called by run_benchmarks.py).

Why: each section turns the pair into jobs for ``runner.py`` and scores the outcomes against known
answers; keeping them apart from the command line keeps both files short and lets a section be rerun
alone (``--sections grid --merge``).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any, Dict, List

import cases as C
import numpy as np
import runner
import selfcheck
import SimpleITK as sitk
import suite
from rigid import compose, distances, random_unit_vectors

HERE = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


SUCCESS_MM = 2.0
#: The CT -> MR answer the benchmark measures against (see README: the data set's own file is a
#: 180-degree-flipped optimum that aligns the block's outline but not the bone).
CORRECTED_REFERENCE = HERE / "reference_ct_to_mr_corrected.tfm"


class Bench:
    """Holds the pair, the work folder and the shared inputs derived from them."""

    def __init__(self, pair: C.PairData, work: Path, mode: suite.Mode, out: Path) -> None:
        self.pair, self.work, self.mode, self.out = pair, work, mode, out
        self.rng = np.random.default_rng(5)
        self._ct_file: Path | None = None
        self._ct4x: tuple | None = None
        self._microct: tuple | None = None

    def ct(self):
        if self._ct_file is None:
            self._ct_file = C.write_image(self.pair.ct, self.work / "ct.nrrd")
        return C.Geometry.of(self.pair.ct), self._ct_file, self.pair.specimen_points, 1

    def ct4x(self):
        if self._ct4x is None:
            image, path = C.downsampled_ct(self.pair, 4, self.work)
            self._ct4x = (C.Geometry.of(image), path, self.pair.specimen_points, 4)
        return self._ct4x

    def microct(self):
        if self._microct is None:
            center = self.pair.bone_center
            path = self.work / "microct.nrrd"
            geometry = C.write_microct(self.pair.ct, center, C.MICROCT_SIDE_MM, C.MICROCT_SPACING_MM, path)
            points = C.cube_points(self.pair.specimen_points, center, C.MICROCT_SIDE_MM)
            self._microct = (geometry, path, points, 1)
        return self._microct

    def ct_side(self, kind: str):
        return {"CT": self.ct, "CT 4x": self.ct4x, "micro-CT": self.microct}[kind]()

    def case(self, name: str) -> C.Case:
        kind, mr_fixed, offset, description = suite.CASE_SPECS[name]
        geometry, path, points, factor = self.ct_side(kind)
        mr_pose = None
        if offset is not None:  # the answer becomes exactly the offset pose (about the specimen's centre)
            axis, direction = random_unit_vectors(2, np.random.default_rng(zlib.crc32(name.encode())))
            offset_truth = C.offset_pose(offset[0], offset[1], axis, direction, points.mean(axis=0))
            mr_pose = compose(offset_truth, np.linalg.inv(self.pair.reference))
        presets = ("mri-microct-knee", "fast-preview") if kind == "micro-CT" else ("mri-ct", "fast-preview")
        case = C.make_case(
            name,
            description,
            geometry,
            path,
            kind,
            points,
            self.pair.mr,
            self.pair.reference,
            mr_pose,
            self.work,
            mr_fixed,
            presets,
            factor,
        )
        case.extra["start_error_mm"] = float(distances(np.eye(4), case.truth, case.points).mean())
        return case


def run_cases(bench: Bench, brainsfit: str | None, threads: int, only_tools: List[str]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    timed_out: Dict[str, tuple] = {}  # tool label -> (fixed voxels, case) of its first timeout
    for name in bench.mode.cases:
        case = bench.case(name)
        skipped = bench.mode.skipped(name)
        log(f"case {name}: {case.description} (start error {case.extra['start_error_mm']:.1f} mm)")
        for tool in suite.tools_for(case, brainsfit):
            if only_tools and not any(t in tool.label for t in only_tools):
                continue
            base = {
                "case": name,
                "tool": tool.label,
                "kind": tool.kind,
                "fixed": case.fixed_kind,
                "moving": case.moving_kind,
                "fine_mb": case.fine_bytes / 2**20,
                "start_error_mm": case.extra["start_error_mm"],
            }
            if tool.label in skipped:
                rows.append(dict(base, verdict="skipped", note=skipped[tool.label]))
                continue
            if tool.label in timed_out and case.fixed_voxels >= timed_out[tool.label][0]:
                voxels, where = timed_out[tool.label]
                rows.append(
                    dict(
                        base,
                        verdict="skipped",
                        note=f"not run: timed out on {where} (fixed image "
                        f"{voxels / 1e6:.0f} M voxels <= this one's {case.fixed_voxels / 1e6:.0f} M)",
                    )
                )
                continue
            outcome = runner.run_job(tool.job(case), bench.mode.timeout_s, threads, bench.work)
            if outcome["status"] == "timeout" and tool.label not in timed_out:
                timed_out[tool.label] = (case.fixed_voxels, name)
            scored = runner.score(outcome, case.truth, case.points, SUCCESS_MM)
            rows.append(dict(base, **_slim(scored)))
            log(
                f"  {tool.label:40s} {scored['verdict']:8s} mean {scored.get('mean_mm', float('nan')):7.2f} mm "
                f"tool {_n(scored.get('seconds')):7.1f} s peak {_n(scored.get('peak_rss_mb')):7.0f} MB"
            )
    return rows


def _n(value) -> float:
    return float("nan") if value is None else float(value)


def _slim(scored: Dict[str, Any]) -> Dict[str, Any]:
    keep = (
        "verdict",
        "success",
        "mean_mm",
        "max_mm",
        "seconds",
        "wall_s",
        "cpu_s",
        "load_before",
        "peak_rss_mb",
        "library_rss_mb",
        "error",
        "log_tail",
        "extra",
        "marks",
        "matrix",
    )
    return {k: scored[k] for k in keep if k in scored}


def run_grid(bench: Bench, threads: int, only_tools: List[str], brainsfit: str | None = None
             ) -> List[Dict[str, Any]]:
    """Capture range: MR moved so that the answer is exactly the start offset (truth = offset pose)."""
    mode = bench.mode
    geometry, path, points, factor = bench.ct_side("CT 4x" if mode.grid_ct_factor == 4 else "CT")
    center = points.mean(axis=0)
    starts = C.grid_offsets(mode.grid_angles, mode.grid_translations, mode.grid_axes)
    tools = [suite.ours("mri-ct"), suite.ours("fast-preview")] + suite.peers(brainsfit)
    tools = [t for t in tools if t.label in mode.grid_tools]
    tools = [t for t in tools if not only_tools or any(o in t.label for o in only_tools)]
    jobs, meta = [], []
    for number, (angle, translation, axis, direction) in enumerate(starts):
        truth = C.offset_pose(angle, translation, axis, direction, center)
        mr_pose = compose(truth, np.linalg.inv(bench.pair.reference))
        case = C.make_case(
            f"grid{number:02d}",
            "capture grid",
            geometry,
            path,
            "CT 4x",
            points,
            bench.pair.mr,
            bench.pair.reference,
            mr_pose,
            bench.work,
            False,
            ("mri-ct",),
            factor,
        )
        assert np.allclose(case.truth, truth)
        chosen = list(tools)
        if mode.grid_native_ours and (not only_tools or any("native" in o for o in only_tools)):
            native_geometry, native_path, _, _ = bench.ct()
            native = C.make_case(
                f"grid{number:02d}n",
                "capture grid, native CT",
                native_geometry,
                native_path,
                "CT",
                points,
                bench.pair.mr,
                bench.pair.reference,
                mr_pose,
                bench.work,
                False,
                ("mri-ct",),
                1,
            )
            jobs.append(dict(suite.ours("mri-ct").job(native), label="ours (mri-ct), native CT"))
            meta.append((angle, translation, native))
        for tool in chosen:
            jobs.append(tool.job(case))
            meta.append((angle, translation, case))
    log(
        f"capture grid: {len(starts)} starts x {len(jobs) // max(1, len(starts))} runs, "
        f"{mode.grid_parallel} at a time with {max(1, threads // mode.grid_parallel)} thread(s) each"
    )

    def done(job, outcome):
        log(f"  grid {job['case']} {job['label']:34s} {outcome['status']} {outcome['wall_s']:.0f} s")

    outcomes = runner.run_many(
        jobs, mode.timeout_s, max(1, threads // mode.grid_parallel), bench.work, mode.grid_parallel, done
    )
    rows = []
    for job, outcome, (angle, translation, case) in zip(jobs, outcomes, meta):
        scored = runner.score(outcome, case.truth, case.points, SUCCESS_MM)
        rows.append(
            {
                "tool": job["label"],
                "angle_deg": angle,
                "translation_mm": translation,
                "verdict": scored["verdict"],
                "success": scored["success"],
                "mean_mm": scored.get("mean_mm"),
                "seconds": scored.get("seconds"),
                "cpu_s": scored.get("cpu_s"),
                "note": (scored.get("extra") or {}).get("rejected", scored.get("error", ""))[:200],
            }
        )
    return rows


def run_scaling(bench: Bench, threads: int) -> List[Dict[str, Any]]:
    """Ours and the one-pass floor on micro-CT-like cubes of growing voxel count (MR moving)."""
    mode = bench.mode
    center = bench.pair.bone_center
    points = C.cube_points(bench.pair.specimen_points, center, mode.scaling_side_mm)
    # the same problem as the case microct-start-20-20: the MR starts 20 deg + 20 mm from the answer
    axis, direction = random_unit_vectors(2, np.random.default_rng(zlib.crc32(b"microct-start-20-20")))
    truth = C.offset_pose(20.0, 20.0, axis, direction, points.mean(axis=0))
    mr_pose = compose(truth, np.linalg.inv(bench.pair.reference))
    mr_file = C.write_image(C.moved_image(bench.pair.mr, mr_pose), bench.work / "mr_scaling.nrrd")
    rows = []
    for spacing in mode.scaling_spacings:
        path = bench.work / f"scaling_{spacing:g}.nrrd"
        began = time.perf_counter()
        geometry = C.write_microct(bench.pair.ct, center, mode.scaling_side_mm, spacing, path)
        log(
            f"scaling {spacing} mm: {geometry.voxels / 1e6:.0f} M voxels, {geometry.nbytes / 2**20:.0f} MB "
            f"(written in {time.perf_counter() - began:.0f} s)"
        )
        job = {"fixed": str(path), "moving": str(mr_file), "preset": "mri-microct-knee"}
        for tool in ("floor", "ours"):
            outcome = runner.run_job(dict(job, tool=tool), max(mode.timeout_s, 300.0), threads, bench.work)
            scored = runner.score(outcome, truth, points, SUCCESS_MM)
            marks = outcome.get("marks", {})
            rows.append(
                {
                    "tool": tool,
                    "spacing_mm": spacing,
                    "voxels": geometry.voxels,
                    "mb": geometry.nbytes / 2**20,
                    "verdict": scored["verdict"],
                    "mean_mm": scored.get("mean_mm"),
                    "seconds": scored.get("seconds"),
                    "read_s": marks.get("loaded", {}).get("t", np.nan) - marks.get("imported", {}).get("t", 0),
                    "process_s": marks.get("done", {}).get("t", np.nan) - marks.get("imported", {}).get("t", 0),
                    "peak_rss_mb": outcome.get("peak_rss_mb"),
                    "library_rss_mb": scored.get("library_rss_mb"),
                }
            )
            log(
                f"  {tool:6s} {scored['verdict']:8s} {rows[-1]['process_s']:.1f} s (read+run) "
                f"peak {_n(outcome.get('peak_rss_mb')):.0f} MB"
            )
        path.unlink()
    return rows


def run_selfcheck(bench: Bench, threads: int, brainsfit: str | None) -> Dict[str, Any]:
    composition = selfcheck.check_composition(bench.pair, np.random.default_rng(11))
    log(
        f"selfcheck: composition verified on {composition['points']} points "
        f"(wrong order would differ by {composition['wrong_order_mismatch']:.2f} of the MR range)"
    )
    shared_file = bench.pair.ct_path.parent / "reference_ct_to_mr.tfm"
    if shared_file.is_file():
        shared = C.transform_to_matrix(sitk.ReadTransform(str(shared_file)))
        composition["reference"] = selfcheck.reference_figure(bench.pair, shared, bench.out / "reference_check.png")
        log(
            f"selfcheck: Mattes MI {composition['reference']['mi_shared']:.3f} at the data set's reference, "
            f"{composition['reference']['mi_in_use']:.3f} at the one in use (lower is better)"
        )
    folder = bench.work / "selfcheck"
    folder.mkdir(exist_ok=True)
    fixed, moving, truth, points = selfcheck.synthetic_pair(folder)
    base = {
        "fixed": str(fixed),
        "moving": str(moving),
        "fine_side": "fixed",
        "mr_side": "moving",
        "tuned_shrink": 1,
        "tuned_roi": [[-1e4] * 3, [1e4] * 3],
    }
    tools = [suite.ours("mri-ct"), suite.ANTS, suite.ELASTIX]
    if brainsfit:
        tools += [suite.ours_brainsfit("mri-ct", brainsfit), suite.brainsfit_exe("tuned", brainsfit)]
    results = []
    for tool in tools:
        job = dict(base, tool=tool.tool, label=tool.label, **dict(tool.options))
        results.append(dict(runner.run_job(job, 300.0, threads, bench.work), label=tool.label))
    rows = selfcheck.check_tools(results, truth, points)
    for row in rows:
        log(
            f"  {row['tool']:40s} {'verified' if row['passed'] else 'NOT VERIFIED'} "
            f"{row.get('mean_mm', float('nan')):.3f} mm (identity {row['identity_mm']:.1f}, "
            f"inverse {row['inverse_mm']:.1f})"
        )
    return {"composition": composition, "tools": rows}

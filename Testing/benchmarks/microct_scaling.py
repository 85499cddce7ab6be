"""Micro-CT scaling: reading 0.1-8 GB uint16 volumes streamed, against one plain read pass (not a test).

Why: issue 14 asks whether a real-size micro-CT (2-16 GB) can be registered in bounded memory, near
the physical floor of reading the file once. For each size this script writes a micro-CT-like uint16
NRRD by streaming (never whole in memory), then measures, each in a fresh subprocess:
- ``read pass``: the bytes read once, 64 MB at a time (the floor);
- ``streamed``: ``read_block_averaged`` with the factors the planner picks against the MR;
- ``register``: ``python -m MultimodalKneeRegistrationLib register CUBE MR`` (up to --register-up-to-gb).
Wall and CPU seconds come from the child's own clocks and ``os.wait4``; peak RSS is the child's
VmHWM (/proc/PID/status, its high-water mark since exec), polled every 50 ms until it exits.
Files are deleted after each size. Content: a 40 mm cube of the porcine CT around the bone,
resampled to the size's spacing, in "scanner units" with noise (cases.write_microct), or a synthetic
bone-like structure when ../shared is absent (then no register column: no MR).

    Testing/benchmarks/.venv/bin/python Testing/benchmarks/microct_scaling.py --sizes-gb 0.1,0.5,1,2,4,8 \\
        --register-up-to-gb 1 --work-dir /work/tmp/mkr-scaling

The file was just written, so reads hit the page cache where memory allows (measured the same way for
the floor and for ours). Other jobs sharing the machine inflate wall times: compare CPU seconds too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "MultimodalKneeRegistration"))
sys.path.insert(0, str(HERE))
CUBE_SIDE_MM = 40.0
RESULTS = HERE / "results"

_READ_PASS = """
import sys, time
start, cpu = time.perf_counter(), time.process_time()
buffer = bytearray(64 << 20)
with open(sys.argv[1], "rb", buffering=0) as handle:
    while handle.readinto(buffer):
        pass
print(time.perf_counter() - start, time.process_time() - cpu)
"""

_STREAMED = """
import sys, time
start, cpu = time.perf_counter(), time.process_time()
from MultimodalKneeRegistrationLib.io.streaming import read_block_averaged
image = read_block_averaged(sys.argv[1], [int(f) for f in sys.argv[2].split(",")], slab_mb=float(sys.argv[3]))
print(time.perf_counter() - start, time.process_time() - cpu, "x".join(map(str, image.GetSize())))
"""


def _poll_hwm(pid: int, peak: List[float], stop: threading.Event) -> None:
    """Keep the child's VmHWM (its own high-water mark since exec) until it exits."""
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024.0)
        except OSError:
            return
        stop.wait(0.05)


def run_child(command: List[str], timeout_s: float = 3600) -> Dict:
    """Run ``command``: wall seconds, the child's CPU seconds (``os.wait4``) and peak RSS (VmHWM, MB).

    Not ``ru_maxrss``: Linux carries the forking parent's high-water mark into it across exec.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO / "MultimodalKneeRegistration"))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        peak, stop = [0.0], threading.Event()
        poller = threading.Thread(target=_poll_hwm, args=(child.pid, peak, stop), daemon=True)
        poller.start()
        timer = threading.Timer(timeout_s, child.kill)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # we reap the child: its CPU times are exact
        timer.cancel()
        stop.set()
        poller.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        return {"rc": child.returncode, "wall_s": wall, "stdout": out.read(), "stderr": err.read()[-2000:],
                "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak[0]}


def write_cube(path: Path, size_gb: float, pair) -> Dict:
    """Write a uint16 cube of ~``size_gb`` GB slab by slab; return its size and spacing."""
    count = int(round((size_gb * 1e9 / 2) ** (1 / 3)))
    spacing = CUBE_SIDE_MM / count
    slab = max(4, int(64e6 // (count * count * 4)))
    began = time.perf_counter()
    if pair is not None:
        import cases as C

        C.write_microct(pair.ct, pair.bone_center, CUBE_SIDE_MM, spacing, path, slab=slab)
    else:
        _write_synthetic(path, count, spacing, slab)
    return {"voxels_per_axis": count, "spacing_mm": spacing, "file_gb": path.stat().st_size / 1e9,
            "write_s": time.perf_counter() - began}


def _write_synthetic(path: Path, count: int, spacing: float, slab: int) -> None:
    """A bone-like cube without the shared data: a hollow cylinder (cortex) in soft tissue, with noise."""
    rng = np.random.default_rng(3)
    axis = (np.arange(count) - count / 2.0) * spacing
    radius = np.hypot(*np.meshgrid(axis, axis))
    tissue = np.where(radius < 12, 2500.0, 1200.0) + np.where((radius > 9) & (radius < 12), 9000.0, 0.0)
    with open(path, "wb") as handle:
        handle.write((f"NRRD0004\ntype: uint16\ndimension: 3\nspace: left-posterior-superior\nsizes: {count} {count} "
                      f"{count}\nspace directions: ({spacing},0,0) (0,{spacing},0) (0,0,{spacing})\nendian: little\n"
                      "encoding: raw\nspace origin: (0,0,0)\n\n").encode())
        for z0 in range(0, count, slab):
            depth = min(slab, count - z0)
            noise = rng.normal(0.0, 200.0, size=(depth, count, count)).astype(np.float32)
            handle.write(np.clip(tissue[None] + noise, 0, 65535).astype("<u2").tobytes())


def planned_factors(cube: Path, mr: Optional[Path]) -> List[int]:
    """The fine image's block factors as the planner picks them from the headers (MR moving)."""
    from MultimodalKneeRegistrationLib.io.headers import read_header
    from MultimodalKneeRegistrationLib.settings import settings_for_preset
    from MultimodalKneeRegistrationLib.steps.planning import plan_registration

    if mr is None:
        header = read_header(cube)
        return [max(1, int(round(0.5 / s))) for s in header.GetSpacing()]
    plan = plan_registration(read_header(cube), read_header(mr), settings_for_preset("mri-microct-knee"))
    return list(plan.fixed_shrink)


def register_run(cube: Path, mr: Path, out: Path, pair) -> Dict:
    """The full command line against the MR; error (mm) of the result against the pair's reference."""
    import SimpleITK as sitk

    run = run_child([sys.executable, "-m", "MultimodalKneeRegistrationLib", "register", str(cube), str(mr),
                     "--output-dir", str(out), "--overwrite", "--quiet"])
    report_file = out / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    status = report.get("status") or ("ok" if report.get("passed_sanity_checks") else "refused")
    error_mm = None
    if (out / "transform.tfm").is_file():
        import cases as C

        points = C.cube_points(pair.specimen_points, pair.bone_center, CUBE_SIDE_MM)
        transform = sitk.ReadTransform(str(out / "transform.tfm"))
        moved = np.array([transform.TransformPoint(tuple(map(float, p))) for p in points])
        truth = points @ pair.reference[:3, :3].T + pair.reference[:3, 3]
        error_mm = float(np.linalg.norm(moved - truth, axis=1).mean())
    run.update(status=status if run["rc"] in (0, 4) else f"exit {run['rc']}", error_mm=error_mm,
               report_peak_mb=(report.get("resources") or {}).get("peak_rss_mb"))
    return run


def measure(size_gb: float, work: Path, pair, mr: Optional[Path], register_up_to: float, slab_mb: float) -> Dict:
    cube = work / f"cube_{size_gb:g}gb.nrrd"
    row: Dict = {"size_gb": size_gb, **write_cube(cube, size_gb, pair)}
    row["factors"] = planned_factors(cube, mr)
    floor = run_child([sys.executable, "-c", _READ_PASS, str(cube)])
    row["read_pass"] = {**floor, **dict(zip(("wall_s", "cpu_s"), map(float, floor["stdout"].split())))}
    row["read_pass"]["peak_rss_mb"] = floor["peak_rss_mb"]
    streamed = run_child([sys.executable, "-c", _STREAMED, str(cube), ",".join(map(str, row["factors"])),
                          str(slab_mb)])
    if streamed["rc"] == 0:
        wall, cpu, size = streamed["stdout"].split()
        streamed.update(inner_wall_s=float(wall), inner_cpu_s=float(cpu), output_size=size)
    row["streamed"] = streamed
    if mr is not None and size_gb <= register_up_to:
        row["register"] = register_run(cube, mr, work / f"out_{size_gb:g}", pair)
    cube.unlink()
    shutil.rmtree(work / f"out_{size_gb:g}", ignore_errors=True)
    return row


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(rows: List[Dict], path: Path, note: str) -> None:
    lines = ["# Micro-CT scaling: streamed reading against one read pass", "", note, "",
             "| file GB | voxels | spacing mm | factors | read pass s (CPU) | streamed s (CPU) | streamed / pass "
             "| streamed peak RSS MB | read-pass peak MB | register s (CPU) | register peak RSS MB | register |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        floor, ours, reg = row["read_pass"], row["streamed"], row.get("register") or {}
        ratio = ours.get("inner_wall_s", 0) / floor["wall_s"] if floor.get("wall_s") else None
        outcome = "-" if not reg else f"{reg['status']}" + (f", {reg['error_mm']:.2f} mm" if reg.get("error_mm")
                                                             is not None else "")
        lines.append(
            f"| {row['file_gb']:.2f} | {row['voxels_per_axis']}^3 | {row['spacing_mm']:.4f} | "
            f"{'x'.join(map(str, row['factors']))} | {_fmt(floor['wall_s'])} ({_fmt(floor['cpu_s'])}) | "
            f"{_fmt(ours.get('inner_wall_s'))} ({_fmt(ours.get('inner_cpu_s'))}) | {_fmt(ratio, 2)} | "
            f"{_fmt(ours['peak_rss_mb'], 0)} | {_fmt(floor['peak_rss_mb'], 0)} | "
            f"{_fmt(reg.get('wall_s'))} ({_fmt(reg.get('cpu_s'))}) | {_fmt(reg.get('peak_rss_mb'), 0)} | {outcome} |")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: List[Dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    gb = [r["file_gb"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(gb, [r["read_pass"]["wall_s"] for r in rows], "o-", color="C0", label="read pass (floor)")
    left.plot(gb, [r["streamed"].get("inner_wall_s") for r in rows], "s-", color="C1", label="read_block_averaged")
    reg = [(r["file_gb"], r["register"]["wall_s"]) for r in rows if r.get("register")]
    if reg:
        left.plot(*zip(*reg), "^-", color="C2", label="register (full CLI)")
    right.plot(gb, [r["read_pass"]["peak_rss_mb"] / 1024 for r in rows], "o-", color="C0", label="read pass")
    right.plot(gb, [r["streamed"]["peak_rss_mb"] / 1024 for r in rows], "s-", color="C1", label="read_block_averaged")
    right.plot(gb, gb, ":", color="grey", label="file size")
    if reg:
        right.plot([r["file_gb"] for r in rows if r.get("register")],
                   [r["register"]["peak_rss_mb"] / 1024 for r in rows if r.get("register")], "^-", color="C2",
                   label="register (full CLI)")
    right.axhline(2.5, color="red", lw=0.8, ls="--", label="target 2.5 GB")
    for axis, title, unit in ((left, "wall time", "s"), (right, "peak RSS", "GB")):
        axis.set(xlabel="uint16 micro-CT file (GB)", ylabel=unit, title=title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-gb", default="0.1,0.5,1,2,4,8", help="file sizes to generate, GB")
    parser.add_argument("--register-up-to-gb", type=float, default=1.0, help="full register up to this size")
    parser.add_argument("--slab-mb", type=float, default=256.0, help="read_block_averaged's slab size")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "mkr-microct-scaling"),
                        help="scratch folder (needs 1.2x the largest size free)")
    parser.add_argument("--name", default="microct_scaling", help="results/<name>.md, .png, .json")
    parser.add_argument("--report-only", action="store_true", help="redo the table and plot from the JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        rows = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_table(rows, RESULTS / f"{args.name}.md", _note(args, rows[0].get("content", "porcine")))
        plot(rows, RESULTS / f"{args.name}.png")
        return 0
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    pair, mr = _load_pair()
    rows = []
    for size in (float(s) for s in args.sizes_gb.split(",")):
        free_gb = shutil.disk_usage(work).free / 1e9
        if free_gb < size * 1.2 + 2:
            print(f"skipping {size} GB: only {free_gb:.0f} GB free in {work}")
            continue
        rows.append(measure(size, work, pair, mr, args.register_up_to_gb, args.slab_mb))
        rows[-1]["content"] = "porcine" if pair else "synthetic"
        print(json.dumps({k: v for k, v in rows[-1].items()}, default=str)[:600], flush=True)
        (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1, default=str))
    write_table(rows, RESULTS / f"{args.name}.md", _note(args, "porcine" if pair else "synthetic"))
    plot(rows, RESULTS / f"{args.name}.png")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _note(args, content: str) -> str:
    return (f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; content: "
            f"{'a 40 mm cube of the porcine CT' if content == 'porcine' else 'synthetic'}; slab {args.slab_mb:g} MB; "
            "page cache warm where memory allows (file just written). Wall times are inflated by other jobs on the "
            "machine: CPU seconds in brackets. `register` is the command line of this commit, run with the cube "
            "fixed and the MR moving, default settings (`auto`, which picks `mri-microct-knee` here; inputs "
            "over 256 MB are streamed); the error is the mean distance to the reference answer "
            "over specimen points inside the cube.")


def _load_pair():
    data = Path(os.environ.get("MKR_SHARED_DATA", REPO.parent / "shared" / "data" / "porcine_ct_mr"))
    if not (data / "CT.nrrd").is_file():
        print(f"no porcine data in {data}: synthetic content, no register column")
        return None, None
    import cases as C

    return C.load_pair(data), data / "MR_T2.nrrd"


if __name__ == "__main__":
    sys.exit(main())

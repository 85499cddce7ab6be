"""Cold-cache reading of one large micro-CT: a plain read pass, our streamed pass, a whole registration.

Why: issue 18 asks that registering an 8 GB micro-CT cost no more than one plain read of the file
plus 30 s, with the page cache cold (the user's case: the file was not just written). Timings with a
warm cache flatter every reader alike, so before each timed run the file is dropped from the page
cache (``os.sync()``, then ``posix_fadvise(DONTNEED)`` over the whole file) and the drop is checked
with ``fincore`` (the resident share is printed). Each run is a fresh child process; its peak RSS is
its VmHWM (``microct_scaling.run_child``). Passes over the file and bytes read come from a wrapper
that counts calls into ``streaming`` (old code) or from the report's ``resources`` (new code).

    PYTHONPATH=MultimodalKneeRegistration python Testing/benchmarks/cold_read.py BIG.nrrd MR.nrrd \\
        --factors 20,20,20 --out /tmp/cold --label after

Not a test: it needs a multi-GB file and minutes. ``uptime``'s load averages are recorded with every
figure, since other jobs on a shared machine inflate wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from microct_scaling import run_child  # noqa: E402

_PLAIN = """
import sys, time
start = time.perf_counter()
buffer = bytearray(64 << 20)
total = 0
with open(sys.argv[1], "rb", buffering=0) as handle:
    while True:
        got = handle.readinto(buffer)
        if not got:
            break
        total += got
print(time.perf_counter() - start, total)
"""

_OURS = """
import sys, time
start = time.perf_counter()
from MultimodalKneeRegistrationLib.io.streaming import read_block_averaged
image = read_block_averaged(sys.argv[1], [int(f) for f in sys.argv[2].split(",")])
print(time.perf_counter() - start, "x".join(map(str, image.GetSize())))
"""

# Counts every streamed pass (old and new code both go through ``_slabs``) and its bytes.
_COUNTED_REGISTER = """
import atexit, json, sys
from MultimodalKneeRegistrationLib.io import streaming
passes = []
original = streaming._slabs
def counted(header, *args, **kwargs):
    passes.append(header.nbytes)
    return original(header, *args, **kwargs)
streaming._slabs = counted
atexit.register(lambda: print("PASSES", json.dumps(passes), file=sys.stderr))
from MultimodalKneeRegistrationLib.cli import main
sys.argv = ["knee-register"] + sys.argv[1:]
code = main(sys.argv[1:])
print("PASSES", json.dumps(passes), file=sys.stderr)
sys.exit(code)
"""


def evict(path: Path) -> float:
    """Drop ``path`` from the page cache; return the share still resident (``fincore``), 0..1."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return resident(path)


def resident(path: Path) -> float:
    """The share of ``path``'s pages in the page cache (``fincore --bytes``), -1 where fincore is missing."""
    if shutil.which("fincore") is None:
        return -1.0
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                          capture_output=True, text=True, check=False)
    try:
        return int(done.stdout.split()[0]) / path.stat().st_size
    except (IndexError, ValueError):
        return -1.0


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(label: str, command: List[str], path: Path, cold: bool) -> Dict:
    left = evict(path) if cold else resident(path)
    before = load()
    row = run_child(command)
    row.update(label=label, cold=cold, resident_before=left, load_before=before, load_after=load())
    print(json.dumps({k: v for k, v in row.items() if k != "stderr"}), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("big", type=Path, help="the large micro-CT (moving)")
    parser.add_argument("mr", type=Path, help="the MRI of the same object (fixed)")
    parser.add_argument("--factors", default="20,20,20", help="factors of our streamed pass alone")
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for the registration's outputs")
    parser.add_argument("--label", default="run", help="name of this set of figures (before/after)")
    parser.add_argument("--skip", default="", help="comma-separated: plain,warm,ours,register")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    python = sys.executable
    rows = []
    if "plain" not in skip:
        rows.append(timed("plain read, cold", [python, "-c", _PLAIN, str(args.big)], args.big, True))
    if "warm" not in skip:
        rows.append(timed("plain read, warm", [python, "-c", _PLAIN, str(args.big)], args.big, False))
    if "ours" not in skip:
        rows.append(timed("read_block_averaged, cold", [python, "-c", _OURS, str(args.big), args.factors],
                          args.big, True))
    if "register" not in skip:
        shutil.rmtree(args.out, ignore_errors=True)
        command = [python, "-c", _COUNTED_REGISTER, "register", str(args.mr), str(args.big), "--output-dir",
                   str(args.out), "--no-resampled", "--quiet"]
        row = timed("register, cold", command, args.big, True)
        report = args.out / "report.json"
        if report.is_file():
            data = json.loads(report.read_text())
            row["timings"] = (data.get("result") or {}).get("timings_s")
            row["resources"] = data.get("resources")
        passes = [line for line in row["stderr"].splitlines() if line.startswith("PASSES")]
        row["passes"] = json.loads(passes[-1].split(" ", 1)[1]) if passes else None
        print(json.dumps({k: row.get(k) for k in ("timings", "resources", "passes", "rc")}), flush=True)
        if row["rc"] not in (0, 4):
            print(row["stderr"][-2000:])
    out = HERE / "results" / f"cold_read_{args.label}.json"
    out.write_text(json.dumps(rows, indent=1, default=str))
    print(f"written {out} at {time.strftime('%H:%M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Worker process: run one tool on one case and write its answer as JSON.

Usage (by ``runner.py`` only): ``python worker.py JOB.json RESULT.json``. A crash, an exception or
a hang in a tool stays in this process; the parent records it as a failure and goes on.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from probe import Probe


def main(job_file: str, result_file: str) -> int:
    probe = Probe()
    job = json.loads(Path(job_file).read_text())
    from peers import TOOLS

    try:
        matrix, extra = TOOLS[job["tool"]](job, probe)
    except Exception as error:  # a tool's failure is a result, written for the parent to report
        Path(result_file).write_text(
            json.dumps(
                {
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}"[:2000],
                    "traceback": traceback.format_exc()[-4000:],
                    "marks": probe.marks,
                    "peak_mb": probe.peak_mb(),
                }
            )
        )
        return 2
    Path(result_file).write_text(
        json.dumps(
            {
                "ok": True,
                "matrix": None if matrix is None else matrix.tolist(),
                "extra": extra,
                "marks": probe.marks,
                "seconds": probe.seconds_between("loaded", "done"),
                "peak_mb": probe.peak_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

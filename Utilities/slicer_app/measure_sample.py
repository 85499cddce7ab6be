#!/usr/bin/env python3
"""CPU seconds of a sample of object files, compiled one at a time (feasibility estimate).

Usage: measure_sample.py <ninja build dir> <file listing object targets>

Used on scratch configurations of ITK and SimpleITK (not built yet by the superbuild) to get a
CPU cost per object: for each target, `ninja -j1 <target>` and the children's rusage.
Run it niced and with CCACHE_DISABLE=1.  Output: target, return code, CPU s, wall s; TOTAL.
"""
import resource
import subprocess
import sys
import time

bdir, listfile = sys.argv[1], sys.argv[2]
objs = [line.strip() for line in open(listfile) if line.strip()]
t0 = time.time()
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
for o in objs:
    a = resource.getrusage(resource.RUSAGE_CHILDREN)
    ta = time.time()
    rc = subprocess.run(["ninja", "-C", bdir, "-j1", o], capture_output=True).returncode
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
    print(f"{o}\t{rc}\t{cpu:.1f}\t{time.time() - ta:.1f}", flush=True)
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"TOTAL\t{len(objs)}\t{r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime:.1f}\t{time.time() - t0:.1f}")

#!/usr/bin/env python3
"""Log the CPU time used so far by a process group (the niced build), once a minute.

Usage: cpu_sampler.py <pgid> <csv>      (stops when the group has no process left)

The machine is shared and the build runs at nice 19, so wall time says more about the other
users than about the build.  CPU seconds do not: for each live process of the group, utime +
stime (its own) + cutime + cstime (its finished, waited-for descendants) is summed.  Each
compiler's time reaches the inner ninja when it exits, so the sum is the group's CPU so far.
ep_timings.py turns the samples into CPU seconds per external project.

CSV columns: epoch, pgid, cpu_seconds, loadavg_1min
"""
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid):
    total, alive = 0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is state (field 3); pgrp is field 5, utime..cstime are fields 14..17
        if int(fields[2]) != pgid:
            continue
        alive += 1
        total += sum(int(x) for x in fields[11:15])
    return total / TICK, alive


def main():
    pgid, out = int(sys.argv[1]), sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    while True:
        cpu, alive = group_cpu(pgid)
        if alive == 0:
            break
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        with open(out, "a") as f:
            f.write(f"{int(time.time())},{pgid},{cpu:.1f},{load}\n")
        time.sleep(interval)


if __name__ == "__main__":
    main()

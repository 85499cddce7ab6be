#!/usr/bin/env python3
"""Per-external-project times of a Slicer superbuild tree, from ExternalProject stamp files.

Usage: ep_timings.py <superbuild dir>   (prints markdown)

ExternalProject touches <proj>-prefix/src/<proj>-stamp/<proj>-<step> when a step ends, so a
step's wall time is its stamp's mtime minus the previous step's.  For the project being built,
the inner ninja's .ninja_log (edges done, their summed job time) and a dry run
(`ninja -n`, edges left) give an estimate of the time still needed at the measured pace.
"""
import os
import subprocess
import sys
import time

STEPS = ["mkdir", "download", "update", "patch", "configure", "build", "install", "done"]


def stamps(bld, proj):
    d = os.path.join(bld, f"{proj}-prefix", "src", f"{proj}-stamp")
    out = {}
    for s in STEPS:
        p = os.path.join(d, f"{proj}-{s}")
        if os.path.exists(p):
            out[s] = os.path.getmtime(p)
    return out


def ninja_log(build_dir):
    """(edges done, compile edges done, summed job seconds of compile edges)"""
    p = os.path.join(build_dir, ".ninja_log")
    if not os.path.exists(p):
        return 0, 0, 0.0
    last = {}
    with open(p) as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            last[parts[3]] = (int(parts[0]), int(parts[1]))
    comp = [(a, b) for o, (a, b) in last.items() if o.endswith(".o")]
    return len(last), len(comp), sum(b - a for a, b in comp) / 1000.0


def edges_left(build_dir):
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        return None
    try:
        r = subprocess.run(["ninja", "-C", build_dir, "-n"], capture_output=True, text=True, timeout=300)
    except Exception:
        return None
    n = c = 0
    for line in r.stdout.splitlines():
        if line.startswith("[") and "/" in line.split("]")[0]:
            n += 1
            c += " object " in line
    return n, c


def load_cpu(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    t, g, c, _ = line.strip().split(",")
                    rows.append((int(t), int(g), float(c)))
                except ValueError:
                    pass
    return rows


def cpu_between(rows, t0, t1):
    """CPU seconds the sampled build group used between t0 and t1 (same group, interpolated)."""
    def at(t):
        best = None
        for (ta, ga, ca), (tb, gb, cb) in zip(rows, rows[1:]):
            if ga == gb and ta <= t <= tb:
                return ga, ca + (cb - ca) * (t - ta) / max(tb - ta, 1)
        for ta, ga, ca in rows:  # at/after the last sample of a group: last value
            if ta <= t:
                best = (ga, ca)
        return best
    a, b = at(t0), at(t1)
    if a is None or b is None or a[0] != b[0]:
        return None
    return b[1] - a[1]


def objects_between(build_dir, t0, t1):
    n = 0
    for root, _, files in os.walk(build_dir):
        for f in files:
            if f.endswith(".o"):
                try:
                    m = os.path.getmtime(os.path.join(root, f))
                except OSError:
                    continue
                n += t0 <= m <= t1
    return n


def fmt(sec):
    if sec is None:
        return ""
    sec = int(round(sec))
    return f"{sec // 3600}h{sec % 3600 // 60:02d}m{sec % 60:02d}s" if sec >= 3600 else f"{sec // 60}m{sec % 60:02d}s"


def main():
    bld = sys.argv[1]
    projs = sorted(
        e[: -len("-prefix")] for e in os.listdir(bld) if e.endswith("-prefix") and os.path.isdir(os.path.join(bld, e))
    )
    rows = []
    for p in projs:
        st = stamps(bld, p)
        if not st:
            continue
        rows.append((st.get("mkdir", 0), p, st))
    rows.sort()
    now = time.time()
    cpu_rows = load_cpu(sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(bld.rstrip("/")), "cpu.csv"))
    print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(now))} in `{bld}`\n")
    print("| external | download | configure | build (wall) | install | total | state | inner edges done | .o done | job-s of .o | build CPU-s | CPU-s per .o | edges left | est. left at this pace | est. left, 2 free cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for _, p, st in rows:
        def d(a, b):
            return st[b] - st[a] if a in st and b in st else None
        prev_conf = max((st[s] for s in ("download", "update", "patch") if s in st), default=None)
        conf = st["configure"] - prev_conf if "configure" in st and prev_conf is not None else None
        state = "done" if "done" in st else ("building" if "configure" in st else "pending")
        total = d("mkdir", "done")
        build = d("configure", "build")
        bdir = os.path.join(bld, f"{p}-build")
        n_all, n_o, job_s = ninja_log(bdir)
        left = est = est2 = None
        cpu = None
        n_o_cpu = n_o
        if "configure" in st:
            cpu = cpu_between(cpu_rows, st["configure"], st.get("build", min(now, cpu_rows[-1][0] if cpu_rows else now)))
        if state == "building":
            build = now - st["configure"]
            res = edges_left(bdir)
            if res is not None:
                left, c_left = res
                if n_o:  # at the pace measured so far, per compiled object
                    est = build / n_o * c_left
                    # CPU per object over the sampled window (objects by file mtime)
                    win = [r for r in cpu_rows if r[0] >= st["configure"]]
                    if len(win) >= 2 and win[0][1] == win[-1][1]:
                        n_win = objects_between(bdir, win[0][0], win[-1][0])
                        if n_win:
                            cpu_per_o = (win[-1][2] - win[0][2]) / n_win
                            cpu, n_o_cpu = win[-1][2] - win[0][2], n_win
                            est2 = cpu_per_o * c_left / 2
                    left = f"{left} ({c_left} .o)"
        if state == "pending" and "mkdir" in st and len(st) == 1:
            continue
        print(
            f"| {p} | {fmt(d('mkdir', 'download'))} | {fmt(conf)} | {fmt(build)}{' (so far)' if state == 'building' else ''} | "
            f"{fmt(d('build', 'install'))} | {fmt(total)} | {state} | {n_all or ''} | {n_o or ''} | "
            f"{int(job_s) if job_s else ''} | {'' if cpu is None else int(cpu)} | "
            f"{'' if not (cpu and n_o_cpu) else round(cpu / n_o_cpu, 1)} | {'' if left is None else left} | {fmt(est)} | {fmt(est2)} |"
        )


if __name__ == "__main__":
    main()

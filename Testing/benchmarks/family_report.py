"""Turn the case family's raw rows into results/FAMILY.md and two PNG plots.

Why: the question the family answers is "how often does each tool hand a user a wrong answer as if it
were right?", so the report leads with silent failures, counts refusals apart, lists every case that
did not succeed with the spec that regenerates it, and keeps the baseline (the code before issue 15's
work, ``raw_family_baseline.json``) beside the latest run so that a rerun shows the change.
Everything is computed from the raw JSON (``family.py --report-only`` redoes it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUTCOMES = ("success", "silent", "refusal", "timeout", "crash")
SHOWN = {"success": "success", "silent": "SILENT FAILURE", "refusal": "refusal", "timeout": "timeout",
         "crash": "crash"}
STYLE = {"success": ("tab:green", "o"), "silent": ("tab:red", "X"), "refusal": ("tab:orange", "s"),
         "timeout": ("tab:gray", "^"), "crash": ("black", "v")}
GROSS_MM = 5.0  # beyond the reference's local doubt on small cubes (see the README's "Case family")
TOOL_NAMES = {"ours": "ours (CLI, default preset)", "ours-floor": "ours started at the answer (floor; told the answer)",
              "brainsfit": "BRAINSFit 5.8 defaults (executable)",
              "brainsfit-tuned": "BRAINSFit tuned recipe (executable)", "elastix": "elastix rigid (itk-elastix)",
              "ants": "ANTs Rigid (ANTsPy)"}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.median(values)) if values else None


def _group(raw: Dict[str, Any], row: Dict[str, Any]) -> str:
    spec = raw["cases"][row["case"]]["spec"]
    if spec.get("look") == "microct":
        return "cube, micro-CT look"
    if spec.get("label"):
        return "issue 15 cases"
    return f"cube, {spec['start_group']}" if spec["family"] == "cube" else spec["family"]


def _tools(rows: List[Dict[str, Any]]) -> List[str]:
    order = list(TOOL_NAMES)
    return sorted({r["tool"] for r in rows}, key=lambda t: order.index(t) if t in order else 99)


def well_posed(raw: Dict[str, Any]) -> Optional[set]:
    """Cases on which ours started at the answer ends within the success limit (None: no floor rows).

    On the others the images do not pin the answer to 2.5 mm for ours (thin plates the MR barely
    shows, or a region where the one rigid reference does not fit the MR locally): no search can
    succeed there, and the honest outcome is a refusal.
    """
    floors = [r for r in raw["rows"] if r["tool"] == "ours-floor"]
    return {r["case"] for r in floors if r["outcome"] == "success"} if floors else None


def summary_rows(raw: Dict[str, Any], cases: Optional[set] = None) -> List[str]:
    """Per tool: outcome counts, needless refusals, times and memory (over ``cases`` when given)."""
    lines = ["| Tool | cases | success | SILENT FAILURES (of them > 5 mm) | refusals (of them needless) | "
             "timeouts | crashes | median error of successes (mm) | median wall (s) | median CPU (s) | "
             "peak RSS median / max (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for tool in _tools(raw["rows"]):
        rows = [r for r in raw["rows"] if r["tool"] == tool and (cases is None or r["case"] in cases)]
        if not rows:
            continue
        count = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
        needless = sum(r["outcome"] == "refusal" and (r.get("refused_mean_mm") or 1e9) <= raw["success_mm"]
                       for r in rows)
        good = [r for r in rows if r["outcome"] == "success"]
        gross = sum(r["outcome"] == "silent" and r["mean_mm"] > GROSS_MM for r in rows)
        peaks = [r["peak_rss_mb"] for r in rows if r.get("peak_rss_mb")]
        lines.append(
            f"| {TOOL_NAMES.get(tool, tool)} | {len(rows)} | "
            f"{count['success']} ({100 * count['success'] / len(rows):.0f} %) | **{count['silent']}** ({gross}) | "
            f"{count['refusal']} ({needless}) | {count['timeout']} | {count['crash']} | "
            f"{_f(_median(good, 'mean_mm'), 2)} | {_f(_median(rows, 'wall_s'))} | {_f(_median(rows, 'cpu_s'))} | "
            f"{_f(float(np.median(peaks)) if peaks else None, 0)} / {_f(max(peaks) if peaks else None, 0)} |")
    return lines


def family_rows(raw: Dict[str, Any]) -> List[str]:
    """success / silent / refusal / other counts per case group and tool."""
    tools = _tools(raw["rows"])
    groups = sorted({_group(raw, r) for r in raw["rows"]})
    lines = ["| Cases | " + " | ".join(TOOL_NAMES.get(t, t) for t in tools) + " |", "|---" * (len(tools) + 1) + "|"]
    for group in groups:
        cells = []
        for tool in tools:
            rows = [r for r in raw["rows"] if r["tool"] == tool and _group(raw, r) == group]
            n = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
            other = n["timeout"] + n["crash"]
            cells.append(f"{n['success']}/{len(rows)} ok, **{n['silent']} silent**, {n['refusal']} refused"
                         + (f", {other} timeout/crash" if other else "") if rows else "–")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def _compact_spec(spec: Dict[str, Any]) -> str:
    keep = {k: v for k, v in spec.items() if v not in ("", 0, 0.0) or k in ("seed", "fine_fixed")}
    for key in ("start_axis", "start_direction", "center", "grid_direction"):
        if key in keep:
            keep[key] = [round(float(v), 4) for v in keep[key]]
    return json.dumps(keep, separators=(",", ":"))


def failure_rows(raw: Dict[str, Any]) -> List[str]:
    """Every (case, tool) that did not succeed, worst first, with the spec that regenerates it."""
    lines = []
    floors = {r["case"]: _f(r.get("mean_mm", r.get("refused_mean_mm")), 2) + ("" if "mean_mm" in r else " (refused)")
              for r in raw["rows"] if r["tool"] == "ours-floor"}
    for tool in _tools(raw["rows"]):
        rows = [r for r in raw["rows"] if r["tool"] == tool and r["outcome"] != "success"]
        rank = {"silent": 0, "crash": 1, "timeout": 2, "refusal": 3}
        rows.sort(key=lambda r: (rank.get(r["outcome"], 4), -(r.get("mean_mm") or r.get("refused_mean_mm") or 0)))
        lines += ["", f"### {TOOL_NAMES.get(tool, tool)}: {len(rows)} not successful", ""]
        if not rows:
            continue
        lines += ["| Case | outcome | mean / max error (mm) | ours' floor (mm) | exit | wall (s) | what | spec |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            case = raw["cases"][r["case"]]
            if "mean_mm" in r:
                error = f"{_f(r['mean_mm'])} / {_f(r.get('max_mm'))}"
            elif "refused_mean_mm" in r:
                error = f"(refused result: {_f(r['refused_mean_mm'])} / {_f(r.get('refused_max_mm'))})"
            else:
                error = "–"
            lines.append(f"| {r['case']} | {SHOWN[r['outcome']]} | {error} | {floors.get(r['case'], '–')} | "
                         f"{r.get('exit_code')} | "
                         f"{_f(r.get('wall_s'))} | {case['description']} | `{_compact_spec(case['spec'])}` |")
    return lines


def header(raw: Dict[str, Any]) -> List[str]:
    runs = raw["runs"]
    commits = sorted({r.get("commit", "?") for r in raw["rows"]})
    families: Dict[str, int] = {}
    for record in raw["cases"].values():
        families[record["spec"]["family"]] = families.get(record["spec"]["family"], 0) + 1
    lines = ["# Case-family benchmark (issue 15)", "",
             f"Generated by `Testing/benchmarks/run_family.sh` ({len(runs)} invocation(s), merged). "
             f"Our code measured at: {', '.join(commits)}. Success: <= {raw['success_mm']} mm mean error over "
             "tissue points (the porcine reference is trusted to ~2 mm); SILENT FAILURE: an answer handed "
             "back (exit 0) that is further off; refusal: exit 4 (ours) or the tool's own error.", "",
             f"Cases: {len(raw['cases'])} ({', '.join(f'{n} {k}' for k, n in sorted(families.items()))}); "
             "see `MultimodalKneeRegistrationLib/synthetic/case_family.py` and the README's \"Case family\".", "",
             "| Run | date | our code | minutes | load average start -> end | threads x jobs | limit (s) | tools | "
             "arguments |", "|---|---|---|---|---|---|---|---|---|"]
    for number, run in enumerate(runs, 1):
        m = run["machine"]
        lines.append(f"| {number} | {m['date']} | {m['our_code']} | {run.get('minutes', '?')} | "
                     f"{m['load_average_start']} -> {run.get('load_average_end', '?')} | {run['threads']} x "
                     f"{run['jobs']} | {run['timeout_s']:.0f} | {run['tools']} | `{run['argv']}` "
                     f"{run.get('note', '')} |")
    m = runs[-1]["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; Python {m['python']}; "
              + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ". Wall times include the worker's "
              "start, imports and reading the images; other jobs shared the cores when the load average "
              "exceeds the run's threads, so compare CPU seconds too.", ""]
    return lines


def angle_plot(raw: Dict[str, Any], path: Path) -> None:
    """Mean error against the start rotation, per tool, marked by outcome (not the floor: it starts at the answer)."""
    tools = [t for t in _tools(raw["rows"]) if t != "ours-floor"]
    fig, axes = plt.subplots(1, len(tools), figsize=(5.2 * len(tools), 4.2), squeeze=False, sharey=True)
    for ax, tool in zip(axes[0], tools):
        for outcome in OUTCOMES:
            rows = [r for r in raw["rows"] if r["tool"] == tool and r["outcome"] == outcome]
            x = [raw["cases"][r["case"]]["spec"]["start_angle_deg"] for r in rows]
            y = [min(500.0, r.get("mean_mm") or r.get("refused_mean_mm") or 500.0) for r in rows]
            color, marker = STYLE[outcome]
            ax.scatter(x, y, c=color, marker=marker, label=f"{SHOWN[outcome]} ({len(rows)})", s=30, alpha=0.8)
        ax.axhline(raw["success_mm"], color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlim(0, 180)
        ax.set_xlabel("start rotation from the answer (deg)")
        ax.set_title(TOOL_NAMES.get(tool, tool), fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("mean error (mm; refusals: the refused result; 500 = none)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def cube_plot(raw: Dict[str, Any], path: Path) -> None:
    """Mean error against the cube's spacing and side, per tool that ran cube cases."""
    tools = _tools([r for r in raw["rows"] if raw["cases"][r["case"]]["spec"]["family"] == "cube"])
    fig, axes = plt.subplots(len(tools), 2, figsize=(10, 3.4 * len(tools)), squeeze=False)
    for row_axes, tool in zip(axes, tools):
        rows = [r for r in raw["rows"] if r["tool"] == tool and raw["cases"][r["case"]]["spec"]["family"] == "cube"]
        for ax, key, label in zip(row_axes, ("spacing_mm", "side_mm"), ("cube spacing (mm)", "cube side (mm)")):
            for outcome in OUTCOMES:
                chosen = [r for r in rows if r["outcome"] == outcome]
                x = [raw["cases"][r["case"]]["spec"][key] for r in chosen]
                y = [min(500.0, r.get("mean_mm") or r.get("refused_mean_mm") or 500.0) for r in chosen]
                color, marker = STYLE[outcome]
                ax.scatter(x, y, c=color, marker=marker, label=SHOWN[outcome], s=30, alpha=0.8)
            ax.axhline(raw["success_mm"], color="k", lw=0.8, ls="--")
            ax.set_yscale("log")
            ax.set_xscale("log" if key == "spacing_mm" else "linear")
            ax.set_xlabel(label)
            ax.set_ylabel("mean error (mm)")
            ax.set_title(TOOL_NAMES.get(tool, tool), fontsize=9)
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _baseline_when(baseline: Dict[str, Any]) -> str:
    dates = sorted({r.get("date", "?") for r in baseline["rows"]})
    commits = sorted({r.get("commit", "?") for r in baseline["rows"]})
    return (f"measured {dates[0]} to {dates[-1]} UTC at commit(s) {', '.join(commits)} (the registration code "
            "before issue 15's search and verdict work)")


def baseline_section(baseline: Dict[str, Any]) -> List[str]:
    return ["", "## Baseline (kept in `results/raw_family_baseline.json`)", "",
            f"The baseline was {_baseline_when(baseline)}; its load averages are in its own run table.", ""
            ] + summary_rows(baseline) + ["", "By case group:", ""] + family_rows(baseline)


def write(raw: Dict[str, Any], out: Path, baseline: Optional[Dict[str, Any]] = None) -> Path:
    """Write FAMILY.md and the plots from ``raw``; returns the Markdown file."""
    lines = header(raw) + ["## Per tool", ""] + summary_rows(raw) + ["", "## By case group", ""] + family_rows(raw)
    posed = well_posed(raw)
    if posed is not None:
        floors = [r for r in raw["rows"] if r["tool"] == "ours-floor"]
        lines += ["", f"## On the well-posed cases ({len(posed)} of {len(floors)})", "",
                  "Cases where ours started AT the answer (`--tools ours-floor`: `--initial-transform` = the answer, "
                  "`--init-mode Off`) ends within the success limit. On the other cases the images do not pin the "
                  "answer to 2.5 mm for ours: no search can succeed there, and the honest outcome is a refusal "
                  "(a result there counts as a silent failure above, rightly: the user cannot tell).", ""]
        lines += summary_rows(raw, posed)
    if raw["rows"]:
        angle_plot(raw, out / "family_angle.png")
        lines += ["", "![error against start rotation](family_angle.png)"]
    if any(raw["cases"][r["case"]]["spec"]["family"] == "cube" for r in raw["rows"]):
        cube_plot(raw, out / "family_cubes.png")
        lines += ["", "![error against cube spacing and side](family_cubes.png)"]
    if baseline is not None and baseline.get("rows") != raw.get("rows"):
        lines += baseline_section(baseline)
    elif baseline is not None:
        lines[2:2] = [f"**This report is the baseline** (`results/raw_family_baseline.json`), {_baseline_when(raw)}.",
                      ""]
    lines += ["", "## Every case that did not succeed"] + failure_rows(raw)
    lines += ["", "## Regenerating a case", "", "```python",
              "from MultimodalKneeRegistrationLib.synthetic.case_family import CaseSpec, make_case",
              "from MultimodalKneeRegistrationLib.synthetic.porcine import PorcineSources",
              "spec = CaseSpec.from_dict(raw['cases'][NAME]['spec'])  # raw = results/raw_family.json",
              "case = make_case(spec, PorcineSources(Path('../shared/data/porcine_ct_mr')))",
              "```"]
    path = out / "FAMILY.md"
    path.write_text("\n".join(lines) + "\n")
    return path

"""``OUT/index.html``: one page to review a cohort: each pair's QC picture, verdict and numbers.

Why a single self-contained file: it must open from disk (or a copied results folder) with no
server and no network, so CSS and the sorting script are inline and the QC pictures are linked
relative to the page. Every string that comes from a manifest or a file name is HTML-escaped, and
a Content-Security-Policy allows only the page's own script (by its hash), so even a missed escape
could not run an injected ``onerror=...`` handler.

Example:
    >>> write_index_page(Path("out"), outcomes, manifest_name="cohort.csv")
    PosixPath('out/index.html')
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from html import escape
from pathlib import Path
from typing import List, Optional
from urllib.parse import quote

from .outcome import PairOutcome
from .summary import count_outcomes, format_counts, write_text_replacing

PAGE_NAME = "index.html"
#: Status -> sort rank: sorting the status column ascending puts the worst first.
STATUS_RANK = {"failed-other": 0, "failed-input": 1, "refused": 2, "interrupted": 3, "ok": 4, "skipped": 5}
COLUMNS = (("QC picture", None), ("id", "text"), ("status", "number"), ("confidence", "number"),
           ("metric after", "number"), ("seconds", "number"), ("peak memory (MB)", "number"),
           ("error or warning", "text"), ("files", None))

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}.meta{color:#555;margin:.2em 0 1em}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002}
th,td{border-bottom:1px solid #ddd;padding:6px 10px;text-align:left;vertical-align:middle}
th{background:#eef1f5;position:sticky;top:0}th[data-type]{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.msg{max-width:32em;font-size:.92em;overflow-wrap:anywhere}
img{width:240px;display:block;background:#000}
.badge{padding:2px 8px;border-radius:10px;font-weight:600;white-space:nowrap;color:#fff}
.b-ok,.b-skipped{background:#2e7d32}.b-refused{background:#b26a00}
.b-failed-input,.b-failed-other,.b-interrupted{background:#b3261e}
tr.bad{background:#fff1f0}tr.warn{background:#fff8e6}
.none{color:#999;font-size:.9em}
"""

_SCRIPT = """
(function () {
  var table = document.getElementById("pairs");
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    if (!th.hasAttribute("data-type")) { return; }
    th.tabIndex = 0;
    function sortBy() {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.getAttribute("data-type") === "number";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-value"), y = b.cells[col].getAttribute("data-value");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, undefined, {numeric: true});
        return ascending ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    }
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(); }
    });
  });
})();
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'")


def _number_cell(value: Optional[float], digits: int) -> str:
    if value is None:
        return '<td class="num" data-value=""><span class="none">&ndash;</span></td>'
    return f'<td class="num" data-value="{value!r}">{value:.{digits}f}</td>'


def _links(outcome: PairOutcome) -> str:
    """Links to the pair's folder and to the files it has (a failed pair may have no report)."""
    folder = escape(quote(outcome.folder))
    names = [("folder", "")] + [(label, name) for label, name in (("report", "report.json"), ("log", "batch_log.txt"))
                                if name in outcome.files]
    return "<br>".join(f'<a href="{folder}/{name}">{label}</a>' for label, name in names) if outcome.files else \
        '<span class="none">none</span>'


def _row(outcome: PairOutcome) -> str:
    """One table row; every manifest- or file-derived string passes through ``escape``."""
    pair_id, folder = escape(outcome.pair_id), quote(outcome.folder)
    if outcome.has_qc:
        qc = (f'<a href="{escape(folder)}/qc.png"><img src="{escape(folder)}/qc.png" loading="lazy" '
              f'alt="QC picture of {pair_id}"></a>')
    else:
        qc = '<span class="none">no picture</span>'
    status = escape(outcome.status)
    cells = [
        f"<td>{qc}</td>",
        f'<td data-value="{pair_id}">{pair_id}</td>',
        f'<td data-value="{STATUS_RANK.get(outcome.status, 9)}"><span class="badge b-{status}">{status}</span></td>',
        _number_cell(outcome.confidence, 2), _number_cell(outcome.metric_after, 4),
        _number_cell(outcome.seconds, 1), _number_cell(outcome.peak_rss_mb, 0),
        f'<td class="msg" data-value="{escape(outcome.message)}">{escape(outcome.message)}</td>',
        f"<td>{_links(outcome)}</td>",
    ]
    tint = "" if outcome.succeeded else (' class="warn"' if outcome.status == "refused" else ' class="bad"')
    return f"<tr{tint}>" + "".join(cells) + "</tr>"


def render_page(outcomes: List[PairOutcome], manifest_name: str = "") -> str:
    """The page's HTML text (the caller writes it)."""
    created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    head = "".join(f'<th data-type="{kind}" scope="col">{escape(name)}</th>' if kind else
                   f'<th scope="col">{escape(name)}</th>' for name, kind in COLUMNS)
    counts = escape(format_counts(count_outcomes(outcomes)))
    source = f"manifest {escape(manifest_name)}, " if manifest_name else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Batch registration: {len(outcomes)} pairs</title><style>{_STYLE}</style></head>\n<body>"
        f"<h1>Batch registration: {len(outcomes)} pairs</h1>"
        f'<p class="meta">{source}written {escape(created)}: {counts}. Click a column header to sort; '
        "click a picture to open it. Metric: Mattes mutual information, lower is better.</p>\n"
        f'<table id="pairs"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(_row(o) for o in outcomes)
        + f"\n</tbody></table>\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def write_index_page(output_dir: Path, outcomes: List[PairOutcome], manifest_name: str = "") -> Path:
    """Write ``OUT/index.html`` (replacing the previous one)."""
    return write_text_replacing(output_dir / PAGE_NAME, render_page(outcomes, manifest_name))

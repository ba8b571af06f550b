"""audit.html: the audit's findings as one self-contained page (inline CSS, no external assets).

Why a page of its own: `tunewise audit` runs before any run directory exists, and a data owner
who is sent the page should see every finding with its example rows without installing anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import jinja2

from tunewise.core import rundir
from tunewise.core.console import console
from tunewise.core.findings import SEVERITIES, Finding, print_findings, write_findings

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data audit</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem;
        color: #1f2328; }
 table { border-collapse: collapse; } td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd;
        text-align: left; }
 .finding { border: 1px solid #d0d7de; border-left-width: 5px; border-radius: 6px;
            padding: .5rem .9rem; margin: .6rem 0; }
 .error { border-left-color: #cf222e; background: #fff5f5; }
 .warning { border-left-color: #bf8700; background: #fffbea; }
 .info { border-left-color: #0969da; }
 .sev { text-transform: uppercase; font-size: .75rem; font-weight: 700; margin-right: .4rem; }
 code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; }
 pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem; }
 .ok { color: #1a7f37; font-weight: 600; }
</style></head><body>
<h1>Data audit</h1>
<table>
{% for source, n in summary.rows.items() %}<tr><th>{{ source }}</th><td>{{ n }} rows</td></tr>
{% endfor %}<tr><th>classes</th><td>{{ summary.classes }}</td></tr>
<tr><th>time</th><td>{{ summary.seconds }} s</td></tr>
</table>
{% if not findings %}<p class="ok">No findings: the data passed every check.</p>{% endif %}
{% for f in findings %}
<div class="finding {{ f.severity }}">
 <div><span class="sev">{{ f.severity }}</span><code><b>{{ f.code }}</b></code></div>
 <div>{{ f.message }}</div>
 <div><b>Fix:</b> {{ f.remedy }}</div>
 <details><summary>evidence</summary><pre>{{ f.evidence_text }}</pre></details>
</div>
{% endfor %}
</body></html>
"""


def write_audit_html(path: Path, findings: list[Finding], summary: dict) -> Path:
    """Render the findings, most severe first, with their evidence as indented JSON."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rows = [
        {**asdict(f), "evidence_text": json.dumps(f.evidence, indent=1, ensure_ascii=False)}
        for f in sorted(findings, key=lambda f: order[f.severity])
    ]
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    path.write_text(env.from_string(_PAGE).render(findings=rows, summary=summary), "utf-8")
    return path


def write_audit(out: Path, findings: list[Finding], summary: dict) -> None:
    """audit.json (the contract's list of findings), audit.html, and the terminal table."""
    out.mkdir(parents=True, exist_ok=True)
    write_findings(out / rundir.AUDIT, findings)
    write_audit_html(out / rundir.AUDIT_HTML, findings, summary)
    print_findings(findings, f"audit ({summary['seconds']} s)")
    console.log(f"audit written: {out / rundir.AUDIT}, {out / rundir.AUDIT_HTML}")

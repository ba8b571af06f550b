"""audit.html: the audit's findings as one self-contained page (inline CSS and PNG charts, no
external assets), opened by a one-line "ready to train?" answer.

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
from tunewise.report import charts

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data audit</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem;
        color: #1f2328; line-height: 1.45; }
 table { border-collapse: collapse; } td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd;
        text-align: left; }
 td.n { text-align: right; font-variant-numeric: tabular-nums; }
 .finding { border: 1px solid #d0d7de; border-left-width: 5px; border-radius: 6px;
            padding: .5rem .9rem; margin: .6rem 0; }
 .error { border-left-color: #cf222e; background: #fff5f5; }
 .warning { border-left-color: #bf8700; background: #fffbea; }
 .info { border-left-color: #0969da; }
 .sev { text-transform: uppercase; font-size: .75rem; font-weight: 700; margin-right: .4rem; }
 code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; }
 pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem; }
 .ready { font-size: 1.1rem; padding: .6rem 1rem; border-radius: 6px; border-left: 6px solid; }
 .ready.yes { border-color: #1a7f37; background: #dafbe1; }
 .ready.care { border-color: #bf8700; background: #fff8c5; }
 .ready.no { border-color: #cf222e; background: #ffebe9; }
 .ready a { color: inherit; }
 img { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
 .note { color: #57606a; font-size: .85rem; }
 details summary { cursor: pointer; color: #0969da; }
 .scroll { max-height: 24rem; overflow-y: auto; display: inline-block; }
</style></head><body>
<h1>Data audit</h1>
<p id="ready" class="ready {{ ready.tone }}"><strong>{{ ready.title }}</strong> {{ ready.text }}
{% if findings %}<a href="#findings">See the findings.</a>{% endif %}</p>
<table>
{% for source, n in summary.rows.items() %}
<tr><th>{{ source }}</th><td class="n">{{ "{:,}".format(n) }} rows</td></tr>
{% endfor %}<tr><th>classes</th><td class="n">{{ summary.classes }}</td></tr>
<tr><th>time</th><td class="n">{{ summary.seconds }} s</td></tr>
</table>
{% if charts %}
<section id="charts">
<h2>Classes and lengths</h2>
{% for c in charts %}<img src="{{ c.src }}" alt="{{ c.alt }}">{% endfor %}
{% if classes %}
<details><summary>rows per class ({{ classes|length }} classes, smallest first)</summary>
<div class="scroll"><table>
<tr><th>class</th>{% for name in split_names %}<th>{{ name }}</th>{% endfor %}</tr>
{% for c in classes %}<tr><td>{{ c.label }}</td>
{% for n in c.counts %}<td class="n">{{ n }}</td>{% endfor %}</tr>
{% endfor %}</table></div></details>
{% endif %}
</section>
{% endif %}
<section id="findings">
<h2>Findings</h2>
{% if not findings %}<p>No findings: the data passed every check.</p>{% endif %}
{% for f in findings %}
<div class="finding {{ f.severity }}">
 <div><span class="sev">{{ f.severity }}</span><code><b>{{ f.code }}</b></code></div>
 <div>{{ f.message }}</div>
 <div><b>Fix:</b> {{ f.remedy }}</div>
 <details><summary>evidence</summary><pre>{{ f.evidence_text }}</pre></details>
</div>
{% endfor %}
</section>
</body></html>
"""


def write_audit_html(path: Path, findings: list[Finding], summary: dict) -> Path:
    """Render the verdict line, the charts and the findings (most severe first, evidence as
    indented JSON)."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rows = [
        {**asdict(f), "evidence_text": json.dumps(f.evidence, indent=1, ensure_ascii=False)}
        for f in sorted(findings, key=lambda f: order[f.severity])
    ]
    profile = summary.get("profile") or {}
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    page = env.from_string(_PAGE).render(
        findings=rows,
        summary=summary,
        ready=ready_to_train(findings, summary),
        charts=_charts(profile),
        split_names=[s.get("name") for s in profile.get("splits") or []],
        classes=_class_rows(profile),
    )
    path.write_text(page, "utf-8")
    return path


def ready_to_train(findings: list[Finding], summary: dict) -> dict:
    """The page's first line: can a run start on this data, and what to read first."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    rows = sum((summary.get("rows") or {}).values())
    facts = f"{rows:,} rows, {summary.get('classes', '?')} classes."
    if errors:
        text = (
            f"{_count(errors, 'error')} would invalidate the results: tunewise run stops on "
            "them (audit.fail_on: error). Fix the data first."
        )
        return {"tone": "no", "title": "Not ready to train.", "text": f"{facts} {text}"}
    if warnings:
        text = f"{_count(warnings, 'warning')} worth a look first (a run goes ahead with them)."
        return {"tone": "care", "title": "Ready to train, with care.", "text": f"{facts} {text}"}
    return {"tone": "yes", "title": "Ready to train.", "text": f"{facts} No errors or warnings."}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _charts(profile: dict) -> list[dict]:
    figures = [
        (charts.class_chart(profile, profile.get("min_class_count")), "rows per class"),
        (charts.length_chart(profile), "text length histogram"),
    ]
    return [{"src": charts.png(fig), "alt": alt} for fig, alt in figures if fig is not None]


def _class_rows(profile: dict) -> list[dict]:
    """Every class with its rows per split, smallest training count first."""
    splits = profile.get("splits") or []
    if not splits:
        return []
    labels = set().union(*(s.get("labels") or {} for s in splits))
    train = splits[0].get("labels") or {}
    rows = [{"label": k, "counts": [s["labels"].get(k, 0) for s in splits]} for k in labels]
    return sorted(rows, key=lambda r: (train.get(r["label"], 0), r["label"]))


def write_audit(out: Path, findings: list[Finding], summary: dict) -> None:
    """audit.json (the contract's list of findings), audit.html, and the terminal table."""
    out.mkdir(parents=True, exist_ok=True)
    write_findings(out / rundir.AUDIT, findings)
    write_audit_html(out / rundir.AUDIT_HTML, findings, summary)
    print_findings(findings, f"audit ({summary['seconds']} s)")
    console.log(f"audit written: {out / rundir.AUDIT}, {out / rundir.AUDIT_HTML}")

"""report.html for a causal_lm run: scores with CIs, forgetting, canaries, side-by-side replies.

Shares the classification report's style, verdict box, findings and learning curves
(report/html.py, report/verdict.py) and adds what SFT needs: the untuned-vs-tuned text metrics
and the generations table.

    tunewise report runs/cucom-sft
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from tunewise.core import rundir
from tunewise.report import html
from tunewise.report.config_view import config_view
from tunewise.report.verdict import verdict

COLUMNS = ("rougeL", "bleu", "chrf", "exact_match", "perplexity")


def write_sft_report(run_dir: Path) -> Path:
    """Write run_dir/report.html (self-contained) from metrics.json, history and findings."""
    run_dir = Path(run_dir)
    m = html._read_json(run_dir / rundir.METRICS, required=True)
    history, _ = html._read_history(run_dir / rundir.HISTORY)
    shared = (html.TEMPLATE_DIR / "report.html").read_text(encoding="utf-8")
    style = re.search(r"<style>.*?</style>", shared, re.S)
    titles = {"training": "Training", "parameters": "Parameters", "data": "Data"}
    config = config_view(run_dir / rundir.CONFIG)
    findings = html._read_findings(run_dir)
    context = {
        "m": m,
        "style": style.group(0) if style else "",
        "columns": COLUMNS,
        "rows": [*m.get("baselines", {}).items(), ("tuned", m["tuned"])],
        "curves": html._learning_curves(history),
        "config": config,
        "summaries": [(t, m[k]) for k, t in titles.items() if isinstance(m.get(k), dict)],
        # ROUGE-L carries the paired randomization test, so it decides, as in the headline
        "verdict": verdict(m, findings, "rougeL", html.alpha(config)),
    }
    present = {"headline"} | {k for k in ("curves", "config") if context[k]}
    context["findings"] = html.link_sections(findings, present | ({"forgetting"} & set(m)))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=html.num, signed=html.signed, pval=html.pval, plain=html.plain)
    out = run_dir / rundir.REPORT
    out.write_text(env.get_template("sft_report.html").render(context), encoding="utf-8")
    return out
